//! The one HTTP client wrapper the daemons use to talk to each other:
//! timeouts on every call, bearer tokens, JSON both ways, and retry with
//! backoff for idempotent calls.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Why a call failed, always naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: refused, reset, or the timeout passed.
    #[error("{url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// An answer other than 2xx; `body` is what the server said (the
    /// daemons' JSON error body).
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer whose body is not the expected type.
    #[error("{url}: cannot decode the answer: {source}")]
    Decode { url: String, source: reqwest::Error },
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's JSON error body, when it answered with one.
    pub fn error_body(&self) -> Option<cerebro_types::ErrorBody> {
        match self {
            ClientError::Status { body, .. } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }

    /// What went wrong, without the URL: for a caller that passes the
    /// failure on to someone who must not learn internal addresses.
    pub fn reason(&self) -> String {
        match self {
            ClientError::Transport { source, .. } if source.is_timeout() => {
                "no answer in time".to_string()
            }
            ClientError::Transport { source, .. } if source.is_connect() => {
                "cannot connect".to_string()
            }
            ClientError::Transport { .. } => "the connection failed".to_string(),
            ClientError::Status { status, .. } => match self.error_body() {
                Some(body) => format!("answered {status}: {}", body.error),
                None => format!("answered {status}"),
            },
            ClientError::Decode { .. } => "answered with something unexpected".to_string(),
        }
    }
}

/// A connection pool with the call policy; cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    attempts: u32,
    first_backoff: Duration,
}

impl HttpClient {
    /// `timeout` bounds each attempt; idempotent calls are tried `attempts` times.
    pub fn new(timeout: Duration, attempts: u32) -> Self {
        let inner = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            inner,
            attempts: attempts.max(1),
            first_backoff: Duration::from_millis(100),
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        response.json().await.map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }

    /// Retries transport failures and 5xx answers with exponential backoff; 4xx is final.
    async fn with_retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut delay = self.first_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(error) if tries < self.attempts && error.status().is_none_or(|s| s >= 500) => {
                    tracing::debug!(%error, "retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                result => return result,
            }
        }
    }

    /// A request to `url`, with the bearer token when there is one.
    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.inner.request(method, url);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET, decoding a JSON answer; retried, as GET is idempotent.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> Result<T, ClientError> {
        self.with_retry(|| self.send(self.request(reqwest::Method::GET, url, token), url))
            .await
    }

    /// One attempt: a POST is not assumed to be idempotent.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&str>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut request = self.request(reqwest::Method::POST, url, token);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, url).await
    }

    /// PUT is idempotent, so it is retried.
    pub async fn put_json<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&str>,
        body: &B,
    ) -> Result<T, ClientError> {
        self.with_retry(|| {
            self.send(
                self.request(reqwest::Method::PUT, url, token).json(body),
                url,
            )
        })
        .await
    }

    /// DELETE is idempotent, so it is retried.
    pub async fn delete_json<T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> Result<T, ClientError> {
        self.with_retry(|| self.send(self.request(reqwest::Method::DELETE, url, token), url))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_never_names_the_url() {
        let url = "http://127.0.0.1:4321/api/v1/tasks/x".to_string();
        let status = ClientError::Status {
            url: url.clone(),
            status: 400,
            body: r#"{"error":"offset: not both","field":"offset"}"#.into(),
        };
        assert_eq!(status.reason(), "answered 400: offset: not both");
        assert_eq!(
            status.error_body().unwrap().field.as_deref(),
            Some("offset")
        );
        let plain = ClientError::Status {
            url,
            status: 503,
            body: "busy at http://127.0.0.1:4321".into(),
        };
        assert_eq!(plain.reason(), "answered 503");
        assert!(plain.error_body().is_none());
    }
}
