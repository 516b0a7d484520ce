//! Benchmark 2: memory-limit enforcement latency. A workload grows by 1 MB
//! chunks at a steady rate, touching every page, and logs its own VmRSS
//! after each chunk. Latency is the workload's death (seen by polling /proc
//! every 1 ms) minus the moment its RSS crossed the limit; overshoot is the
//! highest RSS it logged minus the limit. Tools take turns in rounds so that
//! machine drift hits all of them alike.

use crate::common::{
    cerebro_bin, fmt_ms, kill_marked, median_p95, memmon_bin, ratio, require, self_bin,
    spawn_guarded, which, Guard, Scale, Table,
};
use crate::peers::{Monit, Supervisord};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a tool gets, after the workload should have crossed the limit, to kill it.
const ENFORCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tool gets to start the workload (monit needs a cycle or two).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the bench looks at the workload's /proc entry.
const POLL: Duration = Duration::from_millis(1);
/// A workload nobody killed gives up after this long, so that it cannot outlive the bench.
const GROW_MAX_LIFETIME: Duration = Duration::from_secs(120);

const MB: usize = 1 << 20;
/// A kernel OOM kill slower than this (from the start of the fatal chunk) waited in reclaim.
const SLOW_OOM_MS: f64 = 50.0;

// ---------------------------------------------------------------------------
// The workload (`cerebro-bench workload grow`).

/// Grows by 1 MB chunks at `mb_per_sec` after `delay`, touching every page.
/// Before a chunk it appends `ALLOC <pid> <ns>` to `log`, after it
/// `GROW <pid> <ns> <rss_kb> <anon_kb>` (its own VmRSS and RssAnon). The pid in
/// every line tells a restarted instance's lines from the first one's. Never
/// stops growing: the supervisor must kill it (after [`GROW_MAX_LIFETIME`] it
/// exits on its own, as a safety net).
pub fn grow_workload(
    log: &Path,
    mb_per_sec: f64,
    delay: Duration,
    pidfile: Option<&Path>,
) -> Result<()> {
    let pid = std::process::id();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    if let Some(pidfile) = pidfile {
        std::fs::write(pidfile, pid.to_string())?;
    }
    if !(mb_per_sec.is_finite() && mb_per_sec > 0.0) {
        bail!("--mb-per-sec must be a positive number");
    }
    let period = Duration::from_secs_f64(1.0 / mb_per_sec);
    std::thread::sleep(delay.min(GROW_MAX_LIFETIME));
    let started = Instant::now();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut next = started;
    while started.elapsed() < GROW_MAX_LIFETIME {
        // One write(2) per line: O_APPEND keeps concurrent writers' lines whole.
        file.write_all(format!("ALLOC {pid} {}\n", crate::common::now_ns()).as_bytes())?;
        let mut chunk = vec![0u8; MB];
        for offset in (0..MB).step_by(4096) {
            // SAFETY: offset < MB = chunk.len(); volatile so that the store (and
            // the page it makes resident) cannot be optimised away.
            unsafe { std::ptr::write_volatile(chunk.as_mut_ptr().add(offset), 1) };
        }
        chunks.push(chunk);
        let (rss, anon) = own_rss_kb();
        file.write_all(
            format!("GROW {pid} {} {rss} {anon}\n", crate::common::now_ns()).as_bytes(),
        )?;
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    std::hint::black_box(&chunks);
    std::process::exit(3);
}

/// This process's VmRSS and RssAnon, in kB (0 when unreadable).
fn own_rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

// ---------------------------------------------------------------------------
// The benchmark.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    SitterPoll,
    SitterCgroup,
    Supervisord,
    Monit,
}

