//! `TaskClient`: one tasksitter's HTTP API (`/api/v1/...`).

use crate::{ClientError, Endpoint, HttpClient};
use cerebro_types::task_api::{ControlReply, LogList, LogQuery, SignalRequest, TaskAction};
use cerebro_types::{LogChunk, LogStream, TaskStatus};

/// A tasksitter's API at one address, with the secret it was started with.
/// Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct TaskClient {
    api: Endpoint,
}

impl TaskClient {
    /// `address` is `host:port` (as the tasksitter's address file holds it)
    /// or a base URL; `token` is the bearer secret, if the tasksitter has one.
    pub fn new(http: HttpClient, address: &str, token: Option<String>) -> Self {
        Self {
            api: Endpoint::new(http, address, token),
        }
    }

    /// `POST /api/v1/ping`: the status, answered only to the holder of the
    /// tasksitter's secret, so a 401 (`ClientError::status`) means this is
    /// not the tasksitter the secret belongs to.
    pub async fn ping(&self) -> Result<TaskStatus, ClientError> {
        self.api
            .http
            .post_json::<(), _>(&self.api.url("/api/v1/ping"), self.api.token(), None)
            .await
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<TaskStatus, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/status"), self.api.token())
            .await
    }

    /// `POST /api/v1/{start|stop|restart}`; a 409 when the task's state refuses it.
    pub async fn control(&self, action: TaskAction) -> Result<ControlReply, ClientError> {
        let url = self.api.url(&format!("/api/v1/{action}"));
        self.api
            .http
            .post_json::<(), _>(&url, self.api.token(), None)
            .await
    }

    /// `POST /api/v1/signal`: `signal` is a name such as `HUP` or `SIGHUP`;
    /// a 400 names an unknown one.
    pub async fn signal(&self, signal: &str) -> Result<ControlReply, ClientError> {
        let body = SignalRequest {
            signal: signal.to_string(),
        };
        self.api
            .http
            .post_json(
                &self.api.url("/api/v1/signal"),
                self.api.token(),
                Some(&body),
            )
            .await
    }

    /// `GET /api/v1/logs`: the log files the tasksitter captures.
    pub async fn logs(&self) -> Result<LogList, ClientError> {
        self.api
            .http
            .get_json(&self.api.url("/api/v1/logs"), self.api.token())
            .await
    }

    /// `GET /api/v1/logs/{stream}`: a chunk of the live log file.
    pub async fn log_chunk(
        &self,
        stream: LogStream,
        query: &LogQuery,
    ) -> Result<LogChunk, ClientError> {
        let url = with_query(
            self.api.url(&format!("/api/v1/logs/{}", stream.as_str())),
            query,
        );
        self.api.http.get_json(&url, self.api.token()).await
    }
}

/// `url` with the query's set fields after a `?`, or as it is.
pub(crate) fn with_query(url: String, query: &LogQuery) -> String {
    match query.to_query_string() {
        q if q.is_empty() => url,
        q => format!("{url}?{q}"),
    }
}
