//! The user a task runs as, and the one check of a spec against this host.
//! `TaskSpec::validate` says whether a spec makes sense anywhere;
//! [`check_host`] says whether it can run here (its users and groups exist,
//! its working directory is one, the limits backend can do what it asks).
//! The machinesitter calls both before it accepts a task, the tasksitter
//! before it starts one, so neither accepts what the other would refuse.

use cerebro_types::{CpuAction, Principal, TaskSpec, ValidationErrors};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The user the workload runs as, resolved once at start.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// The user id to setuid to.
    pub uid: u32,
    /// The primary group id to setgid to.
    pub gid: u32,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<u32>,
    /// The passwd name, when the user has an entry (sets `USER`).
    pub name: Option<String>,
    /// The passwd home directory, when the user has an entry (sets `HOME`).
    pub home: Option<PathBuf>,
}

/// What a forked child needs to become the user of a [`RunAs`]: plain
/// numbers, so [`Ids::become_user`] is async-signal-safe in a `pre_exec`.
#[derive(Debug, Clone)]
pub struct Ids {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl RunAs {
    /// The ids to switch to after a fork.
    pub fn ids(&self) -> Ids {
        Ids {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }
}

impl Ids {
    /// Switches the calling process to these groups and user (setgroups,
    /// setgid, setuid, in that order: after setuid the others are not
    /// allowed). Async-signal-safe: meant for a `pre_exec` closure.
    ///
    /// # Errors
    /// The OS error of the first call that failed.
    pub fn become_user(&self) -> std::io::Result<()> {
        // SAFETY: plain syscalls on a slice that lives as long as `self`.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// A user or group that does not resolve; `field` is the spec field (`uid` or `gid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RunAsError {
    /// `uid` or `gid`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn resolve_group(group: &Principal) -> Result<u32, RunAsError> {
    let error = |message| RunAsError {
        field: "gid",
        message,
    };
    match group {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(error(format!("unknown group '{name}'"))),
            Err(e) => Err(error(format!("cannot look up group '{name}': {e}"))),
        },
    }
}

/// Resolves a spec's `uid`/`gid` to numbers and the user's supplementary
/// groups; `None` when neither is given (the workload runs as we do).
pub fn resolve_run_as(
    uid: Option<&Principal>,
    gid: Option<&Principal>,
) -> Result<Option<RunAs>, RunAsError> {
    let explicit_gid = gid.map(resolve_group).transpose()?;
    let Some(uid) = uid else {
        return Ok(explicit_gid.map(|gid| RunAs {
            uid: nix::unistd::getuid().as_raw(),
            gid,
            groups: vec![gid],
            name: None,
            home: None,
        }));
    };
    let user_error = |message| RunAsError {
        field: "uid",
        message,
    };
    let lookup = match uid {
        Principal::Id(id) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*id)),
        Principal::Name(name) => nix::unistd::User::from_name(name),
    }
    .map_err(|e| user_error(format!("cannot look up user '{uid}': {e}")))?;
    let user = match (lookup, uid) {
        (Some(user), _) => user,
        // A bare number without a passwd entry is still a valid uid.
        (None, Principal::Id(id)) => {
            let gid = explicit_gid.unwrap_or(*id);
            return Ok(Some(RunAs {
                uid: *id,
                gid,
                groups: vec![gid],
                name: None,
                home: None,
            }));
        }
        (None, Principal::Name(name)) => return Err(user_error(format!("unknown user '{name}'"))),
    };
    let gid = explicit_gid.unwrap_or(user.gid.as_raw());
    let groups = CString::new(user.name.clone())
        .ok()
        .and_then(|cname| nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|list| list.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid,
        groups,
        name: Some(user.name),
        home: Some(user.dir),
    }))
}

/// How a tasksitter enforces limits: `--limits-backend` of both the
/// tasksitter and the machinesitter (which hands it to its tasksitters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// cgroups when this host offers them and they can be created, /proc polling otherwise.
    Auto,
    /// cgroups or refuse to start.
    Cgroup,
    /// /proc polling only.
    Poll,
}

impl BackendChoice {
    /// The `--limits-backend` value that selects it.
    pub fn as_flag(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cgroup => "cgroup",
            BackendChoice::Poll => "poll",
        }
    }
}

/// Checks `spec` against this host and the limits backend it will run
/// under: its user and group resolve, its working directory exists, and a
/// CPU throttle is not asked of the poll backend (only a cgroup quota can
/// throttle). Errors name spec fields (`uid`, `gid`, `cwd`, `cpu_action`);
/// a relative `cwd` is left to `TaskSpec::validate`. Returns the resolved
/// user to run as.
pub fn check_host(
    spec: &TaskSpec,
    backend: BackendChoice,
) -> Result<Option<RunAs>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if spec.cpu_action == Some(CpuAction::Throttle) && backend == BackendChoice::Poll {
        errors.push(
            "cpu_action",
            "throttle needs the cgroup backend; use restart with --limits-backend poll",
        );
    }
    if let Some(cwd) = spec.cwd.as_deref().map(Path::new) {
        if cwd.is_absolute() && !cwd.is_dir() {
            errors.push("cwd", format!("{} is not a directory", cwd.display()));
        }
    }
    let run_as = match resolve_run_as(spec.uid.as_ref(), spec.gid.as_ref()) {
        Ok(run_as) => run_as,
        Err(error) => {
            errors.push(error.field, error.message);
            None
        }
    };
    errors.into_result(run_as)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_name_spec_fields() {
        let mut spec = TaskSpec::new("t", "true");
        spec.uid = Some(Principal::Name("no-such-user-cerebro".into()));
        spec.cwd = Some("/no/such/dir/cerebro".into());
        spec.cpu_action = Some(CpuAction::Throttle);
        let errors = check_host(&spec, BackendChoice::Poll).unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cpu_action", "cwd", "uid"], "{errors}");
        assert!(errors
            .to_string()
            .contains("unknown user 'no-such-user-cerebro'"));
    }

    #[test]
    fn nobody_resolves_with_home() {
        let mut spec = TaskSpec::new("t", "true");
        spec.uid = Some(Principal::Name("nobody".into()));
        let run_as = check_host(&spec, BackendChoice::Auto).unwrap().unwrap();
        assert_eq!(run_as.uid, 65534);
        assert_eq!(run_as.name.as_deref(), Some("nobody"));
    }
}
