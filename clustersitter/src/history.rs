//! The clustersitter's memory of the last hour of CPU and RSS, per
//! instance and per machine, fed by the polls it already makes and bounded
//! in size ([`cerebro_types::history::MAX_SAMPLES`] per series,
//! [`MAX_TASK_SERIES`] and [`MAX_MACHINE_SERIES`] series).
//!
//! Everything happens in [`History::record`], after each answered poll:
//! samples older than the window and series not updated for a whole
//! window are dropped there, so no other hook (a task removed, a machine
//! decommissioned) is needed to keep it small.

use crate::cluster::{Cluster, MachineReport};
use cerebro_types::history::{
    HistoryView, Sample, Series, BUCKET_MS, HISTORY_WINDOW_MS, MAX_SAMPLES,
};
use cerebro_types::task::TaskStatus;
use cerebro_types::time::now_ms;
use std::collections::{HashMap, VecDeque};

/// The most task series kept: a flood of task names (thousands of tasks
/// started and removed within the hour) stops adding series there rather
/// than growing without bound. At worst about 10 000 × 360 samples of
/// 24 bytes (86 MB) and as many restart times of 8 bytes (29 MB).
pub const MAX_TASK_SERIES: usize = 10_000;

/// The most machine series kept (machines come from the provider, far
/// fewer than tasks).
pub const MAX_MACHINE_SERIES: usize = 1_000;

/// The key of the machine's own series in [`History::of_machine`]'s view
/// (task names are `JOB#N`, so none can take it).
pub const MACHINE_SERIES: &str = "machine";

/// Bytes in one MB of [`Sample::rss_mb`].
const MB: f64 = 1024.0 * 1024.0;

/// Every series the cluster keeps.
#[derive(Debug, Default)]
pub struct History {
    /// By task name (`JOB#N`, unique across the cluster).
    tasks: HashMap<String, TaskTrack>,
    /// By machine id: the sum over the tasks it reported.
    machines: HashMap<String, Track>,
    /// When stale series were last swept out (at most once per bucket,
    /// so a poll does not walk every series).
    swept_ms: u64,
    /// Whether the "too many series" warning was given since the last
    /// time there was room (said once, not at every poll).
    warned_full: bool,
}

/// One figure's samples, one per [`BUCKET_MS`] span.
#[derive(Debug, Default)]
struct Track {
    samples: VecDeque<Sample>,
    /// How many polls the newest sample folds (for its running mean).
    polls_in_newest: u32,
    /// When a poll last added to it.
    updated_ms: u64,
}

/// A task's samples, its restarts and what tells a restart.
#[derive(Debug, Default)]
struct TaskTrack {
    track: Track,
    /// The machine that reported it last.
    machine: String,
    restarts: VecDeque<u64>,
    /// Its start counters at the previous poll; `None` before the first.
    seen: Option<Starts>,
}

/// What grows or changes when a task's process starts anew.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Starts {
    restarts: u64,
    starts: u64,
    started_at_ms: Option<u64>,
}

impl Starts {
    fn of(status: &TaskStatus) -> Self {
        Starts {
            restarts: status.restarts,
            starts: status.starts,
            started_at_ms: status.started_at_ms,
        }
    }

    /// Whether the process started anew since `before`. A new start time
    /// counts too: a tasksitter started again begins its counters at 0.
    /// A start time gone (the process stopped) is not a start, and neither
    /// is the first start of a task that never ran (a job just deployed
    /// would otherwise show a "restart" at its birth).
    fn restarted_since(self, before: Starts) -> bool {
        let ran_before = before.starts > 0 || before.started_at_ms.is_some();
        ran_before
            && (self.restarts > before.restarts
                || self.starts > before.starts
                || (self.started_at_ms.is_some() && self.started_at_ms != before.started_at_ms))
    }
}

