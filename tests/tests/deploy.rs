//! Deployment recipes end to end on the local provider: a small real
//! service (python3's `http.server`, answering its release's `VERSION`)
//! shipped as a tarball from an artifact server on loopback, rolled out,
//! rolled back, broken in the ways a release breaks, redeployed on a
//! replacement machine, and attacked with a tar-slip archive.

use cerebro_tests::artifacts::{sha256_hex, symlink_slip_gz, tar_gz, tar_slip_gz, ArtifactServer};
use cerebro_tests::*;
use cerebro_types::cluster::{InstanceState, InstanceView};
use cerebro_types::deploy::{AttemptOutcome, DeployState, InstanceDeployLog, StepOutcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deploys take longer than a task start: downloads, steps, checks.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// The recipe the service is deployed with (`web.deploy` in the cluster's
/// recipe dir): the artifact is named by version and its digest is looked
/// up by version in a map, so `updatejob --version V` alone deploys V. A
/// job has no version until its first `updatejob --version`, hence
/// `initial_version`.
const WEB_RECIPE: &str = r#"
description = "A versioned web service: BASE/web-VERSION.tar.gz, digests by version"

[[steps]]
kind = "fetch"
name = "release archive"
url = "{{ options.base_url }}/web-{{ version or options.initial_version }}.tar.gz"
sha256 = "{{ options.sha256[version or options.initial_version] }}"
unpack = "tar.gz"
timeout = "2m"

[[steps]]
kind = "write"
name = "port"
path = "port"
template = "{{ options.port + instance }}\n"

[[steps]]
kind = "run"
name = "prepare"
command = "sh ./prepare.sh"
timeout = "4s"

[[steps]]
kind = "check"
name = "answers"
http = "http://127.0.0.1:{{ options.port + instance }}/VERSION"
timeout = "40s"
interval = "100ms"
"#;

/// The label the machinesitter gives each step of [`WEB_RECIPE`].
const FETCH_STEP: &str = "step 1 (fetch \"release archive\")";
const PREPARE_STEP: &str = "step 3 (run \"prepare\")";

/// The real python3 (not a shim that needs the caller's environment), or a
/// loud failure: the service the tests deploy is python3's `http.server`.
fn python3() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys, http.server; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed by the deployment tests (scripts/install-moto.sh installs it): {e}")
        });
    assert!(
        output.status.success(),
        "python3 with http.server is needed by the deployment tests (scripts/install-moto.sh installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(Path::new(&path).is_file(), "python3 at {path}");
    path
}

/// How a release's `prepare.sh` behaves.
#[derive(Clone, Copy)]
enum Prepare {
    Ok,
    /// Exits 3 after saying why.
    Fails,
    /// Sleeps (`sleep 297`) far past the step's timeout.
    Hangs,
}

/// The argument of the hanging prepare step's `sleep`: 297 s and this
/// test process's id as the fraction, so that it names this run's steps only.
fn hang_marker() -> String {
    format!("297.{}", std::process::id())
}

/// The hanging steps' `sleep`s of this run.
fn hanging_steps() -> Vec<i32> {
    let marker = hang_marker();
    processes(|argv| {
        argv.first().is_some_and(|a| a.ends_with("sleep"))
            && argv.get(1).is_some_and(|a| *a == marker)
    })
}

/// Kills what a hanging step left when the test ends, however it ends: a
/// machinesitter killed mid-step (the harness SIGKILLs the cluster) leaves
/// its step's processes, which name no path under the cluster's dir.
struct KillHangingSteps;

impl Drop for KillHangingSteps {
    fn drop(&mut self) {
        for pid in hanging_steps() {
            kill(pid, SIGKILL);
        }
    }
}

/// A release tarball of the service at `version`: `VERSION`, `serve.sh`
/// (the task's command: serves the release directory on 127.0.0.1 at the
/// port the recipe wrote, after `start_delay_secs`) and `prepare.sh`.
fn release(python: &str, version: &str, prepare: Prepare, start_delay_secs: u32) -> Vec<u8> {
    let serve = format!(
        "#!/bin/sh\n# Serves this release's files; the recipe wrote the port.\n\
         cd \"$CEREBRO_RELEASE_DIR\" || exit 1\n\
         sleep {start_delay_secs}\n\
         exec {python} -m http.server \"$(cat port)\" --bind 127.0.0.1\n"
    );
    let prepare = match prepare {
        Prepare::Ok => "#!/bin/sh\necho \"prepared $(cat VERSION) in $PWD\"\n".to_string(),
        Prepare::Fails => {
            "#!/bin/sh\necho 'linking assets'\necho 'the build is broken: libfoo.so missing' >&2\nexit 3\n"
                .to_string()
        }
        Prepare::Hangs => format!(
            "#!/bin/sh\necho 'waiting for a lock'\nexec sleep {}\n",
            hang_marker()
        ),
    };
    tar_gz(&[
        ("VERSION", 0o644, format!("{version}\n").as_bytes()),
        ("serve.sh", 0o755, serve.as_bytes()),
        ("prepare.sh", 0o755, prepare.as_bytes()),
    ])
}

