//! The last hour of CPU and memory use, per instance and per machine, as
//! `GET /api/v1/jobs/{name}/history` and `GET /api/v1/machines/{id}/history`
//! answer it and the job and machine pages draw it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far back a history goes: one hour, in ms.
pub const HISTORY_WINDOW_MS: u64 = 60 * 60 * 1000;

/// The most samples one series keeps: one per 10 s over the window, so a
/// series stays bounded however fast the cluster polls.
pub const MAX_SAMPLES: usize = 360;

/// The span one sample stands for, in ms (10 s): every poll that lands in
/// the same span is folded into one [`Sample`].
pub const BUCKET_MS: u64 = HISTORY_WINDOW_MS / MAX_SAMPLES as u64;

/// One measurement: the polls of one [`BUCKET_MS`] span folded together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was last measured (ms since the Unix epoch, the
    /// clustersitter's clock): the time of the span's latest poll.
    pub at_ms: u64,
    /// Cores in use: the mean over the span's polls (each poll's figure is
    /// itself a mean over the machine's sampling interval).
    pub cpu_cores: f64,
    /// Resident memory, in MB (2^20 bytes): the peak over the span's polls,
    /// since what matters for a memory limit is how close it came.
    pub rss_mb: f64,
}

/// One instance's (or machine's) samples, oldest first, and the times it
/// was seen restarted (by its policy or by request), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// At most [`MAX_SAMPLES`], all within the window.
    pub samples: Vec<Sample>,
    /// When a poll found the task started anew since the previous poll
    /// (ms since the Unix epoch); at most one per [`BUCKET_MS`] span (its
    /// latest) and [`MAX_SAMPLES`] in all. Always empty for a machine's own series.
    #[serde(default)]
    pub restarts_ms: Vec<u64>,
}

/// A job's or a machine's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// The window the series cover, in ms ([`HISTORY_WINDOW_MS`]).
    pub window_ms: u64,
    /// For a job: one series per instance, keyed by its number (`"0"`,
    /// `"1"`...). For a machine: `"machine"` (the sum over its tasks)
    /// and one per task it runs, keyed by task name.
    pub series: BTreeMap<String, Series>,
}

impl HistoryView {
    /// Whether no series holds a sample (nothing to draw).
    pub fn is_empty(&self) -> bool {
        self.series.values().all(|s| s.samples.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_ten_seconds_and_fills_the_window() {
        assert_eq!(BUCKET_MS, 10_000);
        assert_eq!(BUCKET_MS * MAX_SAMPLES as u64, HISTORY_WINDOW_MS);
    }

    #[test]
    fn the_wire_form_round_trips_and_restarts_may_be_absent() {
        let mut view = HistoryView {
            window_ms: HISTORY_WINDOW_MS,
            ..Default::default()
        };
        assert!(view.is_empty());
        view.series.insert(
            "0".into(),
            Series {
                samples: vec![Sample {
                    at_ms: 5,
                    cpu_cores: 0.25,
                    rss_mb: 12.5,
                }],
                restarts_ms: vec![4],
            },
        );
        assert!(!view.is_empty());
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<HistoryView>(&text).unwrap(), view);
        let old: Series = serde_json::from_str(r#"{"samples": []}"#).unwrap();
        assert!(old.restarts_ms.is_empty());
    }
}