impl Tool {
    const ALL: [Tool; 4] = [
        Tool::SitterCgroup,
        Tool::SitterPoll,
        Tool::Supervisord,
        Tool::Monit,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::SitterCgroup => "tasksitter (cgroup)",
            Tool::SitterPoll => "tasksitter (poll)",
            Tool::Supervisord => "supervisord + memmon",
            Tool::Monit => "monit",
        }
    }

    fn mechanism(self) -> &'static str {
        match self {
            Tool::SitterCgroup => "kernel cgroup memory limit: OOM kill",
            Tool::SitterPoll => "/proc every 100 ms (default), SIGKILL to the tree",
            Tool::Supervisord => "memmon on TICK_5 (ps), then stopProcess: SIGTERM",
            Tool::Monit => "`if totalmem > limit then restart`, 1 s cycle, stop program: SIGTERM",
        }
    }

    /// Why this tool cannot run here, if it cannot.
    fn missing(self) -> Option<String> {
        match self {
            Tool::SitterCgroup | Tool::SitterPoll => None,
            Tool::Supervisord => {
                if which("supervisord").is_none() {
                    Some("supervisord is not installed (scripts/bench.sh installs it)".into())
                } else if !memmon_bin().exists() {
                    Some(format!(
                        "{} is missing (scripts/bench.sh installs superlance)",
                        memmon_bin().display()
                    ))
                } else {
                    None
                }
            }
            Tool::Monit => which("monit")
                .is_none()
                .then(|| "monit is not installed (scripts/bench.sh installs it)".into()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    limit_mb: u64,
    mb_per_sec: f64,
    /// The workload waits a random 0..max_delay_ms before growing.
    max_delay_ms: u64,
}

impl Params {
    fn limit_kb(&self) -> u64 {
        self.limit_mb * 1024
    }
}

/// What one run saw.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Killed; `latency_ms` is death minus crossing, `overshoot_mb` the highest logged RSS minus the limit.
    Killed {
        latency_ms: f64,
        overshoot_mb: f64,
        /// The workload died inside a chunk before it logged an RSS at the limit: the crossing
        /// time is the start of that chunk.
        mid_chunk: bool,
        /// Death minus the start of the chunk it died in, when it died inside one.
        fatal_chunk_ms: Option<f64>,
        /// RssAnon (kB) in its last line.
        last_anon_kb: u64,
    },
    /// Killed before its RSS reached the limit, between chunks (counted, not timed).
    KilledEarly { overshoot_mb: f64 },
    /// Still alive `ENFORCE_TIMEOUT` after it should have crossed the limit.
    NotEnforced { overshoot_mb: f64 },
}

/// The lines one workload instance logged.
#[derive(Debug, Default)]
struct GrowLog {
    /// (ns, rss_kb, anon_kb) after each chunk.
    grows: Vec<(u128, u64, u64)>,
    /// ns before each chunk.
    allocs: Vec<u128>,
}

fn read_grow_log(path: &Path, pid: i32) -> GrowLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = GrowLog::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) != Some(pid) {
            continue;
        }
        match fields.as_slice() {
            ["GROW", _, ns, rss, anon] => {
                if let (Ok(ns), Ok(rss), Ok(anon)) = (ns.parse(), rss.parse(), anon.parse()) {
                    log.grows.push((ns, rss, anon));
                }
            }
            ["ALLOC", _, ns] => {
                if let Ok(ns) = ns.parse() {
                    log.allocs.push(ns);
                }
            }
            _ => {}
        }
    }
    log
}

/// Field 22 of /proc/PID/stat (start time) and whether the process is still running (not a zombie).
fn proc_state(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some((start, !matches!(*state, "Z" | "X" | "x")))
}

