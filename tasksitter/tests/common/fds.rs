//! Stray descriptors for tests: hand a daemon some, and see which ones a
//! process holds. Shared with the machinesitter's tests (`#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes `command` start with `marker` open, without close-on-exec, as
/// descriptors 7 and 8: what a deploy script's stray pipe looks like.
pub fn inherit_stray_fds(command: &mut Command, marker: &Path) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(marker).unwrap();
    // SAFETY: dup2 is async-signal-safe; the closure owns the file it reads.
    unsafe {
        command.pre_exec(move || {
            for target in [7, 8] {
                if libc::dup2(file.as_raw_fd(), target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The descriptors `pid` has open, as (number, what it points to).
pub fn open_fds(pid: i32) -> Vec<(i32, PathBuf)> {
    let mut fds: Vec<(i32, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(entry.path()).ok()?))
        })
        .collect();
    fds.sort();
    fds
}
