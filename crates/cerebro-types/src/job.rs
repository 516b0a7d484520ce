//! Jobs: the seed's job config format, what an instance of a job reserves,
//! and how instances are named on machines.

use crate::human::serde_human;
use crate::task::{validate_task_name, TaskSpec};
use crate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Job names become task names as `JOB#SLOT`, so they leave room for the suffix.
pub const MAX_JOB_NAME_CHARS: usize = 120;
/// More instances than this in one zone is a typo, not a plan.
pub const MAX_INSTANCES_PER_ZONE: u32 = 1000;

/// One job as its config file states it. The job's name is its
/// `task_configuration.name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Stored now; DNS names `N.ZONE.basename` come with the DNS providers.
    #[serde(default)]
    pub dns_basename: Option<String>,
    /// The recipe (see [`crate::deploy`]) each instance's machine runs
    /// before the instance starts: a dotted name (`mystartup.recipes.deploy`
    /// is `mystartup/recipes/deploy.toml`) looked up in the cluster's
    /// `recipe_dirs` and then among the recipes shipped with Cerebro
    /// (`release-tarball`, `install-script`), or a path (it contains a
    /// `/`). Read when the job is submitted or updated; one that cannot be
    /// found or read is refused then.
    #[serde(default)]
    pub deployment_recipe: Option<String>,
    /// Zone → how many instances run there (`cpu`) and the memory each reserves at least (`mem`).
    #[serde(default)]
    pub deployment_layout: BTreeMap<String, ZoneLayout>,
    /// Passed to the recipe: each key as the template variable
    /// `options.KEY` and the environment variable `CEREBRO_OPT_<KEY>`. A
    /// change of them rolls out like a task configuration change.
    #[serde(default)]
    pub recipe_options: BTreeMap<String, serde_json::Value>,
    /// Survives a clustersitter restart; other jobs are dropped when it restarts.
    #[serde(default)]
    pub persistent: bool,
    /// Run on every and only the machines that run this job, restarting when it is updated.
    #[serde(default)]
    pub linked_job: Option<String>,
    /// When the instances of a machine that was lost run elsewhere (see
    /// [`Reschedule`]); left out when it is the default, `after_fence`.
    #[serde(default, skip_serializing_if = "Reschedule::is_default")]
    pub reschedule: Reschedule,
    pub task_configuration: TaskSpec,
}

/// `reschedule`: what happens to the instances of a machine that stops
/// answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reschedule {
    /// They run elsewhere only once the provider has terminated the lost
    /// machine and confirmed it gone, so an instance never runs twice;
    /// while it cannot confirm, they wait.
    #[default]
    AfterFence,
    /// They run elsewhere at once, while the lost machine may still run
    /// them: availability over running exactly once.
    Immediately,
}

impl Reschedule {
    /// Whether this is the default (`after_fence`).
    pub fn is_default(&self) -> bool {
        *self == Reschedule::AfterFence
    }
}

/// `deployment_layout.ZONE`: `cpu` is the number of instances in the zone
/// (the seed's naming); `mem` is the minimum MB each instance reserves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneLayout {
    pub cpu: u32,
    #[serde(default, deserialize_with = "serde_human::mem_mb")]
    pub mem: Option<f64>,
}

/// What one instance of a job reserves on its machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub cpu: f64,
    pub mem_mb: f64,
}

impl JobSpec {
    pub fn name(&self) -> &str {
        &self.task_configuration.name
    }

    /// Each instance reserves the task's cores (default 1) and the larger of
    /// the task's memory limit and the zone's `mem`.
    pub fn need_in(&self, zone: &str) -> Need {
        let zone_mem = self
            .deployment_layout
            .get(zone)
            .and_then(|z| z.mem)
            .unwrap_or(0.0);
        Need {
            cpu: self.task_configuration.reserved_cpu(),
            mem_mb: self.task_configuration.reserved_mem_mb().max(zone_mem),
        }
    }

    /// Instances wanted per zone (linked jobs follow their master instead).
    pub fn instances_in(&self, zone: &str) -> u32 {
        self.deployment_layout.get(zone).map_or(0, |z| z.cpu)
    }

