//! The edges of the three daemons under hostile or careless input: strict
//! JSON bodies, the JSON error shape on every API error, machine errors
//! passed on without internal addresses, authentication by default, rate
//! limits on failed authentication, slow clients and the UI's security
//! headers. Clustersitters run in-process on 127.0.0.1:0 with no machines
//! unless a test needs them.

use cerebro_tests::{bin, kill_processes_under, wait_for_async, TIMEOUT};
use cerebro_web::daemon::{shutdown_channel, ShutdownHandle};
use clap::Parser;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A clustersitter served in this process; stopped (and whatever it
/// started under its dir killed) on drop.
struct InProcessCluster {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
    stop: Option<ShutdownHandle>,
    dir: tempfile::TempDir,
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.request();
        }
        kill_processes_under(self.dir.path());
    }
}

/// The config file of a one-zone cluster that keeps no idle machine, so
/// nothing is provisioned unless a job asks; `extra` is appended before
/// the provider section.
fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "cluster_name = \"hardening\"\nstate_dir = \"{}\"\npoll_interval = \"200ms\"\n\
         idle_limit = 0\non_exit = \"stop\"\n{extra}\n[provider]\nkind = \"local\"\nzones = [\"zone-a\"]\n\
         machine_cpu = 2.0\nmachine_mem = 512.0\nmachinesitter_bin = \"{}\"\n",
        dir.join("state").display(),
        bin("machinesitter").display()
    )
}

impl InProcessCluster {
    /// Boots with `extra` config lines and `flags`; `token` is what the
    /// test presents as its bearer token.
    async fn start(extra: &str, flags: &[&str], token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, config_text(dir.path(), extra)).unwrap();
        let mut argv = vec!["clustersitter", "--config", config_path.to_str().unwrap()];
        argv.extend_from_slice(flags);
        let config = clustersitter::config::Cli::try_parse_from(argv)
            .unwrap()
            .into_config()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, shutdown) = shutdown_channel();
        tokio::spawn(clustersitter::serve(config, listener, shutdown));
        // A fresh connection per request: these tests make the server close
        // connections on purpose (a body over the limit), and a pooled one
        // it is closing would fail the next request with no answer at all.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cluster = Self {
            url,
            token: token.map(str::to_string),
            http,
            stop: Some(stop),
            dir,
        };
        cluster.wait_until_serving().await;
        cluster
    }

    async fn wait_until_serving(&self) {
        wait_for_async("the clustersitter to serve", || async {
            let response = self
                .http
                .get(format!("{}/api/v1/status", self.url))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await
    }

    /// A request with the test's token; the status and the body as JSON
    /// (`Value::Null` when it is not JSON) and its content type.
    async fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        Reply::of(request.send().await.expect("an answer")).await
    }
}

/// What a test looks at in an answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    json: Value,
    text: String,
}

impl Reply {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let content_type = cerebro_tests::content_type(response.headers());
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            content_type,
            json,
            text,
        }
    }

    /// The JSON error shape: `error` a string, `field` (when there) a string.
    fn is_error_body(&self) -> bool {
        self.content_type.starts_with("application/json")
            && self.json["error"].is_string()
            && (self.json.get("field").is_none() || self.json["field"].is_string())
    }
}

const A_JOB: &str = r#"{"deployment_layout": {"zone-a": {"cpu": 0}},
  "task_configuration": {"name": "quiet", "command": "sleep 1", "cpu": 0.1, "mem": 10}}"#;

