//! Process identity from /proc: a pid alone can be reused, so the daemons
//! remember (pid, kernel start time) and check both before trusting or
//! signalling a process they did not just start.

/// Marks every descriptor above stderr close-on-exec, so the program exec'd
/// next gets exactly stdin, stdout and stderr: a descriptor its parent
/// inherited by accident (a deploy script's pipe) would otherwise stay open
/// for as long as the workload runs, and its reader would never see EOF.
/// Marked, not closed, because std's `Command` still reports a failed exec
/// through a pipe of its own. Meant for `pre_exec`: it makes only
/// async-signal-safe system calls. Errors are the kernel's (`fcntl`).
pub fn cloexec_above_stderr() -> std::io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    // Before Linux 5.11: one fcntl per possible descriptor, up to the limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let highest = limit.rlim_cur.min(1 << 20) as i32;
    for fd in 3..highest {
        // SAFETY: fcntl on a descriptor number; EBADF for a closed one is expected.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// (state letter, start time in clock ticks since boot) from /proc/PID/stat.
fn stat_of(pid: i32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(19)?.parse().ok()?))
}

pub fn start_ticks(pid: i32) -> Option<u64> {
    stat_of(pid).map(|(_, ticks)| ticks)
}

/// True while `pid` is the very process that started at `ticks` and has not exited.
pub fn is_alive(pid: i32, ticks: u64) -> bool {
    stat_of(pid).is_some_and(|(state, t)| t == ticks && state != "Z" && state != "X")
}

/// The command line of `pid`, split into arguments (empty when it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live process whose command line satisfies `matches`, as (pid, argv).
pub fn find_processes(matches: impl Fn(&[String]) -> bool) -> Vec<(i32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            // The match first: it rules out nearly every process, and the
            // liveness check costs another read of /proc.
            let argv = cmdline(pid);
            if !matches(&argv) {
                return None;
            }
            let (state, _) = stat_of(pid)?;
            (state != "Z" && state != "X").then_some((pid, argv))
        })
        .collect()
}

/// The pids of [`find_processes`].
pub fn find_pids(matches: impl Fn(&[String]) -> bool) -> Vec<i32> {
    find_processes(matches)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// A pidfd for `pid`, or `None` when the process is gone or is no longer
/// the one that started at `ticks`. Err when the kernel has no pidfds
/// (before 5.3).
fn open_pidfd(pid: i32, ticks: u64) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    // The pid may have been reused before the open: check who it names now.
    Ok(is_alive(pid, ticks).then_some(fd))
}

/// Whether this kernel gives out pidfds, so exits can be awaited rather than polled.
pub fn pidfds_supported() -> bool {
    let me = std::process::id() as i32;
    start_ticks(me).is_some_and(|ticks| open_pidfd(me, ticks).is_ok_and(|fd| fd.is_some()))
}

/// Resolves when the process `pid` that started at `ticks` exits (a
/// zombie counts as exited), without polling; at once if it is already
/// gone. Works for any process, not only our children.
pub async fn exited(pid: i32, ticks: u64) -> std::io::Result<()> {
    let Some(fd) = open_pidfd(pid, ticks)? else {
        return Ok(());
    };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same
    // descriptor until the AsyncFd drops it.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }?;
    let _ready = fd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A `sleep` that is not our child: `sh` starts it in the background and exits.
    fn orphan_sleep() -> i32 {
        let output = std::process::Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a pid")
    }

    #[tokio::test]
    async fn exited_resolves_when_a_process_that_is_not_our_child_exits() {
        assert!(pidfds_supported(), "this kernel gives out pidfds");
        let pid = orphan_sleep();
        let ticks = start_ticks(pid).expect("the sleep runs");
        let watch = tokio::spawn(exited(pid, ticks));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!watch.is_finished(), "it waits while the process lives");
        // SAFETY: kill(2) on the sleep this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        tokio::time::timeout(Duration::from_secs(10), watch)
            .await
            .expect("the exit is noticed")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn exited_resolves_at_once_for_a_gone_or_different_process() {
        let pid = orphan_sleep();
        let ticks = start_ticks(pid).expect("the sleep runs");
        let other_start = tokio::time::timeout(Duration::from_secs(10), exited(pid, ticks + 1));
        other_start.await.expect("a different process").unwrap();
        // SAFETY: kill(2) on the sleep this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let gone = i32::MAX - 1;
        tokio::time::timeout(Duration::from_secs(10), exited(gone, 0))
            .await
            .expect("no such process")
            .unwrap();
    }
}
