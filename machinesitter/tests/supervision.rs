//! Supervision across crashes: re-adoption after a machinesitter kill -9,
//! replacement of a killed tasksitter, spec updates, delete, exit modes and
//! a corrupt state file.

mod common;
use common::*;
use serde_json::json;

fn count_workloads(marker: &str) -> usize {
    processes(|argv| {
        argv.first().is_some_and(|a| a.ends_with("sleep"))
            && argv.get(1).is_some_and(|a| a == marker)
    })
    .len()
}

#[test]
fn kill9_of_the_machinesitter_readopts_every_task_without_duplicates() {
    let mut sitter = MachineSitter::start(&[]);
    let names = ["web", "api-gateway", "Portal Server"];
    for (i, name) in names.iter().enumerate() {
        let (code, body) = sitter.put_task(name, spec(&format!("sleep 3{i}1")));
        assert_eq!(code, 201, "{body}");
    }
    let before: Vec<(i32, i32)> = names.iter().map(|n| sitter.wait_running(n)).collect();
    let events_before = sitter.request("GET", "/api/v1/events", None, None).1;
    assert!(!events_before.as_array().unwrap().is_empty());

    sitter.kill9();
    for (sitter_pid, workload) in &before {
        assert!(
            !process_gone(*sitter_pid) && !process_gone(*workload),
            "tasks outlive a machinesitter crash"
        );
    }
    sitter.boot();

    let after: Vec<(i32, i32)> = names.iter().map(|n| sitter.wait_running(n)).collect();
    let events_after = sitter.request("GET", "/api/v1/events", None, None).1;
    for event in events_before.as_array().unwrap() {
        assert!(
            events_after.as_array().unwrap().contains(event),
            "{event} was kept across the crash"
        );
    }
    assert_eq!(
        before, after,
        "the same tasksitters and workloads are re-adopted"
    );
    assert_eq!(
        sitter.tasksitters().len(),
        3,
        "no second tasksitter for any task"
    );
    for i in 0..3 {
        assert_eq!(count_workloads(&format!("3{i}1")), 1);
    }
    for name in names {
        assert_eq!(
            sitter.task(name)["sitter_starts"],
            1,
            "'{name}' was adopted, not restarted"
        );
    }

    // An adopted tasksitter is not our child, and is still watched.
    let (adopted, old_workload) = after[2];
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(adopted, libc::SIGKILL) };
    let replaced = wait_for(TIMEOUT, "the adopted tasksitter to be replaced", || {
        let now = sitter.wait_running("Portal Server");
        (now.0 != adopted).then_some(now)
    });
    wait_for(TIMEOUT, "the old workload to be gone", || {
        process_gone(old_workload).then_some(())
    });
    assert_ne!(replaced.1, old_workload);
    assert_eq!(count_workloads("321"), 1);
}

#[test]
fn a_killed_tasksitter_is_replaced_and_its_workload_cleaned_first() {
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("worker-1", spec("sleep 311"));
    let (old_sitter, old_workload) = sitter.wait_running("worker-1");

    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(old_sitter, libc::SIGKILL) };
    let (new_sitter, new_workload) = wait_for(TIMEOUT, "a new tasksitter", || {
        let found = sitter.wait_running("worker-1");
        (found.0 != old_sitter).then_some(found)
    });
    assert_ne!(new_workload, old_workload);
    wait_for(TIMEOUT, "the old workload to be gone", || {
        process_gone(old_workload).then_some(())
    });
    assert_eq!(
        count_workloads("311"),
        1,
        "exactly one copy of the workload"
    );
    assert_eq!(sitter.tasksitters(), vec![new_sitter]);
    assert_eq!(sitter.task("worker-1")["sitter_starts"], 2);
}

