//! cgroups as a small trait with v1 and v2 implementations, each over an
//! injectable root so the v2 code is tested against a fake tree in a temp dir.
//!
//! The workload joins its cgroup in `pre_exec` by writing "0" to the
//! `cgroup.procs` files opened here, so no user code ever runs outside it.

use cerebro_types::LimitsBackendKind;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A cgroup operation that failed, saying what was being done and where.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `action` (e.g. "write") on `path` failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A cgroup file held something other than expected.
    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    /// This host offers no cgroup hierarchy we can use.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// Members kept appearing for about a second of SIGKILL rounds.
    #[error("cgroup {0} still has processes after repeated SIGKILL")]
    Unkillable(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(io_err("read", path))
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        detail: format!("expected a number, got '{}'", text.trim()),
    })
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn keyed_value(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read_trimmed(path)?;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            return parts.next().map(|v| parse_u64(path, v)).transpose();
        }
    }
    Ok(None)
}

/// Usage of the whole cgroup at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupSample {
    /// CPU time used by every member since the cgroup was made, in ns.
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup, page cache excluded where the kernel allows, in bytes.
    pub rss_bytes: u64,
    /// Times the kernel's OOM killer fired in the cgroup.
    pub oom_kills: u64,
    /// Highest memory charge seen, where the kernel keeps it.
    pub peak_bytes: Option<u64>,
}

/// One task's cgroup (a directory per v1 controller, or one v2 directory).
pub trait Cgroup: Send + Sync {
    /// Which version this is, for the status.
    fn kind(&self) -> LimitsBackendKind;
    /// The `cgroup.procs` files a process writes "0" into to join.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// Holds the members to `cores` of CPU time per wall-clock second.
    fn set_cpu_quota(&self, cores: f64) -> Result<(), CgroupError>;
    /// Caps the members' memory at `bytes`; the kernel OOM-kills beyond it.
    fn set_memory_limit(&self, bytes: u64) -> Result<(), CgroupError>;
    /// Current usage of every member together.
    fn sample(&self) -> Result<CgroupSample, CgroupError>;
    /// The member processes now.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// SIGKILL every member, repeatedly until none is left.
    fn kill_all(&self) -> Result<(), CgroupError>;
    /// Remove the cgroup directories (the cgroup must be empty).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// The directories, for reporting and for the guard process.
    fn paths(&self) -> Vec<PathBuf>;
}

const CPU_PERIOD_US: u64 = 100_000;

fn read_pids(procs: &Path) -> Result<Vec<i32>, CgroupError> {
    match fs::read_to_string(procs) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("read", procs)(e)),
    }
}

/// Kills members of the cgroup whose membership list is `procs` until it is
/// empty. A process forking between our read and our kill is caught on the
/// next round; a SIGKILLed process cannot fork again.
pub fn kill_members(procs: &Path) -> Result<(), CgroupError> {
    let mut pause = Backoff::new();
    while !pause.expired() {
        let pids = read_pids(procs)?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            // SAFETY: kill(2) with a pid read from the cgroup; no memory is touched.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        pause.wait();
    }
    Err(CgroupError::Unkillable(procs.to_path_buf()))
}

/// Short, growing pauses for waiting on the kernel (an exiting process
/// leaving its cgroup takes microseconds, rarely milliseconds), bounded to
/// about a second in all, so a restart is not held up by a fixed sleep.
struct Backoff {
    pause: Duration,
    deadline: std::time::Instant,
}

impl Backoff {
    fn new() -> Self {
        Self {
            pause: Duration::from_micros(50),
            deadline: std::time::Instant::now() + Duration::from_secs(1),
        }
    }

    fn expired(&self) -> bool {
        std::time::Instant::now() >= self.deadline
    }

    fn wait(&mut self) {
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(Duration::from_millis(10));
    }
}

fn remove_dir(path: &Path) -> Result<(), CgroupError> {
    // rmdir can race the kernel finishing the last exit: retry briefly.
    let mut pause = Backoff::new();
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if pause.expired() => return Err(io_err("remove", path)(e)),
            Err(_) => pause.wait(),
        }
    }
}

/// cgroup v1: one directory per controller hierarchy.
pub struct CgroupV1 {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
}

/// Where the v1 controllers we need are mounted (they may share one mount).
#[derive(Debug, Clone, PartialEq)]
pub struct V1Mounts {
    /// The `cpu` controller's mount.
    pub cpu: PathBuf,
    /// The `cpuacct` controller's mount.
    pub cpuacct: PathBuf,
    /// The `memory` controller's mount.
    pub memory: PathBuf,
}