/// A base port with `count` free ports from it on 127.0.0.1, never one
/// handed out before in this process: tests run in parallel, and a port
/// is only taken once its service starts.
fn free_ports(count: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    // Each test binary (a process) starts at its own place in 20000-39999.
    let start = 20_000 + (std::process::id() % 400) as u16 * 50;
    loop {
        let offset = NEXT.fetch_add(count, std::sync::atomic::Ordering::SeqCst);
        assert!(offset < 20_000 - count, "out of ports to try");
        let base = 20_000 + (start - 20_000 + offset) % (20_000 - count);
        let free = (base..base + count)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
}

/// What the service on `port` answers for `/VERSION`, if it answers.
fn answer(port: u16) -> Option<String> {
    thread_local! {
        static HTTP: reqwest::blocking::Client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
    }
    HTTP.with(|http| {
        let response = http
            .get(format!("http://127.0.0.1:{port}/VERSION"))
            .send()
            .ok()?;
        response
            .status()
            .is_success()
            .then(|| response.text().ok())
            .flatten()
            .map(|t| t.trim().to_string())
    })
}

/// A cluster whose `recipes/` dir holds `web/deploy.toml` ([`WEB_RECIPE`]).
fn web_cluster(options: ClusterOptions) -> Cluster {
    let mut cluster = Cluster::new(ClusterOptions {
        recipe_dirs: vec![PathBuf::from("recipes")],
        ..options
    });
    let dir = cluster.path().join("recipes").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deploy.toml"), WEB_RECIPE).unwrap();
    cluster.boot();
    cluster
}

/// A job of the service: `instances` in zone-a, 1.5 cores each (so one
/// per 2-core machine), deployed with `web.deploy`.
fn web_job(
    name: &str,
    server: &ArtifactServer,
    port: u16,
    instances: u32,
    sha256: &BTreeMap<String, String>,
) -> Value {
    json!({
        "persistent": true,
        "deployment_recipe": "web.deploy",
        "recipe_options": {
            "base_url": server.base_url(),
            "initial_version": "v1",
            "sha256": sha256,
            "port": port,
        },
        "deployment_layout": {"zone-a": {"cpu": instances}},
        "task_configuration": {
            "name": name,
            "command": "sh serve.sh",
            "cpu": 1.5,
            "mem": 200,
            "ensure_alive": true,
            "stop_timeout": 2,
        },
    })
}

/// Puts every release of `versions` on the server; answers their digests
/// by version. A job gets its own prefix so that download counts are its own.
fn publish(
    server: &ArtifactServer,
    prefix: &str,
    releases: &[(&str, Vec<u8>)],
) -> BTreeMap<String, String> {
    releases
        .iter()
        .map(|(version, body)| {
            let digest = server.put(&format!("/{prefix}web-{version}.tar.gz"), body.clone());
            (version.to_string(), digest)
        })
        .collect()
}

/// The instances of `job` once `count` run and every one's deploy is
/// `Ready` at `version` (`None`: the job has no version yet).
fn wait_deployed(
    cluster: &Cluster,
    job: &str,
    count: usize,
    version: Option<&str>,
) -> Vec<InstanceView> {
    wait_for(
        DEPLOY_TIMEOUT,
        &format!("{count} instances of '{job}' deployed and ready at {version:?}"),
        || {
            let view = cluster.job_view(job);
            let done = view.rollout.is_none()
                && view.instances.len() == count
                && view.instances.iter().all(|i| {
                    i.state == InstanceState::Running
                        && i.deploy.as_ref().is_some_and(|d| {
                            d.state == DeployState::Ready
                                && d.version.as_deref() == version
                                && d.running_release.as_deref() == Some(d.release.as_str())
                        })
                });
            done.then_some(view.instances)
        },
    )
}

/// `POST /api/v1/jobs/{job}/update` with a version.
fn update(cluster: &Cluster, job: &str, version: &str) {
    let (code, reply) = cluster.request(
        "POST",
        &format!("/api/v1/jobs/{job}/update"),
        Some(&json!({"version": version, "min_healthy_secs": 1}).to_string()),
    );
    assert_eq!(code, 200, "update {job} to {version}: {reply}");
}

/// The clustersitter's `GET /api/v1/jobs/{job}/deploylog`.
fn deploy_log(cluster: &Cluster, job: &str) -> Vec<InstanceDeployLog> {
    serde_json::from_value(cluster.get(&format!("/api/v1/jobs/{}/deploylog", encode(job))))
        .expect("the deploy log as InstanceDeployLog entries")
}

/// `cerebro deploylog ARGS...`, its stdout; fails the test on failure.
fn cli_deploy_log(cluster: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["deploylog"];
    all.extend_from_slice(args);
    let output = cluster.cli(&all);
    assert!(
        output.status.success(),
        "cerebro {all:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A workload's `CEREBRO_JOB_VERSION` and `CEREBRO_RELEASE`, read when a
/// test first saw it.
type Seen = (Option<String>, Option<String>);

/// Every file or directory named `name` under `dir` (symlinks not followed).
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn a_release_rolls_out_one_machine_at_a_time_gated_by_its_check_and_rolls_back_without_a_download()
{
    let python = python3();
    let server = ArtifactServer::start();
    // v2 takes 2 s to start serving: without the check gating each
    // machine, the rollout (min_healthy 1 s) would take both down at once.
    let sha256 = publish(
        &server,
        "",
        &[
            ("v1", release(&python, "v1", Prepare::Ok, 0)),
            ("v2", release(&python, "v2", Prepare::Ok, 2)),
        ],
    );
    let cluster = web_cluster(ClusterOptions::default());
    let port = free_ports(2);
    let (code, reply) = cluster.put_job(&web_job("web", &server, port, 2, &sha256));
    assert_eq!(code, 201, "{reply}");

    // Before any `updatejob --version`, the recipe's initial version.
    let instances = wait_deployed(&cluster, "web", 2, None);
    let machines: Vec<String> = instances
        .iter()
        .map(|i| i.machine.clone().unwrap())
        .collect();
    assert_ne!(machines[0], machines[1], "one instance per machine");
    for offset in 0..2 {
        assert_eq!(answer(port + offset).as_deref(), Some("v1"));
    }
    for instance in &instances {
        let pid = instance.pid.unwrap();
        let deploy = instance.deploy.as_ref().unwrap();
        assert_eq!(
            env_of(pid, "CEREBRO_RELEASE").as_deref(),
            Some(deploy.release.as_str())
        );
        let release_dir = env_of(pid, "CEREBRO_RELEASE_DIR").expect("CEREBRO_RELEASE_DIR");
        assert!(
            release_dir.ends_with(&format!("/releases/{}", deploy.release)),
            "{release_dir}"
        );
        assert_eq!(
            std::fs::read_to_string(Path::new(&release_dir).join("port")).unwrap(),
            format!("{}\n", port + instance.slot as u16),
            "the write step rendered the port of its instance"
        );
    }
    assert_eq!(
        server.requests("/web-v1.tar.gz"),
        2,
        "one download per machine"
    );

    // The job's version becomes v1: a new release of the same artifact,
    // installed from the machine's cache.
    update(&cluster, "web", "v1");
    let at_v1 = wait_deployed(&cluster, "web", 2, Some("v1"));
    assert_eq!(
        server.requests("/web-v1.tar.gz"),
        2,
        "the artifact is cached by digest"
    );

    // v2, rolled out one machine at a time, each gated by the check. Its
    // download is slow: v1 serves, untouched, while v2 installs.
    server.delay("/web-v2.tar.gz", Some(Duration::from_secs(2)));
    let output = cluster.cli(&["updatejob", "web", "--version", "v2", "--min-healthy", "1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started = Instant::now();
    // Per port: when it last answered v1 and first answered v2.
    let mut last_v1: [Option<Duration>; 2] = [None, None];
    let mut first_v2: [Option<Duration>; 2] = [None, None];
    let mut samples = 0;
    // Every workload (python serving a port) seen per port: a rolling
    // update restarts each instance once, on its new release.
    // Each with its version and release, read when first seen.
    let mut servers: [BTreeMap<i32, Seen>; 2] = Default::default();
    for instance in &at_v1 {
        let pid = instance.pid.unwrap();
        servers[instance.slot as usize].insert(
            pid as i32,
            (
                env_of(pid, "CEREBRO_JOB_VERSION"),
                env_of(pid, "CEREBRO_RELEASE"),
            ),
        );
    }
    loop {
        assert!(
            started.elapsed() < DEPLOY_TIMEOUT,
            "v2 rolled out within {DEPLOY_TIMEOUT:?}: last v1 {last_v1:?}, first v2 {first_v2:?}"
        );
        let now = started.elapsed();
        let answers = [answer(port), answer(port + 1)];
        samples += 1;
        for (slot, seen) in servers.iter_mut().enumerate() {
            let listening = (port + slot as u16).to_string();
            for pid in processes(|argv| {
                argv.iter().any(|a| a == "http.server") && argv.contains(&listening)
            }) {
                seen.entry(pid).or_insert_with(|| {
                    (
                        env_of(pid as u32, "CEREBRO_JOB_VERSION"),
                        env_of(pid as u32, "CEREBRO_RELEASE"),
                    )
                });
            }
        }
        assert!(
            answers.iter().any(Option::is_some),
            "both instances were down at once, {now:?} into the rollout"
        );
        for (i, answer) in answers.iter().enumerate() {
            match answer.as_deref() {
                Some("v1") => last_v1[i] = Some(now),
                Some("v2") if first_v2[i].is_none() => first_v2[i] = Some(now),
                _ => {}
            }
        }
        if first_v2.iter().all(Option::is_some)
            && answers.iter().all(|a| a.as_deref() == Some("v2"))
        {
            let view = cluster.job_view("web");
            let ready = view.rollout.is_none()
                && view.instances.iter().all(|i| {
                    i.deploy.as_ref().is_some_and(|d| {
                        d.state == DeployState::Ready && d.version.as_deref() == Some("v2")
                    })
                });
            if ready {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples > 20, "the rollout was watched: {samples} samples");
    // The machine that switched second still answered v1 after the first
    // answered v2: it was not touched before the first was ready.
    let (first, second) = if first_v2[0] <= first_v2[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    assert!(
        last_v1[second].unwrap() >= first_v2[first].unwrap(),
        "the second machine kept v1 until the first answered v2: last v1 {last_v1:?}, first v2 {first_v2:?}"
    );
    assert_eq!(server.requests("/web-v2.tar.gz"), 2);
    // The machines report v2 ready one after the other, each after its own
    // 2 s start: the second machine's turn came after the first was ready.
    let events: Vec<Value> = cluster
        .get("/api/v1/events?limit=1000")
        .as_array()
        .unwrap()
        .clone();
    let mut ready: Vec<(u64, String)> = events
        .iter()
        .filter(|e| {
            e["event"] == "deploy_ready"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("release v2-"))
        })
        .map(|e| {
            (
                e["at_ms"].as_u64().unwrap(),
                e["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ready.sort();
    assert_eq!(
        ready.len(),
        2,
        "one deploy_ready per machine for v2: {ready:?}"
    );
    assert_ne!(ready[0].1, ready[1].1, "{ready:?}");
    assert!(
        ready[1].0 - ready[0].0 >= 2_000,
        "the second machine started v2 after the first was ready: {ready:?}"
    );
    let v2 = wait_deployed(&cluster, "web", 2, Some("v2"));
    for instance in &v2 {
        assert_eq!(
            env_of(instance.pid.unwrap(), "CEREBRO_JOB_VERSION").as_deref(),
            Some("v2")
        );
    }

    // Rollback: the v1 release is still on each machine: switched back to,
    // nothing downloaded, nothing run again.
    update(&cluster, "web", "v1");
    let back = wait_deployed(&cluster, "web", 2, Some("v1"));
    for offset in 0..2 {
        assert_eq!(answer(port + offset).as_deref(), Some("v1"));
    }
    assert_eq!(
        server.requests("/web-v1.tar.gz"),
        2,
        "a rollback downloads nothing"
    );
    let log = deploy_log(&cluster, "web");
    assert_eq!(log.len(), 2, "{log:?}");
    for entry in &log {
        assert!(entry.error.is_none(), "{entry:?}");
        let newest = entry.attempts.first().expect("attempts");
        let release = &back
            .iter()
            .find(|i| i.index == entry.instance as usize)
            .unwrap()
            .deploy
            .as_ref()
            .unwrap()
            .release;
        assert_eq!(&newest.release, release, "{entry:?}");
        assert_eq!(newest.outcome, AttemptOutcome::Reused, "{entry:?}");
        assert!(
            entry
                .attempts
                .iter()
                .any(|a| a.version.as_deref() == Some("v2")
                    && a.outcome == AttemptOutcome::Succeeded
                    && a.steps.iter().all(|s| s.outcome == StepOutcome::Succeeded)),
            "the v2 attempt is kept with its steps: {entry:?}"
        );
    }
    let text = cli_deploy_log(&cluster, &["web"]);
    assert!(text.to_lowercase().contains("reused"), "{text}");
    assert!(text.contains(FETCH_STEP), "{text}");
    let seen: Vec<Vec<String>> = servers
        .iter()
        .map(|pids| {
            pids.iter()
                .map(|(pid, (version, release))| {
                    format!("{pid}: version {version:?}, release {release:?}")
                })
                .collect()
        })
        .collect();
    assert!(
        servers.iter().all(|pids| pids.len() == 2),
        "each instance restarted exactly once during the v2 rollout (v1's workload, then v2's): {seen:#?}"
    );
}

#[test]
fn a_bad_digest_a_failing_step_and_a_timing_out_step_each_leave_v1_running_and_name_the_step() {
    let _cleanup = KillHangingSteps;
    let python = python3();
    let server = ArtifactServer::start();
    let v1 = release(&python, "v1", Prepare::Ok, 0);
    let cluster = web_cluster(ClusterOptions::default());
    // One job per way of failing, each on machines of its own.
    let mut jobs = Vec::new();
    for (name, instances, bad) in [
        ("digest", 1u32, release(&python, "v2", Prepare::Ok, 0)),
        ("failing", 2, release(&python, "v2", Prepare::Fails, 0)),
        ("hanging", 1, release(&python, "v2", Prepare::Hangs, 0)),
    ] {
        let mut sha256 = publish(
            &server,
            &format!("{name}/"),
            &[("v1", v1.clone()), ("v2", bad)],
        );
        if name == "digest" {
            // The digest published for v2 is not the archive's.
            sha256.insert("v2".into(), sha256_hex(b"some other archive"));
        }
        let port = free_ports(2);
        let mut job = web_job(name, &server, port, instances, &sha256);
        job["recipe_options"]["base_url"] = json!(server.url(&format!("/{name}")));
        let (code, reply) = cluster.put_job(&job);
        assert_eq!(code, 201, "{reply}");
        jobs.push((name, instances as usize, port));
    }
    let mut before = BTreeMap::new();
    for &(name, count, port) in &jobs {
        let instances = wait_deployed(&cluster, name, count, None);
        for offset in 0..count as u16 {
            assert_eq!(answer(port + offset).as_deref(), Some("v1"), "{name}");
        }
        before.insert(name, instances);
    }
    for &(name, _, _) in &jobs {
        update(&cluster, name, "v2");
    }
    let mut restarted = Vec::new();

    for &(name, count, port) in &jobs {
        let (step, error_says) = match name {
            "digest" => (FETCH_STEP, "sha"),
            "failing" => (PREPARE_STEP, "3"),
            _ => (PREPARE_STEP, "timed out"),
        };
        let failed = wait_for(
            DEPLOY_TIMEOUT,
            &format!("the v2 deploy of '{name}' to fail"),
            || {
                let view = cluster.job_view(name);
                view.instances.into_iter().find(|i| {
                    i.deploy
                        .as_ref()
                        .is_some_and(|d| d.state == DeployState::Failed)
                })
            },
        );
        let deploy = failed.deploy.clone().unwrap();
        assert_eq!(deploy.version.as_deref(), Some("v2"), "{name}: {deploy:?}");
        assert_eq!(deploy.step.as_deref(), Some(step), "{name}: {deploy:?}");
        let error = deploy.error.clone().unwrap_or_default();
        assert!(
            error.to_lowercase().contains(error_says),
            "{name}: {deploy:?}"
        );
        let old = before[name].iter().find(|i| i.slot == failed.slot).unwrap();
        let old_release = old.deploy.as_ref().unwrap().release.clone();
        assert_eq!(
            deploy.running_release.as_deref(),
            Some(old_release.as_str()),
            "{name}: v1 keeps running: {deploy:?}"
        );
        // The tasksitter of the release that ran before is not retired,
        // not even restarted with the new generation's environment (which
        // would claim v2 while v1 runs). Checked at the end, after the rest.
        if failed.pid != old.pid || failed.state != InstanceState::Running {
            let pid = failed.pid.unwrap_or(0);
            restarted.push(format!(
                "{name}: v1's workload {:?} was replaced by {:?} ({:?}) with CEREBRO_JOB_VERSION={:?}, CEREBRO_RELEASE={:?}",
                old.pid,
                failed.pid,
                failed.state,
                env_of(pid, "CEREBRO_JOB_VERSION"),
                env_of(pid, "CEREBRO_RELEASE"),
            ));
        }
        for offset in 0..count as u16 {
            wait_for(TIMEOUT, &format!("{name}: v1 to answer"), || {
                (answer(port + offset).as_deref() == Some("v1")).then_some(())
            });
        }
        if name == "failing" {
            assert!(
                deploy
                    .output_tail
                    .as_deref()
                    .unwrap_or("")
                    .contains("libfoo.so missing"),
                "the tail of the step's output: {deploy:?}"
            );
        }

        // The API's deploy log and the CLI's name the step.
        let log = deploy_log(&cluster, name);
        let entry = log
            .iter()
            .find(|e| e.instance as usize == failed.index)
            .expect("the failed instance's log");
        let attempt = entry
            .attempts
            .iter()
            .find(|a| a.version.as_deref() == Some("v2") && a.outcome == AttemptOutcome::Failed)
            .unwrap_or_else(|| panic!("{name}: a failed v2 attempt: {entry:?}"));
        let record = attempt
            .steps
            .iter()
            .find(|s| s.label == step)
            .unwrap_or_else(|| panic!("{name}: {step} recorded: {attempt:?}"));
        let outcome = if name == "hanging" {
            StepOutcome::TimedOut
        } else {
            StepOutcome::Failed
        };
        assert_eq!(record.outcome, outcome, "{name}: {record:?}");
        if name == "failing" {
            assert_eq!(record.exit_code, Some(3), "{record:?}");
            assert!(record.output.contains("libfoo.so missing"), "{record:?}");
        }
        if name == "hanging" {
            assert!(
                record.duration_ms >= 3_500,
                "stopped at its 4 s timeout: {record:?}"
            );
        }
        let instance = failed.index.to_string();
        let text = cli_deploy_log(&cluster, &[name, "--instance", &instance]);
        assert!(text.contains(step), "{name}: {text}");
        assert!(
            text.to_lowercase().contains("fail") || text.to_lowercase().contains("timed out"),
            "{name}: {text}"
        );
    }

    // A timed-out step is stopped, not left running.
    // (Retries run it again, 4 s each, with growing pauses between.)
    wait_for(TIMEOUT, "the hanging step's process to be killed", || {
        hanging_steps().is_empty().then_some(())
    });

    // The rollout of "failing" stopped at its first machine: the other
    // still runs v1, untouched, and the cluster said so.
    let view = cluster.job_view("failing");
    let untouched: Vec<&InstanceView> = view
        .instances
        .iter()
        .filter(|i| {
            i.deploy
                .as_ref()
                .is_some_and(|d| d.state != DeployState::Failed)
        })
        .collect();
    assert_eq!(untouched.len(), 1, "{:?}", view.instances);
    let other = untouched[0];
    let original = before["failing"]
        .iter()
        .find(|i| i.slot == other.slot)
        .unwrap();
    assert_eq!(
        other.pid, original.pid,
        "the machine not reached was not restarted"
    );
    assert_eq!(
        other.deploy.as_ref().unwrap().release,
        original.deploy.as_ref().unwrap().release,
        "the machine not reached was not asked for v2"
    );
    let events: Vec<Value> = cluster
        .get("/api/v1/events?limit=1000")
        .as_array()
        .unwrap()
        .clone();
    let said = |event: &str, subject: &str, words: &[&str]| {
        events.iter().any(|e| {
            let message = e["message"].as_str().unwrap_or("");
            e["event"] == event
                && e["subject"].as_str().unwrap_or("").starts_with(subject)
                && words.iter().all(|w| message.contains(w))
        })
    };
    assert!(
        said("rollout_stopped", "failing", &["stopped"]),
        "an event says the rollout stopped: {events:#?}"
    );
    for (job, step) in [
        ("digest", FETCH_STEP),
        ("failing", PREPARE_STEP),
        ("hanging", PREPARE_STEP),
    ] {
        assert!(
            events.iter().any(|e| {
                let message = e["message"].as_str().unwrap_or("");
                e["event"] == "deploy_failed"
                    && message.starts_with(&format!("{job}#"))
                    && message.contains(step)
            }),
            "a deploy_failed event names {job}'s step {step}: {events:#?}"
        );
    }
    assert!(
        restarted.is_empty(),
        "a failed deploy left the running release untouched: {restarted:#?}"
    );
}

#[test]
fn a_replacement_machine_gets_the_current_release_before_its_instance_starts() {
    let python = python3();
    let server = ArtifactServer::start();
    let sha256 = publish(
        &server,
        "",
        &[
            ("v1", release(&python, "v1", Prepare::Ok, 0)),
            ("v2", release(&python, "v2", Prepare::Ok, 0)),
        ],
    );
    let mut cluster = web_cluster(ClusterOptions::default());
    let port = free_ports(1);
    let (code, reply) = cluster.put_job(&web_job("svc", &server, port, 1, &sha256));
    assert_eq!(code, 201, "{reply}");
    wait_deployed(&cluster, "svc", 1, None);
    update(&cluster, "svc", "v2");
    let before = wait_deployed(&cluster, "svc", 1, Some("v2"));
    let victim = before[0].machine.clone().unwrap();
    assert_eq!(answer(port).as_deref(), Some("v2"));
    assert_eq!(server.requests("/web-v2.tar.gz"), 1);

    cluster.kill_machine(&victim);
    let pid = before[0].pid.unwrap() as i32;
    wait_for(TIMEOUT, "the killed machine's workload to die", || {
        process_gone(pid).then_some(())
    });
    let after = wait_for(
        DEPLOY_TIMEOUT,
        "the instance ready at v2 on a replacement",
        || {
            let view = cluster.job_view("svc");
            let instance = view.instances.first()?.clone();
            (instance.machine.as_deref() != Some(victim.as_str())
                && instance.state == InstanceState::Running
                && instance.deploy.as_ref().is_some_and(|d| {
                    d.state == DeployState::Ready && d.version.as_deref() == Some("v2")
                }))
            .then_some(instance)
        },
    );
    assert_eq!(answer(port).as_deref(), Some("v2"));
    assert_eq!(
        server.requests("/web-v2.tar.gz"),
        2,
        "the new machine fetched v2 itself"
    );
    assert_eq!(server.requests("/web-v1.tar.gz"), 1, "and never v1");
    assert_eq!(after.restarts, 0, "its workload started once, on v2");
    let pid = after.pid.unwrap();
    assert_eq!(env_of(pid, "CEREBRO_JOB_VERSION").as_deref(), Some("v2"));
    assert!(
        env_of(pid, "CEREBRO_RELEASE").is_some_and(|r| r.starts_with("v2-")),
        "{:?}",
        env_of(pid, "CEREBRO_RELEASE")
    );
    let log = deploy_log(&cluster, "svc");
    let attempts = &log[0].attempts;
    assert_eq!(
        log[0].machine.as_deref(),
        after.machine.as_deref(),
        "{log:?}"
    );
    assert_eq!(
        attempts.len(),
        1,
        "one attempt on the new machine: {attempts:?}"
    );
    assert_eq!(attempts[0].version.as_deref(), Some("v2"));
    assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded);
    let installed = attempts[0].finished_ms.expect("finished");
    let started = after.started_at_ms.expect("started");
    // The install steps end before the workload starts; the checks, which
    // run after it starts, are recorded in the same attempt.
    let install_end = attempts[0]
        .steps
        .iter()
        .filter(|s| !s.label.contains("(check"))
        .map(|s| s.started_ms + s.duration_ms)
        .max()
        .unwrap_or(installed);
    assert!(
        install_end <= started,
        "installed at {install_end}, the instance started at {started}"
    );

    // A clustersitter killed and started again sends the same deployment:
    // nothing is installed again, fetched again or restarted.
    cluster.kill9();
    cluster.boot();
    let pid = after.pid.unwrap();
    wait_for(
        TIMEOUT,
        "the restarted clustersitter to see the instance ready",
        || {
            let instance = cluster.job_view("svc").instances.first()?.clone();
            (instance.pid == Some(pid)
                && instance
                    .deploy
                    .as_ref()
                    .is_some_and(|d| d.state == DeployState::Ready))
            .then_some(())
        },
    );
    // Watched over several sync rounds of the new clustersitter.
    let changed = poll_for(Duration::from_secs(5), || {
        let instance = cluster.job_view("svc").instances.first()?.clone();
        let attempts = deploy_log(&cluster, "svc").first()?.attempts.len();
        (instance.pid != Some(pid) || attempts != 1).then_some((instance, attempts))
    });
    assert!(
        changed.is_none(),
        "the workload was restarted or deployed again: {changed:?}"
    );
    assert_eq!(
        server.requests("/web-v2.tar.gz"),
        2,
        "nothing fetched again"
    );
}

#[test]
fn a_tar_slip_archive_is_refused_and_nothing_is_switched() {
    let server = ArtifactServer::start();
    let outside = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::default());
    // With the shipped `release-tarball` recipe.
    for (name, archive, entry) in [
        ("slip", tar_slip_gz(outside.path()), "../escape"),
        ("symlink", symlink_slip_gz(outside.path()), "link"),
    ] {
        let path = format!("/{name}.tar.gz");
        let digest = server.put(&path, archive);
        let (code, reply) = cluster.put_job(&json!({
            "persistent": true,
            "deployment_recipe": "release-tarball",
            "recipe_options": {"url": server.url(&path), "sha256": digest},
            "deployment_layout": {"zone-a": {"cpu": 1}},
            "task_configuration": {"name": name, "command": "sleep 296", "cpu": 0.5, "mem": 20, "ensure_alive": true},
        }));
        assert_eq!(code, 201, "{reply}");
        let failed = wait_for(
            DEPLOY_TIMEOUT,
            &format!("the '{name}' deploy to fail"),
            || {
                let view = cluster.job_view(name);
                view.instances.into_iter().find(|i| {
                    i.deploy
                        .as_ref()
                        .is_some_and(|d| d.state == DeployState::Failed)
                })
            },
        );
        let deploy = failed.deploy.clone().unwrap();
        assert_eq!(
            deploy.step.as_deref(),
            Some("step 1 (fetch \"release archive\")"),
            "{deploy:?}"
        );
        let error = deploy.error.clone().unwrap_or_default();
        assert!(
            error.contains(entry),
            "{name}: the error names the entry '{entry}': {deploy:?}"
        );
        assert_eq!(
            deploy.running_release, None,
            "{name}: nothing switched: {deploy:?}"
        );
        assert_ne!(
            failed.state,
            InstanceState::Running,
            "{name}: no release, no start"
        );

        // The machine's own deploy log says the same.
        let machine = cluster
            .machine_views()
            .into_iter()
            .find(|m| Some(&m.id) == failed.machine.as_ref())
            .expect("its machine");
        let address = machine.address.expect("the machine's address");
        let base = if address.starts_with("http") {
            address
        } else {
            format!("http://{address}")
        };
        let attempts: Vec<cerebro_types::deploy::DeployAttempt> = reqwest::blocking::get(format!(
            "{base}/api/v1/tasks/{}/deploylog",
            encode(&failed.task_name)
        ))
        .unwrap()
        .json()
        .unwrap();
        let attempt = attempts.first().expect("an attempt");
        assert_eq!(attempt.outcome, AttemptOutcome::Failed, "{attempts:?}");
        assert!(
            attempt
                .steps
                .iter()
                .any(
                    |s| s.outcome == StepOutcome::Failed && s.detail.contains(entry)
                        || s.output.contains(entry)
                ),
            "{attempts:?}"
        );
    }
    assert!(
        find_named(cluster.path(), "escape").is_empty(),
        "nothing was written above the release"
    );
    let switched: Vec<PathBuf> = find_named(cluster.path(), "current")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/deploy/"))
        .collect();
    assert!(
        switched.is_empty(),
        "no release was switched to: {switched:?}"
    );
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing was written through the link"
    );
    assert!(
        processes(|argv| argv.get(1).is_some_and(|a| a == "296")).is_empty(),
        "no task started"
    );
}

#[test]
fn the_seed_example_loads_and_deploys_with_its_recipe_on_a_cluster_serving_its_zones() {
    let opt_existed = Path::new("/opt/startup").exists();
    let cluster = Cluster::start(ClusterOptions {
        zones: vec!["aws-us-west-2a", "aws-us-east-1b"],
        machine_cpu: 4.0,
        machine_mem: 2048.0,
        recipe_dirs: example_recipe_dirs(),
        ..Default::default()
    });
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/jobs/seed-job-example.conf"
    );
    let output = cluster.cli(&["updatejobcfg", "--dry-run", seed]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(
        plan.contains("Portal Server") && plan.contains("would be provisioned"),
        "{plan}"
    );
    assert!(cluster.jobs().is_empty(), "a dry run applies nothing");
    let output = cluster.cli(&["updatejobcfg", seed]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job = cluster.job("Portal Server");
    assert_eq!(
        job["desired_instances"], 11,
        "1 in us-west-2a and 10 in us-east-1b"
    );
    assert_eq!(
        job["spec"]["recipe_options"]["release_dir"],
        "/opt/startup/releases/"
    );
    assert_eq!(job["spec"]["deployment_recipe"], "mystartup.recipes.deploy");
    assert_eq!(job["spec"]["dns_basename"], "redis.startup.com");

    // Every instance placed (one per machine in us-east-1b) and deployed;
    // `auto_start: false` keeps them stopped until `startjob`.
    let instances = wait_for(DEPLOY_TIMEOUT, "all 11 instances deployed", || {
        let view = cluster.job_view("Portal Server");
        (view.instances.len() == 11
            && view.instances.iter().all(|i| {
                i.state == InstanceState::Stopped
                    && i.deploy
                        .as_ref()
                        .is_some_and(|d| d.state == DeployState::Ready)
            }))
        .then_some(view.instances)
    });
    let east: std::collections::BTreeSet<&str> = instances
        .iter()
        .filter(|i| i.zone == "aws-us-east-1b")
        .map(|i| i.machine.as_deref().unwrap())
        .collect();
    assert_eq!(east.len(), 10, "one instance per machine: {instances:?}");
    let settings = find_named(cluster.path(), "release.env");
    assert_eq!(settings.len(), 11, "one release per instance: {settings:?}");
    let text = std::fs::read_to_string(&settings[0]).unwrap();
    assert!(
        text.contains("STARTUP_RELEASE_DIR=/opt/startup/releases/"),
        "{text}"
    );
    assert!(text.contains("CEREBRO_JOB=Portal Server"), "{text}");
    assert_eq!(
        Path::new("/opt/startup").exists(),
        opt_existed,
        "the recipe writes nothing to /opt"
    );
    let log = deploy_log(&cluster, "Portal Server");
    assert_eq!(log.len(), 11);
    let prepare = log[0].attempts[0]
        .steps
        .iter()
        .find(|s| s.label == "step 2 (run \"prepare\")")
        .expect("the prepare step");
    assert!(
        prepare
            .output
            .contains("the app was told /opt/startup/releases/"),
        "{prepare:?}"
    );
}

/// Kills what a test started under its temp dir when it ends.
struct KillUnder(PathBuf);

impl Drop for KillUnder {
    fn drop(&mut self) {
        kill_tree_under(&self.0);
    }
}

#[test]
fn the_example_cluster_configs_find_the_example_recipe() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/clusters");
    for (config, job) in [("seed.toml", "Portal Server"), ("local.toml", "ticker")] {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = KillUnder(dir.path().to_path_buf());
        let mut daemon = Daemon::default();
        let mut command = std::process::Command::new(bin("clustersitter"));
        command
            .arg("--config")
            .arg(examples.join(config))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--port", "0", "--on-exit", "stop"])
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env_remove("CEREBRO_TOKEN");
        // A job file whose recipe is not found stops the start (exit 2).
        let address = daemon.start(&mut command, &dir.path().join("address"), config);
        let view: cerebro_types::cluster::JobView =
            reqwest::blocking::get(format!("http://{address}/api/v1/jobs/{}", encode(job)))
                .unwrap()
                .json()
                .unwrap_or_else(|e| panic!("{config}: job '{job}': {e}"));
        if job == "Portal Server" {
            assert_eq!(
                view.spec.deployment_recipe.as_deref(),
                Some("mystartup.recipes.deploy")
            );
        }
        daemon.kill9();
    }
}