#[test]
fn same_spec_is_a_no_op_and_a_changed_spec_restarts() {
    let sitter = MachineSitter::start(&[]);
    let (code, body) = sitter.put_task("cache", spec("sleep 321"));
    assert_eq!((code, body["result"].as_str()), (201, Some("created")));
    let first = sitter.wait_running("cache");

    let (code, body) = sitter.put_task("cache", spec("sleep 321"));
    assert_eq!((code, body["result"].as_str()), (200, Some("unchanged")));
    assert_eq!(
        sitter.wait_running("cache"),
        first,
        "no restart for the same spec"
    );

    let mut changed = spec("sleep 322");
    changed["env"] = json!({"MODE": "fast"});
    let (code, body) = sitter.put_task("cache", changed);
    assert_eq!((code, body["result"].as_str()), (200, Some("updated")));
    let second = wait_for(TIMEOUT, "the task to restart with the new spec", || {
        let now = sitter.wait_running("cache");
        (now.1 != first.1).then_some(now)
    });
    assert_eq!(cmdline(second.1), ["sleep", "322"]);
    wait_for(TIMEOUT, "the old workload to stop", || {
        process_gone(first.1).then_some(())
    });
    let environ = std::fs::read(format!("/proc/{}/environ", second.1)).unwrap();
    assert!(environ.split(|b| *b == 0).any(|kv| kv == b"MODE=fast"));
    assert_eq!(sitter.task("cache")["spec"]["command"], "sleep 322");
}

#[test]
fn stop_start_and_delete() {
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("job one", spec("sleep 331"));
    let (_, workload) = sitter.wait_running("job one");

    let (code, body) = sitter.request("POST", "/api/v1/tasks/job%20one/stop", None, None);
    assert_eq!(code, 200, "{body}");
    wait_for(TIMEOUT, "the workload to stop", || {
        process_gone(workload).then_some(())
    });
    wait_for(TIMEOUT, "the stopped state", || {
        (sitter.task_state("job one") == Some(StateKind::Stopped)).then_some(())
    });
    assert!(!sitter.task("job one")["run_requested"].as_bool().unwrap());

    let (code, _) = sitter.request("POST", "/api/v1/tasks/job%20one/start", None, None);
    assert_eq!(code, 200);
    let (sitter_pid, workload) = sitter.wait_running("job one");

    let (code, body) = sitter.request("DELETE", "/api/v1/tasks/job%20one", None, None);
    assert_eq!(
        (code, body["result"].as_str()),
        (200, Some("deleted")),
        "{body}"
    );
    assert!(process_gone(workload) && process_gone(sitter_pid));
    let (code, body) = sitter.request("GET", "/api/v1/tasks/job%20one", None, None);
    assert_eq!(code, 404, "{body}");
    assert!(sitter.tasksitters().is_empty());
    let (code, _) = sitter.request("DELETE", "/api/v1/tasks/job%20one", None, None);
    assert_eq!(code, 404, "deleting twice names no task");
}

#[test]
fn deleted_tasks_stay_deleted_across_a_restart() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.put_task("keep", spec("sleep 341"));
    sitter.put_task("drop", spec("sleep 342"));
    let kept = sitter.wait_running("keep");
    sitter.wait_running("drop");
    let (code, _) = sitter.request("DELETE", "/api/v1/tasks/drop", None, None);
    assert_eq!(code, 200);
    sitter.kill9();
    sitter.boot();
    assert_eq!(sitter.wait_running("keep"), kept);
    let (code, _) = sitter.request("GET", "/api/v1/tasks/drop", None, None);
    assert_eq!(code, 404);
    assert_eq!(count_workloads("342"), 0);
}

#[test]
fn sigterm_leaves_tasks_running_by_default() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.put_task("survivor", spec("sleep 351"));
    let running = sitter.wait_running("survivor");
    sitter.signal(libc::SIGTERM);
    sitter.wait_exit();
    assert!(!process_gone(running.0) && !process_gone(running.1));
    sitter.boot();
    assert_eq!(sitter.wait_running("survivor"), running);
}

