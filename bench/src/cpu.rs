//! Benchmark 3: a spinner limited to half a core. CPU use is sampled from
//! /proc every 100 ms over the window, summing the ticks of every spinner
//! process seen (a tool that kills and restarts the spinner still counts).

use crate::common::{
    cerebro_bin, clock_ticks_per_sec, cpu_ticks, kill_marked, median_p95, ratio, self_bin,
    spawn_guarded, Scale, Table,
};
use crate::peers::{Monit, Supervisord};
use anyhow::{bail, Result};
use cerebro_host::process::find_pids;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT_CORES: f64 = 0.5;

fn spin_command(marker: &Path) -> String {
    // The marker in argv tells this run's spinner from any other.
    format!(
        "{} workload spin --tag {}",
        self_bin().display(),
        marker.display()
    )
}

/// Cores used by the processes whose argv holds `tag`: over the whole
/// `window`, and in each whole second of it.
struct CpuUse {
    overall: f64,
    per_second: Vec<f64>,
}

fn measure(tag: &str, window: Duration) -> CpuUse {
    let is_spinner =
        |argv: &[String]| argv.iter().any(|a| a == "spin") && argv.iter().any(|a| a == tag);
    let mut last: HashMap<i32, u64> = find_pids(is_spinner)
        .into_iter()
        .map(|p| (p, cpu_ticks(p)))
        .collect();
    let mut used_ticks = 0u64;
    let mut per_second = Vec::new();
    let mut second_started = (Instant::now(), 0u64);
    let started = Instant::now();
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100));
        for pid in find_pids(is_spinner) {
            let now = cpu_ticks(pid);
            let before = last.insert(pid, now).unwrap_or(0);
            used_ticks += now.saturating_sub(before);
        }
        let (since, ticks_then) = second_started;
        if since.elapsed() >= Duration::from_secs(1) {
            per_second.push(
                (used_ticks - ticks_then) as f64
                    / clock_ticks_per_sec()
                    / since.elapsed().as_secs_f64(),
            );
            second_started = (Instant::now(), used_ticks);
        }
    }
    CpuUse {
        overall: used_ticks as f64 / clock_ticks_per_sec() / started.elapsed().as_secs_f64(),
        per_second,
    }
}

fn one(tool: &str, window: Duration) -> Result<CpuUse> {
    let dir = tempfile::tempdir()?;
    let tag = dir.path().join("spinner");
    let command = spin_command(&tag);
    let tasksitter = |backend: &str| -> Result<Box<dyn std::any::Any>> {
        Ok(Box::new(spawn_guarded(
            Command::new(cerebro_bin("tasksitter"))
                .args([
                    "--name",
                    "spin",
                    "--command",
                    &command,
                    "--cpu",
                    &LIMIT_CORES.to_string(),
                ])
                .args([
                    "--limits-backend",
                    backend,
                    "--restart",
                    "--ensure-alive",
                    "--max-restarts",
                    "-1",
                ])
                .arg("--stdout-location")
                .arg(dir.path())
                .arg("--stderr-location")
                .arg(dir.path()),
        )?))
    };
    let _running: Box<dyn std::any::Any> = match tool {
        "tasksitter (cgroup)" => tasksitter("cgroup")?,
        "tasksitter (poll)" => tasksitter("poll")?,
        "supervisord" => Box::new(Supervisord::start(
            dir.path(),
            &format!("[program:spin]\ncommand={command}\nautorestart=true\nstartsecs=0\n"),
        )?),
        "monit" => {
            let pidfile = dir.path().join("spin.pid");
            Box::new(Monit::start(
                dir.path(),
                &format!(
                    "check process spin with pidfile {p}\n  start program = \"/bin/sh -c '{command} & echo $! > {p}'\"\n  \
                     stop program = \"/bin/sh -c 'kill $(cat {p})'\"\n  if cpu > 50% for 2 cycles then restart\n",
                    p = pidfile.display()
                ),
            )?)
        }
        other => bail!("unknown tool {other}"),
    };
    let tag = tag.display().to_string();
    crate::common::wait_until(Duration::from_secs(20), "the spinner to start", || {
        (!find_pids(|argv| argv.contains(&tag)).is_empty()).then_some(())
    })?;
    let used = measure(&tag, window);
    kill_marked(&dir.path().display().to_string());
    Ok(used)
}

pub fn run(scale: Scale) -> Result<Vec<Table>> {
    let window = Duration::from_secs(scale.pick(10, 1));
    let tools = [
        ("tasksitter (cgroup)", "CFS quota: throttled to the limit"),
        (
            "tasksitter (poll)",
            "kills and restarts when the windowed average is over",
        ),
        ("supervisord", "no CPU limit"),
        ("monit", "`if cpu > 50% for 2 cycles then restart`"),
    ];
    let mut table = Table::new(
        &format!("CPU limit ({LIMIT_CORES} core; a spinner that would use a whole core)"),
        &[
            "tool",
            "mechanism",
            "cores used",
            "median per second",
            "p95 per second",
            "held at the limit",
            "this tool lets it use, vs tasksitter (cgroup)",
        ],
    );
    let mut cerebro_use = f64::NAN;
    for (tool, mechanism) in tools {
        eprintln!("  cpu: {tool}");
        let used = one(tool, window)?;
        if tool == "tasksitter (cgroup)" {
            cerebro_use = used.overall;
        }
        let (median, p95) = median_p95(&used.per_second);
        table.row(vec![
            tool.into(),
            mechanism.into(),
            format!("{:.2}", used.overall),
            format!("{median:.2}"),
            format!("{p95:.2}"),
            if p95 <= LIMIT_CORES * 1.1 {
                "yes".into()
            } else if used.overall <= LIMIT_CORES * 1.1 {
                "on average only".into()
            } else {
                "no".into()
            },
            ratio(cerebro_use, used.overall),
        ]);
    }
    table.note(format!(
        "CPU time of the spinner processes over {} s, sampled from /proc every 100 ms (a killed spinner's last 100 ms may be \
         missed); median and p95 are over the window's whole seconds. Held at the limit: the p95 second stays within 10% of \
         it; \"on average only\" means the tool kills and restarts the spinner, so it runs flat out between kills. The last \
         column is this tool's cores used divided by tasksitter (cgroup)'s.",
        window.as_secs()
    ));
    Ok(vec![table])
}
