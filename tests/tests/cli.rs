//! Every `cerebro` command against a live local cluster.

use cerebro_tests::*;
use serde_json::Value;

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_job(cluster: &Cluster, file: &str, text: &str) -> String {
    let path = cluster.path().join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn every_command_works_against_a_live_cluster() {
    let cluster = Cluster::start(ClusterOptions {
        token: Some("cli-secret"),
        ..Default::default()
    });
    let file = write_job(
        &cluster,
        "echo.conf",
        r#"# an echo job, in the lenient format
{
    "persistent": true,
    "deployment_layout": {"zone-a": {"cpu": 2,}, "zone-b": {"cpu": 1}},
    "task_configuration": {
        "name": "echo-server",
        "command": "echo started $CEREBRO_INSTANCE; echo oops >&2; sleep 601",
        "cpu": .25, "mem": 20, "ensure_alive": true,
    },
},
"#,
    );
    let plan = stdout(&cluster.cli(&["updatejobcfg", "--dry-run", &file]));
    assert!(
        plan.contains("echo-server") && plan.contains("dry run"),
        "{plan}"
    );

    let applied = stdout(&cluster.cli(&["updatejobcfg", &file]));
    assert!(
        applied.contains("echo-server") && applied.contains("created"),
        "{applied}"
    );
    let again = stdout(&cluster.cli(&["updatejobcfg", &file]));
    assert!(again.contains("unchanged"), "{again}");
    cluster.wait_job_running("echo-server", 3);

    let jobs = stdout(&cluster.cli(&["listjobs"]));
    let header = jobs.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["JOB", "HEALTH", "RUNNING", "LAYOUT", "VERSION", "GEN", "UPDATE", "RUNS", "PORTS"],
        "{jobs}"
    );
    let row: Vec<&str> = jobs.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], *row.last().unwrap()),
        ("echo-server", "healthy", "3/3", "-"),
        "{jobs}"
    );
    let json: Value = serde_json::from_str(&stdout(&cluster.cli(&["listjobs", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "echo-server");

    let machines = stdout(&cluster.cli(&["listmachines"]));
    assert!(
        machines.contains("zone-a") && machines.contains("zone-b") && machines.contains("ready"),
        "{machines}"
    );
    assert!(
        machines.contains("RESERVED CORES  RESERVED MB  USED CORES  USED MB"),
        "{machines}"
    );
    assert!(!machines.contains("-0"), "{machines}");

    let status = stdout(&cluster.cli(&["status"]));
    for line in [
        "3/3 instances running",
        "instances: 3 running · 0 crash-looping · 0 pending of 3 instances",
        "jobs: 1 healthy",
        "RESERVED CORES",
    ] {
        assert!(status.contains(line), "{line} in {status}");
    }
    let job_status = stdout(&cluster.cli(&["status", "echo-server"]));
    assert!(
        job_status.starts_with("echo-server: healthy, 3/3 running (3 running · "),
        "{job_status}"
    );
    assert!(
        job_status.contains("#  ZONE    MACHINE   HEALTH   PID")
            && job_status.contains("RESTARTS  IN 5 MIN  VIOLATIONS")
            && job_status.contains(" WHY"),
        "{job_status}"
    );
    assert_eq!(
        job_status
            .lines()
            .filter(|l| l.contains("  running  "))
            .count(),
        3,
        "{job_status}"
    );

    // Instance 1 is the one whose CEREBRO_INSTANCE is 1.
    wait_for(TIMEOUT, "instance 1's own output", || {
        let out = stdout(&cluster.cli(&["logs", "echo-server", "--instance", "1", "--tail", "5"]));
        out.contains("started 1").then_some(())
    });
    let errors = stdout(&cluster.cli(&["logs", "echo-server", "--stderr"]));
    assert!(errors.contains("oops"), "{errors}");

    // `restart --instance 1` restarts instance 1 (the number `status` and
    // `logs` use) and no other.
    let pids = || -> Vec<Value> {
        cluster.job("echo-server")["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pid"].clone())
            .collect()
    };
    let before = pids();
    assert!(before.iter().all(Value::is_u64), "{before:?}");
    let restarted = stdout(&cluster.cli(&["restart", "echo-server", "--instance", "1"]));
    assert!(
        restarted.contains("echo-server: instance 1 restarting"),
        "{restarted}"
    );
    wait_for(TIMEOUT, "instance 1 to run with a new pid", || {
        let now = pids();
        (now[1].is_u64() && now[1] != before[1]).then_some(now)
    });
    let now = pids();
    assert_eq!(
        (&now[0], &now[2]),
        (&before[0], &before[2]),
        "the others keep running"
    );
    let events = stdout(&cluster.cli(&["events", "--limit", "50"]));
    assert!(
        events.contains("echo-server #1 (") && events.contains(") restarted by request"),
        "{events}"
    );
    // Which instance is never guessed: neither flag is an error naming both.
    let output = cluster.cli(&["restart", "echo-server"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("--instance N") && error.contains("--all"),
        "{error}"
    );
    assert_eq!(pids()[0], before[0], "nothing restarted");
    // A number past the last instance is refused with the range.
    let output = cluster.cli(&["restart", "echo-server", "-i", "7"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("0 to 2"), "{error}");
    // `--all` restarts every instance.
    let before = pids();
    let all = stdout(&cluster.cli(&["restart", "echo-server", "--all"]));
    assert_eq!(
        all.lines().filter(|l| l.ends_with("restarting")).count(),
        3,
        "{all}"
    );
    wait_for(TIMEOUT, "every instance to run with a new pid", || {
        let now = pids();
        now.iter()
            .zip(&before)
            .all(|(now, before)| now.is_u64() && now != before)
            .then_some(())
    });
    cluster.wait_job_running("echo-server", 3);

    let update = stdout(&cluster.cli(&[
        "updatejob",
        "echo-server",
        "--version",
        "v7",
        "--min-healthy",
        "0.2",
    ]));
    assert!(update.contains("generation 2"), "{update}");
    wait_for(TIMEOUT, "the update to finish", || {
        cluster.job("echo-server")["rollout"]
            .is_null()
            .then_some(())
    });
    assert_eq!(cluster.job("echo-server")["version"], "v7");

    let changed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"mem\": 20", "\"mem\": 24");
    std::fs::write(&file, changed).unwrap();
    let reconfigured = stdout(&cluster.cli(&["updatejobcfg", &file]));
    assert!(
        reconfigured.contains("updated, rolling to generation 3"),
        "{reconfigured}"
    );

    let stopped = stdout(&cluster.cli(&["stopjob", "echo-server"]));
    assert!(stopped.contains("stopping"), "{stopped}");
    wait_for(TIMEOUT, "every instance to stop", || {
        workloads("601").is_empty().then_some(())
    });
    let listed = stdout(&cluster.cli(&["listjobs"]));
    assert!(
        listed.contains("RUNS") && listed.contains("stopped"),
        "{listed}"
    );
    let started = stdout(&cluster.cli(&["startjob", "echo-server"]));
    assert!(started.contains("starting"), "{started}");
    wait_for(TIMEOUT, "every instance to run again", || {
        (workloads("601").len() == 3).then_some(())
    });

    let events = stdout(&cluster.cli(&["events", "--limit", "200"]));
    assert!(events.contains("rolling update"), "{events}");

    let idle = stdout(&cluster.cli(&["updateidlelimit", "0", "--zone", "zone-b"]));
    assert!(idle.contains("zone-b"), "{idle}");

    let removed = stdout(&cluster.cli(&["removejob", "echo-server"]));
    assert!(removed.contains("removed"), "{removed}");
    wait_for(TIMEOUT, "the instances to stop", || {
        workloads("601").is_empty().then_some(())
    });
}

/// What `cerebro` tells of trouble: a crash-looping job is `failing`
/// with no instance running in `listjobs`, its instance `crash-looping`
/// with the exit reason in `status JOB`, and counted as crash-looping
/// (not running) by `status`; an instance that cannot be placed is named
/// by its job-wide number; allocated ports show as `address:port`.
#[test]
fn trouble_and_ports_are_told_by_listjobs_and_status() {
    // Two machines at most: one per zone, for the first two jobs.
    let cluster = Cluster::start(ClusterOptions {
        provider: Some(format!(
            "[provider]\nkind = \"local\"\nzones = [\"zone-a\", \"zone-b\"]\nmachine_cpu = 2.0\nmachine_mem = 512.0\nmax_machines = 2\nmachinesitter_bin = \"{}\"\n",
            bin("machinesitter").display()
        )),
        ..Default::default()
    });
    let mut crashy = job(
        "crashy",
        "721",
        0.25,
        serde_json::json!({"zone-a": {"cpu": 1}}),
    );
    crashy["task_configuration"]["command"] =
        serde_json::json!("sh -c 'echo up; sleep 0.3; exit 3'");
    crashy["task_configuration"]["restart"] = serde_json::json!(true);
    let (code, reply) = cluster.put_job(&crashy);
    assert_eq!(code, 201, "{reply}");
    let mut ported = job(
        "ported",
        "722",
        0.25,
        serde_json::json!({"zone-b": {"cpu": 1}}),
    );
    ported["task_configuration"]["ports"] = serde_json::json!(["http"]);
    let (code, reply) = cluster.put_job(&ported);
    assert_eq!(code, 201, "{reply}");
    cluster.wait_job_running("ported", 1);
    wait_for(TIMEOUT, "crashy to be placed", || {
        cluster
            .job_view("crashy")
            .instances
            .first()?
            .machine
            .clone()
    });
    // zone-b's machine holds one more of these, not two, and no machine
    // may be added: one stays unplaced. Its number counts zone-a's
    // instance first, so it is never its slot in zone-b.
    let big = job(
        "big",
        "723",
        1.5,
        serde_json::json!({"zone-a": {"cpu": 1}, "zone-b": {"cpu": 2}}),
    );
    let (code, reply) = cluster.put_job(&big);
    assert_eq!(code, 201, "{reply}");
    let waiting = wait_for(TIMEOUT, "one instance of big to wait", || {
        let view = cluster.job_view("big");
        let placed = view
            .instances
            .iter()
            .filter(|i| i.machine.is_some())
            .count();
        let waiting: Vec<_> = view
            .instances
            .iter()
            .filter(|i| i.machine.is_none())
            .collect();
        (placed == 2 && waiting.len() == 1).then(|| (waiting[0].index, waiting[0].slot))
    });
    assert_eq!(waiting.0, waiting.1 as usize + 1, "zone-a's instance is #0");

    let port = wait_for(TIMEOUT, "crashy to crash-loop and ported to run", || {
        let crashy = cluster.job_view("crashy");
        let ported = cluster.job_view("ported");
        let looping =
            crashy.instances.first()?.health == cerebro_types::health::InstanceHealth::CrashLooping;
        let port = ported.instances.first()?.ports.get("http").copied();
        (looping && ported.running_instances == 1)
            .then_some(port)
            .flatten()
    });

    let jobs = stdout(&cluster.cli(&["listjobs"]));
    let row = |name: &str| {
        jobs.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {jobs}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("crashy")[1..3], ["failing", "0/1"], "{jobs}");
    assert_eq!(row("ported")[1..3], ["healthy", "1/1"], "{jobs}");
    assert!(
        jobs.lines()
            .any(|l| l.starts_with("ported ") && l.ends_with(&format!(" #0 127.0.0.1:{port}"))),
        "{jobs}"
    );
    assert_eq!(*row("crashy").last().unwrap(), "-", "{jobs}");

    let status = stdout(&cluster.cli(&["status", "crashy"]));
    assert!(
        status.starts_with("crashy: failing, 0/1 running"),
        "{status}"
    );
    let instance = status
        .lines()
        .find(|l| l.starts_with("0 "))
        .unwrap_or_else(|| panic!("instance 0 in {status}"));
    assert!(
        instance.contains(" crash-looping ") && instance.ends_with(" exit code 3"),
        "{status}"
    );
    let status = stdout(&cluster.cli(&["status", "ported"]));
    assert!(
        status.contains(&format!(" http=127.0.0.1:{port} ")),
        "{status}"
    );

    let status = stdout(&cluster.cli(&["status"]));
    assert!(
        status.contains(" 1 crash-looping ")
            && status.contains("jobs: 1 healthy · 1 degraded · 1 failing"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("unplaced: big #{} (zone-b): ", waiting.0))),
        "{status}"
    );
}

#[test]
fn a_broken_job_file_reports_file_line_and_column_and_sends_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let file = write_job(
        &cluster,
        "broken.conf",
        "{\n    \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n    \"task_configuration\": {\n        \"name\": \"x\",\n        \"command\": \"true\",\n        \"mem\": \"lots\",\n    },\n}\n",
    );
    let output = cluster.cli(&["updatejobcfg", &file]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("{file}:6:16")),
        "file:line:column of the bad value: {error}"
    );
    assert!(error.contains("task_configuration.mem"), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "one clear line: {error}");
    assert!(cluster.jobs().is_empty());
}