#[test]
fn on_exit_stop_stops_every_task_and_restarts_them_on_the_next_boot() {
    let mut sitter = MachineSitter::start(&["--on-exit", "stop"]);
    sitter.put_task("a", spec("sleep 361"));
    sitter.put_task("b", spec("sleep 362"));
    let a = sitter.wait_running("a");
    let b = sitter.wait_running("b");
    sitter.signal(libc::SIGTERM);
    sitter.wait_exit();
    for pid in [a.0, a.1, b.0, b.1] {
        assert!(
            process_gone(pid),
            "pid {pid} still runs after --on-exit stop"
        );
    }
    assert!(sitter.tasksitters().is_empty());
    sitter.boot();
    let again = sitter.wait_running("a");
    assert_ne!(again.1, a.1, "the task set survives; the tasks start again");
    assert_eq!(count_workloads("361"), 1);
}

#[test]
fn a_stopped_task_stays_stopped_across_a_restart() {
    let mut sitter = MachineSitter::start(&["--on-exit", "stop"]);
    sitter.put_task("idle", spec("sleep 371"));
    sitter.wait_running("idle");
    sitter.request("POST", "/api/v1/tasks/idle/stop", None, None);
    sitter.signal(libc::SIGINT);
    sitter.wait_exit();
    sitter.boot();
    wait_for(TIMEOUT, "the tasksitter to report the stopped task", || {
        (sitter.task_state("idle") == Some(StateKind::Stopped)).then_some(())
    });
    assert_eq!(count_workloads("371"), 0);
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_running_tasks_are_recovered() {
    let mut sitter = MachineSitter::start(&[]);
    let mut spec_with_env = spec("sleep 381");
    spec_with_env["env"] = json!({"A": "1"});
    sitter.put_task("db-primary", spec_with_env);
    sitter.put_task("cron job", spec("sleep 382"));
    let db = sitter.wait_running("db-primary");
    let cron = sitter.wait_running("cron job");
    sitter.kill9();

    let state_file = sitter.state_dir().join("state.json");
    std::fs::write(&state_file, b"{\"version\": 1, \"tasks\": {\"db-pri").unwrap();
    sitter.boot();

    let moved: Vec<_> = std::fs::read_dir(sitter.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "the corrupt file is kept for a human");
    let kept = std::fs::read(sitter.state_dir().join(&moved[0])).unwrap();
    assert!(kept.starts_with(b"{\"version\": 1"));

    assert_eq!(
        sitter.wait_running("db-primary"),
        db,
        "proven-running tasks are re-adopted"
    );
    assert_eq!(sitter.wait_running("cron job"), cron);
    assert_eq!(
        sitter.task("db-primary")["spec"]["env"]["A"],
        "1",
        "the spec is recovered from the tasksitter"
    );
    assert_eq!(sitter.tasksitters().len(), 2);
    assert_eq!(count_workloads("381"), 1);

    // The recovered set is persisted again, so another crash loses nothing.
    sitter.kill9();
    sitter.boot();
    assert_eq!(sitter.wait_running("db-primary"), db);
}

#[test]
fn a_tasksitter_that_keeps_dying_is_retried_with_backoff_and_reported() {
    let bin_dir = tempfile::tempdir().unwrap();
    let broken = bin_dir.path().join("tasksitter");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'tasksitter: cannot open /dev/kvm' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sitter = MachineSitter::start(&["--tasksitter-bin", broken.to_str().unwrap()]);
    let (code, body) = sitter.put_task("doomed", spec("sleep 391"));
    assert_eq!(code, 201, "{body}");
    let error = wait_for(TIMEOUT, "the failure to be reported", || {
        sitter.task("doomed")["last_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(
        error.contains("cannot open /dev/kvm"),
        "the tasksitter's own words are shown: {error}"
    );
    let deaths = wait_for(TIMEOUT, "four deaths", || {
        let (code, events) = sitter.request("GET", "/api/v1/events", None, None);
        assert_eq!(code, 200, "the daemon keeps serving: {events}");
        let mut deaths: Vec<u64> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["task"] == "doomed" && e["message"].as_str().unwrap().contains("died"))
            .map(|e| e["at_ms"].as_u64().unwrap())
            .collect();
        deaths.sort();
        (deaths.len() >= 4).then_some(deaths)
    });
    let gaps: Vec<u64> = deaths.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[2] >= 900 && gaps[2] > gaps[0],
        "a crash loop backs off: gaps {gaps:?} ms"
    );
}

/// (soft, hard) "Max open files" of `pid`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn the_machinesitter_raises_its_open_file_limit_but_workloads_keep_theirs() {
    // A soft limit below the hard one, as most logins have, so that raising
    // it shows (1024 is plenty for the other tests of this binary too).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on structs we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(1024);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur < limit.rlim_max,
        "this test needs a hard open-file limit above 1024 to show the raise"
    );
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("limits", spec("sleep 341"));
    let (tasksitter, workload) = sitter.wait_running("limits");
    let mine = open_file_limits(std::process::id());
    let (soft, hard) = open_file_limits(sitter.daemon.pid().unwrap());
    assert_eq!(
        soft, hard,
        "one pidfd and one connection per task need room"
    );
    assert_eq!(hard, mine.1);
    assert_eq!(open_file_limits(tasksitter as u32), mine);
    assert_eq!(
        open_file_limits(workload as u32),
        mine,
        "a workload gets the limit the machinesitter was started with"
    );
}

