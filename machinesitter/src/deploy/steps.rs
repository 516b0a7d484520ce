//! Running a recipe's commands (run steps, command checks) and probing
//! (http and tcp checks).
//!
//! A command runs as `sh -c COMMAND` in the release directory, in a
//! process group of its own, as the task's user when the machinesitter is
//! root; its stdout and stderr go to one file whose tail is kept. On
//! timeout the whole group is killed, so nothing it started lingers.

use cerebro_host::RunAs;
use cerebro_types::deploy::{Probe, STEP_OUTPUT_TAIL_BYTES};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
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
/// `cancel` completes (its process group is killed then, as on timeout).
/// Its output goes to `output_file` (truncated first).
///
/// # Errors
/// When it cannot be started (no `sh`, the output file cannot be written).
pub async fn run_command(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    run_as: Option<&RunAs>,
    timeout: Duration,
    output_file: &Path,
    cancel: impl std::future::Future<Output = ()>,
) -> std::io::Result<CommandResult> {
    let output = std::fs::File::create(output_file)?;
    if let Some(run_as) = run_as {
        let _ = std::os::unix::fs::chown(output_file, Some(run_as.uid), Some(run_as.gid));
    }
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
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
            // Its own process group, so a timeout kills all it started.
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
    let pgid = child.id().map(|pid| pid as i32);
    let waited = tokio::select! {
        waited = tokio::time::timeout(timeout, child.wait()) => Some(waited),
        () = cancel => None,
    };
    let kill_group = || {
        if let Some(pgid) = pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    let Some(waited) = waited else {
        kill_group();
        let _ = child.wait().await;
        return Ok(CommandResult {
            exit_code: None,
            timed_out: false,
            output: read_tail(output_file, STEP_OUTPUT_TAIL_BYTES),
            detail: "cancelled: the task no longer wants this release".into(),
        });
    };
    let (exit_code, timed_out, detail) = match waited {
        Ok(Ok(status)) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => (Some(code), false, format!("exit {code}")),
            (None, Some(signal)) => (None, false, format!("killed by signal {signal}")),
            (None, None) => (None, false, "ended".to_string()),
        },
        Ok(Err(error)) => (None, false, format!("cannot wait for it: {error}")),
        Err(_) => {
            kill_group();
            let _ = child.wait().await;
            (
                None,
                true,
                format!("timed out after {}", human_secs(timeout)),
            )
        }
    };
    Ok(CommandResult {
        exit_code,
        timed_out,
        output: read_tail(output_file, STEP_OUTPUT_TAIL_BYTES),
        detail,
    })
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
    output_file: &Path,
) -> (ProbeResult, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = left.max(Duration::from_millis(100));
        let result = probe_once(probe, budget, client, cwd, env, run_as, output_file).await;
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
    output_file: &Path,
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
            match run_command(command, cwd, env, run_as, budget, output_file, never).await {
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
