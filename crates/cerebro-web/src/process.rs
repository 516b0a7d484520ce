//! Process identity from /proc: a pid alone can be reused, so the daemons
//! remember (pid, kernel start time) and check both before trusting or
//! signalling a process they did not just start.

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
            let argv = cmdline(pid);
            let ticks = start_ticks(pid)?;
            (is_alive(pid, ticks) && matches(&argv)).then_some((pid, argv))
        })
        .collect()
}
