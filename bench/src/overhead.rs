//! Benchmark 4, overhead: resident memory and CPU of the supervising
//! processes while they look after 1, 10 and 100 idle `sleep 100000`s.
//!
//! Cerebro is a machinesitter with one tasksitter per task (and, where
//! cgroups are used, one `__cgroup-guard` helper per tasksitter); supervisord
//! and monit are one process each. Every configuration runs from a temp dir
//! of its own and is torn down (daemon, helpers and workloads) before the
//! next one starts; for each N the three tools run one after another.

use crate::common::{
    cerebro_bin, clock_ticks_per_sec, cpu_ticks, kill_marked, ratio, rss_kb, spawn_guarded, Guard,
    Scale, Table,
};
use crate::peers::{Monit, Supervisord};
use anyhow::{bail, Context, Result};
use cerebro_client::{HttpClient, MachineClient};
use cerebro_host::process::{cmdline, is_alive, start_ticks};
use cerebro_types::TaskSpec;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The idle workload every tool supervises.
const WORKLOAD: [&str; 2] = ["sleep", "100000"];

fn is_workload(argv: &[String]) -> bool {
    argv.len() == WORKLOAD.len() && argv.iter().zip(WORKLOAD).all(|(a, b)| a == b)
}

/// A process as (pid, start time in clock ticks), safe against pid reuse.
type ProcId = (i32, u64);

/// One process as seen in /proc: its parent and its command line.
struct ProcEntry {
    ppid: i32,
    argv: Vec<String>,
}

/// Every live process, by pid.
fn process_table() -> HashMap<i32, ProcEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            if state == "Z" || state == "X" {
                return None;
            }
            let ppid = fields.next()?.parse().ok()?;
            Some((
                pid,
                ProcEntry {
                    ppid,
                    argv: cmdline(pid),
                },
            ))
        })
        .collect()
}

/// `roots` and every process below them.
fn with_descendants(table: &HashMap<i32, ProcEntry>, roots: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, entry) in table {
        children.entry(entry.ppid).or_default().push(pid);
    }
    let mut found: BTreeSet<i32> = roots
        .iter()
        .copied()
        .filter(|pid| table.contains_key(pid))
        .collect();
    let mut stack: Vec<i32> = found.iter().copied().collect();
    // Each pid enters `found` once, so this ends after at most |table| steps.
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map_or(&[][..], Vec::as_slice) {
            if found.insert(child) {
                stack.push(child);
            }
        }
    }
    found
}

/// Proportional set size of `pid` in kB (shared pages split between their users), 0 when unknown.
fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Cerebro,
    Supervisord,
    Monit,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Cerebro => "cerebro",
            Tool::Supervisord => "supervisord",
            Tool::Monit => "monit",
        }
    }
}

/// The daemon under test; dropping it kills it (and what its peer wrapper knows of).
enum Daemon {
    Cerebro(Guard),
    Supervisord(Supervisord),
    Monit(Monit),
}

impl Daemon {
    fn pid(&self) -> i32 {
        match self {
            Daemon::Cerebro(guard) => guard.child.id() as i32,
            Daemon::Supervisord(s) => s.pid(),
            Daemon::Monit(m) => m.pid(),
        }
    }
}

/// One configuration: a daemon in a temp dir, torn down completely on drop.
struct Setup {
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    marker: String,
    n: usize,
}

