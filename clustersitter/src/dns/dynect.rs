//! Dyn Managed DNS (`[dns] kind = "dynect"`), through its REST API as the
//! original Cerebro used it. Oracle retired the service in 2023; this
//! client follows the published contract (help.dyn.com: "Session Log In",
//! "Get A Records", "Update A Records", "Delete A Records", "Publish
//! Zone", "Get Job") and is tested against `cerebro_tests::dynect`, a
//! server that implements it, since the real one no longer exists.
//!
//! - One session for the provider's life: `POST /REST/Session/` at first
//!   use, its `data.token` sent as the `Auth-Token` header on every later
//!   call, `DELETE /REST/Session/` in [`DnsProvider::close`].
//! - Reading: `GET /REST/AllRecord/<zone>/<basename>/` (record URIs), then
//!   `GET` of each A, AAAA and TXT record URI.
//! - Writing: `PUT /REST/<Type>Record/<zone>/<fqdn>/` replaces the node's
//!   records of that type, `DELETE` of the same URI removes them; the
//!   changes wait in the session's changeset until one
//!   `PUT /REST/Zone/<zone>/ {"publish": true}` ends the pass.
//! - Every answer is the envelope `{status, data, job_id, msgs}`; a `307`
//!   to `/REST/Job/<id>/` (a job longer than about 5 s) is polled.

use super::{Change, DnsError, DnsProvider, RecordSet};
use crate::config::dns::DynectSettings;
use async_trait::async_trait;
use cerebro_types::dns::{is_in_zone, normalize_name, RecordType};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The header the session token travels in.
pub const AUTH_HEADER: &str = "Auth-Token";

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a job behind a `307` is polled before the call fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// A Dyn Managed DNS REST API client for one zone.
pub struct DynectProvider {
    zone: String,
    /// `api_url`; the paths under it start with `/REST/`.
    api: reqwest::Url,
    settings: DynectSettings,
    http: reqwest::Client,
    /// The live session's token; `None` before the first call and after
    /// [`DnsProvider::close`]. Held across a whole list or apply, so a
    /// pass never mixes two sessions' changesets.
    token: tokio::sync::Mutex<Option<String>>,
}

/// Why a call failed, telling a dead session (log in again) from the rest.
enum Failure {
    /// The API says the session token is not (or no longer) valid.
    Session(DnsError),
    Other(DnsError),
}

impl From<DnsError> for Failure {
    fn from(error: DnsError) -> Self {
        Failure::Other(error)
    }
}

impl Failure {
    fn into_error(self) -> DnsError {
        match self {
            Failure::Session(e) | Failure::Other(e) => e,
        }
    }
}

/// An answer of the API: its HTTP status and envelope.
struct Answer {
    status: StatusCode,
    envelope: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.envelope["status"] == "success"
    }

    /// The first message's `ERR_CD` (`NOT_FOUND`, `INVALID_DATA`, ...).
    fn code(&self) -> Option<&str> {
        self.messages()
            .find_map(|m| m["ERR_CD"].as_str())
            .filter(|c| !c.is_empty())
    }

    fn messages(&self) -> impl Iterator<Item = &Value> {
        self.envelope["msgs"].as_array().into_iter().flatten()
    }

    /// Every message's `INFO`, joined.
    fn info(&self) -> String {
        let infos: Vec<&str> = self.messages().filter_map(|m| m["INFO"].as_str()).collect();
        if infos.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            infos.join("; ")
        }
    }

    /// Whether this failure says the session token is bad. The API's
    /// session layer answers such a call with HTTP 400 or 401 and a message
    /// from its `login:` component ("login: Bad or expired credentials",
    /// "login: IP address does not match current session"); any 400/401
    /// whose message speaks of an expired or invalid token or session
    /// counts too. "This session already has a job running" (also a
    /// token message) does not: logging in again would not help it.
    fn session_invalid(&self) -> bool {
        if self.ok() || !matches!(self.status.as_u16(), 400 | 401) {
            return false;
        }
        self.messages().any(|m| {
            let info = m["INFO"].as_str().unwrap_or_default().to_ascii_lowercase();
            if info.contains("job running") {
                return false;
            }
            info.starts_with("login:")
                || ((info.contains("token") || info.contains("session"))
                    && (info.contains("expired")
                        || info.contains("invalid")
                        || info.contains("not logged in")))
        })
    }

    fn error(&self, operation: &'static str) -> DnsError {
        DnsError::Server {
            operation,
            code: self.code().unwrap_or("failure").to_string(),
            message: self.info(),
        }
    }
}

