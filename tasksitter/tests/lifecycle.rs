//! Restart policy, exit-status mirroring, users, logs, signals and flag errors,
//! all on the real binary.

mod common;
use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run_to_end(args: &[&str]) -> (i32, Sitter) {
    let mut sitter = Sitter::start(args);
    let code = sitter.wait_exit(TIMEOUT).code().expect("exited normally");
    (code, sitter)
}

#[test]
fn exit_status_mirrors_the_workload() {
    assert_eq!(run_to_end(&["--command", "exit 3"]).0, 3);
    assert_eq!(run_to_end(&["--command", "exit 0"]).0, 0);
    assert_eq!(
        run_to_end(&["--command", "kill -9 $$"]).0,
        137,
        "SIGKILL becomes 128 + 9"
    );
    assert_eq!(run_to_end(&["--command", "kill -TERM $$"]).0, 143);
}

#[test]
fn max_restarts_two_gives_exactly_three_runs() {
    let scratch = scratch_dir();
    let runs = scratch.path().join("runs");
    let command = format!("echo run >> {}; exit 4", runs.display());
    let (code, _) = run_to_end(&[
        "--command",
        &command,
        "--ensure-alive",
        "--max-restarts",
        "2",
        "--backoff-initial",
        "10ms",
    ]);
    assert_eq!(count_lines(&runs, "run"), 3);
    assert_eq!(code, 4, "gives up with the workload's last status");
}

#[test]
fn ensure_alive_restarts_after_any_exit_and_restart_only_after_violations() {
    let scratch = scratch_dir();
    let runs = scratch.path().join("runs");
    let command = format!("echo run >> {}", runs.display());
    run_to_end(&[
        "--command",
        &command,
        "--ensure-alive",
        "--max-restarts",
        "4",
        "--backoff-initial",
        "10ms",
    ]);
    assert_eq!(
        count_lines(&runs, "run"),
        5,
        "a clean exit is restarted under --ensure-alive"
    );

    let only_restart = scratch.path().join("restart-only");
    let command = format!("echo run >> {}; exit 1", only_restart.display());
    let (code, _) = run_to_end(&["--command", &command, "--restart", "--max-restarts", "4"]);
    assert_eq!(
        (count_lines(&only_restart, "run"), code),
        (1, 1),
        "--restart alone ignores plain exits"
    );

    let allowed = scratch.path().join("allow-exit");
    let command = format!("echo run >> {}", allowed.display());
    run_to_end(&[
        "--command",
        &command,
        "--ensure-alive",
        "--allow-exit",
        "--max-restarts",
        "4",
    ]);
    assert_eq!(
        count_lines(&allowed, "run"),
        1,
        "--allow-exit makes a clean exit final"
    );
}

#[test]
fn ensure_alive_keeps_restarting_and_reports_backoff() {
    let sitter = Sitter::start_http(&[
        "--name",
        "flappy",
        "--command",
        "exit 1",
        "--ensure-alive",
        "--backoff-initial",
        "50ms",
        "--backoff-max",
        "200ms",
    ]);
    let status = sitter.wait_status("several restarts", |s| s["restarts"].as_u64().unwrap() >= 4);
    let backoffs: Vec<u64> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "backoff")
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    assert!(
        backoffs.starts_with(&[50, 100, 200]),
        "exponential with a cap: {backoffs:?}"
    );
}

#[test]
fn runs_as_nobody_with_home_and_user() {
    let scratch = scratch_dir();
    let out = scratch.path().join("who");
    let command = format!("echo \"$(id -u) $(id -g) $USER $HOME\" > {}", out.display());
    let (code, _) = run_to_end(&["--command", &command, "--uid", "nobody"]);
    assert_eq!(code, 0);
    let who = std::fs::read_to_string(&out).unwrap();
    assert_eq!(who.trim(), "65534 65534 nobody /nonexistent");
}

#[test]
fn logs_are_captured_appended_with_markers_and_rotated() {
    let command = "for i in $(seq 1 400); do echo stdout-line-$i; echo stderr-line-$i >&2; done";
    let (_, sitter) = run_to_end(&[
        "--name",
        "chatty",
        "--command",
        command,
        "--log-max-bytes",
        "2048",
        "--log-backups",
        "2",
        "--ensure-alive",
        "--max-restarts",
        "1",
    ]);
    let live = sitter.log_path("chatty", "stdout");
    let text = std::fs::read_to_string(&live).unwrap();
    assert!(text.trim_end().ends_with("stdout-line-400"), "{text}");
    assert!(std::fs::metadata(&live).unwrap().len() <= 2048);
    for generation in [1, 2] {
        let backup = format!("{}.{generation}", live.display());
        assert!(
            std::fs::metadata(&backup).unwrap().len() == 2048,
            "{backup} is a full rotated file"
        );
    }
    assert!(
        !std::path::Path::new(&format!("{}.3", live.display())).exists(),
        "only two backups are kept"
    );
    let stderr = std::fs::read_to_string(sitter.log_path("chatty", "stderr")).unwrap();
    assert!(stderr.trim_end().ends_with("stderr-line-400"));

    let (_, sitter) = run_to_end(&[
        "--name",
        "twice",
        "--command",
        "echo hello",
        "--ensure-alive",
        "--max-restarts",
        "1",
    ]);
    let text = std::fs::read_to_string(sitter.log_path("twice", "stdout")).unwrap();
    assert_eq!(
        count_lines(&sitter.log_path("twice", "stdout"), "hello"),
        2,
        "{text}"
    );
    assert!(
        text.contains("--- cerebro tasksitter: start #1 at ") && text.contains("start #2 at "),
        "{text}"
    );
}