    /// Every check that needs no other job; field names are the config's keys.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Err(found) = self
            .task_configuration
            .validate_with(&|field| format!("task_configuration.{field}"))
        {
            errors.errors.extend(found.errors);
        }
        let name = self.name();
        if validate_task_name(name).is_ok() {
            if name.chars().count() > MAX_JOB_NAME_CHARS {
                errors.push(
                    "task_configuration.name",
                    format!("a job name must be at most {MAX_JOB_NAME_CHARS} characters"),
                );
            }
            if name.contains('#') {
                errors.push("task_configuration.name", "a job name must not contain '#'");
            }
        }
        match &self.linked_job {
            Some(master) if master == name => {
                errors.push("linked_job", "a job cannot be linked to itself")
            }
            Some(master) if master.trim().is_empty() => {
                errors.push("linked_job", "must name a job")
            }
            Some(_) => {}
            None if self.deployment_layout.is_empty() => errors.push(
                "deployment_layout",
                "must name at least one zone (or set linked_job to follow another job)",
            ),
            None => {}
        }
        for (zone, layout) in &self.deployment_layout {
            let field = format!("deployment_layout.{zone}");
            if let Err(message) = validate_zone_name(zone) {
                errors.push(field.clone(), message);
            }
            if layout.cpu > MAX_INSTANCES_PER_ZONE {
                errors.push(
                    format!("{field}.cpu"),
                    format!("at most {MAX_INSTANCES_PER_ZONE} instances per zone"),
                );
            }
            if let Some(mem) = layout.mem {
                if !mem.is_finite() || mem < 0.0 {
                    errors.push(format!("{field}.mem"), "must be a number of MB >= 0");
                }
            }
        }
        self.validate_recipe(&mut errors);
        if let Some(master) = &self.linked_job {
            if let Err(message) = validate_env_text(master, MAX_JOB_NAME_CHARS) {
                errors.push("linked_job", message);
            }
        }
        if let Some(basename) = &self.dns_basename {
            if let Err(message) = validate_dns_name(basename) {
                errors.push("dns_basename", message);
            }
        }
        errors.into_result(())
    }
}

impl JobSpec {
    /// `deployment_recipe` and `recipe_options` reach the recipe as names
    /// and environment values: bounded, and never a NUL (which no
    /// environment holds); a key, being a name, also has no control
    /// characters. An option's value may be any JSON, at most
    /// [`MAX_RECIPE_OPTION_BYTES`] serialized.
    fn validate_recipe(&self, errors: &mut ValidationErrors) {
        if let Some(recipe) = &self.deployment_recipe {
            if let Err(message) = validate_env_text(recipe, MAX_RECIPE_NAME_CHARS) {
                errors.push("deployment_recipe", message);
            }
        }
        if self.recipe_options.len() > MAX_RECIPE_OPTIONS {
            errors.push(
                "recipe_options",
                format!("at most {MAX_RECIPE_OPTIONS} options"),
            );
        }
        for (key, value) in &self.recipe_options {
            if key.is_empty() {
                errors.push("recipe_options", "an option's name must not be empty");
                continue;
            }
            if let Err(message) = validate_env_text(key, MAX_RECIPE_NAME_CHARS) {
                errors.push("recipe_options", format!("option name: {message}"));
                continue;
            }
            let field = format!("recipe_options.{key}");
            let size = serde_json::to_string(value).map_or(usize::MAX, |t| t.len());
            if size > MAX_RECIPE_OPTION_BYTES {
                errors.push(
                    field,
                    format!("must be at most {MAX_RECIPE_OPTION_BYTES} bytes of JSON"),
                );
            } else if json_has_nul(value) {
                errors.push(field, "must not contain a NUL character");
            }
        }
    }
}

/// The longest recipe name or recipe option name.
pub const MAX_RECIPE_NAME_CHARS: usize = 128;
/// The most recipe options a job may have.
pub const MAX_RECIPE_OPTIONS: usize = 256;
/// The largest value of one recipe option, as JSON text.
pub const MAX_RECIPE_OPTION_BYTES: usize = 16 * 1024;

/// Whether any string (key or value) anywhere in `value` holds a NUL.
fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v))
        }
        _ => false,
    }
}

