//! The clustersitter's memory of the last hour of CPU and RSS, per
//! instance and per machine, fed by the polls it already makes and bounded
//! in size ([`cerebro_types::history::MAX_SAMPLES`] per series).

use crate::cluster::{Cluster, MachineReport};
use cerebro_types::history::HistoryView;
use cerebro_types::time::now_ms;

/// Every series the cluster keeps. (Stub: filled in by the history work.)
#[derive(Debug, Default)]
pub struct History {}

impl History {
    /// Records what machine `machine` reported at `now_ms`: each task's
    /// CPU and RSS under its task name, their sum under the machine, and a
    /// restart marker where a task's restart count or start grew.
    pub fn record(&mut self, _machine: &str, _report: &MachineReport, _now_ms: u64) {}

    /// Forgets machine `machine` and what only it ran (decommissioned).
    pub fn forget_machine(&mut self, _machine: &str) {}

    /// The series of the tasks named `tasks` (instance number → task
    /// name) within the window before `now_ms`.
    pub fn of_tasks(&self, _tasks: &[(usize, String)], _now_ms: u64) -> HistoryView {
        HistoryView::default()
    }

    /// Machine `machine`'s series and those of the tasks it runs.
    pub fn of_machine(&self, _machine: &str, _now_ms: u64) -> HistoryView {
        HistoryView::default()
    }
}

impl Cluster {
    /// The history of job `job`'s instances, keyed by instance number;
    /// `None` for no such job.
    pub fn job_history(&self, job: &str) -> Option<HistoryView> {
        self.job(job)?;
        let tasks: Vec<(usize, String)> = self
            .instances_of(job)
            .into_iter()
            .map(|i| (i.index, i.task_name))
            .collect();
        Some(self.history().of_tasks(&tasks, now_ms()))
    }

    /// The history of machine `id` and its tasks; `None` for no such machine.
    pub fn machine_history(&self, id: &str) -> Option<HistoryView> {
        self.machine(id)?;
        Some(self.history().of_machine(id, now_ms()))
    }
}