#[test]
fn logs_are_readable_while_the_task_runs() {
    let sitter = Sitter::start(&["--name", "live", "--command", "echo ready; sleep 60"]);
    wait_for_log_line(&sitter.log_path("live", "stdout"), "ready");
}

#[test]
fn sigterm_stops_gracefully_and_a_second_signal_escalates() {
    let scratch = scratch_dir();
    let marker = scratch.path().join("graceful");
    let command = format!(
        "trap 'echo graceful > {}; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        marker.display()
    );
    let mut sitter = Sitter::start(&["--name", "graceful", "--command", &command]);
    wait_for_log_line(&sitter.log_path("graceful", "stdout"), "ready");
    sitter.signal(libc::SIGTERM);
    assert_eq!(
        sitter.wait_exit(TIMEOUT).code(),
        Some(0),
        "the workload handled TERM and exited 0"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "graceful");

    let mut stubborn = Sitter::start_http(&[
        "--name",
        "stubborn",
        "--command",
        "trap '' TERM INT; echo ready; sleep 300",
        "--stop-timeout",
        "120s",
    ]);
    wait_for_log_line(&stubborn.log_path("stubborn", "stdout"), "ready");
    stubborn.signal(libc::SIGTERM);
    stubborn.wait_status("the stop grace period", |s| {
        state_of(s) == StateKind::Stopping
    });
    assert!(
        stubborn.child.try_wait().unwrap().is_none(),
        "waiting out its 120 s grace period"
    );
    stubborn.signal(libc::SIGINT);
    let exit = stubborn.wait_exit(Duration::from_secs(10));
    assert_eq!(
        exit.code(),
        Some(137),
        "the second signal killed the tree at once"
    );
}

