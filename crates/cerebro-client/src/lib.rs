//! Typed HTTP clients for the Cerebro daemons, so that every URL of another
//! daemon is built in one place and every body is a `cerebro-types` type:
//!
//! - `http`: `HttpClient`, the one wrapper with timeouts on every call,
//!   bearer tokens, JSON both ways and retry with backoff for idempotent
//!   calls; `ClientError` says which URL failed and how;
//! - `task`: `TaskClient`, a tasksitter's API as the machinesitter uses it;
//! - `machine`: `MachineClient`, a machinesitter's API as the clustersitter
//!   and the tests use it;
//! - `cluster`: `ClusterClient`, the clustersitter's API as the `cerebro`
//!   CLI and the end-to-end tests use it;
//! - `token_store`: where a clustersitter leaves its generated token for
//!   the CLI on the same host.

pub mod cluster;
pub mod http;
pub mod machine;
pub mod task;
pub mod token_store;

pub use cerebro_types::url::encode_path_segment;
pub use cluster::ClusterClient;
pub use http::{ClientError, HttpClient};
pub use machine::MachineClient;
pub use task::TaskClient;

/// The base URL of a daemon given as `host:port` (what address files and
/// registrations hold) or as a full `http://` / `https://` URL; no trailing slash.
pub fn base_url(address: &str) -> String {
    let address = address.trim_end_matches('/');
    if address.starts_with("http://") || address.starts_with("https://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_address_gets_http() {
        assert_eq!(super::base_url("127.0.0.1:4000"), "http://127.0.0.1:4000");
        assert_eq!(super::base_url("https://m:1/"), "https://m:1");
    }
}

/// One daemon's API as every typed client holds it: the connection pool,
/// the base URL and the bearer token, so that URLs and the token are put
/// together in one place.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) http: HttpClient,
    base: String,
    token: Option<String>,
}

impl Endpoint {
    /// `address` is `host:port` or a base URL (see [`base_url`]).
    pub(crate) fn new(http: HttpClient, address: &str, token: Option<String>) -> Self {
        Self {
            http,
            base: base_url(address),
            token,
        }
    }

    /// The base URL, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) on this daemon.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}