#[test]
fn task_names_that_start_with_dashes_run() {
    let sitter = MachineSitter::start(&[]);
    for (name, command) in [("-dash-first", "sleep 391"), ("--x", "sleep 392")] {
        let (code, body) = sitter.put_task(name, spec(command));
        assert_eq!(code, 201, "PUT {name}: {body}");
    }
    for (name, argv) in [("-dash-first", ["sleep", "391"]), ("--x", ["sleep", "392"])] {
        let (_, workload) = sitter.wait_running(name);
        assert_eq!(cmdline(workload), argv);
        assert_eq!(sitter.task(name)["name"], name);
    }
    assert_eq!(sitter.tasksitters().len(), 2);
}

#[path = "../../tasksitter/tests/common/fds.rs"]
mod fds;

#[test]
fn stray_descriptors_reach_neither_tasksitters_nor_workloads() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.kill9();
    let marker = sitter.state.path().join("stray-pipe");
    sitter.boot_prepared(|c| fds::inherit_stray_fds(c, &marker));
    assert_eq!(sitter.put_task("fds", spec("sleep 60")).0, 201);
    let (tasksitter, workload) = sitter.wait_running("fds");
    let held = fds::open_fds(tasksitter);
    assert!(
        held.iter().all(|(_, target)| *target != marker),
        "the tasksitter inherited the machinesitter's stray descriptors: {held:?}"
    );
    let fds = fds::open_fds(workload);
    let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(numbers, [0, 1, 2], "the workload inherited {fds:?}");
}

/// The entries of `dir` (none when it does not exist).
fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|list| list.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn deleting_a_task_removes_its_logs_and_its_task_dir() {
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("chatty", spec("yes | head -c 300000; sleep 600"));
    sitter.wait_running("chatty");
    let logs = sitter.state_dir().join("logs");
    let tasks = sitter.state_dir().join("tasks");
    wait_for(TIMEOUT, "the log to fill", || {
        let log = entries(&logs).first()?.join("chatty.stdout.log");
        (std::fs::metadata(log).ok()?.len() >= 300_000).then_some(())
    });
    assert_eq!(entries(&tasks).len(), 1);
    let (code, body) = sitter.request("DELETE", "/api/v1/tasks/chatty", None, None);
    assert_eq!((code, body["result"].as_str()), (200, Some("deleted")));
    assert_eq!(
        entries(&logs),
        Vec::<std::path::PathBuf>::new(),
        "logs are gone"
    );
    assert_eq!(
        entries(&tasks),
        Vec::<std::path::PathBuf>::new(),
        "the task dir is gone"
    );
}