fn bad_flags(args: &[&str]) -> (i32, String) {
    let output = Command::new(tasksitter_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn bad_flags_give_one_clear_line_and_exit_2() {
    // Past the spec's bound yet short enough to pass as one argument here.
    let huge = format!("echo {}", "x".repeat(100 * 1024));
    for (args, expected) in [
        (&["--command", "true", "--cpu", "1e12"][..], "--cpu: "),
        (&["--command", "true", "--mem", "1e15"][..], "--mem: "),
        (
            &["--command", "true", "--time-limit", "1000000000s"][..],
            "--time-limit: ",
        ),
        (
            &["--command", "true", "--stop-timeout", "1000000000s"][..],
            "--stop-timeout: ",
        ),
        (
            &["--command", "true", "--log-max-bytes", "0"][..],
            "--log-max-bytes: ",
        ),
        (&["--command", &huge][..], "--command: "),
        (
            &["--command", "true", "--mem", "-5"][..],
            "--mem: must be a positive number of MB, got -5",
        ),
        (
            &["--command", "true", "--uid", "no-such-user-here"][..],
            "--uid: unknown user 'no-such-user-here'",
        ),
        (
            &["--command", "true", "--time-limit", "soon"][..],
            "'soon' is not a duration",
        ),
        (
            &["--command", "true", "--stop-signal", "BANG"][..],
            "--stop-signal: unknown signal 'BANG'",
        ),
        (
            &["--command", "true", "--cwd", "/no/such/dir"][..],
            "--cwd: /no/such/dir is not a directory",
        ),
        (&["--mem", "5"][..], "--command"),
        (
            &[
                "--command",
                "true",
                "--http-monitoring",
                "--http-monitoring-bind",
                "0.0.0.0",
            ][..],
            "--token-file",
        ),
        (
            &["--command", "true", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
    ] {
        assert_refused(args, expected);
    }
}

/// `tasksitter ARGS` exits 2 with one line on stderr that contains `expected`.
fn assert_refused(args: &[&str], expected: &str) {
    let (code, stderr) = bad_flags(args);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?} printed more than one line: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected '{expected}' in: {stderr}"
    );
}

#[test]
fn specs_that_can_never_start_are_refused_from_a_spec_file() {
    let scratch = scratch_dir();
    let spec = scratch.path().join("spec.json");
    for (body, field) in [
        (json!({"name": "n", "command": "echo a\u{0}b"}), "command:"),
        (
            json!({"name": "n", "command": "true", "env": {"A": "v\u{0}"}}),
            "env:",
        ),
        (
            json!({"name": "n", "command": "true", "cwd": "/tmp\u{0}"}),
            "cwd:",
        ),
        (json!({"name": "n", "command": "true", "cpu": 1e12}), "cpu:"),
        (
            json!({"name": "n", "command": format!("echo {}", "x".repeat(200 * 1024))}),
            "command:",
        ),
    ] {
        std::fs::write(&spec, body.to_string()).unwrap();
        assert_refused(&["--spec-file", spec.to_str().unwrap()], field);
    }
    // A spec file that is not a spec at all is a configuration error too.
    std::fs::write(&spec, b"{ not json").unwrap();
    assert_refused(&["--spec-file", spec.to_str().unwrap()], "--spec-file: ");
    std::fs::write(&spec, br#"{"name": "n", "command": "true", "bogus": 1}"#).unwrap();
    assert_refused(&["--spec-file", spec.to_str().unwrap()], "bogus");
    let missing = scratch.path().join("missing.json");
    assert_refused(
        &["--spec-file", missing.to_str().unwrap()],
        "--spec-file: cannot read",
    );
}

#[test]
fn a_workload_gets_only_stdin_stdout_and_stderr() {
    let scratch = scratch_dir();
    let marker = scratch.path().join("stray-pipe");
    let sitter = Sitter::start_http_prepared(&["--name", "fds", "--command", "sleep 60"], |c| {
        inherit_stray_fds(c, &marker)
    });
    let status = sitter.wait_status("running", |s| state_of(s) == StateKind::Running);
    let pid = status["pid"].as_i64().unwrap() as i32;
    let fds = open_fds(pid);
    let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(numbers, [0, 1, 2], "the workload inherited {fds:?}");
}

#[test]
fn a_simple_command_is_the_workload_itself() {
    let sitter = Sitter::start_http(&["--name", "plain", "--command", "sleep 60"]);
    let status = sitter.wait_status("running", |s| state_of(s) == StateKind::Running);
    let pid = status["pid"].as_u64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "sleep",
        "no shell stands between the tasksitter and the program"
    );
}

#[test]
fn the_tree_keeps_its_grace_period_when_the_main_process_dies_first() {
    let scratch = scratch_dir();
    let marker = scratch.path().join("graceful");
    // The outer shell dies of SIGTERM at once; the inner one takes 300 ms to shut down.
    let inner = format!(
        "trap 'sleep 0.3; echo graceful > {}; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        marker.display()
    );
    let command = format!("sh -c \"{inner}\"; echo unreachable");
    let mut sitter = Sitter::start(&[
        "--name",
        "nested",
        "--command",
        &command,
        "--stop-timeout",
        "20s",
    ]);
    wait_for_log_line(&sitter.log_path("nested", "stdout"), "ready");
    sitter.signal(libc::SIGTERM);
    sitter.wait_exit(TIMEOUT);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        "graceful",
        "the child was not SIGKILLed early"
    );
}

#[test]
fn a_name_that_starts_with_a_dash_is_a_name() {
    for (flags, stem) in [
        (&["--name", "-x"][..], "-x"),
        (&["--name=-x"][..], "-x"),
        (&["--name", "--x"][..], "--x"),
    ] {
        let mut args = flags.to_vec();
        args.extend(["--command", "echo dashed"]);
        let (code, sitter) = run_to_end(&args);
        assert_eq!(code, 0, "{flags:?}");
        assert_eq!(count_lines(&sitter.log_path(stem, "stdout"), "dashed"), 1);
    }
}

#[test]
fn a_spec_file_runs_like_the_flags() {
    let scratch = scratch_dir();
    let spec = scratch.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"name": "-from-file", "command": "echo from file; exit 5", "mem": "64M"}"#,
    )
    .unwrap();
    let (code, sitter) = run_to_end(&["--spec-file", spec.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert_eq!(
        count_lines(&sitter.log_path("-from-file", "stdout"), "from file"),
        1
    );
}

/// `tasksitter ARGS` fails as a runtime failure: exit 1, `expected` on stderr.
fn assert_fails_at_start(args: &[&std::ffi::OsStr], expected: &str) {
    let output = Command::new(tasksitter_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn a_failure_after_the_flags_exits_1_not_2() {
    // The port is taken: the flags are fine, starting is not.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = [
        "--command",
        "sleep 30",
        "--http-monitoring",
        "--http-monitoring-port",
        &port,
        "--http-monitoring-bind",
        "127.0.0.1",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    assert_fails_at_start(&args, "tasksitter: error: cannot listen on 127.0.0.1:");
}

#[test]
fn a_tasksitter_that_fails_to_start_exits_1_and_leaves_no_address_file() {
    let scratch = scratch_dir();
    // The log directory cannot be created under a file: the flags are
    // fine, setting up the supervisor is not.
    let not_a_dir = scratch.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let logs = not_a_dir.join("logs");
    let address_file = scratch.path().join("address");
    let args = [
        "--command".as_ref(),
        "sleep 30".as_ref(),
        "--limits-backend".as_ref(),
        "poll".as_ref(),
        "--stdout-location".as_ref(),
        logs.as_os_str(),
        "--http-monitoring".as_ref(),
        "--http-monitoring-port".as_ref(),
        "0".as_ref(),
        "--http-address-file".as_ref(),
        address_file.as_os_str(),
    ];
    assert_fails_at_start(&args, "tasksitter: error: cannot open log file");
    assert!(
        !address_file.exists(),
        "the address file is written only once the tasksitter is ready"
    );
}
