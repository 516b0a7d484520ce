//! `ClusterClient`: the clustersitter's HTTP API (`/api/v1/...`), as the
//! `cerebro` CLI, machinesitters and the end-to-end tests use it.

use crate::task::with_query;
use crate::{encode_path_segment, ClientError, Endpoint, HttpClient};
use cerebro_types::cluster::{
    BinaryInfo, ClusterEvent, ClusterStatus, IdleLimitRequest, JobReply, JobView, MachineView,
    PlanReply, RegisterReply, RegisterRequest, UpdateRequest,
};
use cerebro_types::deploy::InstanceDeployLog;
use cerebro_types::dns::DnsStatus;
use cerebro_types::job::JobSpec;
use cerebro_types::task_api::LogQuery;
use cerebro_types::{LogChunk, LogStream};

/// A clustersitter's API at one address, with the cluster's token (sent on
/// every call; the clustersitter asks for it on every change).
/// Cheap to clone; clones share the connection pool.
///
/// Every method fails with [`ClientError`]: `Status` carries the
/// clustersitter's JSON error body (`{"error": ..., "fields": ...}`), so a
/// 400 names the fields at fault, a 404 the missing job, machine or
/// instance, a 409 a conflict (linked jobs, an instance not placed yet).
#[derive(Clone, Debug)]
pub struct ClusterClient {
    api: Endpoint,
}

impl ClusterClient {
    /// `address` is `host:port` (as the clustersitter's address file holds
    /// it) or a base URL such as `http://127.0.0.1:30000`; `token` is the
    /// cluster's bearer token, if it has one.
    pub fn new(http: HttpClient, address: &str, token: Option<String>) -> Self {
        Self {
            api: Endpoint::new(http, address, token),
        }
    }

    /// The base URL this client talks to, without a trailing slash.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// The URL of one job's resource, its name percent-encoded: `suffix`
    /// is empty or starts with `/`.
    fn job_url(&self, name: &str, suffix: &str) -> String {
        self.api.url(&format!(
            "/api/v1/jobs/{}{suffix}",
            encode_path_segment(name)
        ))
    }