impl Setup {
    fn new(tool: Tool, n: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cerebro-bench-overhead-{}-", tool.name()))
            .tempdir()
            .context("cannot create a temp dir")?;
        let marker = dir.path().display().to_string();
        Ok(Self {
            daemon: None,
            dir,
            marker,
            n,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    fn pidfile(&self, k: usize) -> PathBuf {
        self.path().join(format!("idle-{k}.pid"))
    }

    /// Workloads monit started, from their pid files.
    fn pidfile_workloads(&self) -> Vec<i32> {
        (0..self.n)
            .filter_map(|k| {
                std::fs::read_to_string(self.pidfile(k))
                    .ok()?
                    .trim()
                    .parse::<i32>()
                    .ok()
            })
            .filter(|&pid| pid > 1 && is_workload(&cmdline(pid)))
            .collect()
    }

    /// The daemon, every process marked with the temp dir, and everything
    /// below them, as (pid, argv).
    fn family(&self) -> Vec<(i32, Vec<String>)> {
        let mut table = process_table();
        let mut roots: BTreeSet<i32> = table
            .iter()
            .filter(|(_, e)| e.argv.iter().any(|a| a.contains(&self.marker)))
            .map(|(&pid, _)| pid)
            .collect();
        roots.extend(self.daemon_pid());
        with_descendants(&table, &roots)
            .into_iter()
            .filter_map(|pid| table.remove(&pid).map(|e| (pid, e.argv)))
            .collect()
    }

    /// The supervising processes (the family without the workloads).
    fn supervisors(&self) -> Vec<i32> {
        self.family()
            .into_iter()
            .filter(|(_, argv)| !is_workload(argv))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Running workloads: below the daemon, or named by monit's pid files.
    fn workloads(&self) -> BTreeSet<i32> {
        let mut pids: BTreeSet<i32> = self
            .family()
            .into_iter()
            .filter(|(_, argv)| is_workload(argv))
            .map(|(pid, _)| pid)
            .collect();
        pids.extend(self.pidfile_workloads());
        pids
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Cerebro first stops its tasks itself (--on-exit stop).
        if let Some(Daemon::Cerebro(guard)) = self.daemon.as_mut() {
            // SAFETY: kill(2) on the machinesitter this benchmark started.
            unsafe { libc::kill(guard.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(guard.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Remember everything that may outlive the daemon (pid and start time, against reuse).
        let remember = |setup: &Setup| -> Vec<ProcId> {
            let mut pids: BTreeSet<i32> = setup.family().into_iter().map(|(pid, _)| pid).collect();
            pids.extend(setup.pidfile_workloads());
            pids.into_iter()
                .filter_map(|pid| Some((pid, start_ticks(pid)?)))
                .collect()
        };
        let mut leftovers = remember(self);
        // Killing the daemon first: nothing restarts what is killed next.
        drop(self.daemon.take());
        leftovers.extend(remember(self));
        let kill_all = |procs: &[ProcId]| {
            for &(pid, ticks) in procs {
                if is_alive(pid, ticks) {
                    // SAFETY: kill(2) on a process of this configuration, checked by start time.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        };
        // The workloads first, so cgroup guards find their cgroups empty.
        let (workloads, helpers): (Vec<ProcId>, Vec<ProcId>) = leftovers
            .into_iter()
            .partition(|&(pid, _)| is_workload(&cmdline(pid)));
        kill_all(&workloads);
        kill_marked(&self.marker);
        // Cgroup guards clean up once their tasksitter is gone; give them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && helpers.iter().any(|&(pid, ticks)| is_alive(pid, ticks))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_all(&helpers);
        kill_all(&workloads);
    }
}

/// Puts `n` idle tasks on the machinesitter at `addr` through the typed
/// client, as the clustersitter would.
fn put_idle_tasks(addr: &str, n: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let machine = MachineClient::new(HttpClient::new(Duration::from_secs(10), 1), addr, None);
    for k in 0..n {
        let mut spec = TaskSpec::new(format!("idle-{k}"), WORKLOAD.join(" "));
        spec.cpu = Some(0.001);
        spec.mem = Some(5.0);
        runtime
            .block_on(machine.put_task(&spec, None))
            .with_context(|| format!("PUT task {}", spec.name))?;
    }
    Ok(())
}

/// Starts `tool` supervising `n` idle processes and waits until they all run.
fn start(tool: Tool, n: usize, scale: Scale) -> Result<Setup> {
    let mut setup = Setup::new(tool, n)?;
    let dir = setup.path().to_path_buf();
    let timeout = Duration::from_secs(scale.pick(240, 60));
    match tool {
        Tool::Cerebro => {
            let state = dir.join("state");
            let addr_file = dir.join("addr");
            let guard = spawn_guarded(
                Command::new(cerebro_bin("machinesitter"))
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["--port", "0", "--address-file"])
                    .arg(&addr_file)
                    .args([
                        "--capacity-cpu",
                        "1000",
                        "--capacity-mem",
                        "1000000",
                        "--on-exit",
                        "stop",
                    ]),
            )?;
            setup.daemon = Some(Daemon::Cerebro(guard));
            let addr = crate::common::wait_every(
                Duration::from_secs(20),
                Duration::from_millis(20),
                "the machinesitter's address",
                || {
                    let text = std::fs::read_to_string(&addr_file).ok()?;
                    let addr = text.trim();
                    addr.parse::<std::net::SocketAddr>()
                        .ok()
                        .map(|_| addr.to_string())
                },
            )?;
            put_idle_tasks(&addr, n)?;
        }
        Tool::Supervisord => {
            let sections: String = (0..n)
                .map(|k| {
                    format!(
                        "[program:idle-{k}]\ncommand={}\nautorestart=true\nstartsecs=0\n",
                        WORKLOAD.join(" ")
                    )
                })
                .collect();
            setup.daemon = Some(Daemon::Supervisord(Supervisord::start(&dir, &sections)?));
        }
        Tool::Monit => {
            // The workload's output goes to /dev/null so it does not hold
            // monit's pipe to the start program open.
            let checks: String = (0..n)
                .map(|k| {
                    let pidfile = setup.pidfile(k);
                    format!(
                        "check process idle-{k} with pidfile {p}\n  start program = \"/bin/sh -c '{w} </dev/null >/dev/null 2>&1 & echo $! > {p}'\"\n",
                        p = pidfile.display(),
                        w = WORKLOAD.join(" ")
                    )
                })
                .collect();
            setup.daemon = Some(Daemon::Monit(Monit::start(&dir, &checks)?));
        }
    }
    let what = format!("{n} idle processes under {}", tool.name());
    crate::common::wait_every(timeout, Duration::from_millis(100), &what, || {
        if let Some(Daemon::Cerebro(guard)) = setup.daemon.as_mut() {
            if !matches!(guard.child.try_wait(), Ok(None)) {
                return Some(());
            }
        }
        (setup.workloads().len() >= n).then_some(())
    })?;
    if let Some(Daemon::Cerebro(guard)) = setup.daemon.as_mut() {
        if !matches!(guard.child.try_wait(), Ok(None)) {
            bail!(
                "the machinesitter exited early (see {})",
                dir.join("state").display()
            );
        }
    }
    Ok(setup)
}

struct Sample {
    rss_kb: u64,
    pss_kb: u64,
    cpu_percent: f64,
    processes: usize,
    /// The daemon alone (the machinesitter, for Cerebro).
    daemon_rss_kb: u64,
    daemon_cpu_percent: f64,
}

/// Memory of the supervising processes after `settle`, then their CPU over `window`.
fn measure(setup: &Setup, settle: Duration, window: Duration) -> Sample {
    std::thread::sleep(settle);
    let before: Vec<(i32, u64)> = setup
        .supervisors()
        .into_iter()
        .map(|pid| (pid, cpu_ticks(pid)))
        .collect();
    let rss: u64 = before.iter().map(|&(pid, _)| rss_kb(pid)).sum();
    let pss: u64 = before.iter().map(|&(pid, _)| pss_kb(pid)).sum();
    let started = Instant::now();
    std::thread::sleep(window);
    let after: HashMap<i32, u64> = setup
        .supervisors()
        .into_iter()
        .map(|pid| (pid, cpu_ticks(pid)))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let was: HashMap<i32, u64> = before.iter().copied().collect();
    // A process born during the window counts whole; one that died is lost (there should be none).
    let delta = |pid: i32, t: u64| t.saturating_sub(was.get(&pid).copied().unwrap_or(0));
    let ticks: u64 = after.iter().map(|(&pid, &t)| delta(pid, t)).sum();
    let daemon = setup.daemon_pid().unwrap_or(0);
    let daemon_ticks = after.get(&daemon).map_or(0, |&t| delta(daemon, t));
    let percent = |ticks: u64| ticks as f64 / clock_ticks_per_sec() / elapsed * 100.0;
    Sample {
        rss_kb: rss,
        pss_kb: pss,
        cpu_percent: percent(ticks),
        processes: before.len(),
        daemon_rss_kb: rss_kb(daemon),
        daemon_cpu_percent: percent(daemon_ticks),
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn run(scale: Scale) -> Result<Vec<Table>> {
    let counts: Vec<usize> = scale.pick(vec![1, 10, 100], vec![1, 3]);
    let settle = Duration::from_millis(scale.pick(3000, 500));
    let window = Duration::from_millis(scale.pick(10_000, 1000));
    let tools = [Tool::Cerebro, Tool::Supervisord, Tool::Monit];

    let mut results: Vec<(Tool, usize, Sample)> = Vec::new();
    for &n in &counts {
        for tool in tools {
            eprintln!(
                "cerebro-bench: overhead: {} with {n} idle processes...",
                tool.name()
            );
            let setup = start(tool, n, scale)
                .with_context(|| format!("{} with {n} idle processes", tool.name()))?;
            let sample = measure(&setup, settle, window);
            drop(setup);
            results.push((tool, n, sample));
        }
    }

    let mut table = Table::new(
        "Overhead with N idle processes",
        &[
            "tool",
            "N",
            "supervising processes",
            "supervisor RSS (MB)",
            "supervisor PSS (MB)",
            "supervisor CPU (% of a core)",
            "per-process RSS (MB)",
            "Cerebro is lighter by (PSS)",
            "Cerebro is lighter by (CPU)",
        ],
    );
    for (tool, n, sample) in &results {
        let cerebro = results
            .iter()
            .find(|(t, cerebro_n, _)| *t == Tool::Cerebro && cerebro_n == n)
            .map(|(_, _, s)| s);
        let versus = |value: fn(&Sample) -> f64| match cerebro {
            Some(cerebro) if *tool != Tool::Cerebro => ratio(value(cerebro), value(sample)),
            _ => "—".into(),
        };
        table.row(vec![
            tool.name().into(),
            n.to_string(),
            sample.processes.to_string(),
            format!("{:.1}", mb(sample.rss_kb)),
            format!("{:.1}", mb(sample.pss_kb)),
            format!("{:.2}", sample.cpu_percent),
            format!("{:.2}", mb(sample.rss_kb) / *n as f64),
            versus(|s| s.pss_kb as f64),
            versus(|s| s.cpu_percent),
        ]);
    }
    table.note(format!(
        "Each configuration supervises N `{}` processes; measured after all run and {:.1} s settle: RSS is the sum of VmRSS of \
         the supervising processes, CPU their utime+stime over {:.0} s as % of one core (the kernel charges CPU time in \
         10 ms ticks to whatever runs at each tick, so processes that wake briefly are under-counted and values \
         below about 0.5% are coarse, for every tool alike). The workloads are not counted. \
         Cerebro = the machinesitter + one tasksitter per task + each tasksitter's `__cgroup-guard` helper \
         (cpu 0.001, mem 5 MB per task); supervisord and monit are one process each (monit's check cycle is 1 s, \
         its start program backgrounds the sleep and writes a pid file).",
        WORKLOAD.join(" "),
        settle.as_secs_f64(),
        window.as_secs_f64()
    ));
    table.note(
        "Summed VmRSS counts shared pages (the binary's text, libc) once per process, which inflates Cerebro's many \
         processes; PSS (proportional set size, from /proc/PID/smaps_rollup) splits shared pages between their users. \
         \"Cerebro is lighter by\" = this tool's PSS (or CPU) / Cerebro's at the same N: below 1.0x, Cerebro is the \
         heavier one.",
    );
    let largest = counts.last().copied().unwrap_or(1);
    let at = |tool: Tool| {
        results
            .iter()
            .find(|(t, n, _)| *t == tool && *n == largest)
            .map(|(_, _, s)| s)
    };
    if let (Some(cerebro), Some(supervisord), Some(monit)) =
        (at(Tool::Cerebro), at(Tool::Supervisord), at(Tool::Monit))
    {
        let per_task_kb = {
            let first = results
                .iter()
                .find(|(t, n, _)| *t == Tool::Cerebro && *n == counts[0])
                .map(|(_, _, s)| s);
            first.map_or(f64::NAN, |f| {
                (cerebro.rss_kb as f64 - f.rss_kb as f64)
                    / (largest as f64 - counts[0] as f64).max(1.0)
            })
        };
        table.note(format!(
            "At N={largest} Cerebro's supervising processes hold {:.1} MB RSS ({:.1} MB PSS) against \
             supervisord's {:.1} MB ({:.1} MB) and monit's {:.1} MB ({:.1} MB), growing by about {:.1} MB RSS per \
             task: Cerebro runs a tasksitter (its own tokio runtime and HTTP server) and a cgroup-guard process for \
             every task, while supervisord is one Python process and monit one C process. CPU at N={largest}: \
             Cerebro {:.2}% of a core, of which the machinesitter ({:.1} MB RSS, asking every tasksitter for its status \
             over HTTP every 2 s, and woken by the kernel through a pidfd when one exits rather than polling) is \
             {:.2}% and the rest is the tasksitters, each sampling its workload every 2 s (the default \
             --poll-interval when cgroups enforce the limits; 100 ms when it polls them); \
             supervisord {:.2}%, monit {:.2}%. Each tasksitter already runs a \
             current-thread runtime; what would close the gap is supervising many tasks from one process (one guard, \
             one HTTP server), which gives up what one tasksitter per task buys: a tasksitter that crashes or is \
             upgraded touches one task, not the machine's.",
            mb(cerebro.rss_kb),
            mb(cerebro.pss_kb),
            mb(supervisord.rss_kb),
            mb(supervisord.pss_kb),
            mb(monit.rss_kb),
            mb(monit.pss_kb),
            per_task_kb / 1024.0,
            cerebro.cpu_percent,
            mb(cerebro.daemon_rss_kb),
            cerebro.daemon_cpu_percent,
            supervisord.cpu_percent,
            monit.cpu_percent,
        ));
    }
    Ok(vec![table])
}
