//! `MachineClient`: one machinesitter's HTTP API (`/api/v1/...`).

use crate::task::with_query;
use crate::{encode_path_segment, ClientError, Endpoint, HttpClient};
use cerebro_types::deploy::{DeployAttempt, Deployment};
use cerebro_types::machine::{
    ActionReply, MachineEvent, MachineStatus, PutReply, TaskPut, TaskView,
};
use cerebro_types::task_api::{LogQuery, TaskAction};
use cerebro_types::{LogChunk, LogStream, TaskSpec};

/// A machinesitter's API at one address, with the cluster's token.
/// Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct MachineClient {
    api: Endpoint,
}

impl MachineClient {
    /// `address` is `host:port` (as registrations and address files hold
    /// it) or a base URL; `token` is the cluster's bearer token, if any.
    pub fn new(http: HttpClient, address: &str, token: Option<String>) -> Self {
        Self {
            api: Endpoint::new(http, address, token),
        }
    }

    /// The base URL this client talks to, without a trailing slash.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// The URL of one task's resource, its name percent-encoded: `suffix`
    /// is empty or starts with `/`.
    fn task_url(&self, name: &str, suffix: &str) -> String {
        self.api.url(&format!(
            "/api/v1/tasks/{}{suffix}",
            encode_path_segment(name)
        ))
    }

    /// `GET /api/v1/status`: capacity, reservations, vitals, per-task usage.
    pub async fn status(&self) -> Result<MachineStatus, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/status"), self.api.token())
            .await
    }

    /// `GET /api/v1/events`, newest first.
    pub async fn events(&self) -> Result<Vec<MachineEvent>, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/events"), self.api.token())
            .await
    }

    /// `GET /api/v1/tasks`.
    pub async fn tasks(&self) -> Result<Vec<TaskView>, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/tasks"), self.api.token())
            .await
    }

    /// `GET /api/v1/tasks/{name}`; a 404 when there is no such task.
    pub async fn task(&self, name: &str) -> Result<TaskView, ClientError> {
        self.api
            .http
            .get_json(&self.task_url(name, ""), self.api.token())
            .await
    }

    /// `PUT /api/v1/tasks/{spec.name}`: creates or replaces the task
    /// (idempotent, so retried). A 400 names a bad field, a 409 says the
    /// task does not fit or is being deleted. `deployment`: the recipe to
    /// install before the task starts, for an instance of a job with one.
    pub async fn put_task(
        &self,
        spec: &TaskSpec,
        deployment: Option<&Deployment>,
    ) -> Result<PutReply, ClientError> {
        let body = TaskPut { spec, deployment };
        self.api
            .http
            .put_json(&self.task_url(&spec.name, ""), self.api.token(), &body)
            .await
    }

    /// `GET /api/v1/tasks/{name}/deploylog`: the task's deployment
    /// attempts, newest first, each with its steps' outcomes and output.
    pub async fn deploy_log(&self, name: &str) -> Result<Vec<DeployAttempt>, ClientError> {
        self.api
            .http
            .get_json(&self.task_url(name, "/deploylog"), self.api.token())
            .await
    }

    /// `DELETE /api/v1/tasks/{name}`: waits (bounded by the task's stop
    /// timeout) until it is gone; `Deleting` when it was still stopping.
    pub async fn delete_task(&self, name: &str) -> Result<ActionReply, ClientError> {
        self.api
            .http
            .delete_json(&self.task_url(name, ""), self.api.token())
            .await
    }

    /// `POST /api/v1/tasks/{name}/{action}`: records the desired run state
    /// and passes the action to the task's tasksitter.
    pub async fn control(
        &self,
        name: &str,
        action: TaskAction,
    ) -> Result<ActionReply, ClientError> {
        let url = self.task_url(name, &format!("/{action}"));
        self.api
            .http
            .post_json::<(), _>(&url, self.api.token(), None)
            .await
    }

    /// `GET /api/v1/tasks/{name}/logs/{stream}`: a chunk of the task's log.
    pub async fn log_chunk(
        &self,
        name: &str,
        stream: LogStream,
        query: &LogQuery,
    ) -> Result<LogChunk, ClientError> {
        let url = with_query(
            self.task_url(name, &format!("/logs/{}", stream.as_str())),
            query,
        );
        self.api.http.get_json(&url, self.api.token()).await
    }
}