/// What keeps a tool running; dropping it kills everything the run started.
struct Running {
    _tool: Box<dyn std::any::Any>,
    /// A tasksitter, given a moment to exit on its own (and remove its cgroup) before it is killed.
    sitter: Option<Guard>,
    marker: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(sitter) = &mut self.sitter {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(sitter.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.sitter = None;
        kill_marked(&self.marker);
    }
}

fn grow_command(params: Params, delay: Duration, log: &Path, pidfile: &Path) -> String {
    format!(
        "{} workload grow --log {} --mb-per-sec {} --delay-ms {} --pidfile {}",
        self_bin().display(),
        log.display(),
        params.mb_per_sec,
        delay.as_millis(),
        pidfile.display()
    )
}

/// A number in `0..bound` (0 when `bound` is 0), from the standard library's random hash keys.
fn random_below(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(crate::common::now_ns());
    hasher.finish().checked_rem(bound).unwrap_or(0)
}

fn start_tool(
    tool: Tool,
    params: Params,
    delay: Duration,
    dir: &Path,
    log: &Path,
    pidfile: &Path,
) -> Result<Running> {
    let command = grow_command(params, delay, log, pidfile);
    let marker = dir.display().to_string();
    let limit = params.limit_mb;
    let sitter = |backend: &str| -> Result<Guard> {
        spawn_guarded(
            Command::new(cerebro_bin("tasksitter"))
                .args(["--name", "grow", "--command", &format!("exec {command}")])
                .args([
                    "--mem",
                    &limit.to_string(),
                    "--limits-backend",
                    backend,
                    "--max-restarts",
                    "0",
                ])
                .arg("--stdout-location")
                .arg(dir)
                .arg("--stderr-location")
                .arg(dir),
        )
    };
    let running = match tool {
        Tool::SitterPoll => Running {
            _tool: Box::new(()),
            sitter: Some(sitter("poll")?),
            marker,
        },
        Tool::SitterCgroup => Running {
            _tool: Box::new(()),
            sitter: Some(sitter("cgroup")?),
            marker,
        },
        Tool::Supervisord => {
            // `-n <dir>` (the name in memmon's mails) puts the marker in memmon's argv,
            // so kill_marked finds it too (supervisord puts it in its own process group).
            let sections = format!(
                "[program:grow]\ncommand={command}\nautostart=true\nautorestart=false\nstartsecs=0\n\
                 [eventlistener:memmon]\ncommand={memmon} -p grow={limit}MB -n {marker}\nevents=TICK_5\n",
                memmon = memmon_bin().display()
            );
            Running {
                _tool: Box::new(Supervisord::start(dir, &sections)?),
                sitter: None,
                marker,
            }
        }
        Tool::Monit => {
            let checks = format!(
                "check process grow with pidfile {p}\n  start program = \"/bin/sh -c '{command} &'\"\n  \
                 stop program = \"/bin/sh -c 'kill $(cat {p})'\"\n  if totalmem > {limit} MB then restart\n",
                p = pidfile.display()
            );
            Running {
                _tool: Box::new(Monit::start(dir, &checks)?),
                sitter: None,
                marker,
            }
        }
    };
    Ok(running)
}

/// One run of the workload under `tool`.
fn one(tool: Tool, params: Params) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("grow.log");
    let pidfile = dir.path().join("grow.pid");
    // A random wait before growing puts the crossing at a random phase of each
    // tool's sampling cycle (tasksitter's 100 ms, monit's 1 s) instead of a fixed one.
    let delay = Duration::from_millis(random_below(params.max_delay_ms));
    let running = start_tool(tool, params, delay, dir.path(), &log, &pidfile)?;

    let pid: i32 = crate::common::wait_until(START_TIMEOUT, "the workload's pidfile", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })?;
    let Some((start_time, true)) = proc_state(pid) else {
        bail!("the workload (pid {pid}) was gone before it was watched");
    };
    // Watch /proc every 1 ms: dead when gone, a zombie, or the pid reused.
    let growth = Duration::from_secs_f64(params.limit_mb as f64 / params.mb_per_sec);
    let deadline = Instant::now() + delay + growth + ENFORCE_TIMEOUT;
    let mut death_ns = None;
    while Instant::now() < deadline {
        match proc_state(pid) {
            Some((start, true)) if start == start_time => std::thread::sleep(POLL),
            _ => {
                death_ns = Some(crate::common::now_ns());
                break;
            }
        }
    }
    drop(running);

    let grow_log = read_grow_log(&log, pid);
    let limit_kb = params.limit_kb();
    let max_rss = grow_log
        .grows
        .iter()
        .map(|&(_, rss, _)| rss)
        .max()
        .unwrap_or(0);
    let overshoot_mb = (max_rss as f64 - limit_kb as f64) / 1024.0;
    let Some(observed) = death_ns else {
        return Ok(Outcome::NotEnforced { overshoot_mb });
    };
    // The workload cannot have died before its last line.
    let last_line = grow_log
        .grows
        .iter()
        .map(|g| g.0)
        .chain(grow_log.allocs.iter().copied())
        .max()
        .unwrap_or(0);
    let death = observed.max(last_line);
    let crossing = grow_log.grows.iter().find(|g| g.1 >= limit_kb).map(|g| g.0);
    let last_grow = grow_log.grows.last().map_or(0, |g| g.0);
    let last_anon_kb = grow_log.grows.last().map_or(0, |g| g.2);
    let unfinished_chunk = grow_log.allocs.last().copied().filter(|&ns| ns > last_grow);
    let fatal_chunk_ms = unfinished_chunk.map(|ns| (death - ns) as f64 / 1e6);
    let latency_ms = match (crossing, unfinished_chunk) {
        (Some(crossing), _) => (death - crossing) as f64 / 1e6,
        (None, Some(chunk_start)) => (death - chunk_start) as f64 / 1e6,
        (None, None) => return Ok(Outcome::KilledEarly { overshoot_mb }),
    };
    Ok(Outcome::Killed {
        latency_ms,
        overshoot_mb,
        mid_chunk: crossing.is_none(),
        fatal_chunk_ms,
        last_anon_kb,
    })
}

