//! What every benchmark shares: the binaries under test, the peers, timing
//! statistics, Markdown tables, process probes and the tiny workloads.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How big a run is: `smoke` proves every benchmark still builds and runs.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub smoke: bool,
}

impl Scale {
    /// `full` normally, `smoke` in smoke mode.
    pub fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.smoke {
            smoke
        } else {
            full
        }
    }
}

/// Nanoseconds since the Unix epoch (the clock workloads stamp their logs with).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The workspace's release binaries (built by scripts/bench.sh), beside this one.
pub fn cerebro_bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// This benchmark binary, which also holds the workloads (`cerebro-bench workload ...`).
pub fn self_bin() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cerebro-bench"))
}

/// Where scripts/bench.sh puts superlance's memmon.
pub fn memmon_bin() -> PathBuf {
    let root = workspace_root();
    root.join("target/bench-venv/bin/memmon")
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn require(path: &Path, hint: &str) -> Result<()> {
    if !path.exists() {
        bail!("{} is missing: {hint}", path.display());
    }
    Ok(())
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Median and 95th percentile, in the samples' unit.
pub fn median_p95(samples: &[f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

/// `peer / cerebro` as "12.3x" (how many times better Cerebro is when lower is better).
pub fn ratio(cerebro: f64, peer: f64) -> String {
    if !cerebro.is_finite() || !peer.is_finite() || cerebro <= 0.0 {
        return "—".into();
    }
    format!("{:.1}x", peer / cerebro)
}

/// A Markdown table.
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### {}\n\n| {} |\n|{}\n",
            self.title,
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }
}

pub fn fmt_ms(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1} ms")
    } else {
        "—".into()
    }
}

/// Polls `probe` until it answers, failing after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> Result<T> {
    wait_every(timeout, Duration::from_millis(2), what, probe)
}

/// Polls `probe` every `every` until it answers, failing after `timeout`.
pub fn wait_every<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Resident memory of `pid` in kB (VmRSS), 0 when gone.
pub fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of `pid` in clock ticks, 0 when gone.
pub fn cpu_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat[stat.rfind(')')? + 1..].to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// A child process killed (with its process group) on drop.
pub struct Guard {
    pub child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the group this benchmark started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Spawns `command` in its own process group, output discarded.
pub fn spawn_guarded(command: &mut Command) -> Result<Guard> {
    use std::os::unix::process::CommandExt;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    Ok(Guard { child })
}

/// Kills every process whose command line mentions `marker` (a bench temp dir).
pub fn kill_marked(marker: &str) {
    for pid in cerebro_host::process::find_pids(|argv| argv.iter().any(|a| a.contains(marker))) {
        // SAFETY: kill(2) on processes of this benchmark.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Reads `START ns` / `EXIT ns` lines a workload wrote.
pub fn read_stamps(path: &Path) -> Vec<(String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (kind, ns) = line.split_once(' ')?;
            Some((kind.to_string(), ns.trim().parse().ok()?))
        })
        .collect()
}

/// Appends one stamp line (O_APPEND keeps concurrent writers whole).
pub fn stamp(path: &Path, kind: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{kind} {}", now_ns());
    }
}
