//! `cerebro-bench`: Cerebro beside supervisord and monit, measured in one
//! run on this machine. `scripts/bench.sh` installs the peers and runs
//! `cerebro-bench all`; `--smoke` runs tiny counts so CI keeps every
//! benchmark building and running (no time is asserted anywhere).

mod common;
mod cpu;
mod memory;
mod overhead;
mod peers;
mod placement;
mod restart;
mod workload;

use anyhow::Result;
use clap::{Parser, Subcommand};
use common::{Scale, Table};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cerebro-bench",
    about = "Benchmarks of Cerebro beside supervisord and monit"
)]
struct Cli {
    /// Tiny counts: proves the benchmarks run; the numbers mean nothing.
    #[arg(long, global = true)]
    smoke: bool,
    /// Where the Markdown results go (default: bench/RESULTS.md, or target/bench-smoke.md with --smoke).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Every benchmark, in order.
    All,
    /// Exit-to-next-instance latency.
    Restart,
    /// Time from crossing a memory limit to the workload dead, and overshoot.
    Memory,
    /// CPU use of a spinner limited to half a core.
    Cpu,
    /// Memory and CPU of the supervisors for 1, 10 and 100 idle processes.
    Overhead,
    /// The clustersitter's placement on synthetic clusters.
    Placement,
    /// The workloads the benchmarks supervise (internal).
    #[command(subcommand, hide = true)]
    Workload(workload::Workload),
}

/// One benchmark: its tables, or why it could not run.
type Benchmark = fn(Scale) -> Result<Vec<Table>>;

fn machine_line() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && !std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .trim()
            .is_empty()
    {
        "v2"
    } else {
        "v1"
    };
    let memory_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores, {} GiB, Linux {}, cgroup {cgroup}",
        memory_kb / (1024 * 1024),
        kernel.trim()
    )
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Bench::Workload(workload) = cli.command {
        return workload::run(workload);
    }
    let scale = Scale { smoke: cli.smoke };
    let benches: Vec<(&str, Benchmark)> = match cli.command {
        Bench::All => vec![
            ("restart", restart::run),
            ("memory", memory::run),
            ("cpu", cpu::run),
            ("overhead", overhead::run),
            ("placement", placement::run),
        ],
        Bench::Restart => vec![("restart", restart::run)],
        Bench::Memory => vec![("memory", memory::run)],
        Bench::Cpu => vec![("cpu", cpu::run)],
        Bench::Overhead => vec![("overhead", overhead::run)],
        Bench::Placement => vec![("placement", placement::run)],
        Bench::Workload(_) => unreachable!("handled above"),
    };
    let command: Vec<String> = std::env::args().collect();
    let mut report = format!(
        "# Cerebro benchmarks\n\nRun {} on {}.\n\nCommand: `{}`{}\n\n",
        cerebro_types::time::format_rfc3339_ms(cerebro_types::time::now_ms()),
        machine_line(),
        command.join(" "),
        if scale.smoke {
            " (smoke mode: tiny counts, the numbers mean nothing)"
        } else {
            ""
        }
    );
    for (name, bench) in benches {
        eprintln!("cerebro-bench: {name}...");
        let tables = bench(scale).map_err(|e| e.context(format!("benchmark {name}")))?;
        for table in tables {
            let text = table.markdown();
            println!("{text}");
            report.push_str(&text);
            report.push('\n');
        }
    }
    let out = cli.out.unwrap_or_else(|| {
        if scale.smoke {
            common::workspace_root().join("target/bench-smoke.md")
        } else {
            common::workspace_root().join("bench/RESULTS.md")
        }
    });
    std::fs::write(&out, report)?;
    eprintln!("cerebro-bench: results written to {}", out.display());
    Ok(())
}
