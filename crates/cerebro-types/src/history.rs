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

/// One measurement at a poll.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken (ms since the Unix epoch, the clustersitter's clock).
    pub at_ms: u64,
    /// Cores in use.
    pub cpu_cores: f64,
    /// Resident memory, in MB (2^20 bytes).
    pub rss_mb: f64,
}

/// One instance's (or machine's) samples, oldest first, and the times it
/// was seen restarted (by its policy or by request), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub samples: Vec<Sample>,
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