fn record_path(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "ARecord",
        RecordType::Aaaa => "AAAARecord",
        RecordType::Txt => "TXTRecord",
    }
}

/// The `rdata` of one record of `rtype` with `value`.
fn rdata(rtype: RecordType, value: &str) -> Value {
    match rtype {
        RecordType::A | RecordType::Aaaa => json!({ "address": value }),
        RecordType::Txt => json!({ "txtdata": value }),
    }
}

/// A record's `ttl`: a number, or a number in a string (the API takes both).
fn ttl_of(value: &Value) -> u32 {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

impl DynectProvider {
    /// For the Dyn zone `zone` (normalized); logs in at first use.
    ///
    /// # Errors
    /// [`DnsError::Config`] for an `api_url` that is not a URL.
    pub fn new(zone: String, settings: DynectSettings) -> Result<Self, DnsError> {
        let api = reqwest::Url::parse(settings.api_url.trim_end_matches('/'))
            .map_err(|e| DnsError::Config(format!("[dns] api_url {:?}: {e}", settings.api_url)))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(DnsError::Config(format!(
                "[dns] api_url {:?}: not an http(s) URL",
                settings.api_url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A 307 points at the job to poll (with GET), not at where to
            // send the same request again.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DnsError::Config(format!("an HTTP client for Dyn: {e}")))?;
        Ok(Self {
            zone: normalize_name(&zone),
            api,
            settings,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// `path` (`/REST/...`, as the API's URIs and `Location`s are) under
    /// `api_url`, or an absolute URL as it is.
    fn url(&self, path: &str) -> Result<reqwest::Url, DnsError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            reqwest::Url::parse(path)
        } else {
            let base = self.api.as_str().trim_end_matches('/');
            reqwest::Url::parse(&format!("{base}/{}", path.trim_start_matches('/')))
        };
        url.map_err(|e| DnsError::Config(format!("Dyn URL {path}: {e}")))
    }

    /// One request, its `307`s polled. Transport failures are
    /// `DnsError::Server` with the code `timeout` or `io`.
    async fn request(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, DnsError> {
        let mut answer = self
            .send(operation, method, &self.url(path)?, token, body)
            .await?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut wait = Duration::from_millis(100);
        let mut job: Option<reqwest::Url> = None;
        loop {
            let redirect = answer.status == StatusCode::TEMPORARY_REDIRECT;
            let incomplete = answer.envelope["status"] == "incomplete";
            if !redirect && !incomplete {
                return Ok(answer);
            }
            if redirect {
                job = Some(match answer.envelope.get("location") {
                    Some(Value::String(location)) => self.url(location)?,
                    _ => job.take().ok_or_else(|| DnsError::Server {
                        operation,
                        code: "job".into(),
                        message: "a 307 without a Location".into(),
                    })?,
                });
            } else if job.is_none() {
                // An `incomplete` answer without a redirect: the job id
                // says where it is.
                let id = answer.envelope["job_id"]
                    .as_u64()
                    .ok_or_else(|| DnsError::Server {
                        operation,
                        code: "incomplete".into(),
                        message: answer.info(),
                    })?;
                job = Some(self.url(&format!("/REST/Job/{id}/"))?);
            }
            if Instant::now() >= deadline {
                return Err(DnsError::Server {
                    operation,
                    code: "timeout".into(),
                    message: format!("the job was not done after {JOB_TIMEOUT:?}"),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let url = job.clone().expect("set above");
            answer = self.send(operation, Method::GET, &url, token, None).await?;
        }
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: &reqwest::Url,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, DnsError> {
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = token {
            request = request.header(AUTH_HEADER, token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |e: reqwest::Error| DnsError::Server {
            operation,
            code: if e.is_timeout() { "timeout" } else { "io" }.into(),
            message: e.to_string(),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(transport)?;
        let mut envelope: Value = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text).map_err(|e| DnsError::Server {
                operation,
                code: "response".into(),
                message: format!("HTTP {status}: not the API's JSON ({e}): {text:.200}"),
            })?
        };
        if let (Some(location), Value::Object(map)) = (location, &mut envelope) {
            map.insert("location".into(), Value::String(location));
        }
        Ok(Answer { status, envelope })
    }

    /// A call in the session `token`: its envelope when `success`.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Answer, Failure> {
        let answer = self
            .request(operation, method, path, Some(token), body)
            .await?;
        if answer.ok() {
            Ok(answer)
        } else if answer.session_invalid() {
            Err(Failure::Session(answer.error(operation)))
        } else {
            Err(Failure::Other(answer.error(operation)))
        }
    }

    /// `POST /REST/Session/`: a new session's token.
    async fn login(&self) -> Result<String, DnsError> {
        let body = json!({
            "customer_name": self.settings.customer,
            "user_name": self.settings.user,
            "password": String::from_utf8_lossy(&self.settings.password.0),
        });
        let answer = self
            .request(
                "Session login",
                Method::POST,
                "/REST/Session/",
                None,
                Some(body),
            )
            .await?;
        if !answer.ok() {
            return Err(answer.error("Session login"));
        }
        let token = answer.envelope["data"]["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DnsError::Server {
                operation: "Session login",
                code: "response".into(),
                message: "no data.token in the answer".into(),
            })?;
        tracing::info!(zone = %self.zone, "logged in to Dyn");
        Ok(token.to_string())
    }

    async fn list_in(&self, token: &str, basename: &str) -> Result<Vec<RecordSet>, Failure> {
        let path = format!("/REST/AllRecord/{}/{basename}/", self.zone);
        let uris = match self
            .call("AllRecord get", Method::GET, &path, token, None)
            .await
        {
            Ok(answer) => answer.envelope["data"].clone(),
            // No node at or under the basename yet.
            Err(Failure::Other(DnsError::Server { code, .. })) if code == "NOT_FOUND" => {
                return Ok(Vec::new())
            }
            Err(failure) => return Err(failure),
        };
        let mut sets = cerebro_types::dns::RecordSets::default();
        for uri in uris.as_array().into_iter().flatten() {
            let Some(uri) = uri.as_str() else { continue };
            let kind = uri.trim_start_matches("/REST/").split('/').next();
            let rtype = match kind {
                Some("ARecord") => RecordType::A,
                Some("AAAARecord") => RecordType::Aaaa,
                Some("TXTRecord") => RecordType::Txt,
                _ => continue,
            };
            let record = match self.call("Record get", Method::GET, uri, token, None).await {
                Ok(answer) => answer.envelope["data"].clone(),
                // Deleted between the two reads.
                Err(Failure::Other(DnsError::Server { code, .. })) if code == "NOT_FOUND" => {
                    continue
                }
                Err(failure) => return Err(failure),
            };
            let name = normalize_name(record["fqdn"].as_str().unwrap_or_default());
            if !is_in_zone(&name, basename) {
                continue;
            }
            let value = match rtype {
                RecordType::A | RecordType::Aaaa => {
                    let address = record["rdata"]["address"].as_str().unwrap_or_default();
                    address
                        .parse::<std::net::IpAddr>()
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|_| address.to_string())
                }
                RecordType::Txt => record["rdata"]["txtdata"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            sets.add(&name, rtype, ttl_of(&record["ttl"]), value);
        }
        Ok(sets.into_sets())
    }

    async fn apply_in(&self, token: &str, changes: &[Change]) -> Result<(), Failure> {
        for change in changes {
            let set = change.record_set();
            let path = format!(
                "/REST/{}/{}/{}/",
                record_path(set.rtype),
                self.zone,
                normalize_name(&set.name)
            );
            match change {
                Change::Upsert(set) => {
                    let records: Vec<Value> = set
                        .values
                        .iter()
                        .map(|v| json!({ "rdata": rdata(set.rtype, v), "ttl": set.ttl }))
                        .collect();
                    let key = format!("{}s", record_path(set.rtype));
                    let body = json!({ key: records });
                    self.call("Record replace", Method::PUT, &path, token, Some(body))
                        .await?;
                }
                Change::Delete(_) => {
                    match self
                        .call("Record delete", Method::DELETE, &path, token, None)
                        .await
                    {
                        Ok(_) => {}
                        // Already gone: a Delete of an absent RRset is done.
                        Err(Failure::Other(DnsError::Server { code, .. }))
                            if code == "NOT_FOUND" => {}
                        Err(failure) => return Err(failure),
                    }
                }
            }
        }
        let path = format!("/REST/Zone/{}/", self.zone);
        self.call(
            "Zone publish",
            Method::PUT,
            &path,
            token,
            Some(json!({ "publish": true })),
        )
        .await?;
        Ok(())
    }

    /// Drops the changes of a failed pass from the session's changeset
    /// (`DELETE /REST/ZoneChanges/<zone>/`), so that a later publish does
    /// not send half of it; best effort.
    async fn discard(&self, token: &str) {
        let path = format!("/REST/ZoneChanges/{}/", self.zone);
        if let Err(failure) = self
            .call("ZoneChanges discard", Method::DELETE, &path, token, None)
            .await
        {
            tracing::warn!(error = %failure.into_error(), "could not discard Dyn's pending changes");
        }
    }
}

#[async_trait]
impl DnsProvider for DynectProvider {
    fn kind(&self) -> &'static str {
        "dynect"
    }

    /// Logs in if no session is live, lists; when the session turns out to
    /// be dead (expired on the server), logs in once more and lists again.
    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        let basename = normalize_name(basename);
        let mut session = self.token.lock().await;
        for attempt in 0..2 {
            let token = match session.as_ref() {
                Some(token) => token.clone(),
                None => session.insert(self.login().await?).clone(),
            };
            match self.list_in(&token, &basename).await {
                Ok(sets) => return Ok(sets),
                Err(Failure::Session(error)) if attempt == 0 => {
                    tracing::info!(%error, "Dyn session ended; logging in again");
                    *session = None;
                }
                Err(failure) => return Err(failure.into_error()),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Sends every change in order into the session's changeset, then
    /// publishes once. A session found dead part way redoes the whole pass
    /// in a new one (the dead session's changeset died with it, and a pass
    /// is published whole or not at all). A failed pass discards what it
    /// left pending.
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut session = self.token.lock().await;
        for attempt in 0..2 {
            let token = match session.as_ref() {
                Some(token) => token.clone(),
                None => session.insert(self.login().await?).clone(),
            };
            match self.apply_in(&token, changes).await {
                Ok(()) => return Ok(()),
                Err(Failure::Session(error)) if attempt == 0 => {
                    tracing::info!(%error, "Dyn session ended; logging in again");
                    *session = None;
                }
                Err(Failure::Other(error)) => {
                    self.discard(&token).await;
                    return Err(error);
                }
                Err(failure) => return Err(failure.into_error()),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// `DELETE /REST/Session/` when a session is live; a failure is only
    /// logged (the session expires by itself).
    async fn close(&self) {
        let Some(token) = self.token.lock().await.take() else {
            return;
        };
        match self
            .request(
                "Session logout",
                Method::DELETE,
                "/REST/Session/",
                Some(&token),
                None,
            )
            .await
        {
            Ok(answer) if answer.ok() => tracing::info!("logged out of Dyn"),
            Ok(answer) => tracing::warn!(error = %answer.error("Session logout"), "Dyn logout"),
            Err(error) => tracing::warn!(%error, "Dyn logout"),
        }
    }
}

impl std::fmt::Debug for DynectProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynectProvider")
            .field("zone", &self.zone)
            .field("api", &self.api.as_str())
            .field("customer", &self.settings.customer)
            .field("user", &self.settings.user)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, info: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            envelope: json!({"status": "failure", "data": {}, "job_id": 1,
                "msgs": [{"INFO": info, "SOURCE": "BLL", "ERR_CD": "INVALID_DATA", "LVL": "ERROR"}]}),
        }
    }

    #[test]
    fn a_dead_session_is_told_from_other_failures() {
        assert!(answer(400, "login: Bad or expired credentials").session_invalid());
        assert!(answer(401, "token: Invalid or expired session token").session_invalid());
        assert!(!answer(400, "token: This session already has a job running").session_invalid());
        assert!(!answer(400, "rdata: Invalid IPv4 address").session_invalid());
        assert!(!answer(500, "login: Bad or expired credentials").session_invalid());
        let failed = answer(400, "rdata: Invalid IPv4 address").error("Record replace");
        assert_eq!(failed.code(), "INVALID_DATA");
        assert!(failed.to_string().contains("rdata: Invalid IPv4 address"));
    }

    #[test]
    fn api_url_must_be_a_url() {
        let settings = |url: &str| DynectSettings {
            api_url: url.into(),
            customer: "c".into(),
            user: "u".into(),
            password: crate::config::dns::Secret(b"p".to_vec()),
        };
        assert!(matches!(
            DynectProvider::new("z.test".into(), settings("not a url")),
            Err(DnsError::Config(_))
        ));
        assert!(DynectProvider::new("Z.test.".into(), settings("https://api.dynect.net/")).is_ok());
    }
}
