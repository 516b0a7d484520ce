//! A task's deploy directory on disk: its releases, the markers saying
//! which are fully installed, the `current` link, the deploy log, and the
//! machine's artifact cache.
//!
//! ```text
//! <state_dir>/deploy/<dir_name>/releases/<release_id>/       the release
//! <state_dir>/deploy/<dir_name>/releases/<release_id>.json  marker: installed
//! <state_dir>/deploy/<dir_name>/current -> releases/<release_id>
//! <state_dir>/deploy/<dir_name>/log.json                    the deploy log
//! <state_dir>/deploy/<dir_name>/step-group                  a running step's process group
//! <state_dir>/deploy/artifacts/<sha256>                     fetched artifacts
//! ```

use cerebro_types::deploy::{DeployAttempt, Deployment};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Attempts kept in a task's deploy log.
pub const KEPT_ATTEMPTS: usize = 20;
/// Releases kept besides the current one.
pub const KEPT_OTHER_RELEASES: usize = 2;
/// An unreferenced artifact younger than this is kept: another task's
/// install may be about to use it (its marker is not written yet).
const ARTIFACT_GRACE: Duration = Duration::from_secs(600);

/// The deploy directory of one task.
#[derive(Debug, Clone)]
pub struct DeployDir {
    /// `<state_dir>/deploy/<dir_name>`.
    pub dir: PathBuf,
    /// `<state_dir>/deploy/artifacts`, shared by every task.
    pub artifacts: PathBuf,
}

/// What a marker file holds: the release was installed, every install step
/// succeeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub deployment: Deployment,
    pub attempt: u32,
    /// When it was installed, ms since the epoch.
    pub installed_ms: u64,
    /// The sha256 of every artifact it fetched, so pruning keeps them.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

impl DeployDir {
    pub fn new(state_dir: &Path, dir_name: &str) -> Self {
        let root = state_dir.join("deploy");
        Self {
            dir: root.join(dir_name),
            artifacts: root.join("artifacts"),
        }
    }

    pub fn releases(&self) -> PathBuf {
        self.dir.join("releases")
    }

    pub fn release(&self, release: &str) -> PathBuf {
        self.releases().join(release)
    }

    pub fn marker(&self, release: &str) -> PathBuf {
        self.releases().join(format!("{release}.json"))
    }

    /// The link the task's working directory is.
    pub fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("log.json")
    }

    /// `PGID START_TICKS` of the command a step runs now, so a
    /// machinesitter started after this one died kills what it left.
    pub fn step_group(&self) -> PathBuf {
        self.dir.join("step-group")
    }

    /// Whether `release` is fully installed: its marker and its directory
    /// are there.
    pub fn installed(&self, release: &str) -> bool {
        self.release(release).is_dir() && self.read_marker(release).is_some()
    }

    pub fn read_marker(&self, release: &str) -> Option<Marker> {
        let bytes = std::fs::read(self.marker(release)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write_marker(&self, release: &str, marker: &Marker) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
        cerebro_host::fs::atomic_write(&self.marker(release), &bytes)
    }

    /// The release `current` points at, if any.
    pub fn current_release(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Points `current` at `release`, atomically: a new link renamed over
    /// the old one, so the link is always one release or the other.
    pub fn switch(&self, release: &str) -> std::io::Result<()> {
        let temp = self.dir.join(format!(".current-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        std::os::unix::fs::symlink(Path::new("releases").join(release), &temp)?;
        std::fs::rename(&temp, self.current())?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes a half-installed release (its directory and any marker).
    pub fn discard(&self, release: &str) {
        let _ = std::fs::remove_file(self.marker(release));
        let _ = std::fs::remove_dir_all(self.release(release));
    }

    /// Keeps the current release and the [`KEPT_OTHER_RELEASES`] newest
    /// other installed ones; removes the rest (and anything in `releases/`
    /// not installed, except `installing`, the release being installed now).
    pub fn prune_releases(&self, installing: Option<&str>) -> Vec<String> {
        let current = self.current_release();
        let mut installed: Vec<(u64, String)> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.releases()) else {
            return Vec::new();
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            match self.read_marker(&name) {
                Some(marker) => installed.push((marker.installed_ms, name)),
                None => others.push(name),
            }
        }
        installed.sort_by(|a, b| b.cmp(a));
        let mut removed = Vec::new();
        let mut kept_others = 0;
        for (_, name) in installed {
            if Some(&name) == current.as_ref() {
                continue;
            }
            if kept_others < KEPT_OTHER_RELEASES {
                kept_others += 1;
                continue;
            }
            self.discard(&name);
            removed.push(name);
        }
        for name in others {
            if Some(name.as_str()) != installing && Some(&name) != current.as_ref() {
                self.discard(&name);
                removed.push(name);
            }
        }
        removed
    }

    pub fn load_log(&self) -> Vec<DeployAttempt> {
        std::fs::read(self.log())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save_log(&self, log: &[DeployAttempt]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(log).map_err(std::io::Error::other)?;
        cerebro_host::fs::atomic_write(&self.log(), &bytes)
    }
}

/// Removes every artifact that no installed release of any task of
/// `state_dir` references, unless it was used in the last few minutes.
pub fn prune_artifacts(state_dir: &Path) -> Vec<String> {
    let root = state_dir.join("deploy");
    let mut referenced = std::collections::HashSet::new();
    for task in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let releases = task.path().join("releases");
        for entry in std::fs::read_dir(releases).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(marker) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
                {
                    referenced.extend(marker.artifacts);
                }
            }
        }
    }
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(root.join("artifacts"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_none_or(|age| age < ARTIFACT_GRACE);
        if !referenced.contains(&name) && !young {
            let _ = std::fs::remove_file(entry.path());
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(installed_ms: u64, artifact: &str) -> Marker {
        Marker {
            deployment: crate::deploy::test_deployment(
                "[[steps]]\nkind = \"run\"\ncommand = \"true\"\n",
            ),
            attempt: 1,
            installed_ms,
            artifacts: vec![artifact.to_string()],
        }
    }

    #[test]
    fn the_current_release_and_two_others_are_kept_and_unreferenced_artifacts_go() {
        let state = tempfile::tempdir().unwrap();
        let dirs = DeployDir::new(state.path(), "task-1");
        for (n, name) in ["r1", "r2", "r3", "r4", "r5"].iter().enumerate() {
            std::fs::create_dir_all(dirs.release(name)).unwrap();
            dirs.write_marker(name, &marker(n as u64, &format!("sha-{name}")))
                .unwrap();
        }
        // A half-installed one (no marker) and the current, oldest, one.
        std::fs::create_dir_all(dirs.release("broken")).unwrap();
        dirs.switch("r1").unwrap();
        assert_eq!(dirs.current_release().as_deref(), Some("r1"));
        let mut removed = dirs.prune_releases(None);
        removed.sort();
        assert_eq!(removed, ["broken", "r2", "r3"]);
        for name in ["r1", "r4", "r5"] {
            assert!(dirs.installed(name), "{name} kept");
        }
        assert!(!dirs.marker("r2").exists() && !dirs.release("r2").exists());

        std::fs::create_dir_all(&dirs.artifacts).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for name in ["sha-r1", "sha-r2", "sha-young"] {
            let file = std::fs::File::create(dirs.artifacts.join(name)).unwrap();
            if name != "sha-young" {
                file.set_modified(old).unwrap();
            }
        }
        assert_eq!(prune_artifacts(state.path()), ["sha-r2"]);
        assert!(
            dirs.artifacts.join("sha-r1").exists() && dirs.artifacts.join("sha-young").exists()
        );
    }
}