#[derive(Debug, Default)]
struct Results {
    latencies_ms: Vec<f64>,
    overshoots_mb: Vec<f64>,
    /// Death minus the start of the chunk the workload died in, for runs where it died inside one.
    fatal_chunk_ms: Vec<f64>,
    /// RssAnon in the last line, minus the limit (MB).
    last_anon_over_mb: Vec<f64>,
    mid_chunk: usize,
    killed_early: usize,
    not_enforced: usize,
    errors: Vec<String>,
}

impl Results {
    fn runs(&self) -> usize {
        self.latencies_ms.len() + self.killed_early + self.not_enforced + self.errors.len()
    }

    fn record(&mut self, outcome: Result<Outcome>, limit_kb: u64) -> String {
        match outcome {
            Ok(Outcome::Killed {
                latency_ms,
                overshoot_mb,
                mid_chunk,
                fatal_chunk_ms,
                last_anon_kb,
            }) => {
                self.latencies_ms.push(latency_ms);
                self.overshoots_mb.push(overshoot_mb);
                self.fatal_chunk_ms.extend(fatal_chunk_ms);
                self.last_anon_over_mb
                    .push((last_anon_kb as f64 - limit_kb as f64) / 1024.0);
                self.mid_chunk += usize::from(mid_chunk);
                format!(
                    "killed after {} ({} over)",
                    fmt_ms(latency_ms),
                    fmt_mb(overshoot_mb)
                )
            }
            Ok(Outcome::KilledEarly { overshoot_mb }) => {
                self.killed_early += 1;
                self.overshoots_mb.push(overshoot_mb);
                format!(
                    "killed before its RSS reached the limit ({})",
                    fmt_mb(overshoot_mb)
                )
            }
            Ok(Outcome::NotEnforced { overshoot_mb }) => {
                self.not_enforced += 1;
                self.overshoots_mb.push(overshoot_mb);
                format!(
                    "not killed within {} s ({} over)",
                    ENFORCE_TIMEOUT.as_secs(),
                    fmt_mb(overshoot_mb)
                )
            }
            Err(error) => {
                let text = format!("{error:#}");
                self.errors.push(text.clone());
                format!("failed: {text}")
            }
        }
    }
}

fn fmt_mb(value: f64) -> String {
    if value.is_finite() {
        format!("{value:+.1} MB")
    } else {
        "—".into()
    }
}

