//! Helpers the cluster test files share (each test file is its own crate).

use cerebro_tests::{cmdline, processes_under};
use std::path::Path;

/// The machinesitter processes with an argument under `dir`.
pub fn machinesitters_under(dir: &Path) -> Vec<i32> {
    processes_under(dir)
        .into_iter()
        .filter(|pid| {
            cmdline(*pid)
                .first()
                .is_some_and(|a| a.ends_with("machinesitter"))
        })
        .collect()
}
