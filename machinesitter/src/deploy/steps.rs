//! Running a recipe's commands (run steps, command checks) and probing
//! (http and tcp checks).
//!
//! A command runs as `sh -c COMMAND` in the release directory, in a
//! process group of its own, as the task's user when the machinesitter is
//! root; its stdout and stderr are read through pipes and only their tail
//! is kept. When it ends (or times out, or is cancelled) the whole group is
//! killed, so nothing it started lingers.

use cerebro_host::lock;
use cerebro_host::RunAs;
use cerebro_types::deploy::{Probe, STEP_OUTPUT_TAIL_BYTES};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a command ended.
#[derive(Debug)]
pub struct CommandResult {
    /// `None` when it timed out or was killed by a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The tail of its combined output, at most [`STEP_OUTPUT_TAIL_BYTES`].
    pub output: String,
    /// A line saying how it ended (`exit 0`, `killed by signal 9`, ...).
    pub detail: String,
}

impl CommandResult {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs `sh -c command` in `cwd` with `env` added to the machinesitter's
/// environment, as `run_as` when given, for at most `timeout`, or until
/// `cancel` completes. Whatever way it ends (exit, timeout, cancel, or
/// this future dropped), its whole process group is killed then, so
/// nothing it started in the background outlives it. Its stdout and
/// stderr are read through pipes and only their tail is kept, in memory.
/// While it runs, `group_file` (when given) names its process group
/// (`PGID START_TICKS`), so a machinesitter started after this one died
/// can kill what it left ([`kill_recorded_group`]); the file is removed
/// when the command ends.
///
/// # Errors
/// When it cannot be started (no `sh`, the group file cannot be written).
pub async fn run_command(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    run_as: Option<&RunAs>,
    timeout: Duration,
    group_file: Option<&Path>,
    cancel: impl std::future::Future<Output = ()>,
) -> std::io::Result<CommandResult> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(RunAs {
        name: Some(name),
        home,
        ..
    }) = run_as
    {
        cmd.env("USER", name).env("LOGNAME", name);
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
    }
    let ids = run_as.map(cerebro_host::RunAs::ids);
    // SAFETY: only async-signal-safe calls, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group, so all it started can be killed.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            cerebro_host::process::cloexec_above_stderr()?;
            if let Some(ids) = &ids {
                ids.become_user()?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Killed (and its file removed) however this function ends.
    let group = Group::record(child.id().map(|pid| pid as i32), group_file);
    if let Err(error) = &group.recorded {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(std::io::Error::new(
            error.kind(),
            format!("cannot record its process group: {error}"),
        ));
    }
    let tail = Arc::new(Mutex::new(Tail::new(STEP_OUTPUT_TAIL_BYTES)));
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_into(stdout, tail.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_into(stderr, tail.clone())));
    }
    let waited = tokio::select! {
        waited = tokio::time::timeout(timeout, child.wait()) => Some(waited),
        () = cancel => None,
    };
    // Its background children go with it, whatever way it ended.
    group.kill();
    let (exit_code, timed_out, detail) = match waited {
        None => {
            let _ = child.wait().await;
            (
                None,
                false,
                "cancelled: the task no longer wants this release".to_string(),
            )
        }
        Some(Ok(Ok(status))) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => (Some(code), false, format!("exit {code}")),
            (None, Some(signal)) => (None, false, format!("killed by signal {signal}")),
            (None, None) => (None, false, "ended".to_string()),
        },
        Some(Ok(Err(error))) => (None, false, format!("cannot wait for it: {error}")),
        Some(Err(_)) => {
            let _ = child.wait().await;
            (
                None,
                true,
                format!("timed out after {}", human_secs(timeout)),
            )
        }
    };
    // The pipes close once the group is dead; a process that left the
    // group (setsid) and kept them open is not waited for long.
    for mut reader in readers {
        if tokio::time::timeout(READER_GRACE, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    drop(group);
    let output = lock(&tail).text();
    Ok(CommandResult {
        exit_code,
        timed_out,
        output,
        detail,
    })
}

/// How long the output of a command that ended is read still.
const READER_GRACE: Duration = Duration::from_secs(2);

/// Reads `from` to its end into `tail`.
async fn read_into(mut from: impl tokio::io::AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        lock(&tail).push(&buffer[..n]);
    }
}

/// The last bytes of a stream, bounded: at most twice its capacity held.
struct Tail {
    bytes: Vec<u8>,
    capacity: usize,
}

impl Tail {
    fn new(capacity: usize) -> Self {
        Self {
            bytes: Vec::new(),
            capacity,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * self.capacity {
            let cut = self.bytes.len() - self.capacity;
            self.bytes.drain(..cut);
        }
    }

    /// The kept tail as text, at most its capacity.
    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(self.capacity);
        tail_str(
            &String::from_utf8_lossy(&self.bytes[start..]),
            self.capacity,
        )
        .to_string()
    }
}