/// Checks text that ends up in an environment variable, a name or a
/// file: at most `max_chars` characters and no control characters (NUL
/// among them, which no environment or C string can hold). The error says
/// which rule it broke.
pub fn validate_env_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters (NUL, newline, ...)".into());
    }
    Ok(())
}

/// Zone names: what clouds use (`aws-us-west-2a`, `local-a`).
pub fn validate_zone_name(zone: &str) -> Result<(), String> {
    validate_identifier("zone", zone)
}

/// Machine ids name a directory under the state dir and a DNS label.
pub fn validate_machine_id(id: &str) -> Result<(), String> {
    validate_identifier("machine id", id)
}

/// 1 to 63 letters, digits, '-', '_' or '.', not starting with '.': safe as
/// one path component (never `.` or `..`) and as a DNS label.
fn validate_identifier(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{value}' must be 1 to 63 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

fn validate_dns_name(name: &str) -> Result<(), String> {
    crate::dns::check_host_name(name)?;
    // Names are built below it (`N.ZONE.basename`): leave them room.
    let length = crate::dns::normalize_name(name).len();
    if length > 200 {
        return Err(format!(
            "'{name}' is {length} characters long; at most 200, so that the names Cerebro builds under it (N.ZONE.basename) fit DNS's 253"
        ));
    }
    Ok(())
}

/// What a walk along links learns about one job, from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link<'a> {
    /// The job links to this master.
    To(&'a str),
    /// The job has no link: it is a master.
    Master,
    /// There is no such job.
    Missing,
    /// The caller already knows where this job's chain ends; stop here.
    Known,
}

/// How a walk along `linked_job` links ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEnd<'a> {
    /// The last job on the path is a master.
    Master,
    /// The last job on the path links to this job, which does not exist.
    Missing(&'a str),
    /// The last job on the path links back to `path[at]`: the jobs from
    /// `at` on go round in a circle.
    Cycle { at: usize },
    /// The last job on the path (if any) links to this job, which the
    /// caller already knew.
    Known(&'a str),
}

/// The jobs met following links from one job, that job first (a job
/// already known to the caller is not on it), and how the walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChain<'a> {
    pub path: Vec<&'a str>,
    pub end: ChainEnd<'a>,
}

/// Follows `linked_job` links from `start`, asking `step` about each job.
/// The one cycle rule of Cerebro: a job met twice on one walk closes a
/// cycle. Each job has at most one link, so every walk ends, after at most
/// one step per job.
pub fn walk_links<'a>(start: &'a str, mut step: impl FnMut(&str) -> Link<'a>) -> LinkChain<'a> {
    let mut path: Vec<&'a str> = Vec::new();
    let mut position: std::collections::HashMap<&'a str, usize> = std::collections::HashMap::new();
    let mut current = start;
    let end = loop {
        if let Some(&at) = position.get(current) {
            break ChainEnd::Cycle { at };
        }
        let link = step(current);
        match link {
            Link::Known => break ChainEnd::Known(current),
            Link::Missing => break ChainEnd::Missing(current),
            Link::Master | Link::To(_) => {}
        }
        position.insert(current, path.len());
        path.push(current);
        match link {
            Link::To(master) => current = master,
            _ => break ChainEnd::Master,
        }
    };
    LinkChain { path, end }
}

/// What `step` of [`walk_links`] answers for a job with this link.
pub fn link_of(linked_job: Option<&str>) -> Link<'_> {
    linked_job.map_or(Link::Master, Link::To)
}

/// Orders a batch of jobs so that every job comes after the job it links to
/// when that is in the batch too, however long the chain (the order within
/// a depth is kept). A cycle keeps its members at a bounded depth; the
/// cluster refuses it.
pub fn order_masters_first(jobs: &mut [JobSpec]) {
    let master_of: std::collections::HashMap<String, Option<String>> = jobs
        .iter()
        .map(|j| (j.name().to_string(), j.linked_job.clone()))
        .collect();
    let depth = |job: &JobSpec| {
        let chain = walk_links(job.name(), |name| match master_of.get(name) {
            Some(link) => link_of(link.as_deref()),
            None => Link::Missing,
        });
        // The links followed to jobs of the batch.
        chain.path.len().saturating_sub(1)
    };
    jobs.sort_by_cached_key(depth);
}

