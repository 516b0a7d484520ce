//! The machinesitter's reconciler: a loop that compares what was asked for
//! (the task set in `Machine`) with the tasksitters that run, and makes
//! idempotent moves until they match: start the missing, retire the replaced
//! or deleted, clean after the dead.

use crate::deploy;
use crate::machine::SharedMachine;
use crate::sitter;
use crate::state::Runtime;
use cerebro_host::process::is_alive;
use cerebro_host::{lock, TaskDir};
use cerebro_types::time::now_ms;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the reconciler looks at every tasksitter when the kernel
/// cannot tell it of their exits (no pidfds, before Linux 5.3).
const POLL_TICK: Duration = Duration::from_millis(200);
/// With pidfds every exit wakes the reconciler; this only bounds how long
/// anything it missed could go unseen.
const SAFETY_TICK: Duration = Duration::from_secs(5);
/// A tasksitter that dies this soon after its start, before answering, counts as a crash loop.
const QUICK_DEATH: Duration = Duration::from_secs(5);
pub struct Reconciler {
    machine: SharedMachine,
    notify: Arc<Notify>,
    children: HashMap<i32, Child>,
    /// Per live tasksitter (pid, start time), a task that wakes the
    /// reconciler when it exits.
    exit_watchers: HashMap<(i32, u64), tokio::task::JoinHandle<()>>,
    /// Whether the kernel gives out pidfds, so exits wake the reconciler.
    pidfds: bool,
}

impl Reconciler {
    pub fn new(machine: SharedMachine, notify: Arc<Notify>) -> Self {
        Self {
            machine,
            notify,
            children: HashMap::new(),
            exit_watchers: HashMap::new(),
            pidfds: cerebro_host::process::pidfds_supported(),
        }
    }

    /// Runs until `shutdown` changes; hands itself back for the exit path.
    /// Wakes on API changes, on SIGCHLD, on the exit of any tasksitter
    /// (through a pidfd, so adopted ones count too) and when something is
    /// due (a delayed restart, a stop's deadline); it does not poll.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut child_exited =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            self.reap();
            let next_due = self.converge();
            self.watch_exits();
            // The longest it sleeps with nothing due.
            let tick = if self.pidfds { SAFETY_TICK } else { POLL_TICK };
            let sleep = next_due.map_or(tick, |due| {
                due.saturating_duration_since(Instant::now()).min(tick)
            });
            let sigchld = async {
                match child_exited.as_mut() {
                    Some(stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.notify.notified() => {}
                _ = sigchld => {}
                _ = shutdown.changed() => return self,
            }
        }
    }

    /// Keeps one exit watcher per live tasksitter, and none for the gone.
    fn watch_exits(&mut self) {
        if !self.pidfds {
            return;
        }
        let live: std::collections::HashSet<(i32, u64)> = lock(&self.machine)
            .tasks
            .values()
            .filter_map(|e| e.record.runtime.as_ref().map(|r| (r.pid, r.start_ticks)))
            .collect();
        self.exit_watchers.retain(|sitter, watcher| {
            let keep = live.contains(sitter);
            if !keep {
                watcher.abort();
            }
            keep
        });
        for (pid, ticks) in live {
            self.exit_watchers.entry((pid, ticks)).or_insert_with(|| {
                let notify = self.notify.clone();
                tokio::spawn(async move {
                    if let Err(error) = cerebro_host::process::exited(pid, ticks).await {
                        tracing::warn!(pid, %error, "cannot watch the tasksitter's exit; the reconciler's safety tick will notice it");
                        return;
                    }
                    notify.notify_one();
                })
            });
        }
    }

    /// Collects the exit status of tasksitters we started, so none stays a zombie.
    fn reap(&mut self) {
        self.children
            .retain(|_, child| matches!(child.try_wait(), Ok(None)));
    }

