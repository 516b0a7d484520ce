//! The workloads the benchmarks supervise. They are subcommands of this
//! binary so that exec is done by the time `main` stamps its start.

use crate::common::stamp;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Stamps START, lives `after_ms`, stamps EXIT and exits 1.
    Exit {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 50)]
        after_ms: u64,
        /// Also write the pid here (monit watches processes by pidfile).
        #[arg(long)]
        pidfile: Option<PathBuf>,
    },
    /// Burns CPU forever.
    Spin {
        /// Marks this run's spinner in its command line.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Grows by 1 MB chunks at `mb_per_sec`, touching every page, logging
    /// `ALLOC pid ns` before and `GROW pid ns rss_kb anon_kb` after each chunk, until killed.
    Grow {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 50.0)]
        mb_per_sec: f64,
        /// Wait this long (after writing the pidfile) before growing.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Also write the pid here (monit watches processes by pidfile).
        #[arg(long)]
        pidfile: Option<PathBuf>,
    },
}

pub fn run(workload: Workload) -> Result<()> {
    match workload {
        Workload::Exit {
            log,
            after_ms,
            pidfile,
        } => {
            stamp(&log, "START");
            if let Some(pidfile) = pidfile {
                std::fs::write(pidfile, std::process::id().to_string())?;
            }
            std::thread::sleep(Duration::from_millis(after_ms));
            stamp(&log, "EXIT");
            std::process::exit(1);
        }
        Workload::Spin { .. } => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        Workload::Grow {
            log,
            mb_per_sec,
            delay_ms,
            pidfile,
        } => crate::memory::grow_workload(
            &log,
            mb_per_sec,
            Duration::from_millis(delay_ms),
            pidfile.as_deref(),
        ),
    }
}