/// Waits until the tasksitter of `name` reports its workload stopped.
fn wait_stopped(sitter: &MachineSitter, name: &str) {
    wait_for(TIMEOUT, &format!("task '{name}' to report stopped"), || {
        (sitter.task_state(name) == Some(StateKind::Stopped)).then_some(())
    });
}

#[test]
fn a_stopped_task_stays_stopped_when_the_state_file_is_lost() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.put_task("webby2", spec("sleep 391"));
    sitter.wait_running("webby2");
    let (code, _) = sitter.request("POST", "/api/v1/tasks/webby2/stop", None, None);
    assert_eq!(code, 200);
    wait_stopped(&sitter, "webby2");
    let state_file = sitter.state_dir().join("state.json");
    for lose in ["empty", "corrupt", "missing"] {
        sitter.kill9();
        match lose {
            "empty" => std::fs::write(&state_file, b"").unwrap(),
            "corrupt" => std::fs::write(&state_file, b"{\"version\": 1, \"tas").unwrap(),
            _ => std::fs::remove_file(&state_file).unwrap(),
        }
        sitter.boot();
        wait_stopped(&sitter, "webby2");
        let task = sitter.task("webby2");
        assert_eq!(task["run_requested"], false, "{lose}: {task}");
        assert_eq!(
            count_workloads("391"),
            0,
            "{lose}: the stopped task ran again"
        );
    }
    // The recovered desired state drives the machinesitter: start still works.
    let (code, _) = sitter.request("POST", "/api/v1/tasks/webby2/start", None, None);
    assert_eq!(code, 200);
    sitter.wait_running("webby2");
}

#[test]
fn tasks_whose_tasksitters_died_too_are_restored_from_their_task_dirs() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.put_task("runner", spec("sleep 392"));
    sitter.put_task("idle", spec("sleep 393"));
    let runner = sitter.wait_running("runner");
    let idle = sitter.wait_running("idle");
    sitter.request("POST", "/api/v1/tasks/idle/stop", None, None);
    wait_stopped(&sitter, "idle");
    sitter.kill9();
    for pid in [runner.0, idle.0] {
        // SAFETY: kill(2) on a tasksitter this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for pid in [runner.0, runner.1, idle.0] {
        wait_for(TIMEOUT, "the tasksitters and workloads to die", || {
            process_gone(pid).then_some(())
        });
    }
    // A task dir nothing can be recovered from.
    let broken = sitter.state_dir().join("tasks").join("broken-0000");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("spec.json"), b"{ not a spec").unwrap();
    std::fs::write(sitter.state_dir().join("state.json"), b"").unwrap();
    sitter.boot();

    let again = sitter.wait_running("runner");
    assert_ne!(again.0, runner.0, "a new tasksitter runs the task");
    wait_stopped(&sitter, "idle");
    assert_eq!(sitter.task("idle")["run_requested"], false);
    assert_eq!(
        count_workloads("393"),
        0,
        "the stopped task was not started"
    );
    assert_eq!(count_workloads("392"), 1);
    let (_, events) = sitter.request("GET", "/api/v1/events", None, None);
    let messages: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["task"], e["message"]))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("broken-0000") && m.contains("cannot recover")),
        "what could not be recovered is reported: {messages:#?}"
    );
}

/// The task dir of `name` and its tasksitter's runtime record, once that
/// names `workload` as the workload.
fn runtime_record(
    sitter: &MachineSitter,
    name: &str,
    workload: i32,
) -> (cerebro_host::TaskDir, cerebro_host::layout::RuntimeRecord) {
    let paths =
        cerebro_host::TaskDir::new(&sitter.state_dir(), &cerebro_host::layout::dir_name(name));
    let record = wait_for(TIMEOUT, "the runtime record to name the workload", || {
        paths
            .read_runtime()
            .filter(|r| r.workload_pid == Some(workload as u32))
    });
    (paths, record)
}