    /// The synchronous part of a tick: notice dead tasksitters, retire
    /// replaced or deleted ones, start missing ones. All under the lock, no
    /// I/O but local syscalls. Returns when it next has something to do
    /// that no event will announce.
    fn converge(&mut self) -> Option<Instant> {
        let mut next_due: Option<Instant> = None;
        let mut due_at = |at: Instant| {
            next_due = Some(next_due.map_or(at, |due| due.min(at)));
        };
        let mut guard = lock(&self.machine);
        let machine = &mut *guard;
        let config = machine.config.clone();
        let machine_started = machine.sitter_started.clone();
        let mut changed = false;
        let mut removed = Vec::new();
        let mut jobs = Vec::new();
        let mut events = Vec::new();
        let now = Instant::now();
        for (name, entry) in machine.tasks.iter_mut() {
            let paths = TaskDir::new(&config.state_dir, &entry.record.dir_name);
            if let Some(runtime) = entry.record.runtime.as_mut() {
                if !is_alive(runtime.pid, runtime.start_ticks) {
                    // Its record knows the last workload even if no poll saw it.
                    sitter::refresh_from_record(&paths, runtime);
                    sitter::clean_after(&paths, runtime);
                    if runtime.stop_sent_ms.is_none() {
                        // A tasksitter that served its status was healthy; killing it is
                        // not a crash loop. One that never answered is.
                        let quick = entry.status.is_none()
                            && entry
                                .spawned_at
                                .is_some_and(|at| at.elapsed() < QUICK_DEATH);
                        entry.quick_deaths = if quick { entry.quick_deaths + 1 } else { 0 };
                        let delay = match entry.quick_deaths {
                            0 | 1 => Duration::ZERO,
                            n => Duration::from_millis(500 << (n - 2).min(6))
                                .min(Duration::from_secs(30)),
                        };
                        entry.next_spawn_at = Some(now + delay);
                        let why = last_line(&paths.sitter_log());
                        entry.last_error = why.clone().filter(|_| quick);
                        events.push((
                            name.clone(),
                            format!(
                                "tasksitter pid {} died{}; cleaned up, restarting{}",
                                runtime.pid,
                                why.map(|w| format!(" ({w})")).unwrap_or_default(),
                                if delay.is_zero() {
                                    String::new()
                                } else {
                                    format!(" in {delay:?}")
                                }
                            ),
                        ));
                    }
                    entry.record.runtime = None;
                    entry.status = None;
                    changed = true;
                }
            }
            // A task with a deployment runs on its switched release; with
            // none switched yet, whatever tasksitter runs keeps running and
            // none is started.
            let wanted = entry.wanted_spec(&config.state_dir);
            match deploy::next_job(name, entry, &config.state_dir, config.deploy_retry_base) {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {}
                Err(at_ms) => due_at(now + Duration::from_millis(at_ms.saturating_sub(now_ms()))),
            }
            let work_dir = crate::machine::work_dir(&config.state_dir, &entry.record.dir_name);
            let retire = entry.record.deleting
                || entry.record.runtime.as_ref().is_some_and(|rt| {
                    wanted
                        .as_ref()
                        .is_some_and(|wanted| !runs_wanted(&rt.spec, wanted, &work_dir))
                });
            if let (true, Some(runtime)) = (retire, entry.record.runtime.as_mut()) {
                match runtime.stop_sent_ms {
                    None => {
                        // SIGTERM: the tasksitter stops its workload gracefully, then exits.
                        let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGTERM);
                        runtime.stop_sent_ms = Some(now_ms());
                        changed = true;
                    }
                    Some(sent) => {
                        let grace_ms = ((runtime.spec.stop_timeout + 5.0) * 1000.0) as u64;
                        let waited_ms = now_ms().saturating_sub(sent);
                        if waited_ms > grace_ms {
                            let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGKILL);
                        } else {
                            due_at(now + Duration::from_millis(grace_ms - waited_ms + 1));
                        }
                    }
                }
                continue;
            }
            if entry.record.deleting {
                // An attempt still running writes in the deploy directory;
                // it stops at its next step, then the task goes.
                if !entry.deploying {
                    removed.push(name.clone());
                }
                continue;
            }
            if entry.record.runtime.is_some() {
                continue;
            }
            if let Some(at) = entry.next_spawn_at.filter(|at| *at > now) {
                due_at(at);
                continue;
            }
            let Some(wanted) = wanted else {
                continue;
            };
            if wanted.cwd.as_deref() == Some(work_dir.as_str()) {
                if let Err(error) = sitter::prepare_work_dir(&paths, &wanted) {
                    entry.last_error = Some(format!(
                        "cannot create its working directory {work_dir}: {error}"
                    ));
                    entry.next_spawn_at = Some(now + Duration::from_secs(1));
                    due_at(now + Duration::from_secs(1));
                    continue;
                }
            }
            match sitter::spawn(
                &config.tasksitter_bin,
                &wanted,
                &paths,
                config.limits_backend,
                entry.record.run_requested,
            ) {
                Ok((child, runtime)) => {
                    events.push((
                        name.clone(),
                        format!("started tasksitter pid {}", runtime.pid),
                    ));
                    self.children.insert(runtime.pid, child);
                    entry.record.runtime = Some(runtime);
                    entry.record.sitter_starts += 1;
                    entry.spawned_at = Some(now);
                    machine_started.notify_one();
                    entry.next_spawn_at = None;
                    changed = true;
                }
                Err(error) => {
                    entry.last_error = Some(format!("cannot start the tasksitter: {error}"));
                    entry.next_spawn_at = Some(now + Duration::from_secs(1));
                    due_at(now + Duration::from_secs(1));
                }
            }
        }
        for name in removed {
            if let Some(entry) = machine.tasks.remove(&name) {
                let paths = TaskDir::new(&config.state_dir, &entry.record.dir_name);
                let deploy_dir = deploy::DeployDir::new(&config.state_dir, &entry.record.dir_name);
                match paths
                    .remove()
                    .and_then(|()| match std::fs::remove_dir_all(&deploy_dir.dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }) {
                    Ok(()) => events.push((name, "removed with its logs".into())),
                    Err(error) => {
                        tracing::warn!(task = %name, %error, "cannot remove the task's files");
                        events.push((
                            name,
                            format!("removed; its files could not all be removed: {error}"),
                        ));
                    }
                }
                changed = true;
            }
        }
        for (task, message) in events {
            machine.event(&task, message);
        }
        if changed || !jobs.is_empty() {
            if let Err(error) = machine.persist() {
                tracing::error!(%error, "cannot persist the task set");
            }
        }
        drop(guard);
        for job in jobs {
            tokio::spawn(deploy::drive(
                job,
                self.machine.clone(),
                self.notify.clone(),
            ));
        }
        next_due
    }

    /// `--on-exit stop`: every tasksitter stops its workload gracefully; SIGKILL after the longest grace.
    pub async fn stop_all(&mut self) {
        let runtimes: Vec<Runtime> = lock(&self.machine)
            .tasks
            .values()
            .filter_map(|e| e.record.runtime.clone())
            .collect();
        for runtime in &runtimes {
            let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGTERM);
        }
        let longest = runtimes
            .iter()
            .map(|r| r.spec.stop_timeout)
            .fold(0.0, f64::max);
        let deadline = Instant::now() + Duration::from_secs_f64(longest + 5.0);
        while Instant::now() < deadline && runtimes.iter().any(|r| is_alive(r.pid, r.start_ticks)) {
            self.reap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for runtime in &runtimes {
            if is_alive(runtime.pid, runtime.start_ticks) {
                let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGKILL);
            }
            sitter::clean_leftovers(runtime);
        }
        self.reap();
        let mut guard = lock(&self.machine);
        for entry in guard.tasks.values_mut() {
            entry.record.runtime = None;
        }
        if let Err(error) = guard.persist() {
            tracing::error!(%error, "cannot persist the task set");
        }
    }
}