/// The task name of instance `slot` of `job`, as machines know it
/// (`JOB#SLOT`). The only place that spells this form.
pub fn instance_task_name(job: &str, slot: u32) -> String {
    format!("{job}#{slot}")
}

/// The job a task name (`JOB#SLOT`, see [`instance_task_name`]) belongs
/// to; a name not of that form is its own.
pub fn job_of_task_name(task: &str) -> &str {
    match task.rsplit_once('#') {
        Some((job, slot)) if slot.parse::<u32>().is_ok() => job,
        _ => task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, linked: Option<&str>) -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "deployment_layout": {},
            "linked_job": linked,
            "task_configuration": {"name": name, "command": "true"},
        }))
        .unwrap()
    }

    #[test]
    fn every_job_comes_after_its_master_however_long_the_chain() {
        let mut jobs = vec![
            job("c", Some("b")),
            job("b", Some("a")),
            job("x", Some("elsewhere")),
            job("a", None),
        ];
        order_masters_first(&mut jobs);
        let names: Vec<&str> = jobs.iter().map(JobSpec::name).collect();
        assert_eq!(names, ["x", "a", "b", "c"]);
    }

    #[test]
    fn a_walk_names_the_cycle_it_closes() {
        let links = [("a", "b"), ("b", "c"), ("c", "b")];
        let step = |name: &str| match links.iter().find(|(n, _)| *n == name) {
            Some((_, to)) => Link::To(to),
            None => Link::Missing,
        };
        let chain = walk_links("a", step);
        assert_eq!(chain.path, ["a", "b", "c"]);
        assert_eq!(chain.end, ChainEnd::Cycle { at: 1 });
        let chain = walk_links("x", step);
        assert!(chain.path.is_empty());
        assert_eq!(chain.end, ChainEnd::Missing("x"));
    }

    #[test]
    fn a_walk_stops_at_a_known_job_or_a_master() {
        let chain = walk_links("c", |name| match name {
            "c" => Link::To("b"),
            "b" => Link::To("a"),
            _ => Link::Known,
        });
        assert_eq!(chain.path, ["c", "b"]);
        assert_eq!(chain.end, ChainEnd::Known("a"));
        let chain = walk_links("m", |_| Link::Master);
        assert_eq!(chain.path, ["m"]);
        assert_eq!(chain.end, ChainEnd::Master);
    }

    #[test]
    fn recipe_strings_are_bounded_and_never_hold_a_nul() {
        let mut spec = job("j", None);
        spec.deployment_layout
            .insert("z".into(), ZoneLayout { cpu: 1, mem: None });
        assert_eq!(spec.validate(), Ok(()));
        let fields = |spec: &JobSpec| -> Vec<String> {
            spec.validate().map_or_else(
                |e| e.errors.into_iter().map(|e| e.field).collect(),
                |_| vec![],
            )
        };
        let mut bad = spec.clone();
        bad.deployment_recipe = Some("redis\n".into());
        bad.linked_job = Some("m\0".into());
        assert_eq!(fields(&bad), ["deployment_recipe", "linked_job"]);
        let mut bad = spec.clone();
        bad.recipe_options
            .insert("port".into(), serde_json::json!({"a": ["x\0"]}));
        bad.recipe_options
            .insert("k\0".into(), serde_json::json!(1));
        bad.recipe_options.insert(
            "big".into(),
            serde_json::json!("x".repeat(MAX_RECIPE_OPTION_BYTES)),
        );
        bad.recipe_options
            .insert("text".into(), serde_json::json!("two\nlines are fine"));
        assert_eq!(
            fields(&bad),
            [
                "recipe_options.big",
                "recipe_options",
                "recipe_options.port"
            ]
        );
    }

    #[test]
    fn a_task_name_names_its_job() {
        assert_eq!(job_of_task_name(&instance_task_name("web", 3)), "web");
        assert_eq!(job_of_task_name("hand-made"), "hand-made");
        assert_eq!(job_of_task_name("a#b"), "a#b");
    }

    #[test]
    fn a_cycle_in_the_batch_still_ends() {
        let mut jobs = vec![job("a", Some("b")), job("b", Some("a"))];
        order_masters_first(&mut jobs);
        assert_eq!(jobs.len(), 2);
    }
}