#[test]
fn a_lost_state_file_readopts_running_tasksitters_from_their_runtime_records() {
    let mut sitter = MachineSitter::start(&["--limits-backend", "poll"]);
    sitter.put_task("web", spec("sleep 394"));
    let (sitter_pid, workload) = sitter.wait_running("web");
    let (_, record) = runtime_record(&sitter, "web", workload);
    assert_eq!(record.pid, sitter_pid);
    assert_eq!(
        record.address,
        sitter.task_view("web").tasksitter.unwrap().address
    );
    assert!(record.cgroup_paths.is_empty(), "the poll backend has none");

    sitter.kill9();
    std::fs::remove_file(sitter.state_dir().join("state.json")).unwrap();
    sitter.boot();

    // The state file is written once the task set is loaded, before the
    // address is announced: it already knows what only the record said.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sitter.state_dir().join("state.json")).unwrap())
            .unwrap();
    let runtime = &state["tasks"]["web"]["runtime"];
    assert_eq!(runtime["pid"], sitter_pid, "{state}");
    assert_eq!(runtime["workload_pid"], workload, "{state}");
    assert_eq!(
        sitter.wait_running("web"),
        (sitter_pid, workload),
        "the same tasksitter and workload, not restarted"
    );
    assert_eq!(sitter.tasksitters(), [sitter_pid]);
    assert_eq!(count_workloads("394"), 1);
}

#[test]
fn what_a_dead_tasksitter_left_is_killed_even_when_the_state_file_is_lost() {
    // Polling: no cgroup guard cleans up, only the machinesitter can.
    let mut sitter = MachineSitter::start(&["--limits-backend", "poll"]);
    sitter.put_task("forker", spec("sleep 395 & sleep 396"));
    let (sitter_pid, workload) = sitter.wait_running("forker");
    runtime_record(&sitter, "forker", workload);
    let leftover = wait_for(TIMEOUT, "the background sleep", || {
        processes(|argv| argv == ["sleep", "395"])
            .into_iter()
            .find(|pid| process_group(*pid) == Some(workload))
    });

    sitter.kill9();
    std::fs::remove_file(sitter.state_dir().join("state.json")).unwrap();
    // SAFETY: kill(2) on a tasksitter this test started.
    unsafe { libc::kill(sitter_pid, libc::SIGKILL) };
    for pid in [sitter_pid, workload] {
        wait_for(TIMEOUT, "the tasksitter and its workload to die", || {
            process_gone(pid).then_some(())
        });
    }
    assert!(
        !process_gone(leftover),
        "the background sleep outlives its tasksitter"
    );
    sitter.boot();

    wait_for(TIMEOUT, "the leftover to be killed", || {
        process_gone(leftover).then_some(())
    });
    let (new_sitter, new_workload) = sitter.wait_running("forker");
    assert_ne!(new_sitter, sitter_pid, "a new tasksitter runs the task");
    let left = processes(|argv| argv == ["sleep", "395"]);
    assert!(
        left.iter().all(|pid| process_group(*pid) != Some(workload)),
        "nothing of the old workload's group is left: {left:?}"
    );
    // The harness kills tasksitters; with polling, nothing would kill this
    // workload's background sleep after them.
    // SAFETY: killpg(2) on the process group of a workload this test started.
    unsafe { libc::killpg(new_workload, libc::SIGKILL) };
}

/// The process group of `pid` (/proc/PID/stat field 5), while it exists.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// A tasksitter of the previous release writes no runtime record: the
/// state file's runtime record (pid and start time) is enough to adopt it.
#[test]
fn a_tasksitter_without_a_runtime_record_is_readopted_from_the_state_file() {
    let mut sitter = MachineSitter::start(&[]);
    sitter.put_task("old", spec("sleep 397"));
    let before = sitter.wait_running("old");
    let (paths, _) = runtime_record(&sitter, "old", before.1);
    sitter.kill9();
    std::fs::remove_file(paths.runtime()).unwrap();
    sitter.boot();
    assert_eq!(sitter.wait_running("old"), before);
    assert_eq!(
        sitter.task("old")["sitter_starts"],
        1,
        "adopted, not restarted"
    );
    assert_eq!(count_workloads("397"), 1);
}
