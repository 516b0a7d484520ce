//! The status poller: asks every tasksitter for its status (which also
//! proves it is ours), nudges workloads whose run state differs from what
//! was asked, and samples the machine's vitals. It runs beside the
//! reconciler so a slow or dead tasksitter never delays a restart.

use crate::machine::{SharedMachine, TaskEntry};
use cerebro_client::{HttpClient, TaskClient};
use cerebro_host::{lock, TaskDir};
use cerebro_types::machine::Vitals;
use cerebro_types::task_api::TaskAction;
use cerebro_types::time::now_ms;
use cerebro_types::StateKind;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How often every task's status and the vitals are refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often to look for tasksitters that have not reported yet.
const NEW_SITTER_CHECK: Duration = Duration::from_millis(50);

/// What a status poll needs to reach one tasksitter.
struct PollTarget {
    name: String,
    pid: i32,
    client: TaskClient,
}

pub struct Poller {
    machine: SharedMachine,
    client: HttpClient,
    system: sysinfo::System,
}

impl Poller {
    pub fn new(machine: SharedMachine) -> Self {
        Self {
            machine,
            client: HttpClient::new(Duration::from_secs(1), 1),
            system: sysinfo::System::new(),
        }
    }

    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let sitter_started = lock(&self.machine).sitter_started.clone();
        let mut last_full: Option<Instant> = None;
        loop {
            let due = last_full.is_none_or(|at| at.elapsed() >= STATUS_EVERY);
            if due {
                self.poll_statuses(false).await;
                self.refresh_vitals();
                last_full = Some(Instant::now());
            } else {
                self.poll_statuses(true).await;
            }
            let unreported = lock(&self.machine)
                .tasks
                .values()
                .any(TaskEntry::awaits_first_status);
            // A new tasksitter needs a moment to listen: look again soon,
            // asking only the ones that have not answered yet.
            let next_round = last_full.map_or(Duration::ZERO, |at| {
                STATUS_EVERY.saturating_sub(at.elapsed())
            });
            let sleep = if unreported {
                NEW_SITTER_CHECK.min(next_round)
            } else {
                next_round
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = sitter_started.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Asks every live tasksitter for its status with its secret (POST
    /// /api/v1/ping), which also proves it is ours; then nudges workloads
    /// whose run state differs from what was asked.
    /// `only_unreported`: just the tasksitters that have not answered yet.
    async fn poll_statuses(&mut self, only_unreported: bool) {
        let targets: Vec<PollTarget> = {
            let mut guard = lock(&self.machine);
            let state_dir = guard.config.state_dir.clone();
            let mut targets = Vec::new();
            for (name, entry) in guard.tasks.iter_mut() {
                if only_unreported && !entry.awaits_first_status() {
                    continue;
                }
                let secret = entry.secret(&state_dir);
                let Some(runtime) = entry.record.runtime.as_mut() else {
                    continue;
                };
                if runtime.stop_sent_ms.is_some() {
                    continue;
                }
                if runtime.address.is_none() {
                    let paths = TaskDir::new(&state_dir, &entry.record.dir_name);
                    runtime.address = std::fs::read_to_string(paths.address())
                        .ok()
                        .filter(|a| !a.is_empty());
                }
                if let Some(address) = &runtime.address {
                    targets.push(PollTarget {
                        name: name.clone(),
                        pid: runtime.pid,
                        client: TaskClient::new(self.client.clone(), address, secret),
                    });
                }
            }
            targets
        };
        if targets.is_empty() {
            return;
        }
        // Concurrently, so one hung tasksitter delays no other task's status.
        let mut pings = tokio::task::JoinSet::new();
        for target in targets {
            pings.spawn(async move {
                let answer = target.client.ping().await;
                (target, answer)
            });
        }
        let answers = pings.join_all().await;
        let mut nudges = Vec::new();
        {
            let mut guard = lock(&self.machine);
            let mut changed = false;
            let mut events = Vec::new();
            for (target, answer) in answers {
                let Some(entry) = guard.tasks.get_mut(&target.name) else {
                    continue;
                };
                let Some(runtime) = entry
                    .record
                    .runtime
                    .as_mut()
                    .filter(|rt| rt.pid == target.pid)
                else {
                    continue;
                };
                match answer {
                    Ok(status) => {
                        let workload_pid = status.pid.or(runtime.workload_pid);
                        if workload_pid != runtime.workload_pid
                            || status.cgroup_paths != runtime.cgroup_paths
                        {
                            runtime.workload_pid = workload_pid;
                            runtime.cgroup_paths = status.cgroup_paths.clone();
                            changed = true;
                        }
                        let kind = status.state.kind();
                        if entry.record.run_requested && kind == StateKind::Stopped {
                            nudges.push((target.client.clone(), TaskAction::Start));
                        } else if !entry.record.run_requested
                            && matches!(kind, StateKind::Running | StateKind::Backoff)
                        {
                            nudges.push((target.client.clone(), TaskAction::Stop));
                        }
                        entry.status = Some(status);
                    }
                    Err(error) if error.status() == Some(401) => {
                        // It holds a different secret: not the tasksitter we started. Retire it.
                        let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGTERM);
                        runtime.stop_sent_ms = Some(now_ms());
                        changed = true;
                        events.push((
                            target.name.clone(),
                            format!(
                                "pid {} does not know the task's secret; stopping it",
                                target.pid
                            ),
                        ));
                    }
                    Err(error) => {
                        tracing::debug!(task = %target.name, %error, "status poll failed")
                    }
                }
            }
            for (task, message) in events {
                guard.event(&task, message);
            }
            if changed {
                if let Err(error) = guard.persist() {
                    tracing::error!(%error, "cannot persist the task set");
                }
            }
        }
        for (client, action) in nudges {
            // Best effort: the next poll sees the state again and nudges again.
            tokio::spawn(async move { client.control(action).await });
        }
    }

    fn refresh_vitals(&mut self) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let state_dir = lock(&self.machine).config.state_dir.clone();
        let disk_free_bytes = nix::sys::statvfs::statvfs(&state_dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .unwrap_or(0);
        let load = sysinfo::System::load_average();
        let cpus = self.system.cpus();
        let vitals = Vitals {
            cpu_cores_used: cpus.iter().map(|c| f64::from(c.cpu_usage()) / 100.0).sum(),
            cpu_cores: cpus.len(),
            mem_used_mb: self.system.used_memory() / (1024 * 1024),
            mem_total_mb: self.system.total_memory() / (1024 * 1024),
            load_average: [load.one, load.five, load.fifteen],
            disk_free_bytes,
            uptime_secs: sysinfo::System::uptime(),
        };
        lock(&self.machine).vitals = vitals;
    }
}
