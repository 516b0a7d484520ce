//! Benchmark 1: restart latency. A workload stamps START when its `main`
//! runs (exec done) and EXIT just before it exits, 50 ms later; a restart's
//! latency is the next START minus the previous EXIT. Tools take turns in
//! rounds so that machine drift hits all of them alike.

use crate::common::{
    cerebro_bin, fmt_ms, kill_marked, median_p95, ratio, read_stamps, self_bin, spawn_guarded,
    Scale, Table,
};
use crate::peers::{Monit, Supervisord};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LIFETIME_MS: u64 = 50;
const TOOLS: [&str; 4] = [
    "tasksitter (cgroup)",
    "tasksitter (poll)",
    "supervisord",
    "monit",
];

fn workload_command(log: &Path, pidfile: Option<&Path>) -> String {
    let mut command = format!(
        "{} workload exit --log {} --after-ms {LIFETIME_MS}",
        self_bin().display(),
        log.display()
    );
    if let Some(pidfile) = pidfile {
        command.push_str(&format!(" --pidfile {}", pidfile.display()));
    }
    command
}

/// Latencies (ms) of consecutive restarts in a stamp log.
fn latencies(log: &Path) -> Vec<f64> {
    let stamps = read_stamps(log);
    let mut samples = Vec::new();
    for pair in stamps.windows(2) {
        if let [(exit_kind, exit_ns), (start_kind, start_ns)] = pair {
            if exit_kind == "EXIT" && start_kind == "START" && start_ns >= exit_ns {
                samples.push((start_ns - exit_ns) as f64 / 1e6);
            }
        }
    }
    samples
}

/// Runs `tool` until the log holds `restarts` restarts (bounded by a timeout).
fn one_round(tool: &str, restarts: usize) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("stamps.log");
    let deadline = Duration::from_secs(30 + 3 * restarts as u64);
    let started = Instant::now();
    let _running: Box<dyn std::any::Any> = match tool {
        "tasksitter (cgroup)" | "tasksitter (poll)" => Box::new(spawn_guarded(
            Command::new(cerebro_bin("tasksitter"))
                .args(["--name", "exit", "--command", &workload_command(&log, None)])
                .args([
                    "--limits-backend",
                    if tool.contains("poll") {
                        "poll"
                    } else {
                        "cgroup"
                    },
                ])
                .args([
                    "--ensure-alive",
                    "--max-restarts",
                    "-1",
                    "--backoff-initial",
                    "0",
                    "--backoff-max",
                    "0",
                ])
                .arg("--stdout-location")
                .arg(dir.path())
                .arg("--stderr-location")
                .arg(dir.path()),
        )?),
        "supervisord" => Box::new(Supervisord::start(
            dir.path(),
            &format!(
                "[program:exit]\ncommand={}\nautorestart=true\nstartsecs=0\nstartretries=1000000\n",
                workload_command(&log, None)
            ),
        )?),
        "monit" => {
            let pidfile = dir.path().join("exit.pid");
            Box::new(Monit::start(
                dir.path(),
                &format!(
                    "check process exit with pidfile {}\n  start program = \"/bin/sh -c '{} &'\"\n",
                    pidfile.display(),
                    workload_command(&log, Some(&pidfile))
                ),
            )?)
        }
        other => bail!("unknown tool {other}"),
    };
    loop {
        let samples = latencies(&log);
        if samples.len() >= restarts {
            kill_marked(&dir.path().display().to_string());
            return Ok(samples.into_iter().take(restarts).collect());
        }
        if started.elapsed() > deadline {
            kill_marked(&dir.path().display().to_string());
            bail!(
                "{tool}: only {} restarts within {deadline:?}",
                samples.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(scale: Scale) -> Result<Vec<Table>> {
    let rounds = scale.pick(6, 1);
    let per_round = scale.pick(10, 3);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    for round in 0..rounds {
        for (i, tool) in TOOLS.iter().enumerate() {
            eprintln!("  restart: round {} of {rounds}, {tool}", round + 1);
            samples[i].extend(one_round(tool, per_round)?);
        }
    }
    let stats: Vec<(f64, f64)> = samples.iter().map(|s| median_p95(s)).collect();
    let mut table = Table::new(
        &format!("Restart latency (workload exits after {LIFETIME_MS} ms; exit to the next instance's main)"),
        &["tool", "restarts", "median", "p95", "tasksitter (cgroup) is faster by", "tasksitter (poll) is faster by"],
    );
    for (i, tool) in TOOLS.iter().enumerate() {
        table.row(vec![
            tool.to_string(),
            samples[i].len().to_string(),
            fmt_ms(stats[i].0),
            fmt_ms(stats[i].1),
            if i < 2 {
                "—".into()
            } else {
                ratio(stats[0].0, stats[i].0)
            },
            if i < 2 {
                "—".into()
            } else {
                ratio(stats[1].0, stats[i].0)
            },
        ]);
    }
    table.note(format!(
        "{rounds} rounds of {per_round} restarts per tool, tools interleaved. tasksitter: `--ensure-alive --backoff-initial 0 --backoff-max 0`; \
         supervisord: `autorestart=true startsecs=0`; monit: `set daemon 1` (its smallest cycle) with a pidfile check. \
         Both stamps come from the workload itself (CLOCK_REALTIME), so the latency includes fork and exec. \
         The cgroup backend pays for moving each new process into its cgroup: on cgroup v1 the kernel's first write to \
         `cgroup.procs` after a quiet spell waits for an RCU grace period (about 10 ms here, seen with strace); the poll backend does not."
    ));
    Ok(vec![table])
}