pub fn run(scale: Scale) -> Result<Vec<Table>> {
    require(
        &cerebro_bin("tasksitter"),
        "run `cargo build --release -p tasksitter`",
    )?;
    let params = Params {
        limit_mb: scale.pick(100, 30),
        mb_per_sec: 50.0,
        max_delay_ms: 1000,
    };
    let rounds = scale.pick(10, 1);
    let mut results: Vec<Results> = Tool::ALL.iter().map(|_| Results::default()).collect();
    let missing: Vec<Option<String>> = Tool::ALL.iter().map(|t| t.missing()).collect();
    for round in 0..rounds {
        // Rotate the order every round so that no tool always runs first (or last).
        for k in 0..Tool::ALL.len() {
            let index = (round + k) % Tool::ALL.len();
            let tool = Tool::ALL[index];
            if missing[index].is_some() {
                continue;
            }
            let said = results[index].record(one(tool, params), params.limit_kb());
            eprintln!(
                "  memory: round {}/{rounds}: {}: {said}",
                round + 1,
                tool.name()
            );
        }
    }

    let medians: Vec<f64> = results
        .iter()
        .map(|r| median_p95(&r.latencies_ms).0)
        .collect();
    // Cerebro is the better of tasksitter's two backends (indexes 0 and 1 of Tool::ALL).
    let best = [0, 1]
        .into_iter()
        .filter(|&i| medians[i].is_finite())
        .min_by(|&a, &b| medians[a].total_cmp(&medians[b]))
        .unwrap_or(0);
    let cerebro = medians[best];
    let versus = format!("Cerebro ({}) vs this tool", Tool::ALL[best].name());
    let mut table = Table::new(
        &format!(
            "Memory-limit enforcement (limit {} MB, growing {} MB/s)",
            params.limit_mb, params.mb_per_sec
        ),
        &[
            "tool",
            "mechanism",
            "killed / runs",
            "median latency",
            "p95 latency",
            "median overshoot",
            "max overshoot",
            &versus,
        ],
    );
    for (index, tool) in Tool::ALL.iter().enumerate() {
        let r = &results[index];
        if let Some(why) = &missing[index] {
            let mut row = vec![
                tool.name().to_string(),
                tool.mechanism().into(),
                "skipped".into(),
                why.clone(),
            ];
            row.resize(8, "—".into());
            table.row(row);
            continue;
        }
        let (median, p95) = median_p95(&r.latencies_ms);
        let (median_over, _) = median_p95(&r.overshoots_mb);
        let max_over = r.overshoots_mb.iter().copied().fold(f64::NAN, f64::max);
        let mut killed = format!("{} / {}", r.latencies_ms.len() + r.killed_early, r.runs());
        if r.not_enforced > 0 {
            killed.push_str(&format!(
                " ({} did not enforce within {} s)",
                r.not_enforced,
                ENFORCE_TIMEOUT.as_secs()
            ));
        }
        if r.killed_early > 0 {
            killed.push_str(&format!(" ({} before the limit)", r.killed_early));
        }
        if !r.errors.is_empty() {
            killed.push_str(&format!(" ({} failed)", r.errors.len()));
        }
        let median_cell = if r.latencies_ms.is_empty() && r.not_enforced > 0 {
            format!("did not enforce within {} s", ENFORCE_TIMEOUT.as_secs())
        } else {
            fmt_ms(median)
        };
        table.row(vec![
            tool.name().into(),
            tool.mechanism().into(),
            killed,
            median_cell,
            fmt_ms(p95),
            fmt_mb(median_over),
            fmt_mb(max_over),
            ratio(cerebro, median),
        ]);
    }

    table.note(format!(
        "The workload (`cerebro-bench workload grow`) waits a random 0-{} ms (so the crossing falls at a random phase \
         of each tool's sampling cycle), then allocates 1 MB chunks at {} MB/s, writing to every page, and after each \
         chunk logs its own VmRSS with a CLOCK_REALTIME timestamp; it never stops growing. Every tool is given \
         {} MB = {} kB (MiB for all four). {} round(s), the tools taking turns in a rotating order within each round; \
         every run has its own temp dir and a fresh supervisor. \"{versus}\" is this tool's median latency divided by \
         that of the better tasksitter backend.",
        params.max_delay_ms,
        params.mb_per_sec,
        params.limit_mb,
        params.limit_kb(),
        rounds
    ));
    table.note(
        "Latency = death − crossing. Death: the bench reads the workload's /proc/PID/stat every 1 ms and takes the \
         first read that finds it gone, a zombie or its pid reused (so a death is seen up to ~1 ms late; a zombie counts \
         as dead: it holds no memory and runs no code); the workload's own last log line bounds it from below. \
         Crossing: the timestamp of the first logged VmRSS ≥ the limit, written just after the chunk that crossed it, \
         so the latest moment the crossing can have happened (this errs in the peers' favour by up to one chunk's page \
         faults, about 1 ms). The bench and the workload read the same CLOCK_REALTIME on one machine.",
    );
    let cgroup = &results[0];
    let (kernel_ms, _) = median_p95(&cgroup.fatal_chunk_ms);
    let (anon_over, _) = median_p95(&cgroup.last_anon_over_mb);
    let slow = cgroup
        .fatal_chunk_ms
        .iter()
        .filter(|&&ms| ms > SLOW_OOM_MS)
        .count();
    let mut note = format!(
        "tasksitter (cgroup) sets the cgroup's memory limit, and the kernel OOM-kills the workload in the page fault \
         that would take the cgroup's charge over it: the workload died inside an unfinished chunk in {} of {} runs, \
         a median {} after that chunk began. The kernel charges the cgroup for what its processes allocated \
         (anonymous memory, page cache they wrote, kernel memory), not for file pages already cached by others, such \
         as the binary's and libc's, which VmRSS counts: so VmRSS goes over the limit by those pages (~2 MB here) \
         before the kernel acts (at its last line the workload's RssAnon was a median {} from the limit). The table \
         reports VmRSS for every tool alike, so this row's latency includes the time to grow through those ~2 MB \
         (~40 ms at {} MB/s).",
        cgroup.fatal_chunk_ms.len(),
        cgroup.latencies_ms.len(),
        fmt_ms(kernel_ms),
        fmt_mb(anon_over),
        params.mb_per_sec,
    );
    note.push_str(&format!(
        " In {slow} of {} runs the kernel took over {SLOW_OOM_MS} ms from that chunk to the kill: cgroup-v1 reclaim \
         waits (~100 ms) on the cgroup's own file pages under writeback, here the workload's log on ext4, before it \
         gives up and invokes the OOM killer; a separate check on this machine with the log on tmpfs never waited \
         (1-2 ms from the chunk to the OOM killer, ~10 ms more until the process was gone). Real services write \
         logs too, so the benchmark keeps its log on disk.",
        cgroup.fatal_chunk_ms.len()
    ));
    if cgroup.mid_chunk > 0 {
        note.push_str(&format!(
            " In {} run(s) the workload died before its VmRSS reached the limit; there the crossing is the start of \
             the unfinished chunk, the earliest moment it can have crossed.",
            cgroup.mid_chunk
        ));
    }
    table.note(note);
    table.note(
        "Overshoot = highest VmRSS the workload logged − the limit, at 1 MB resolution (it logs after each chunk and \
         may have faulted in part of one more before it died). tasksitter's poll backend samples the tree's RSS every \
         100 ms (its default `--poll-interval`) and SIGKILLs the tree at once. memmon runs on supervisord's TICK_5 \
         events, the smallest tick supervisord emits (every 5 s, on wall-clock multiples of 5 s), so its latency is \
         spread over 0-5 s plus its `ps` and XML-RPC round trip (stopProcess: SIGTERM), while the workload keeps \
         growing. monit checks `totalmem` once per cycle (`set daemon 1`, its smallest) and restarts through the stop \
         program (`kill $(cat pidfile)`, SIGTERM): without a stop program, monit 5.33 only logs \"trying to restart\" \
         every cycle and never kills the process.",
    );
    table.note(format!(
        "A run in which the workload is still alive {} s after it should have crossed the limit is reported as \
         \"did not enforce within {} s\" and left out of the latency statistics (its overshoot is kept).",
        ENFORCE_TIMEOUT.as_secs(),
        ENFORCE_TIMEOUT.as_secs()
    ));
    for (index, tool) in Tool::ALL.iter().enumerate() {
        if let Some(error) = results[index].errors.first() {
            table.note(format!(
                "{}: {} run(s) failed; the first: {error}",
                tool.name(),
                results[index].errors.len()
            ));
        }
    }
    Ok(vec![table])
}
