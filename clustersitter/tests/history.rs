//! The last hour of CPU and RSS over the API, from a clustersitter served
//! in this process with the local provider (real machinesitter and
//! tasksitter processes): a running job's instance gets samples, a
//! restart by request shows as a restart marker, unknown names are 404s,
//! and the job and machine pages draw it.

use cerebro_tests::{wait_for_async, Cluster, ClusterOptions};
use cerebro_types::history::{HistoryView, HISTORY_WINDOW_MS, MAX_SAMPLES};
use cerebro_types::time::now_ms;
use cerebro_web::daemon::shutdown_channel;
use clap::Parser;
use std::time::Duration;

const TOKEN: &str = "history-token";

/// The clustersitter config of [`Cluster::in_process`]'s files.
fn cluster_config(files: &Cluster) -> clustersitter::config::ClusterConfig {
    clustersitter::config::Cli::try_parse_from([
        "clustersitter",
        "--config",
        files.config_path().to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap()
}

/// Talks to the cluster at `base` with the token.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// The status and JSON body of `METHOD path`; `None` when nothing answered.
    async fn call(&self, method: reqwest::Method, path: &str) -> Option<(u16, serde_json::Value)> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or_default()))
    }

    /// The page at `path` (no login: the pages are readable without one
    /// by default), if it answered 200.
    async fn page(&self, path: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        if response.status() != reqwest::StatusCode::OK {
            return None;
        }
        response.text().await.ok()
    }

    /// The history at `path`, if it answered 200 with one.
    async fn history(&self, path: &str) -> Option<HistoryView> {
        match self.call(reqwest::Method::GET, path).await? {
            (200, body) => serde_json::from_value(body).ok(),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_has_a_history_and_a_restart_by_request_is_marked() {
    let files = Cluster::in_process("history", TOKEN, ClusterOptions::default());
    let config = cluster_config(&files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = shutdown_channel();
    let cluster = tokio::spawn(clustersitter::serve(config, listener, shutdown));
    let api = Api {
        base: format!("http://{address}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };

    let job = serde_json::json!({
        "persistent": true,
        "deployment_layout": {"zone-a": {"cpu": 1}},
        "task_configuration": {"name": "hist", "command": "python3 -c 'import time; held = bytearray(16 << 20); time.sleep(907)'", "cpu": 0.5,
            "mem": 64, "ensure_alive": true, "stop_timeout": 2},
    });
    let (code, body) = wait_for_async("the cluster to take the job", || async {
        let response = api
            .http
            .put(format!("{}/api/v1/jobs/hist", api.base))
            .bearer_auth(TOKEN)
            .body(job.to_string())
            .send()
            .await
            .ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    })
    .await;
    assert_eq!(code, 201, "{body}");

    // Samples for instance 0 once its machine has been polled with it running.
    let history = wait_for_async("samples of instance 0", || async {
        let history = api.history("/api/v1/jobs/hist/history").await?;
        let running = api.call(reqwest::Method::GET, "/api/v1/jobs/hist").await?.1["instances"][0]
            ["pid"]
            .is_u64();
        // Two samples, one taken once its 16 MB were held (the first poll
        // may come before the process has them).
        (running
            && history.series.get("0").is_some_and(|s| {
                s.samples.len() >= 2 && s.samples.iter().any(|sample| sample.rss_mb >= 8.0)
            }))
        .then_some(history)
    })
    .await;
    assert_eq!(history.window_ms, HISTORY_WINDOW_MS);
    assert_eq!(history.series.keys().collect::<Vec<_>>(), ["0"]);
    let samples = &history.series["0"].samples;
    assert!(samples.len() <= MAX_SAMPLES);
    assert!(samples.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    assert!(samples
        .iter()
        .all(|s| s.cpu_cores >= 0.0 && s.rss_mb >= 0.0 && s.at_ms <= now_ms()));

    // The machine's history: its sum and the task by name.
    let (_, machines) = api
        .call(reqwest::Method::GET, "/api/v1/machines")
        .await
        .unwrap();
    let machine = machines[0]["id"].as_str().unwrap().to_string();
    let on_machine = wait_for_async("the machine's history", || async {
        let view = api
            .history(&format!("/api/v1/machines/{machine}/history"))
            .await?;
        (view.series.contains_key("machine") && view.series.contains_key("hist#0")).then_some(view)
    })
    .await;
    assert!(on_machine.series["machine"].restarts_ms.is_empty());

    // Unknown names: 404 with a JSON error naming them.
    for (path, said) in [
        ("/api/v1/jobs/nope/history", "no job named 'nope'"),
        ("/api/v1/machines/nope-1/history", "no machine 'nope-1'"),
    ] {
        let (code, body) = api.call(reqwest::Method::GET, path).await.unwrap();
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body["error"], said, "{path}: {body}");
    }

    // A restart by request shows as a marker at or after the request.
    let asked_at = now_ms();
    let (code, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs/hist/instances/0/restart",
        )
        .await
        .unwrap();
    assert!((200..300).contains(&code), "{code}: {body}");
    let marked = wait_for_async("a restart marker after the request", || async {
        let history = api.history("/api/v1/jobs/hist/history").await?;
        let series = history.series.get("0")?;
        series
            .restarts_ms
            .iter()
            .copied()
            .find(|&at| at >= asked_at)
    })
    .await;
    assert!(marked <= now_ms());

    // The pages draw it: both figures, the instance's line, the marker.
    let page = api.page("/jobs/hist").await.expect("the job page");
    let graphs = &page[page.find(r#"<section class="graphs">"#).expect(&page)..];
    for drawn in [
        "<h2>Last hour</h2>",
        r#"<svg class="graph" data-metric="cpu""#,
        r#"<svg class="graph" data-metric="rss""#,
        r##"<polyline data-series="#0 (zone-a)""##,
        r#"<line class="restart""#,
    ] {
        assert!(graphs.contains(drawn), "{drawn}: {graphs}");
    }
    let page = api
        .page(&format!("/machines/{machine}"))
        .await
        .expect("the machine page");
    for drawn in [
        r#"<section class="graphs">"#,
        r#"<polyline data-series="machine (sum)""#,
        r#"<polyline data-series="hist #0 (zone-a)""#,
    ] {
        assert!(page.contains(drawn), "{drawn}: {page}");
    }

    stop.request();
    tokio::time::timeout(cerebro_tests::TIMEOUT, cluster)
        .await
        .expect("the clustersitter stops in time")
        .expect("the clustersitter's task")
        .expect("the clustersitter stops without an error");
}
