//! The web UI in a real browser: headless Chromium driven over WebDriver
//! against a live local cluster.

use cerebro_tests::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A browser whose session never closed (a failed test) outlives chromedriver.
        kill_processes_under(self._profile.path());
    }
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: scripts/test.sh installs Debian's chromium-driver");
        wait_for(TIMEOUT, "chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Self {
            child,
            port,
            _profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                    format!("--user-data-dir={}", self._profile.path().display()),
                ],
            }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS, so no rustls
        // crypto provider to pick (the workspace enables two: ring through
        // the machinesitter's reqwest, aws-lc-rs through fantoccini's
        // hyper-rustls, and rustls then refuses to choose).
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("start headless Chromium")
    }
}

/// Polls the browser until `probe` finds what it wants, bounded by `TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, browser: &Client, mut probe: F) -> T
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe(browser.clone()).await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs blocking test helpers (blocking HTTP, waits) from the async test.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

async fn page_text(browser: &Client) -> String {
    match browser.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_logs_login_and_update_in_a_real_browser() {
    let token = "ui-token-123";
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = Cluster::start(ClusterOptions {
            token: Some(token),
            ..Default::default()
        });
        let mut web = job("web-ui", "701", 0.5, json!({"zone-a": {"cpu": 1}}));
        web["task_configuration"]["command"] =
            json!("echo '<script>alert(1)</script>'; echo hello-from-ui; exec sleep 701");
        let (code, reply) = cluster.put_job(&web);
        assert_eq!(code, 201, "{reply}");
        cluster.wait_job_running("web-ui", 1);
        cluster
    })
    .await
    .unwrap();
    let base = cluster.base_url.clone();
    let driver = Driver::start();
    let browser = driver.browser().await;

    // The overview shows the job and its machine.
    browser.goto(&format!("{base}/overview")).await.unwrap();
    let machine = blocking(|| {
        cluster.job("web-ui")["instances"][0]["machine"]
            .as_str()
            .unwrap()
            .to_string()
    });
    let text = page_text(&browser).await;
    assert!(text.contains("web-ui") && text.contains(&machine), "{text}");
    let screenshot = browser.screenshot().await.unwrap();
    let shots = blocking(bin_dir).parent().unwrap().join("ui");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("overview.png"), &screenshot).unwrap();

    // Job page, then the instance's stdout: the printed line shows, the
    // printed markup is text, and no script ran.
    browser
        .find(Locator::LinkText("web-ui"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::LinkText("stdout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let log = eventually(
        "the printed line in the log viewer",
        &browser,
        |b| async move {
            let log = b.find(Locator::Id("log")).await.ok()?.text().await.ok()?;
            log.contains("hello-from-ui").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains("<script>alert(1)</script>"),
        "the markup shows as text: {log}"
    );
    assert!(
        browser.get_alert_text().await.is_err(),
        "no alert was raised"
    );
    let injected: Value = browser
        .execute(
            "return Array.from(document.scripts).filter(s => s.textContent.includes('alert(1)')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        injected,
        json!(0),
        "the printed script is not a script element"
    );

    // Without a session, actions are refused.
    let refused = reqwest::Client::new()
        .post(format!("{base}/ui/jobs/web-ui/update"))
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    browser.goto(&format!("{base}/jobs/web-ui")).await.unwrap();
    let page = page_text(&browser).await;
    assert!(
        page.contains("web-ui") && page.contains("Instances"),
        "{page}"
    );
    assert!(
        browser.find(Locator::Css("button")).await.is_err(),
        "no action buttons without a session"
    );

    // Log in with the token and update in place: the instance restarts.
    browser.goto(&format!("{base}/login")).await.unwrap();
    let form = browser
        .form(Locator::Css("form[action='/login']"))
        .await
        .unwrap();
    form.set_by_name("token", token)
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    eventually("the overview after login", &browser, |b| async move {
        page_text(&b).await.contains("Log out").then_some(())
    })
    .await;
    let before = blocking(|| cluster.job("web-ui")["instances"][0]["pid"].clone());
    browser.goto(&format!("{base}/jobs/web-ui")).await.unwrap();
    let update = browser
        .find(Locator::XPath("//button[text()='Update in place']"))
        .await
        .unwrap();
    update.click().await.unwrap();
    blocking(|| {
        wait_for(TIMEOUT, "the instance to restart", || {
            let instance = cluster.job("web-ui")["instances"][0].clone();
            (instance["pid"] != before
                && instance["state"] == "running"
                && instance["generation"] == 2)
                .then_some(())
        })
    });
    eventually("the job page after the action", &browser, |b| async move {
        page_text(&b).await.contains("Generation\n2").then_some(())
    })
    .await;
    // From here on nothing navigates: a reload would drop this marker.
    browser
        .execute("window.stillHere = true; return null", vec![])
        .await
        .unwrap();
    let new_pid = blocking(|| cluster.job("web-ui")["instances"][0]["pid"].to_string());
    eventually("the new pid to show up in place", &browser, |b| {
        let new_pid = new_pid.clone();
        async move { page_text(&b).await.contains(&new_pid).then_some(()) }
    })
    .await;
    let still_here: Value = browser
        .execute("return window.stillHere === true", vec![])
        .await
        .unwrap();
    assert_eq!(
        still_here,
        json!(true),
        "the page refreshed its data in place, without a reload"
    );

    for (button, shown, running) in [
        ("Stop all", "stopped by request", 0),
        ("Start all", "started by request", 1),
    ] {
        browser
            .find(Locator::XPath(&format!("//button[text()='{button}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        blocking(move || {
            wait_for(
                TIMEOUT,
                &format!("{running} workload(s) after {button}"),
                || (workloads("701").len() == running).then_some(()),
            )
        });
        eventually(
            &format!("the job page to say {shown}"),
            &browser,
            |b| async move { page_text(&b).await.contains(shown).then_some(()) },
        )
        .await;
    }

    // The idle-limit form sits outside the part refreshed in place, so
    // what is typed into it survives a refresh; setting it takes effect.
    browser.goto(&format!("{base}/overview")).await.unwrap();
    let placement: Value = browser
        .execute(
            "return [document.querySelector('input[name=limit]') !== null, \
             document.querySelector('#live input[name=limit]') !== null]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        placement,
        json!([true, false]),
        "the form exists, outside #live"
    );
    let limit = browser
        .find(Locator::Css("input[name=limit]"))
        .await
        .unwrap();
    limit.clear().await.unwrap();
    limit.send_keys("2").await.unwrap();
    browser
        .find(Locator::XPath("//button[text()='Set']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    blocking(|| {
        wait_for(TIMEOUT, "the idle limit to be 2", || {
            let status = cluster.get("/api/v1/status");
            status["zones"]
                .as_array()?
                .iter()
                .all(|z| z["idle_limit"] == 2)
                .then_some(())
        })
    });
    browser.close().await.unwrap();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// Whether the page's log viewer is scrolled to its newest line.
async fn log_at_bottom(browser: &Client) -> bool {
    let at_bottom: Value = browser
        .execute(
            "var log = document.getElementById('log'); \
             return log !== null && log.scrollHeight > log.clientHeight \
               && log.scrollTop + log.clientHeight >= log.scrollHeight - 2",
            vec![],
        )
        .await
        .unwrap();
    at_bottom == json!(true)
}

/// What the on-call person sees of a crash-looping job, in a real
/// browser: its instance's `crash-looping` badge, the job's own badge, the
/// exit reason and its restarts on the job page (screenshot
/// `crash-looping-job.png` beside `overview.png`); the overview counting
/// it as crash-looping, not running; a log page that opens at its newest
/// line, keeps following, and names the instance's zone and machine; the
/// machine page's labelled reserved and used figures apart from the
/// host's; and the last hour drawn on the job and machine pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_job_shows_its_health_reason_and_restarts_in_a_real_browser() {
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = Cluster::start(ClusterOptions::default());
        let mut crashy = job("crashy", "704", 0.25, json!({"zone-a": {"cpu": 1}}));
        crashy["task_configuration"]["command"] = json!("sh -c 'echo up; sleep 0.3; exit 3'");
        crashy["task_configuration"]["restart"] = json!(true);
        let (code, reply) = cluster.put_job(&crashy);
        assert_eq!(code, 201, "{reply}");
        wait_for(TIMEOUT, "the instance to crash-loop", || {
            let view = cluster.job_view("crashy");
            let instance = view.instances.first()?;
            (instance.health == cerebro_types::health::InstanceHealth::CrashLooping
                && instance.last_exit.is_some())
            .then_some(())
        });
        cluster
    })
    .await
    .unwrap();
    let base = cluster.base_url.clone();
    let driver = Driver::start();
    let browser = driver.browser().await;

    browser.goto(&format!("{base}/jobs/crashy")).await.unwrap();
    let text = eventually(
        "the crash-looping badge on the job page",
        &browser,
        |b| async move {
            let text = page_text(&b).await;
            text.contains("crash-looping").then_some(text)
        },
    )
    .await;
    assert!(text.contains("exit code 3"), "the exit reason: {text}");
    let badges: Value = browser
        .execute(
            "return [document.querySelector('td .health.health-crash_looping') !== null, \
             document.querySelector('h1 .health.health-failing, h1 .health.health-degraded') !== null]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        badges,
        json!([true, true]),
        "the instance's and the job's badges: {text}"
    );
    assert!(text.contains("Restarts and violations"), "{text}");
    let shots = blocking(bin_dir).parent().unwrap().join("ui");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(
        shots.join("crash-looping-job.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();

    // The overview counts it as crash-looping, not running.
    browser.goto(&format!("{base}/overview")).await.unwrap();
    let headline = browser
        .find(Locator::Id("instances-health"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        headline.contains("0 / 1")
            && headline.contains("0 running · 1 crash-looping · 0 pending of 1 instances"),
        "{headline}"
    );
    let jobs = page_text(&browser).await;
    assert!(jobs.contains("1 failing"), "the jobs by health: {jobs}");

    // A job that keeps printing: its log page opens at the newest line,
    // follows what it prints next, and names its zone and machine.
    let machine = blocking(|| {
        let mut chatty = job("chatty", "705", 0.25, json!({"zone-a": {"cpu": 1}}));
        chatty["task_configuration"]["command"] = json!(
            "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); \
             if [ $i -gt 400 ]; then sleep 0.1; fi; done; exec sleep 705"
        );
        let (code, reply) = cluster.put_job(&chatty);
        assert_eq!(code, 201, "{reply}");
        let running = cluster.wait_job_running("chatty", 1);
        running[0]["machine"].as_str().unwrap().to_string()
    });
    blocking(|| {
        wait_for(TIMEOUT, "400 lines of output", || {
            let output = cluster.cli(&["logs", "chatty", "--tail", "1"]);
            let last = String::from_utf8_lossy(&output.stdout).into_owned();
            last.trim()
                .strip_prefix("line-")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n >= 400)
                .map(|_| ())
        })
    });
    browser
        .goto(&format!("{base}/logs/chatty/0/stdout"))
        .await
        .unwrap();
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, format!("chatty #0 (zone-a) on {machine} — stdout"));
    // The log page of an instance or job that does not exist does not exist.
    for missing in [
        "/logs/chatty/9/stdout",
        "/logs/nope/0/stdout",
        "/logs/chatty/-1/stdout",
        "/logs/chatty/0/stdin",
    ] {
        let status = blocking(|| {
            reqwest::blocking::get(format!("{base}{missing}"))
                .unwrap()
                .status()
        });
        assert_eq!(status, 404, "{missing}");
    }
    let wrong = blocking(|| {
        reqwest::blocking::get(format!("{base}/logs/chatty/0/stdout?lines=abc")).unwrap()
    });
    assert_eq!(wrong.status(), 400);
    let page = blocking(|| wrong.text().unwrap());
    assert!(page.contains("lines must be a whole number"), "{page}");
    eventually(
        "the log to open at its newest line",
        &browser,
        |b| async move { log_at_bottom(&b).await.then_some(()) },
    )
    .await;
    let length = |b: Client| async move {
        let log = b.find(Locator::Id("log")).await.ok()?.text().await.ok()?;
        Some(log.len())
    };
    let before = length(browser.clone()).await.unwrap();
    eventually("new output to be followed", &browser, |b| async move {
        let now = length(b.clone()).await?;
        (now > before && log_at_bottom(&b).await).then_some(())
    })
    .await;

    // The machine page: reserved and used of its capacity, labelled, and
    // the host's figures apart.
    let reserved = blocking(|| {
        let view = cluster
            .machine_views()
            .into_iter()
            .find(|m| m.id == machine)
            .unwrap();
        format!(
            "{} of 2 cores",
            cerebro_types::health::cores(view.reserved.cpu)
        )
    });
    browser
        .goto(&format!("{base}/machines/{machine}"))
        .await
        .unwrap();
    let text = page_text(&browser).await;
    for part in [
        "Reserved (by placement)",
        reserved.as_str(),
        "Used (measured)",
        "Host",
        "shared by every machine of the local provider",
    ] {
        assert!(text.contains(part), "{part} on the machine page: {text}");
    }
    assert!(!text.contains("-0.00"), "{text}");

    // Only after the merge: the events of the job's restarts (emitted by
    // the cluster) and the graphs of the last hour (drawn from its
    // history).
    browser.goto(&format!("{base}/jobs/crashy")).await.unwrap();
    let restarts = eventually("the job's restarts listed", &browser, |b| async move {
        let table = b.find(Locator::Css("table#restarts")).await.ok()?;
        let text = table.text().await.ok()?;
        (text.contains("crashy #0 (zone-a)") && text.contains("exit code 3")).then_some(text)
    })
    .await;
    assert!(restarts.contains("restart"), "{restarts}");
    for page in ["/jobs/chatty".to_string(), format!("/machines/{machine}")] {
        browser.goto(&format!("{base}{page}")).await.unwrap();
        eventually(&format!("the graphs on {page}"), &browser, |b| async move {
            let source = b.source().await.ok()?;
            source.contains(r#"<svg class="graph""#).then_some(())
        })
        .await;
    }
    browser.close().await.unwrap();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[test]
fn login_can_be_required_and_task_violations_reach_the_overview() {
    let mut cluster = Cluster::start(ClusterOptions {
        token: Some("t"),
        toml_extra: "ui_login_required = true".into(),
        ..Default::default()
    });
    let mut hog = job("hog", "702", 0.5, json!({"zone-a": {"cpu": 1}}));
    hog["task_configuration"]["command"] = json!("head -c 300M /dev/zero | tail");
    hog["task_configuration"]["restart"] = json!(true);
    let (code, reply) = cluster.put_job(&hog);
    assert_eq!(code, 201, "{reply}");
    // `hog #0 (zone-a) on MACHINE: killed by the kernel for memory: ...`
    // or `...: over its memory limit: ...`: the instance, the kind, the
    // measured value and the limit.
    let violation = wait_for(TIMEOUT, "the memory violation event", || {
        let events = cluster.get("/api/v1/events?limit=500");
        events.as_array()?.iter().find_map(|event| {
            let message = event["message"].as_str()?;
            (message.contains("hog #0") && message.contains("memory") && message.contains("limit"))
                .then(|| message.to_string())
        })
    });
    let anonymous = reqwest::blocking::Client::new();
    let response = anonymous
        .get(format!("{}/overview", cluster.base_url))
        .send()
        .unwrap();
    assert!(
        response.url().path().ends_with("/login"),
        "pages need a login: {}",
        response.url()
    );
    let response = anonymous
        .post(format!("{}/login", cluster.base_url))
        .form(&[("token", "wrong")])
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    let session = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let response = session
        .post(format!("{}/login", cluster.base_url))
        .form(&[("token", "t")])
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let overview = response.text().unwrap();
    assert!(
        overview.contains(&violation) && overview.contains("Log out"),
        "{violation} in {overview}"
    );

    // A restart of the clustersitter logs nobody out (cookies ignore the
    // port, which changes)...
    let overview_path = |cluster: &Cluster| {
        let response = session
            .get(format!("{}/overview", cluster.base_url))
            .send()
            .unwrap();
        response.url().path().to_string()
    };
    cluster.kill9();
    cluster.boot();
    assert_eq!(overview_path(&cluster), "/overview", "still logged in");
    // ...but a new token logs everyone out.
    std::fs::write(cluster.path().join("token"), "t2").unwrap();
    cluster.kill9();
    cluster.boot();
    assert_eq!(
        overview_path(&cluster),
        "/login",
        "a new token needs a new login"
    );
}

/// A failed deployment in a real browser: the job page says `deploy
/// failed`, names the step and shows its output as text; the instance's
/// deploy log page shows every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_shows_its_step_and_output_in_a_real_browser() {
    let recipes = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(recipes.path().join("site")).unwrap();
    std::fs::write(
        recipes.path().join("site/broken.toml"),
        "[[steps]]\nkind = \"write\"\npath = \"config\"\ncontent = \"x\"\n\n\
         [[steps]]\nkind = \"run\"\nname = \"migrate\"\n\
         command = \"echo '<script>alert(2)</script>'; echo migration-broke; exit 4\"\n",
    )
    .unwrap();
    let dirs = vec![recipes.path().to_path_buf()];
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = Cluster::start(ClusterOptions {
            recipe_dirs: dirs,
            ..Default::default()
        });
        let mut web = job("deploy-ui", "702", 0.5, json!({"zone-a": {"cpu": 1}}));
        web["deployment_recipe"] = json!("site.broken");
        let (code, reply) = cluster.put_job(&web);
        assert_eq!(code, 201, "{reply}");
        wait_for(TIMEOUT, "the deploy to fail", || {
            let job = cluster.job("deploy-ui");
            (job["instances"][0]["deploy"]["state"] == "failed").then_some(())
        });
        cluster
    })
    .await
    .unwrap();
    let base = cluster.base_url.clone();
    let driver = Driver::start();
    let browser = driver.browser().await;

    browser
        .goto(&format!("{base}/jobs/deploy-ui"))
        .await
        .unwrap();
    let text = eventually(
        "the failed deploy on the job page",
        &browser,
        |b| async move {
            let text = page_text(&b).await;
            text.contains("deploy failed").then_some(text)
        },
    )
    .await;
    for part in [
        "step 2 (run \"migrate\")",
        "exit 4",
        "<script>alert(2)</script>",
        "migration-broke",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(
        browser.get_alert_text().await.is_err(),
        "no alert was raised"
    );
    browser
        .find(Locator::LinkText("deploy log"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let log = eventually("the deploy log page", &browser, |b| async move {
        let text = page_text(&b).await;
        text.contains("step 1 (write)").then_some(text)
    })
    .await;
    assert!(
        log.contains("step 2 (run \"migrate\")") && log.contains("migration-broke"),
        "{log}"
    );
    let injected: Value = browser
        .execute(
            "return Array.from(document.scripts).filter(s => s.textContent.includes('alert(2)')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        injected,
        json!(0),
        "the printed script is not a script element"
    );
    // No such instance, or no number at all: a page saying so, answered 404.
    for index in ["9", "abc"] {
        let answer = reqwest::get(format!("{base}/deploylog/deploy-ui/{index}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{index}");
        let page = answer.text().await.unwrap();
        assert!(page.contains("<h1>Not found</h1>"), "{index}: {page}");
    }
    browser.close().await.unwrap();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// A job with a `dns_basename` in two zones: the job page shows its
/// `ZONE.basename` names and each instance's `N.ZONE.basename`, the
/// machine page and the overview the machine's names, the DNS page the
/// records, all as the API's views have them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_dns_names_show_on_its_job_machine_and_dns_pages() {
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = Cluster::start(ClusterOptions {
            // `none`: the names are computed and shown, nothing is sent.
            dns: Some("[dns]\nkind = \"none\"\n".into()),
            ..Default::default()
        });
        let mut web = job(
            "dns-ui",
            "703",
            0.25,
            json!({"zone-a": {"cpu": 1}, "zone-b": {"cpu": 1}}),
        );
        web["dns_basename"] = json!("dns-ui.cerebro.test");
        let (code, reply) = cluster.put_job(&web);
        assert_eq!(code, 201, "{reply}");
        cluster.wait_job_running("dns-ui", 2);
        cluster
    })
    .await
    .unwrap();
    // What the API says, first: the pages must show exactly this.
    let (view, machine_a) = blocking(|| {
        let view = wait_for(TIMEOUT, "the job's DNS names", || {
            let view = cluster.job_view("dns-ui");
            (view.dns_names.len() == 2 && view.instances.iter().all(|i| i.dns_name.is_some()))
                .then_some(view)
        });
        let in_a = view.instances.iter().find(|i| i.zone == "zone-a").unwrap();
        let machine_a = in_a.machine.clone().unwrap();
        let machine = cluster
            .machine_views()
            .into_iter()
            .find(|m| m.id == machine_a)
            .unwrap();
        assert_eq!(machine.dns_names, ["0.zone-a.dns-ui.cerebro.test"]);
        (view, machine_a)
    });
    assert_eq!(
        view.dns_names,
        ["zone-a.dns-ui.cerebro.test", "zone-b.dns-ui.cerebro.test"]
    );
    for instance in &view.instances {
        assert_eq!(
            instance.dns_name.as_deref(),
            Some(format!("0.{}.dns-ui.cerebro.test", instance.zone).as_str()),
            "{instance:?}"
        );
    }
    let base = cluster.base_url.clone();
    let driver = Driver::start();
    let browser = driver.browser().await;

    browser.goto(&format!("{base}/jobs/dns-ui")).await.unwrap();
    let text = page_text(&browser).await;
    for name in [
        "zone-a.dns-ui.cerebro.test",
        "zone-b.dns-ui.cerebro.test",
        "0.zone-a.dns-ui.cerebro.test",
        "0.zone-b.dns-ui.cerebro.test",
    ] {
        assert!(text.contains(name), "{name} on the job page: {text}");
    }
    let column: Value = browser
        .execute(
            "return Array.from(document.querySelectorAll('th')).some(th => th.textContent.trim().toLowerCase() === 'dns name')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(column, json!(true), "the instances' DNS name column");

    browser
        .goto(&format!("{base}/machines/{machine_a}"))
        .await
        .unwrap();
    let text = page_text(&browser).await;
    assert!(
        text.contains("DNS names") && text.contains("0.zone-a.dns-ui.cerebro.test"),
        "the machine page: {text}"
    );
    assert!(
        !text.contains("0.zone-b.dns-ui.cerebro.test"),
        "only its own names: {text}"
    );

    browser.goto(&format!("{base}/overview")).await.unwrap();
    let text = page_text(&browser).await;
    assert!(
        text.contains("0.zone-a.dns-ui.cerebro.test")
            && text.contains("0.zone-b.dns-ui.cerebro.test"),
        "the overview's machines: {text}"
    );

    // The DNS page, reached from the nav: the provider and the records
    // Cerebro wants (the reconciler computes them for `none` too).
    browser
        .find(Locator::LinkText("DNS"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = eventually("the DNS page's records", &browser, |b| async move {
        let text = page_text(&b).await;
        text.contains("zone-a.dns-ui.cerebro.test").then_some(text)
    })
    .await;
    assert!(text.contains("none"), "the provider's kind: {text}");
    assert!(
        text.contains("heritage=cerebro,cerebro/owner=test"),
        "the ownership records: {text}"
    );
    browser.close().await.unwrap();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
