//! Which jobs are placed by their own layout and which follow a master,
//! decided once from the links between jobs.

use super::*;
use cerebro_types::job::{link_of, walk_links, ChainEnd, Link};

/// How a job takes part in placement, decided once from the link graph.
#[derive(Debug, Clone)]
pub(super) enum Role {
    /// Placed by its own `deployment_layout`.
    Master,
    /// One instance on every machine running `master`; `depth` counts the
    /// links up to a master, so processing by depth runs masters first.
    Follower { master: usize, depth: u32 },
    /// Has no instances; the reason goes into one `unplaced` entry.
    Broken { reason: String },
}

/// Follows each job's `linked_job` chain to a master, a missing job or a
/// cycle. Each job has at most one link, so every walk ends; positions on
/// the current walk detect cycles without revisiting.
pub(super) fn resolve_roles(jobs: &[&JobSpec], job_by_name: &HashMap<&str, usize>) -> Vec<Role> {
    let mut roles: Vec<Option<Role>> = vec![None; jobs.len()];
    for start in 0..jobs.len() {
        if roles[start].is_some() {
            continue;
        }
        let chain = walk_links(jobs[start].name(), |name| match job_by_name.get(name) {
            Some(&job) if roles[job].is_some() => Link::Known,
            Some(&job) => link_of(jobs[job].linked_job.as_deref()),
            None => Link::Missing,
        });
        let path: Vec<usize> = chain.path.iter().map(|name| job_by_name[name]).collect();

        // `path` runs from `start` towards the master; resolve it backwards.
        let mut resolved_below = path.len();
        match chain.end {
            ChainEnd::Known(_) => {}
            ChainEnd::Master => {
                resolved_below -= 1;
                roles[path[resolved_below]] = Some(Role::Master);
            }
            ChainEnd::Missing(master) => {
                resolved_below -= 1;
                roles[path[resolved_below]] = Some(Role::Broken {
                    reason: format!("linked job '{master}' does not exist"),
                });
            }
            ChainEnd::Cycle { at: first } => {
                let mut members: Vec<usize> = path[first..].to_vec();
                let smallest = members
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &job)| job)
                    .map_or(0, |(position, _)| position);
                members.rotate_left(smallest);
                let mut names: Vec<&str> = members.iter().map(|&job| jobs[job].name()).collect();
                names.push(jobs[members[0]].name());
                let reason = format!("linked jobs form a cycle: {}", names.join(" -> "));
                for &job in &path[first..] {
                    roles[job] = Some(Role::Broken {
                        reason: reason.clone(),
                    });
                }
                resolved_below = first;
            }
        }
        for position in (0..resolved_below).rev() {
            let job = path[position];
            let master = match chain.end {
                ChainEnd::Known(known) if position + 1 == path.len() => job_by_name[known],
                _ => path[position + 1],
            };
            let role = match &roles[master] {
                Some(Role::Master) => Role::Follower { master, depth: 1 },
                Some(Role::Follower { depth, .. }) => Role::Follower {
                    master,
                    depth: depth + 1,
                },
                Some(Role::Broken { .. }) | None => Role::Broken {
                    reason: format!(
                        "linked job '{}' cannot be placed, so neither can this one",
                        jobs[master].name()
                    ),
                },
            };
            roles[job] = Some(role);
        }
    }
    roles
        .into_iter()
        .map(|role| {
            role.unwrap_or(Role::Broken {
                reason: "the links of this job could not be resolved".to_string(),
            })
        })
        .collect()
}