/// `value` if it is a usable measurement, else 0 (a negative or
/// non-finite figure would poison sums and drawings).
fn usable(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// The oldest time still within the window ending at `now_ms`.
fn window_start(now_ms: u64) -> u64 {
    now_ms.saturating_sub(HISTORY_WINDOW_MS)
}

impl Track {
    /// Adds one poll's figures. Polls within one [`BUCKET_MS`] span fold
    /// into one sample: CPU as their mean (each poll's figure is already
    /// a mean over an interval, so the mean of them is the span's use
    /// whatever the poll rate) and RSS as their peak (a memory limit is
    /// about the highest point; a mean would hide a climb to an OOM kill).
    /// A clock that went back folds into the newest sample, so samples
    /// stay in order.
    fn add(&mut self, now_ms: u64, cpu_cores: f64, rss_mb: f64) {
        self.updated_ms = now_ms;
        match self.samples.back_mut() {
            Some(newest) if now_ms / BUCKET_MS <= newest.at_ms / BUCKET_MS => {
                let polls = f64::from(self.polls_in_newest.max(1));
                newest.cpu_cores = (newest.cpu_cores * polls + cpu_cores) / (polls + 1.0);
                newest.rss_mb = newest.rss_mb.max(rss_mb);
                newest.at_ms = newest.at_ms.max(now_ms);
                self.polls_in_newest = self.polls_in_newest.saturating_add(1);
            }
            _ => {
                self.samples.push_back(Sample {
                    at_ms: now_ms,
                    cpu_cores,
                    rss_mb,
                });
                self.polls_in_newest = 1;
            }
        }
        let oldest = window_start(now_ms);
        while self.samples.front().is_some_and(|s| s.at_ms < oldest)
            || self.samples.len() > MAX_SAMPLES
        {
            self.samples.pop_front();
        }
    }

    /// The samples within the window ending at `now_ms`.
    fn samples_at(&self, now_ms: u64) -> Vec<Sample> {
        let oldest = window_start(now_ms);
        self.samples
            .iter()
            .filter(|s| s.at_ms >= oldest)
            .copied()
            .collect()
    }

    /// Whether nothing added to it for a whole window before `now_ms`.
    fn stale(&self, now_ms: u64) -> bool {
        self.updated_ms < window_start(now_ms)
    }
}

impl TaskTrack {
    /// Marks a restart at `now_ms`: at most one per [`BUCKET_MS`] span (a
    /// drawing cannot tell two apart anyway), the span's latest, so the
    /// newest restart is always where it happened; none older than the
    /// window, so at most [`MAX_SAMPLES`] of them.
    fn mark_restart(&mut self, now_ms: u64) {
        match self.restarts.back_mut() {
            Some(last) if now_ms / BUCKET_MS <= *last / BUCKET_MS => {
                *last = (*last).max(now_ms);
            }
            _ => self.restarts.push_back(now_ms),
        }
        let oldest = window_start(now_ms);
        while self.restarts.front().is_some_and(|&t| t < oldest)
            || self.restarts.len() > MAX_SAMPLES
        {
            self.restarts.pop_front();
        }
    }

    fn series_at(&self, now_ms: u64) -> Series {
        let oldest = window_start(now_ms);
        Series {
            samples: self.track.samples_at(now_ms),
            restarts_ms: self
                .restarts
                .iter()
                .copied()
                .filter(|&t| t >= oldest)
                .collect(),
        }
    }
}

impl History {
    /// Records what machine `machine` reported at `now_ms` (ms since the
    /// Unix epoch): each task's CPU and RSS under its task name, their sum
    /// under the machine, and a restart marker where a task's `restarts`
    /// or `starts` grew or its start time changed since the previous
    /// record. Tasks without a status (not started by their tasksitter
    /// yet) add nothing. Also drops what went stale (see the module doc).
    pub fn record(&mut self, machine: &str, report: &MachineReport, now_ms: u64) {
        self.sweep(now_ms);
        let (mut cpu_sum, mut rss_sum) = (0.0, 0.0);
        for (name, task) in &report.tasks {
            let Some(status) = &task.status else {
                continue;
            };
            let cpu = usable(status.cpu_cores);
            let rss = usable(status.rss_bytes as f64 / MB);
            cpu_sum += cpu;
            rss_sum += rss;
            let room = self.tasks.len() < MAX_TASK_SERIES;
            let track = match self.tasks.get_mut(name) {
                Some(track) => track,
                None if room => self.tasks.entry(name.clone()).or_default(),
                None => {
                    if !self.warned_full {
                        self.warned_full = true;
                        tracing::warn!(
                            task = %name,
                            "history: {MAX_TASK_SERIES} task series kept, no room for more this hour"
                        );
                    }
                    continue;
                }
            };
            if track.machine != machine {
                // Counters of another machine's tasksitter say nothing of
                // this one's: no marker from comparing them (two machines
                // reporting one task during a move would otherwise mark a
                // restart at every poll).
                track.machine = machine.to_string();
                track.seen = None;
            }
            track.track.add(now_ms, cpu, rss);
            let starts = Starts::of(status);
            if track.seen.is_some_and(|seen| starts.restarted_since(seen)) {
                track.mark_restart(now_ms);
            }
            track.seen = Some(starts);
        }
        let room = self.machines.len() < MAX_MACHINE_SERIES;
        match self.machines.get_mut(machine) {
            Some(track) => track.add(now_ms, cpu_sum, rss_sum),
            None if room => self
                .machines
                .entry(machine.to_string())
                .or_default()
                .add(now_ms, cpu_sum, rss_sum),
            None => {}
        }
    }

    /// Drops the series not updated for a whole window, at most once per
    /// bucket (and at once when the clock went back).
    fn sweep(&mut self, now_ms: u64) {
        if now_ms >= self.swept_ms && now_ms - self.swept_ms < BUCKET_MS {
            return;
        }
        self.swept_ms = now_ms;
        self.tasks.retain(|_, t| !t.track.stale(now_ms));
        self.machines.retain(|_, m| !m.stale(now_ms));
        if self.tasks.len() < MAX_TASK_SERIES {
            self.warned_full = false;
        }
    }

    /// Forgets machine `machine` and the tasks it reported last
    /// (decommissioned). Not needed for bounds: [`History::record`] drops
    /// them an hour after their last report anyway.
    pub fn forget_machine(&mut self, machine: &str) {
        self.machines.remove(machine);
        self.tasks.retain(|_, t| t.machine != machine);
    }

    /// The series of the tasks named in `tasks` (instance number → task
    /// name) within the window before `now_ms`, keyed by the number
    /// (`"0"`, `"1"`...); a task never reported is left out.
    pub fn of_tasks(&self, tasks: &[(usize, String)], now_ms: u64) -> HistoryView {
        let series = tasks
            .iter()
            .filter_map(|(number, name)| {
                let series = self.tasks.get(name)?.series_at(now_ms);
                (!series.samples.is_empty() || !series.restarts_ms.is_empty())
                    .then(|| (number.to_string(), series))
            })
            .collect();
        HistoryView {
            window_ms: HISTORY_WINDOW_MS,
            series,
        }
    }

    /// Machine `machine`'s own series under [`MACHINE_SERIES`] (the sum
    /// over the tasks it reported) and those of the tasks it reported
    /// last, by task name, within the window before `now_ms`.
    pub fn of_machine(&self, machine: &str, now_ms: u64) -> HistoryView {
        let mut view = HistoryView {
            window_ms: HISTORY_WINDOW_MS,
            ..HistoryView::default()
        };
        if let Some(track) = self.machines.get(machine) {
            let samples = track.samples_at(now_ms);
            if !samples.is_empty() {
                view.series.insert(
                    MACHINE_SERIES.to_string(),
                    Series {
                        samples,
                        restarts_ms: Vec::new(),
                    },
                );
            }
        }
        for (name, task) in &self.tasks {
            if task.machine == machine {
                let series = task.series_at(now_ms);
                if !series.samples.is_empty() || !series.restarts_ms.is_empty() {
                    view.series.insert(name.clone(), series);
                }
            }
        }
        view
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

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::machine::TaskView;
    use cerebro_types::task::{CpuAction, Limits, LimitsBackendKind};
    use cerebro_types::TaskSpec;
    use std::collections::BTreeMap;

    const T0: u64 = 1_800_000_000_000;
    const SECOND: u64 = 1_000;

    /// What a poll says of one task.
    #[derive(Clone, Copy)]
    struct Poll {
        cpu: f64,
        rss_mb: u64,
        starts: u64,
        restarts: u64,
        started_at_ms: Option<u64>,
    }

    impl Default for Poll {
        fn default() -> Self {
            Poll {
                cpu: 0.5,
                rss_mb: 10,
                starts: 1,
                restarts: 0,
                started_at_ms: Some(T0),
            }
        }
    }

    fn task(name: &str, poll: Poll) -> TaskView {
        TaskView {
            name: name.into(),
            spec: TaskSpec::new(name, "sleep 1"),
            run_requested: true,
            deleting: false,
            status: Some(TaskStatus {
                pid: Some(42),
                started_at_ms: poll.started_at_ms,
                starts: poll.starts,
                restarts: poll.restarts,
                cpu_cores: poll.cpu,
                rss_bytes: poll.rss_mb * 1024 * 1024,
                processes: 1,
                ..TaskStatus::not_started(
                    name,
                    "sleep 1",
                    Limits {
                        cpu_cores: None,
                        mem_bytes: None,
                        time_limit_secs: None,
                        cpu_action: CpuAction::Restart,
                    },
                    LimitsBackendKind::Poll,
                    1,
                )
            }),
            tasksitter: None,
            sitter_starts: 1,
            last_error: None,
            deployment: None,
            deploy: None,
            ports: BTreeMap::new(),
        }
    }

    fn report(tasks: &[(&str, Poll)]) -> MachineReport {
        MachineReport {
            tasks: tasks
                .iter()
                .map(|(name, poll)| (name.to_string(), task(name, *poll)))
                .collect(),
            status: None,
        }
    }

    fn one(history: &History, name: &str, now: u64) -> Series {
        history
            .of_tasks(&[(0, name.to_string())], now)
            .series
            .remove("0")
            .unwrap_or_default()
    }

    #[test]
    fn ten_thousand_polls_a_second_apart_keep_at_most_an_hour_of_samples() {
        let mut history = History::default();
        let mut now = T0;
        for i in 0..10_000u64 {
            now = T0 + i * SECOND;
            // A crash loop: a restart at every poll.
            let poll = Poll {
                cpu: (i % 4) as f64,
                restarts: i,
                starts: i + 1,
                started_at_ms: Some(now),
                ..Poll::default()
            };
            history.record("m1", &report(&[("web#0", poll)]), now);
        }
        let series = one(&history, "web#0", now);
        assert!(
            series.samples.len() <= MAX_SAMPLES,
            "{}",
            series.samples.len()
        );
        assert!(series.samples.len() >= MAX_SAMPLES - 1);
        assert!(series
            .samples
            .iter()
            .all(|s| s.at_ms >= now - HISTORY_WINDOW_MS && s.at_ms <= now));
        assert!(series.samples.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert_eq!(series.samples.last().unwrap().at_ms, now);
        assert!(series.restarts_ms.len() <= MAX_SAMPLES);
        assert!(series
            .restarts_ms
            .iter()
            .all(|&t| t >= now - HISTORY_WINDOW_MS && t <= now));
        // Ten polls per bucket cycling 0..4 cores: a mean, never a peak.
        let full = &series.samples[series.samples.len() / 2];
        assert!(full.cpu_cores > 0.5 && full.cpu_cores < 2.5, "{full:?}");

        let machine = history.of_machine("m1", now);
        let sum = &machine.series[MACHINE_SERIES];
        assert!(sum.samples.len() <= MAX_SAMPLES);
        assert!(sum.restarts_ms.is_empty());
        assert!(machine.series.contains_key("web#0"));
    }

    #[test]
    fn polls_in_one_bucket_fold_into_their_mean_cpu_and_peak_rss() {
        let mut history = History::default();
        for (i, (cpu, rss_mb)) in [(1.0, 100), (0.0, 300), (0.5, 200)].into_iter().enumerate() {
            let poll = Poll {
                cpu,
                rss_mb,
                ..Poll::default()
            };
            history.record("m1", &report(&[("web#0", poll)]), T0 + i as u64 * 200);
        }
        let series = one(&history, "web#0", T0 + 400);
        assert_eq!(series.samples.len(), 1);
        let sample = series.samples[0];
        assert!((sample.cpu_cores - 0.5).abs() < 1e-9, "{sample:?}");
        assert_eq!(sample.rss_mb, 300.0);
        assert_eq!(sample.at_ms, T0 + 400);
    }

    #[test]
    fn a_restart_is_marked_when_a_counter_grows_or_the_start_time_changes() {
        let mut history = History::default();
        let base = Poll::default();
        let polls = [
            // First sight: nothing to compare with.
            (T0, base),
            (T0 + 20 * SECOND, base),
            (
                T0 + 40 * SECOND,
                Poll {
                    restarts: 1,
                    starts: 2,
                    started_at_ms: Some(T0 + 39 * SECOND),
                    ..base
                },
            ),
            // Stopped: the start time goes, which is no start.
            (
                T0 + 60 * SECOND,
                Poll {
                    restarts: 1,
                    starts: 2,
                    started_at_ms: None,
                    ..base
                },
            ),
            // Started by request: `starts` grows.
            (
                T0 + 80 * SECOND,
                Poll {
                    restarts: 1,
                    starts: 3,
                    started_at_ms: Some(T0 + 79 * SECOND),
                    ..base
                },
            ),
            // Its tasksitter started anew: counters from 0, a new start time.
            (
                T0 + 100 * SECOND,
                Poll {
                    restarts: 0,
                    starts: 1,
                    started_at_ms: Some(T0 + 99 * SECOND),
                    ..base
                },
            ),
            (
                T0 + 120 * SECOND,
                Poll {
                    restarts: 0,
                    starts: 1,
                    started_at_ms: Some(T0 + 99 * SECOND),
                    ..base
                },
            ),
        ];
        for (now, poll) in polls {
            history.record("m1", &report(&[("web#0", poll)]), now);
        }
        let series = one(&history, "web#0", T0 + 120 * SECOND);
        assert_eq!(
            series.restarts_ms,
            vec![T0 + 40 * SECOND, T0 + 80 * SECOND, T0 + 100 * SECOND]
        );
        assert_eq!(series.samples.len(), 7);
        // An hour later the markers are gone with the samples.
        let later = T0 + 120 * SECOND + HISTORY_WINDOW_MS + 1;
        assert_eq!(one(&history, "web#0", later), Series::default());
    }

    #[test]
    fn neither_a_first_start_nor_another_machine_counts_as_a_restart() {
        let mut history = History::default();
        let never_ran = Poll {
            starts: 0,
            started_at_ms: None,
            ..Poll::default()
        };
        history.record("m1", &report(&[("web#0", never_ran)]), T0);
        history.record("m1", &report(&[("web#0", Poll::default())]), T0 + BUCKET_MS);
        assert!(one(&history, "web#0", T0 + BUCKET_MS)
            .restarts_ms
            .is_empty());

        // Two machines report it for a while (a move): nothing is marked.
        for i in 2..6 {
            let elsewhere = Poll {
                starts: 1,
                started_at_ms: Some(T0 + BUCKET_MS + 1),
                ..Poll::default()
            };
            let (machine, poll) = if i % 2 == 0 {
                ("m2", elsewhere)
            } else {
                ("m1", Poll::default())
            };
            history.record(machine, &report(&[("web#0", poll)]), T0 + i * BUCKET_MS);
        }
        let series = one(&history, "web#0", T0 + 6 * BUCKET_MS);
        assert!(series.restarts_ms.is_empty(), "{series:?}");
        assert_eq!(series.samples.len(), 6);
    }

    #[test]
    fn restarts_within_one_bucket_leave_one_marker_at_the_latest() {
        let mut history = History::default();
        let base = T0 / BUCKET_MS * BUCKET_MS;
        for (i, at) in [base, base + 1_000, base + 2_000, base + 3_000]
            .into_iter()
            .enumerate()
        {
            let poll = Poll {
                starts: i as u64 + 1,
                ..Poll::default()
            };
            history.record("m1", &report(&[("web#0", poll)]), at);
        }
        let series = one(&history, "web#0", base + 3_000);
        assert_eq!(series.restarts_ms, vec![base + 3_000]);
    }

    #[test]
    fn the_machine_series_is_the_sum_of_its_tasks() {
        let mut history = History::default();
        let a = Poll {
            cpu: 0.5,
            rss_mb: 10,
            ..Poll::default()
        };
        let b = Poll {
            cpu: 0.25,
            rss_mb: 20,
            ..Poll::default()
        };
        let mut not_started = task("web#2", a);
        not_started.status = None;
        let mut machine_report = report(&[("web#0", a), ("web#1", b)]);
        machine_report.tasks.insert("web#2".into(), not_started);
        history.record("m1", &machine_report, T0);
        history.record("m2", &report(&[("api#0", a)]), T0);

        let view = history.of_machine("m1", T0);
        assert_eq!(
            view.series.keys().collect::<Vec<_>>(),
            ["machine", "web#0", "web#1"]
        );
        let sum = view.series["machine"].samples[0];
        assert!((sum.cpu_cores - 0.75).abs() < 1e-9, "{sum:?}");
        assert!((sum.rss_mb - 30.0).abs() < 1e-9, "{sum:?}");
        assert_eq!(view.window_ms, HISTORY_WINDOW_MS);

        // A machine that reports nothing running still has a (zero) series.
        history.record("m3", &report(&[]), T0);
        assert_eq!(
            history.of_machine("m3", T0).series["machine"].samples[0].cpu_cores,
            0.0
        );

        // Keyed by instance number for a job; a task never seen is left out.
        let job = history.of_tasks(&[(1, "web#1".to_string()), (4, "web#4".to_string())], T0);
        assert_eq!(job.series.keys().collect::<Vec<_>>(), ["1"]);
        assert_eq!(job.series["1"].samples[0].rss_mb, 20.0);
    }

    #[test]
    fn series_not_updated_for_an_hour_are_dropped_while_recording() {
        let mut history = History::default();
        history.record(
            "gone",
            &report(&[("old#0", Poll::default()), ("moved#0", Poll::default())]),
            T0,
        );
        // The task moved: it is now on "m1" and shown there.
        history.record("m1", &report(&[("moved#0", Poll::default())]), T0 + SECOND);
        assert!(!history
            .of_machine("gone", T0 + SECOND)
            .series
            .contains_key("moved#0"));
        assert!(history
            .of_machine("m1", T0 + SECOND)
            .series
            .contains_key("moved#0"));

        // Still there (and drawn) for the rest of the hour...
        let mut now = T0 + SECOND;
        while now < T0 + HISTORY_WINDOW_MS {
            now += 60 * SECOND;
            history.record("m1", &report(&[("moved#0", Poll::default())]), now);
            if now < T0 + HISTORY_WINDOW_MS {
                assert!(history.tasks.contains_key("old#0"));
            }
        }
        // ...then gone, though nobody said so.
        now += 2 * BUCKET_MS;
        history.record("m1", &report(&[("moved#0", Poll::default())]), now);
        assert!(!history.tasks.contains_key("old#0"));
        assert!(!history.machines.contains_key("gone"));
        assert!(history.of_machine("gone", now).series.is_empty());
        assert_eq!(history.tasks.len(), 1);
        assert_eq!(history.machines.len(), 1);
    }

    #[test]
    fn a_flood_of_task_names_stops_at_the_series_cap() {
        let mut history = History::default();
        let names: Vec<String> = (0..MAX_TASK_SERIES + 50)
            .map(|i| format!("flood#{i}"))
            .collect();
        let flood = MachineReport {
            tasks: names
                .iter()
                .map(|n| (n.clone(), task(n, Poll::default())))
                .collect(),
            status: None,
        };
        history.record("m1", &flood, T0);
        assert_eq!(history.tasks.len(), MAX_TASK_SERIES);
        // The machine's sum still counts every task it ran.
        let sum = history.of_machine("m1", T0).series["machine"].samples[0];
        assert!((sum.cpu_cores - 0.5 * names.len() as f64).abs() < 1e-6);
        // Once the flood is an hour old, there is room again.
        let later = T0 + HISTORY_WINDOW_MS + BUCKET_MS + 1;
        history.record("m1", &report(&[("web#0", Poll::default())]), later);
        assert_eq!(history.tasks.len(), 1);
    }

    #[test]
    fn forgetting_a_machine_drops_it_and_its_tasks() {
        let mut history = History::default();
        history.record("m1", &report(&[("web#0", Poll::default())]), T0);
        history.record("m2", &report(&[("web#1", Poll::default())]), T0);
        history.forget_machine("m1");
        assert!(history.of_machine("m1", T0).series.is_empty());
        assert_eq!(history.of_machine("m2", T0).series.len(), 2);
    }

    #[test]
    fn bad_figures_count_as_zero() {
        let mut history = History::default();
        for (i, cpu) in [f64::NAN, -1.0, f64::INFINITY].into_iter().enumerate() {
            let poll = Poll {
                cpu,
                ..Poll::default()
            };
            history.record("m1", &report(&[("web#0", poll)]), T0 + i as u64 * BUCKET_MS);
        }
        let series = one(&history, "web#0", T0 + 2 * BUCKET_MS);
        assert!(series.samples.iter().all(|s| s.cpu_cores == 0.0));
    }
}