    /// `GET /api/v1/binaries`: the programs machines download, each with
    /// its SHA-256 and size. Needs the token even though it is a read; 503
    /// when this clustersitter could not find them at start.
    pub async fn binaries(&self) -> Result<Vec<BinaryInfo>, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/binaries"), self.api.token())
            .await
    }

    /// `GET /api/v1/status`: the cluster at a glance (zones, counts, unplaced instances).
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/status"), self.api.token())
            .await
    }

    /// `GET /api/v1/events?limit=N`, newest first; `None` takes the
    /// server's default (200).
    pub async fn events(&self, limit: Option<usize>) -> Result<Vec<ClusterEvent>, ClientError> {
        let url = match limit {
            Some(limit) => self.api.url(&format!("/api/v1/events?limit={limit}")),
            None => self.api.url("/api/v1/events"),
        };
        self.api.http.get_json(&url, self.api.token()).await
    }

    /// `GET /api/v1/jobs`, by name.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/jobs"), self.api.token())
            .await
    }

    /// `GET /api/v1/jobs/{name}`; a 404 when there is no such job.
    pub async fn job(&self, name: &str) -> Result<JobView, ClientError> {
        self.api
            .http
            .get_json(&self.job_url(name, ""), self.api.token())
            .await
    }

    /// `PUT /api/v1/jobs/{job.name}`: creates (HTTP 201, `created`) or
    /// updates the job (`updated`, with a rollout when instances must
    /// change, or `unchanged`). Idempotent, so retried.
    pub async fn put_job(&self, job: &JobSpec) -> Result<JobReply, ClientError> {
        self.api
            .http
            .put_json(&self.job_url(job.name(), ""), self.api.token(), job)
            .await
    }

    /// `DELETE /api/v1/jobs/{name}`: `deleted`; its instances stop. A 409
    /// while other jobs link to it.
    pub async fn remove_job(&self, name: &str) -> Result<JobReply, ClientError> {
        self.api
            .http
            .delete_json(&self.job_url(name, ""), self.api.token())
            .await
    }

    /// `POST /api/v1/jobs/{name}/update`: a rolling update (`updating`).
    pub async fn update_job(
        &self,
        name: &str,
        request: &UpdateRequest,
    ) -> Result<JobReply, ClientError> {
        self.api
            .http
            .post_json(
                &self.job_url(name, "/update"),
                self.api.token(),
                Some(request),
            )
            .await
    }

    /// `POST /api/v1/jobs/{name}/start`: every instance runs, whatever
    /// `auto_start` says (`starting`).
    pub async fn start_job(&self, name: &str) -> Result<JobReply, ClientError> {
        self.api
            .http
            .post_json::<(), _>(&self.job_url(name, "/start"), self.api.token(), None)
            .await
    }

    /// `POST /api/v1/jobs/{name}/stop`: every instance stops; the job stays
    /// (`stopping`).
    pub async fn stop_job(&self, name: &str) -> Result<JobReply, ClientError> {
        self.api
            .http
            .post_json::<(), _>(&self.job_url(name, "/stop"), self.api.token(), None)
            .await
    }

    /// `POST /api/v1/jobs/{name}/instances/{index}/restart` (`restarting`);
    /// `index` counts from 0 in the job's instance list.
    pub async fn restart_instance(
        &self,
        name: &str,
        index: usize,
    ) -> Result<JobReply, ClientError> {
        let url = self.job_url(name, &format!("/instances/{index}/restart"));
        self.api
            .http
            .post_json::<(), _>(&url, self.api.token(), None)
            .await
    }

    /// `GET /api/v1/jobs/{name}/instances/{index}/logs/{stream}`: a chunk
    /// of the instance's log, read from its machine.
    pub async fn instance_log(
        &self,
        name: &str,
        index: usize,
        stream: LogStream,
        query: &LogQuery,
    ) -> Result<LogChunk, ClientError> {
        let url = with_query(
            self.job_url(
                name,
                &format!("/instances/{index}/logs/{}", stream.as_str()),
            ),
            query,
        );
        self.api.http.get_json(&url, self.api.token()).await
    }

    /// `GET /api/v1/jobs/{name}/deploylog[?instance=N]`: each instance's
    /// deployment attempts (newest first, with every step's outcome and
    /// output tail), read from its machine; an instance whose machine did
    /// not answer has `error` set. A 404 for an unknown job, a 400 naming
    /// `instance` for an index the job does not have.
    pub async fn deploy_log(
        &self,
        name: &str,
        instance: Option<usize>,
    ) -> Result<Vec<InstanceDeployLog>, ClientError> {
        let url = match instance {
            Some(index) => self.job_url(name, &format!("/deploylog?instance={index}")),
            None => self.job_url(name, "/deploylog"),
        };
        self.api.http.get_json(&url, self.api.token()).await
    }

    /// `POST /api/v1/plan`: where these jobs' instances would go, changing nothing.
    pub async fn plan(&self, jobs: &[JobSpec]) -> Result<PlanReply, ClientError> {
        self.api
            .http
            .post_json(&self.api.url("/api/v1/plan"), self.api.token(), Some(&jobs))
            .await
    }

    /// `GET /api/v1/machines`.
    pub async fn machines(&self) -> Result<Vec<MachineView>, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/machines"), self.api.token())
            .await
    }

    /// `GET /api/v1/machines/{id}`; a 404 when there is no such machine.
    pub async fn machine(&self, id: &str) -> Result<MachineView, ClientError> {
        let url = self
            .api
            .url(&format!("/api/v1/machines/{}", encode_path_segment(id)));
        self.api.http.get_json(&url, self.api.token()).await
    }

    /// `POST /api/v1/machines/register`: a machinesitter announces its
    /// address and capacity; a 410 when the cluster decommissioned it.
    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterReply, ClientError> {
        self.api
            .http
            .post_json(
                &self.api.url("/api/v1/machines/register"),
                self.api.token(),
                Some(request),
            )
            .await
    }

    /// `GET /api/v1/dns`: the DNS provider (kind, zone, TTL, the embedded
    /// server's address), every RRset Cerebro wants (ownership TXT records
    /// included), when the provider last held exactly those, and the
    /// current failure streak and conflicting names, if any.
    pub async fn dns(&self) -> Result<DnsStatus, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/dns"), self.api.token())
            .await
    }

    /// `PUT /api/v1/idle-limit`: idle machines kept per zone; answers the
    /// status afterwards.
    pub async fn set_idle_limit(
        &self,
        request: &IdleLimitRequest,
    ) -> Result<ClusterStatus, ClientError> {
        self.api
            .http
            .put_json(
                &self.api.url("/api/v1/idle-limit"),
                self.api.token(),
                request,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn job_urls_encode_the_name() {
        let client = ClusterClient::new(
            HttpClient::new(Duration::from_secs(1), 1),
            "127.0.0.1:30000",
            None,
        );
        assert_eq!(
            client.job_url("transient job", "/start"),
            "http://127.0.0.1:30000/api/v1/jobs/transient%20job/start"
        );
        assert_eq!(client.base(), "http://127.0.0.1:30000");
    }

    /// Answers one request with `body` and hands back the request's head.
    async fn answer_once(body: String) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the request ended before its head did");
                head.extend_from_slice(&buffer[..read]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (address, served)
    }

    #[tokio::test]
    async fn dns_reads_the_status_with_the_token() {
        let status = DnsStatus {
            kind: "embedded".into(),
            zone: Some("cerebro.test".into()),
            ttl: 60,
            listen: Some("127.0.0.1:8600".into()),
            conflicts: vec!["1.local-a.web.cerebro.test".into()],
            ..DnsStatus::default()
        };
        let (address, served) = answer_once(serde_json::to_string(&status).unwrap()).await;
        let client = ClusterClient::new(
            HttpClient::new(Duration::from_secs(5), 1),
            &address,
            Some("secret-token".into()),
        );
        assert_eq!(client.dns().await.unwrap(), status);
        let head = served.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /api/v1/dns http/1.1\r\n"), "{head}");
        assert!(
            head.contains("authorization: bearer secret-token\r\n"),
            "{head}"
        );
    }
}