/// Whether a tasksitter running `running` serves `wanted` (only
/// `auto_start` may differ). One started by a machinesitter from before
/// tasks had their own working directory runs without a `cwd` where
/// `work_dir` is now wanted: it is kept, because an upgrade of the
/// machinesitter must not restart every task; the task moves to its
/// directory when its tasksitter is next replaced.
fn runs_wanted(
    running: &cerebro_types::TaskSpec,
    wanted: &cerebro_types::TaskSpec,
    work_dir: &str,
) -> bool {
    if running.cwd.is_none() && wanted.cwd.as_deref() == Some(work_dir) {
        let mut moved = running.clone();
        moved.cwd = wanted.cwd.clone();
        return moved.same_task(wanted);
    }
    running.same_task(wanted)
}

/// The last non-empty line of a tasksitter's own log: usually why it exited.
fn last_line(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::TaskSpec;

    #[test]
    fn a_tasksitter_from_before_work_dirs_is_kept_and_any_other_change_replaces_it() {
        let running = TaskSpec::new("t", "sleep 9");
        let mut wanted = running.clone();
        wanted.cwd = Some("/state/work/t-0".into());
        assert!(runs_wanted(&running, &wanted, "/state/work/t-0"));
        assert!(!runs_wanted(&running, &wanted, "/state/work/other"));
        wanted.env.insert("PORT".into(), "20000".into());
        assert!(!runs_wanted(&running, &wanted, "/state/work/t-0"));
    }
}
