//! The job and machine pages' graphs of the last hour: CPU and RSS per
//! instance (or per machine), drawn as inline SVG from
//! [`crate::history`], with a marker at each restart. No script and no
//! CDN: the page's periodic refresh redraws them.

use crate::cluster::Cluster;

/// The graphs section of job `job`'s page (a heading and one SVG per
/// figure), or nothing while there is no sample yet.
pub(super) fn job_graphs(_cluster: &Cluster, _job: &str) -> String {
    String::new()
}

/// The graphs section of machine `id`'s page.
pub(super) fn machine_graphs(_cluster: &Cluster, _id: &str) -> String {
    String::new()
}
