//! Limits enforced on real processes: memory (cgroup v1 on this host and the
//! poll backend), CPU (cgroup quota, poll kill), lifetime, and whole-tree kills.
//! The cgroup tests use `--limits-backend cgroup`, which refuses to start
//! without cgroups: on a host without them they fail loudly instead of skipping.

mod common;
use common::*;
use std::time::Duration;

/// `tail` keeps its whole input line in memory, so this grows steadily to 400 MB.
const MEMORY_HOG: &str = "head -c 400000000 /dev/zero | tail";
const SPINNER: &str = "while :; do :; done";

fn memory_hog_killed_and_restarted(backend: &str) -> serde_json::Value {
    let sitter = Sitter::start_http(&[
        "--name",
        "hog",
        "--command",
        MEMORY_HOG,
        "--mem",
        "50",
        "--restart",
        "--max-restarts",
        "1",
        "--limits-backend",
        backend,
        "--linger",
    ]);
    let status = sitter.wait_status("two memory violations and giving up", |s| {
        state_of(s) == StateKind::Fatal
    });
    assert_eq!(status["violations"]["memory"], 2, "{status:#}");
    assert_eq!(
        status["starts"], 2,
        "violation, one restart, violation, give up: {status:#}"
    );
    assert_eq!(status["restarts"], 1);
    assert_eq!(status["limits"]["mem_bytes"], 50 * 1024 * 1024);
    let violations: Vec<&serde_json::Value> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "violation")
        .collect();
    assert_eq!(violations.len(), 2);
    for violation in &violations {
        assert_eq!(violation["kind"], "memory");
        assert!(
            violation["measured"].as_f64().unwrap() >= 50.0 * 1024.0 * 1024.0,
            "{violation}"
        );
    }
    status
}

#[test]
fn memory_hog_is_killed_and_restarted_with_cgroups() {
    let status = memory_hog_killed_and_restarted("cgroup");
    assert!(
        status["backend"].as_str().unwrap().starts_with("cgroup"),
        "{status:#}"
    );
}

#[test]
fn memory_hog_is_killed_and_restarted_by_polling() {
    let status = memory_hog_killed_and_restarted("poll");
    assert_eq!(status["backend"], "poll");
    let first = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "violation")
        .unwrap();
    assert_eq!(first["by_kernel"], false);
}

#[test]
fn kernel_oom_kill_is_reported_as_a_memory_violation() {
    // A hog that allocates faster than the poll interval: the kernel's memory.limit acts first.
    let sitter = Sitter::start_http(&[
        "--name",
        "fast-hog",
        "--command",
        "head -c 300000000 /dev/zero | tail",
        "--mem",
        "20",
        "--limits-backend",
        "cgroup",
        "--poll-interval",
        "5s",
        "--linger",
    ]);
    let status = sitter.wait_status("the hog to be killed", |s| state_of(s) == StateKind::Exited);
    assert_eq!(status["violations"]["memory"], 1, "{status:#}");
    let violation = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "violation")
        .unwrap();
    assert_eq!(violation["by_kernel"], true, "{violation}");
    assert_eq!(
        status["last_exit"],
        serde_json::json!({"kind": "code", "value": 137}),
        "tail was SIGKILLed: {status:#}"
    );
}

#[test]
fn cpu_spinner_is_held_to_its_quota_with_cgroups() {
    let sitter = Sitter::start_http(&[
        "--name",
        "spin",
        "--command",
        SPINNER,
        "--cpu",
        "0.5",
        "--limits-backend",
        "cgroup",
    ]);
    let status = sitter.wait_status("the spinner to run", |s| state_of(s) == StateKind::Running);
    assert_eq!(
        status["limits"]["cpu_action"], "throttle",
        "throttle is the default under cgroups"
    );
    let pid = status["pid"].as_i64().unwrap() as i32;
    let before = cpu_seconds(pid);
    let started = std::time::Instant::now();
    // The measurement window; meanwhile the status must report the use
    // at every read once it has two samples.
    let mut reported = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(250));
        reported.push(sitter.status()["cpu_cores"].as_f64().unwrap_or(-1.0));
    }
    let used = (cpu_seconds(pid) - before) / started.elapsed().as_secs_f64();
    let since_first: Vec<f64> = reported
        .iter()
        .copied()
        .skip_while(|cores| *cores == 0.0)
        .collect();
    assert!(
        since_first.len() >= 4 && since_first.iter().all(|c| (0.2..=0.6).contains(c)),
        "the status reports about 0.5 cores at every read: {reported:?}"
    );
    assert!(
        used <= 0.5 + 0.06,
        "the spinner used {used:.3} cores with a 0.5 quota"
    );
    assert!(
        used >= 0.2,
        "the spinner should still run (used {used:.3} cores)"
    );
    let status = sitter.status();
    assert_eq!(
        state_of(&status),
        StateKind::Running,
        "throttled, not killed"
    );
    assert_eq!(status["violations"]["cpu"], 0);
}