impl CgroupV1 {
    /// Creates `relative` under each controller's mount.
    pub fn create(mounts: &V1Mounts, relative: &Path) -> Result<Self, CgroupError> {
        let group = Self {
            cpu: mounts.cpu.join(relative),
            cpuacct: mounts.cpuacct.join(relative),
            memory: mounts.memory.join(relative),
        };
        for dir in group.paths() {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(group)
    }
}

impl Cgroup for CgroupV1 {
    fn kind(&self) -> LimitsBackendKind {
        LimitsBackendKind::CgroupV1
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.paths()
            .into_iter()
            .map(|p| p.join("cgroup.procs"))
            .collect()
    }

    fn set_cpu_quota(&self, cores: f64) -> Result<(), CgroupError> {
        let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000);
        write_file(
            &self.cpu.join("cpu.cfs_period_us"),
            &CPU_PERIOD_US.to_string(),
        )?;
        write_file(&self.cpu.join("cpu.cfs_quota_us"), &quota.to_string())
    }

    fn set_memory_limit(&self, bytes: u64) -> Result<(), CgroupError> {
        write_file(
            &self.memory.join("memory.limit_in_bytes"),
            &bytes.to_string(),
        )
    }

    fn sample(&self) -> Result<CgroupSample, CgroupError> {
        let usage = self.cpuacct.join("cpuacct.usage");
        let cpu_usage_ns = parse_u64(&usage, &read_trimmed(&usage)?)?;
        let stat = self.memory.join("memory.stat");
        let rss_bytes = keyed_value(&stat, "total_rss")?.unwrap_or(0);
        let oom_kills =
            keyed_value(&self.memory.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);
        let peak = self.memory.join("memory.max_usage_in_bytes");
        let peak_bytes = read_trimmed(&peak).ok().and_then(|t| t.parse().ok());
        Ok(CgroupSample {
            cpu_usage_ns,
            rss_bytes,
            oom_kills,
            peak_bytes,
        })
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        read_pids(&self.memory.join("cgroup.procs"))
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        // Every hierarchy holds the same processes; the memory one is authoritative.
        kill_members(&self.memory.join("cgroup.procs"))?;
        for procs in self.procs_files() {
            kill_members(&procs)?;
        }
        Ok(())
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut paths = self.paths();
        paths.dedup();
        for dir in paths {
            remove_dir(&dir)?;
        }
        Ok(())
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cpu.clone(), self.cpuacct.clone(), self.memory.clone()];
        paths.dedup();
        paths
    }
}

/// cgroup v2: one unified directory.
pub struct CgroupV2 {
    dir: PathBuf,
}

impl CgroupV2 {
    /// Creates `relative` under the unified `root`, enabling the cpu and
    /// memory controllers on the way down so the leaf can use them.
    pub fn create(root: &Path, relative: &Path) -> Result<Self, CgroupError> {
        let mut ancestor = root.to_path_buf();
        enable_controllers(&ancestor)?;
        for component in relative.parent().into_iter().flat_map(Path::components) {
            ancestor.push(component);
            fs::create_dir_all(&ancestor).map_err(io_err("create", &ancestor))?;
            enable_controllers(&ancestor)?;
        }
        let dir = root.join(relative);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Self { dir })
    }
}

/// Controllers must be enabled in every ancestor's subtree_control for a leaf to use them.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    let missing: Vec<String> = ["cpu", "memory"]
        .into_iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        write_file(&control, &missing.join(" "))
    }
}

impl Cgroup for CgroupV2 {
    fn kind(&self) -> LimitsBackendKind {
        LimitsBackendKind::CgroupV2
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    fn set_cpu_quota(&self, cores: f64) -> Result<(), CgroupError> {
        let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000);
        write_file(
            &self.dir.join("cpu.max"),
            &format!("{quota} {CPU_PERIOD_US}"),
        )
    }

    fn set_memory_limit(&self, bytes: u64) -> Result<(), CgroupError> {
        write_file(&self.dir.join("memory.max"), &bytes.to_string())?;
        let swap = self.dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
        }
        // One OOM kill takes the whole group, as a violation should.
        write_file(&self.dir.join("memory.oom.group"), "1")
    }

    fn sample(&self) -> Result<CgroupSample, CgroupError> {
        let cpu_usage_ns =
            keyed_value(&self.dir.join("cpu.stat"), "usage_usec")?.unwrap_or(0) * 1000;
        let rss_bytes = keyed_value(&self.dir.join("memory.stat"), "anon")?.unwrap_or(0);
        let oom_kills = keyed_value(&self.dir.join("memory.events"), "oom_kill")?.unwrap_or(0);
        let peak_bytes = read_trimmed(&self.dir.join("memory.peak"))
            .ok()
            .and_then(|t| t.parse().ok());
        Ok(CgroupSample {
            cpu_usage_ns,
            rss_bytes,
            oom_kills,
            peak_bytes,
        })
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        read_pids(&self.dir.join("cgroup.procs"))
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() && write_file(&kill, "1").is_ok() {
            // cgroup.kill is atomic against forks; wait for the members to be gone.
            let mut pause = Backoff::new();
            while !pause.expired() {
                if self.pids()?.is_empty() {
                    return Ok(());
                }
                pause.wait();
            }
        }
        kill_members(&self.dir.join("cgroup.procs"))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        remove_dir(&self.dir)
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

/// The hierarchies this host offers, read from a mountinfo file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hierarchies {
    /// A cgroup2 mount whose controllers include cpu and memory.
    pub v2: Option<PathBuf>,
    /// The v1 mounts of cpu, cpuacct and memory, when all three exist.
    pub v1: Option<V1Mounts>,
}