/// Mistakes in a job file are told in plain words at their place: a
/// misspelt field suggests the right one, a wrong type says what is wanted.
#[test]
fn job_file_mistakes_are_told_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.conf");
    std::fs::write(
        &file,
        "{\n    \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n    \"task_configuration\": {\n        \"name\": \"x\",\n        \"comand\": \"true\",\n    },\n}\n",
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        // Refused before any request: no cluster needed.
        let output = std::process::Command::new(bin("cerebro"))
            .args(["--cluster", "http://127.0.0.1:9", "updatejobcfg"])
            .arg(file)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = run(&file);
    assert!(
        error.contains(&format!(
            "{}:5:9: task_configuration.comand: unknown field `comand`, did you mean `command`?",
            file.display()
        )),
        "{error}"
    );
    std::fs::write(
        &file,
        "{\n    \"deployment_layout\": {\"zone-a\": {\"cpu\": 1.5}},\n    \"task_configuration\": {\"name\": \"x\", \"command\": \"true\"},\n}\n",
    )
    .unwrap();
    let error = run(&file);
    assert!(
        error.contains(&format!(
            "{}:2:45: deployment_layout.zone-a.cpu: expected a whole number (0 or more), found 1.5",
            file.display()
        )),
        "{error}"
    );
    assert!(!error.contains("u32"), "{error}");
}