/// A running command's process group: killed with SIGKILL, and its
/// record file removed, when dropped.
struct Group {
    pgid: Option<i32>,
    file: Option<PathBuf>,
    recorded: std::io::Result<()>,
}

impl Group {
    fn record(pgid: Option<i32>, file: Option<&Path>) -> Self {
        let mut recorded = Ok(());
        if let (Some(pgid), Some(file)) = (pgid, file) {
            let ticks = cerebro_host::process::start_ticks(pgid).unwrap_or(0);
            recorded = file
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    cerebro_host::fs::atomic_write(file, format!("{pgid} {ticks}\n").as_bytes())
                });
        }
        Self {
            pgid,
            file: file.map(Path::to_path_buf),
            recorded,
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// How long [`kill_recorded_group`] waits for a killed group to be gone.
const GROUP_GONE_WAIT: Duration = Duration::from_secs(10);

/// The live members of process group `pgid` (zombies left out).
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            // After the command name: state, ppid, pgrp.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            fields.first().is_some_and(|s| *s != "Z" && *s != "X")
                && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .collect()
}

/// Kills the process group a step of an earlier machinesitter recorded in
/// `file` (see [`run_command`]), if its leader is still the process that
/// started then, and waits (bounded) until no member of it is left; the
/// file is removed. Returns the group killed, if any. Blocking.
pub fn kill_recorded_group(file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut words = text.split_whitespace();
    let pgid = words.next().and_then(|w| w.parse::<i32>().ok());
    let ticks = words.next().and_then(|w| w.parse::<u64>().ok());
    let killed = match (pgid, ticks) {
        (Some(pgid), Some(ticks)) if pgid > 1 && cerebro_host::process::is_alive(pgid, ticks) => {
            let deadline = Instant::now() + GROUP_GONE_WAIT;
            loop {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                if group_members(pgid).is_empty() || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(pgid)
        }
        _ => None,
    };
    let _ = std::fs::remove_file(file);
    killed
}

/// `10 s`, `1.5 s`.
pub fn human_secs(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// The last `max` bytes of a file as text (cut at a character boundary).
pub fn read_tail(path: &Path, max: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max as u64);
    let _ = file.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = file.take(max as u64).read_to_end(&mut bytes);
    tail_str(&String::from_utf8_lossy(&bytes), max).to_string()
}

/// The last at most `max` bytes of `text`, cut at a character boundary.
pub fn tail_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// What one probe of a check saw.
pub struct ProbeResult {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub detail: String,
    pub output: String,
}

/// Probes until it succeeds or `deadline` passes, every `interval`.
/// Returns the last probe's result and the number of probes made.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    probe: &Probe,
    interval: Duration,
    deadline: Instant,
    client: &reqwest::Client,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    run_as: Option<&RunAs>,
    group_file: &Path,
) -> (ProbeResult, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = left.max(Duration::from_millis(100));
        let result = probe_once(probe, budget, client, cwd, env, run_as, group_file).await;
        if result.ok || Instant::now() + interval >= deadline {
            return (result, tries);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn probe_once(
    probe: &Probe,
    budget: Duration,
    client: &reqwest::Client,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    run_as: Option<&RunAs>,
    group_file: &Path,
) -> ProbeResult {
    let per_try = budget.min(Duration::from_secs(10));
    match probe {
        Probe::Http { url } => match client.get(url).timeout(per_try).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                ProbeResult {
                    ok: status.is_success(),
                    exit_code: None,
                    detail: format!("GET {url}: {status}"),
                    output: tail_str(&body, 4096).to_string(),
                }
            }
            Err(error) => ProbeResult {
                ok: false,
                exit_code: None,
                detail: format!("GET {url}: {}", super::fetch::error_chain(&error)),
                output: String::new(),
            },
        },
        Probe::Tcp { address } => {
            match tokio::time::timeout(per_try, tokio::net::TcpStream::connect(address.as_str()))
                .await
            {
                Ok(Ok(_)) => ProbeResult {
                    ok: true,
                    exit_code: None,
                    detail: format!("connected to {address}"),
                    output: String::new(),
                },
                Ok(Err(error)) => ProbeResult {
                    ok: false,
                    exit_code: None,
                    detail: format!("connect {address}: {error}"),
                    output: String::new(),
                },
                Err(_) => ProbeResult {
                    ok: false,
                    exit_code: None,
                    detail: format!("connect {address}: timed out"),
                    output: String::new(),
                },
            }
        }
        Probe::Command { command } => {
            let never = std::future::pending();
            match run_command(command, cwd, env, run_as, budget, Some(group_file), never).await {
                Ok(result) => ProbeResult {
                    ok: result.succeeded(),
                    exit_code: result.exit_code,
                    detail: result.detail,
                    output: result.output,
                },
                Err(error) => ProbeResult {
                    ok: false,
                    exit_code: None,
                    detail: format!("cannot run it: {error}"),
                    output: String::new(),
                },
            }
        }
    }
}