#[test]
fn cpu_spinner_is_killed_by_the_poll_backend() {
    let sitter = Sitter::start_http(&[
        "--name",
        "spin",
        "--command",
        SPINNER,
        "--cpu",
        "0.2",
        "--cpu-window",
        "1s",
        "--limits-backend",
        "poll",
        "--stop-timeout",
        "2s",
        "--linger",
    ]);
    let status = sitter.wait_status("the spinner to be stopped", |s| {
        state_of(s) == StateKind::Exited
    });
    assert_eq!(
        status["limits"]["cpu_action"], "restart",
        "restart is the default without cgroups"
    );
    assert_eq!(status["violations"]["cpu"], 1, "{status:#}");
    let violation = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "violation")
        .unwrap();
    assert_eq!(violation["kind"], "cpu");
    assert!(violation["measured"].as_f64().unwrap() > 0.2, "{violation}");
}

#[test]
fn time_limit_stops_the_workload_with_the_stop_signal() {
    let mut sitter = Sitter::start(&[
        "--name",
        "sleeper",
        "--command",
        "sleep 60",
        "--time-limit",
        "1",
        "--stop-timeout",
        "5s",
    ]);
    let exit = sitter.wait_exit(Duration::from_secs(20));
    assert_eq!(
        exit.code(),
        Some(143),
        "sleep dies of the stop signal, SIGTERM"
    );
}

#[test]
fn time_limit_escalates_to_sigkill_after_the_grace_period() {
    let sitter = Sitter::start_http(&[
        "--name",
        "stubborn",
        "--command",
        "trap '' TERM; sleep 60",
        "--time-limit",
        "500ms",
        "--stop-timeout",
        "1s",
        "--linger",
    ]);
    let status = sitter.wait_status("the stubborn task to be killed", |s| {
        state_of(s) == StateKind::Exited
    });
    assert_eq!(status["violations"]["time"], 1);
    assert_eq!(
        status["last_exit"],
        serde_json::json!({"kind": "signal", "value": 9})
    );
    let kinds: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"stop_requested") && kinds.contains(&"killed"),
        "{kinds:?}"
    );
}

/// The workload starts a grandchild in a new session, escaping the process group.
fn grandchild_command(dir: &std::path::Path) -> String {
    format!(
        "setsid sleep 300 & echo $! > {}/grandchild.pid; sleep 300",
        dir.display()
    )
}

#[test]
fn setsid_grandchild_dies_with_the_tree_on_stop() {
    for backend in ["cgroup", "poll"] {
        let scratch = scratch_dir();
        let command = grandchild_command(scratch.path());
        let mut sitter = Sitter::start(&[
            "--name",
            "tree",
            "--command",
            &command,
            "--limits-backend",
            backend,
        ]);
        let grandchild = read_pid(&scratch.path().join("grandchild.pid"));
        assert!(!process_gone(grandchild));
        sitter.signal(libc::SIGTERM);
        sitter.wait_exit(TIMEOUT);
        wait_for(TIMEOUT, "the setsid grandchild to be gone", || {
            process_gone(grandchild).then_some(())
        });
    }
}

#[test]
fn sigkilled_tasksitter_leaves_no_workload_behind_with_cgroups() {
    let scratch = scratch_dir();
    let command = format!(
        "echo $$ > {}/main.pid; {}",
        scratch.path().display(),
        grandchild_command(scratch.path())
    );
    let mut sitter = Sitter::start(&[
        "--name",
        "orphan",
        "--command",
        &command,
        "--limits-backend",
        "cgroup",
    ]);
    let main = read_pid(&scratch.path().join("main.pid"));
    let grandchild = read_pid(&scratch.path().join("grandchild.pid"));
    sitter.signal(libc::SIGKILL);
    sitter.wait_exit(TIMEOUT);
    wait_for(TIMEOUT, "the direct workload to die (PDEATHSIG)", || {
        process_gone(main).then_some(())
    });
    wait_for(TIMEOUT, "the guard to kill the setsid grandchild", || {
        process_gone(grandchild).then_some(())
    });
}

#[test]
fn sigkilled_tasksitter_takes_its_direct_workload_with_it_when_polling() {
    let scratch = scratch_dir();
    let command = format!(
        "echo $$ > {}/main.pid; exec sleep 300",
        scratch.path().display()
    );
    let mut sitter = Sitter::start(&[
        "--name",
        "direct",
        "--command",
        &command,
        "--limits-backend",
        "poll",
    ]);
    let main = read_pid(&scratch.path().join("main.pid"));
    sitter.signal(libc::SIGKILL);
    sitter.wait_exit(TIMEOUT);
    wait_for(TIMEOUT, "the direct workload to die (PDEATHSIG)", || {
        process_gone(main).then_some(())
    });
}