/// A job the cluster refuses for what only it can judge (here a
/// `dns_basename` another job already has) is reported at the field's
/// place in the file, as a local error is.
#[test]
fn a_job_the_cluster_refuses_is_reported_at_the_field_in_its_file() {
    let cluster = Cluster::start(ClusterOptions::default());
    let job = |name: &str| {
        format!(
            "{{\n    \"deployment_layout\": {{\"zone-a\": {{\"cpu\": 1}}}},\n    \"dns_basename\": \"web.cerebro.test\",\n    \"task_configuration\": {{\"name\": \"{name}\", \"command\": \"sleep 600\", \"cpu\": 0.1, \"mem\": 16}},\n}}\n"
        )
    };
    let first = write_job(&cluster, "first.conf", &job("first"));
    stdout(&cluster.cli(&["updatejobcfg", &first]));
    let second = write_job(&cluster, "second.conf", &job("second"));
    let output = cluster.cli(&["updatejobcfg", &second]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("{second}:3:21: job 'second': dns_basename: ")),
        "file:line:column of the refused field: {error}"
    );
    assert!(
        error.contains("would share names with job 'first'"),
        "{error}"
    );
    assert_eq!(cluster.jobs().len(), 1);
}

#[test]
fn an_unreachable_cluster_is_named() {
    let cluster = Cluster::start(ClusterOptions::default());
    let output = std::process::Command::new(bin("cerebro"))
        .args(["--cluster", "http://127.0.0.1:9", "listjobs"])
        .env("XDG_CONFIG_HOME", cluster.path().join("config"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("cannot reach the cluster at http://127.0.0.1:9"),
        "{error}"
    );
}

#[test]
fn mutations_need_the_token() {
    let cluster = Cluster::start(ClusterOptions {
        token: Some("right"),
        ..Default::default()
    });
    let output = std::process::Command::new(bin("cerebro"))
        .args(["--cluster", &cluster.base_url, "updateidlelimit", "3"])
        .env("XDG_CONFIG_HOME", cluster.path().join("config"))
        .env("CEREBRO_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A URL a command worked with is remembered; one that did not work is not.
    assert!(cluster.cli(&["listjobs"]).status.success());
    let output = std::process::Command::new(bin("cerebro"))
        .args(["--cluster", "http://127.0.0.1:1", "listjobs"])
        .env("XDG_CONFIG_HOME", cluster.path().join("config"))
        .env_remove("CEREBRO_CLUSTER")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let output = std::process::Command::new(bin("cerebro"))
        .args(["listjobs"])
        .env("XDG_CONFIG_HOME", cluster.path().join("config"))
        .env_remove("CEREBRO_CLUSTER")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Only a URL the cluster answered at is remembered (a refusal is an
/// answer), and a saved URL that does not answer says it came from the
/// saved config and how to use another.
#[test]
fn only_an_answering_url_is_remembered_and_a_saved_one_says_so() {
    let cluster = Cluster::start(ClusterOptions::default());
    let config = cluster.path().join("elsewhere-config");
    let saved = config.join("cerebro").join("cli.toml");
    let cerebro = |args: &[&str]| {
        std::process::Command::new(bin("cerebro"))
            .args(args)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("CEREBRO_CLUSTER")
            .output()
            .unwrap()
    };
    // Nothing answers at port 9: nothing saved.
    assert!(!cerebro(&["--cluster", "http://127.0.0.1:9", "listjobs"])
        .status
        .success());
    assert!(!saved.exists(), "a URL that never answered was saved");
    // Another web server answers, but not as a cluster: not saved, and
    // said so in one line rather than with its whole page.
    let other = cerebro_tests::artifacts::ArtifactServer::start();
    let output = cerebro(&["--cluster", &other.base_url(), "listjobs"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("is not a Cerebro cluster's API: it answered 404"),
        "{error}"
    );
    assert!(!saved.exists(), "another server's URL was saved");
    // The cluster's URL with a path of its own reaches the cluster, which
    // has nothing there: not the API's URL either.
    let with_path = format!("{}/api", cluster.base_url);
    let output = cerebro(&["--cluster", &with_path, "listjobs"]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("{with_path} is not a Cerebro cluster's API")),
        "{error}"
    );
    assert!(!saved.exists(), "a URL with a wrong path was saved");
    // The cluster answers 404 for an unknown job: a failed command, but the right URL.
    let output = cerebro(&["--cluster", &cluster.base_url, "status", "no-such-job"]);
    assert!(!output.status.success());
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains(&cluster.base_url), "{text}");

    std::fs::write(&saved, "cluster = \"http://127.0.0.1:9\"\n").unwrap();
    let output = cerebro(&["listjobs"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("cannot reach the cluster at http://127.0.0.1:9"),
        "{error}"
    );
    // The path as given, or `~/...` should the test's dir be under $HOME.
    assert!(
        error.contains("(the URL saved in ")
            && error.contains("cerebro/cli.toml; pass --cluster to use another)"),
        "{error}"
    );
    // Typed with the command, the URL needs no such note.
    let output = cerebro(&["--cluster", "http://127.0.0.1:9", "listjobs"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("saved in"));
}

/// The README walkthrough: a cluster started without a token generates
/// one (0600 in its state dir), refuses an unauthenticated change with 401,
/// and the CLI on the same host finds the token by itself.
#[test]
fn a_cluster_without_a_token_generates_one_the_cli_finds() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start(ClusterOptions::default());
    let generated = cluster.generated_token_file();
    let mode = std::fs::metadata(&generated)
        .unwrap_or_else(|e| panic!("{}: {e}", generated.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&generated).unwrap();
    assert!(token.trim().len() >= 32, "a long random token: {token}");

    let refused = reqwest::blocking::Client::new()
        .put(format!("{}/api/v1/idle-limit", cluster.base_url))
        .body(r#"{"limit": 3}"#)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let run = |args: &[&str]| {
        std::process::Command::new(bin("cerebro"))
            .args(["--cluster", &cluster.base_url])
            .args(args)
            .env("XDG_CONFIG_HOME", cluster.config_home())
            .env_remove("CEREBRO_TOKEN")
            .env_remove("CEREBRO_CLUSTER")
            .output()
            .unwrap()
    };
    stdout(&run(&["updateidlelimit", "2"]));
    stdout(&run(&["listjobs"]));
    let status = cluster.get("/api/v1/status");
    assert_eq!(status["zones"][0]["idle_limit"], 2, "{status}");
    // Another user's config home has no token: refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(bin("cerebro"))
        .args(["--cluster", &cluster.base_url, "updateidlelimit", "1"])
        .env("XDG_CONFIG_HOME", elsewhere.path())
        .env_remove("CEREBRO_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
}

/// `insecure = true` runs open, and says so on every page.
#[test]
fn an_insecure_cluster_is_open_and_says_so() {
    let cluster = Cluster::start(ClusterOptions {
        insecure: true,
        ..Default::default()
    });
    assert!(cluster.token.is_none());
    assert!(!cluster.generated_token_file().exists());
    let (code, reply) = cluster.request("PUT", "/api/v1/idle-limit", Some(r#"{"limit": 2}"#));
    assert_eq!(code, 200, "{reply}");
    stdout(&cluster.cli(&["updateidlelimit", "1"]));
    for page in ["/overview", "/login"] {
        let html = reqwest::blocking::get(format!("{}{page}", cluster.base_url))
            .unwrap()
            .text()
            .unwrap();
        assert!(html.contains("--insecure"), "{page}: {html}");
    }
}
