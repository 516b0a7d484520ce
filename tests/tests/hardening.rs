//! The edges of the three daemons under hostile or careless input: strict
//! JSON bodies, the JSON error shape on every API error, machine errors
//! passed on without internal addresses, authentication by default, rate
//! limits on failed authentication, slow clients and the UI's security
//! headers. Clustersitters run in-process on 127.0.0.1:0 with no machines
//! unless a test needs them.

use cerebro_tests::{bin, kill_processes_under, TIMEOUT};
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
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
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(response) = self
                .http
                .get(format!("{}/api/v1/status", self.url))
                .send()
                .await
            {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the clustersitter did not serve"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
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