/// Point 8: bodies are strict: trailing data, another top-level type and
/// unknown fields are refused with a 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_strict() {
    let cluster = InProcessCluster::start("", &["--insecure"], None).await;
    for (method, path, body, field) in [
        ("PUT", "/api/v1/idle-limit", r#"{"limit":1}garbage"#, "body"),
        (
            "PUT",
            "/api/v1/idle-limit",
            r#"{"limit":1}{"limit":2}"#,
            "body",
        ),
        ("PUT", "/api/v1/idle-limit", "[1]", "body"),
        ("PUT", "/api/v1/idle-limit", r#"{"limit":"one"}"#, "limit"),
        (
            "PUT",
            "/api/v1/idle-limit",
            r#"{"limit":1,"colour":"red"}"#,
            "colour",
        ),
        ("POST", "/api/v1/jobs/quiet/update", "[]", "body"),
        (
            "POST",
            "/api/v1/jobs/quiet/update",
            r#"{"max_parallel":2} x"#,
            "body",
        ),
        ("POST", "/api/v1/machines/register", "[]", "body"),
    ] {
        let reply = cluster.call(method, path, Some(body.as_bytes())).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {reply:?}");
        assert!(reply.is_error_body(), "{method} {path} {body}: {reply:?}");
        assert_eq!(
            reply.json["field"], field,
            "{method} {path} {body}: {reply:?}"
        );
    }
    // Job bodies keep the lenient job-file form, but not trailing garbage.
    let reply = cluster
        .call(
            "PUT",
            "/api/v1/jobs/quiet",
            Some(format!("{A_JOB} garbage").as_bytes()),
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.is_error_body(), "{reply:?}");
    let lenient = A_JOB.replace("\"mem\": 10}", "\"mem\": 10, # a comment\n},");
    let reply = cluster
        .call("PUT", "/api/v1/jobs/quiet", Some(lenient.as_bytes()))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let reply = cluster
        .call("PUT", "/api/v1/idle-limit", Some(br#"{"limit": 0}"#))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Sends `raw` (a whole HTTP/1.1 request) to `url`'s host and reads the
/// answer until the server closes: the status and the body.
async fn raw_request(url: &str, raw: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Every API error is the JSON error shape, whoever produced it: the
/// router (404, 405), axum's extractors (a path that is not UTF-8, a body
/// over the limit), the URI limit; a UI form without its CSRF token is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_json() {
    let cluster = InProcessCluster::start("", &["--insecure"], None).await;
    let long = format!("/api/v1/jobs/{}", "a".repeat(10_000));
    let huge = vec![b'{'; 3 << 20];
    for (method, path, body, status) in [
        ("GET", "/api/v1/jobs/%FF", None, 400),
        (
            "GET",
            "/api/v1/jobs/a%FFb/instances/0/logs/stdout",
            None,
            400,
        ),
        ("GET", "/api/v1/nothing-here", None, 404),
        ("GET", "/no/such/page", None, 404),
        ("DELETE", "/api/v1/status", None, 405),
        ("PATCH", "/api/v1/jobs/x", None, 405),
        ("GET", long.as_str(), None, 414),
        (
            "GET",
            "/api/v1/jobs/x/instances/zero/logs/stdout",
            None,
            400,
        ),
        ("GET", "/api/v1/events?limit=-1", None, 400),
    ] {
        let reply = cluster.call(method, path, body).await;
        let shown = &path[..path.len().min(80)];
        assert_eq!(reply.status, status, "{method} {shown}: {reply:?}");
        assert!(reply.is_error_body(), "{method} {shown}: {reply:?}");
    }
    // A body over the limit is answered before it is all read, and the
    // connection closed; the client may see that reset before the answer,
    // so it tries a few times to read the answer.
    let mut over_limit = None;
    for _ in 0..5 {
        let sent = cluster
            .http
            .put(format!("{}/api/v1/idle-limit", cluster.url))
            .body(huge.clone())
            .send()
            .await;
        if let Ok(response) = sent {
            over_limit = Some(Reply::of(response).await);
            break;
        }
    }
    let reply = over_limit.expect("an answer to a body over the limit");
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.is_error_body(), "{reply:?}");
    // The raw bytes of a path that is not UTF-8 at all.
    let (status, head, body) = raw_request(
        &cluster.url,
        b"GET /api/v1/jobs/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    if status != 400 || !head.to_ascii_lowercase().contains("application/json") {
        // hyper refuses such a request line itself, before any route.
        assert_eq!(status, 400, "{head}\n{body}");
    }
    // A UI form without its CSRF field is refused as the README says.
    let response = cluster
        .http
        .post(format!("{}/ui/idle-limit", cluster.url))
        .form(&[("limit", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

/// Fails if the answer names an internal address.
fn assert_no_address(reply: &Reply) {
    for address in ["http://", "127.0.0.1"] {
        assert!(
            !reply.text.contains(address),
            "no internal address: {reply:?}"
        );
    }
}

/// Point 7: a machine's 4xx reaches the caller as that 4xx with the
/// machine's message; a machine that does not answer is a 502 naming the
/// machine, never its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_errors_pass_through_without_addresses() {
    // A machine is never given up on here, so the dead one stays placed.
    let cluster =
        InProcessCluster::start("failure_threshold = 100000", &["--insecure"], None).await;
    let job = r#"{"deployment_layout": {"zone-a": {"cpu": 1}},
      "task_configuration": {"name": "ticker", "command": "sleep 4717", "cpu": 0.5, "mem": 20,
      "ensure_alive": true, "stop_timeout": 1}}"#;
    let reply = cluster
        .call("PUT", "/api/v1/jobs/ticker", Some(job.as_bytes()))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let machine = wait_for_async("the instance to run", || async {
        let reply = cluster.call("GET", "/api/v1/jobs/ticker", None).await;
        let instance = &reply.json["instances"][0];
        (instance["state"] == "running")
            .then(|| instance["machine"].as_str().map(str::to_string))
            .flatten()
    })
    .await;
    let logs = "/api/v1/jobs/ticker/instances/0/logs/stdout";
    let reply = cluster.call("GET", &format!("{logs}?tail=1"), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let reply = cluster
        .call("GET", &format!("{logs}?tail=1&offset=5"), None)
        .await;
    assert_eq!(
        reply.status, 400,
        "the machine's 400 is the caller's: {reply:?}"
    );
    assert!(reply.is_error_body(), "{reply:?}");
    assert_no_address(&reply);

    // The machine goes away without a word: 502, naming it.
    kill_processes_under(
        &cluster
            .dir
            .path()
            .join("state")
            .join("machines")
            .join(&machine),
    );
    let reply = cluster.call("GET", &format!("{logs}?tail=1"), None).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.is_error_body(), "{reply:?}");
    assert!(
        reply.json["error"].as_str().unwrap().contains(&machine),
        "{reply:?}"
    );
    assert_no_address(&reply);
    let reply = cluster
        .call("POST", "/api/v1/jobs/ticker/instances/0/restart", None)
        .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(
        !reply.text.contains("127.0.0.1"),
        "no internal address: {reply:?}"
    );
}

/// Point 15: a burst of wrong tokens from one address is answered with
/// 429 (JSON, `Retry-After`) past a threshold, for the bearer header and
/// the UI's login alike; once the wait has passed the right token works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_rate_limited() {
    let cluster = InProcessCluster::start("", &[], None).await;
    let token = std::fs::read_to_string(cluster.dir.path().join("state/cluster-token"))
        .expect("the generated token");
    let put = |secret: String| {
        let cluster = &cluster;
        async move {
            let response = cluster
                .http
                .put(format!("{}/api/v1/idle-limit", cluster.url))
                .bearer_auth(secret)
                .body(r#"{"limit": 0}"#)
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            (Reply::of(response).await, retry_after)
        }
    };
    let mut statuses = Vec::new();
    for attempt in 0..50 {
        let (reply, retry_after) = put(format!("wrong-{attempt}")).await;
        assert!(reply.is_error_body(), "{reply:?}");
        if reply.status == 429 {
            let secs: u64 = retry_after
                .expect("a 429 says when to retry")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(secs >= 1, "{secs}");
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses[0], 401);
    let first_429 = statuses.iter().position(|s| *s == 429);
    assert!(
        first_429.is_some_and(|at| at <= 20),
        "429 after a threshold: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // The login page goes through the same limit.
    let login = || async {
        let response = cluster
            .http
            .post(format!("{}/login", cluster.url))
            .form(&[("token", token.trim())])
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(login().await, 429, "the UI login shares the limit");
    // Once the wait has passed, the right token works.
    wait_for_async("the right token to be accepted again", || async {
        let (reply, _) = put(token.trim().to_string()).await;
        assert!(reply.status == 200 || reply.status == 429, "{reply:?}");
        (reply.status == 200).then_some(())
    })
    .await;
    // ... and logging in too.
    assert_eq!(login().await, 303, "logged in and sent on");
}

/// Point 16: the pages forbid inline scripts and framing (their script
/// and stylesheet are served by the daemon), and carry none inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers_and_no_inline_code() {
    let cluster = InProcessCluster::start("", &[], None).await;
    for path in ["/overview", "/login", "/machines/none", "/api/v1/status"] {
        let response = cluster
            .http
            .get(format!("{}{path}", cluster.url))
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_string()
        };
        let csp = get("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(get("x-frame-options"), "DENY");
        assert_eq!(get("x-content-type-options"), "nosniff");
        assert!(!get("referrer-policy").is_empty());
        let body = response.text().await.unwrap();
        if !path.starts_with("/api") {
            assert!(!body.contains("<script>"), "{path}: {body}");
            assert!(!body.contains("<style"), "{path}: {body}");
            assert!(!body.contains("style=\""), "{path}: {body}");
            assert!(!body.contains("onchange="), "{path}: {body}");
            assert!(body.contains("/assets/cerebro.js"), "{path}: {body}");
        }
    }
    for asset in ["/assets/cerebro.js", "/assets/cerebro.css"] {
        let reply = cluster.call("GET", asset, None).await;
        assert_eq!(reply.status, 200, "{asset}");
    }
}
