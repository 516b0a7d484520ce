//! The workload's process tree read from /proc, for the poll backend and for
//! signalling a tree whose members left the process group.
//!
//! The tasksitter is a child subreaper, so orphans of the workload (daemons
//! that double-fork or call setsid) are re-parented to it: the tree is every
//! descendant of the tasksitter itself, minus the processes it runs for its
//! own purposes (the cgroup guard).

use std::collections::HashSet;
use std::fs;

/// Children of every thread of `pid`, from /proc/PID/task/TID/children.
fn children_of(pid: i32, out: &mut Vec<i32>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
}

/// Every descendant of `root` (not `root` itself), skipping `excluded` and its subtree.
pub fn descendants(root: i32, excluded: &[i32]) -> Vec<i32> {
    let mut seen: HashSet<i32> = HashSet::new();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(pid) = frontier.pop() {
        let mut children = Vec::new();
        children_of(pid, &mut children);
        for child in children {
            if excluded.contains(&child) || !seen.insert(child) {
                continue;
            }
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

/// CPU time and resident memory of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcUsage {
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
    /// Zombies have exited already: they hold no memory and run no code.
    pub zombie: bool,
}

/// Parses /proc/PID/stat; the command name may contain spaces and parentheses,
/// so fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcUsage> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
    let state = fields.first()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: i64 = fields.get(21)?.parse().ok()?;
    Some(ProcUsage {
        cpu_ticks: utime + stime,
        rss_pages: rss.max(0) as u64,
        zombie: *state == "Z" || *state == "X",
    })
}

/// Usage of process `pid`; `None` once it is gone.
pub fn usage_of(pid: i32) -> Option<ProcUsage> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Summed usage of a set of processes, in bytes and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// CPU time used, in ns.
    pub cpu_ns: u64,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// Processes counted, zombies not included.
    pub live_processes: u32,
}

/// Summed usage of `pids`; processes gone meanwhile count for nothing.
pub fn tree_usage(pids: &[i32]) -> TreeUsage {
    let (page, ticks_per_sec) = host_units();
    let mut total = TreeUsage::default();
    for usage in pids.iter().filter_map(|&pid| usage_of(pid)) {
        total.cpu_ns += usage.cpu_ticks * 1_000_000_000 / ticks_per_sec;
        total.rss_bytes += usage.rss_pages * page;
        if !usage.zombie {
            total.live_processes += 1;
        }
    }
    total
}

/// (page size in bytes, clock ticks per second).
fn host_units() -> (u64, u64) {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (
        if page > 0 { page as u64 } else { 4096 },
        if ticks > 0 { ticks as u64 } else { 100 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 500 10000000 300 18446744073709551615";
        let usage = parse_stat(line).unwrap();
        assert_eq!(usage.cpu_ticks, 300);
        assert_eq!(usage.rss_pages, 300);
        assert!(!usage.zombie);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn sees_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let found = descendants(me, &[]);
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        assert!(!descendants(me, &[child.id() as i32]).contains(&(child.id() as i32)));
        // Right after exec the program may not have faulted in a page yet.
        let usage = (0..500)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                tree_usage(&[child.id() as i32])
            })
            .find(|u| u.rss_bytes > 0)
            .expect("the child shows resident memory within 5 s");
        assert_eq!(usage.live_processes, 1);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