impl Hierarchies {
    /// The hierarchies this process sees, from /proc/self/mountinfo.
    pub fn discover() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_mountinfo(&mountinfo, Path::new("/"))
    }

    /// Parses mountinfo; `prefix` re-roots mount points (for fake trees in tests).
    pub fn from_mountinfo(mountinfo: &str, prefix: &Path) -> Self {
        let mut found = Hierarchies::default();
        let (mut cpu, mut cpuacct, mut memory) = (None, None, None);
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = match left.split_whitespace().nth(4) {
                Some(p) => prefix.join(p.trim_start_matches('/')),
                None => continue,
            };
            let mut right = right.split_whitespace();
            let fstype = right.next().unwrap_or("");
            let super_options = right.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" => {
                    let controllers = fs::read_to_string(mount_point.join("cgroup.controllers"))
                        .unwrap_or_default();
                    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
                    if has("cpu") && has("memory") {
                        found.v2 = Some(mount_point);
                    }
                }
                "cgroup" => {
                    for option in super_options.split(',') {
                        match option {
                            "cpu" => cpu = Some(mount_point.clone()),
                            "cpuacct" => cpuacct = Some(mount_point.clone()),
                            "memory" => memory = Some(mount_point.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(cpu), Some(cpuacct), Some(memory)) = (cpu, cpuacct, memory) {
            found.v1 = Some(V1Mounts {
                cpu,
                cpuacct,
                memory,
            });
        }
        found
    }

    /// Creates a cgroup at `relative`, preferring v2 when it has the controllers.
    pub fn create(&self, relative: &Path) -> Result<Box<dyn Cgroup>, CgroupError> {
        if let Some(root) = &self.v2 {
            return Ok(Box::new(CgroupV2::create(root, relative)?));
        }
        if let Some(mounts) = &self.v1 {
            return Ok(Box::new(CgroupV1::create(mounts, relative)?));
        }
        Err(CgroupError::Unavailable(
            "neither a cgroup2 mount with cpu and memory nor v1 cpu, cpuacct and memory mounts"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v2_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        root
    }

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        let root = fake_v2_root();
        let group = CgroupV2::create(root.path(), Path::new("cerebro/web.42")).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("cerebro/cgroup.subtree_control")).unwrap(),
            "+cpu +memory"
        );
        group.set_cpu_quota(0.5).unwrap();
        group.set_memory_limit(64 << 20).unwrap();
        let dir = root.path().join("cerebro/web.42");
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.oom.group")).unwrap(),
            "1"
        );
        assert_eq!(group.procs_files(), vec![dir.join("cgroup.procs")]);
    }

    #[test]
    fn v2_reads_usage_and_oom_kills() {
        let root = fake_v2_root();
        let group = CgroupV2::create(root.path(), Path::new("t")).unwrap();
        let dir = root.path().join("t");
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(dir.join("memory.stat"), "anon 4096\nfile 8192\n").unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(dir.join("memory.peak"), "12288\n").unwrap();
        let sample = group.sample().unwrap();
        assert_eq!(
            sample,
            CgroupSample {
                cpu_usage_ns: 1_500_000,
                rss_bytes: 4096,
                oom_kills: 1,
                peak_bytes: Some(12288)
            }
        );
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        assert!(group.pids().unwrap().is_empty());
        group.kill_all().unwrap();
    }

    #[test]
    fn v2_skips_controllers_already_enabled() {
        let root = fake_v2_root();
        fs::write(root.path().join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        CgroupV2::create(root.path(), Path::new("x")).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "cpu memory\n"
        );
    }

    #[test]
    fn mountinfo_discovery() {
        let fake = fake_v2_root();
        let unified = fake.path().join("sys/fs/cgroup/unified");
        fs::create_dir_all(&unified).unwrap();
        fs::write(unified.join("cgroup.controllers"), "").unwrap();
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let found = Hierarchies::from_mountinfo(mountinfo, fake.path());
        assert_eq!(
            found.v2, None,
            "a cgroup2 mount without cpu and memory is not usable"
        );
        let v1 = found.v1.unwrap();
        assert_eq!(v1.memory, fake.path().join("sys/fs/cgroup/memory"));

        let v2_only = "41 31 0:38 / / rw,relatime - cgroup2 cgroup2 rw\n";
        let found = Hierarchies::from_mountinfo(v2_only, fake.path());
        assert_eq!(found.v2.as_deref(), Some(fake.path()));
        assert_eq!(found.v1, None);
    }
}
