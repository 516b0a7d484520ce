//! Job files: one or more jobs in the lenient format (see [`crate::lenient`]),
//! turned into validated [`JobSpec`]s or into every problem found, each at
//! its file, line and column.

use crate::job::JobSpec;
use crate::lenient::{self, Position, Positions};
use crate::{FieldError, ValidationErrors};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// What problems in the file as a whole (rather than in one field) are filed under.
const SYNTAX_FIELD: &str = "syntax";
/// What problems with a whole job are filed under when the file holds one job.
const WHOLE_JOB_FIELD: &str = "job";

/// One problem in a job file, at the place to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    /// The config key, as `JobSpec::validate` names it (`task_configuration.mem`),
    /// prefixed with the job's index when the file holds several
    /// (`[1].task_configuration.mem`); `syntax` when the text is not lenient JSON.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.field, self.message
        )
    }
}

/// Everything wrong with one job file. Displays as one line per problem:
/// `FILE:LINE:COL: FIELD: MESSAGE`.
///
/// `Error` is implemented by hand: thiserror takes any field named `source`
/// for the underlying error, and here it is the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFileError {
    /// The file name shown in messages.
    pub source: String,
    /// In the order they appear in the file.
    pub errors: Vec<Located>,
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{error}", self.source)?;
        }
        Ok(())
    }
}

impl std::error::Error for JobFileError {}

impl JobFileError {
    /// The same problems as field errors, each message starting with where it
    /// is (`line 6, column 16: ...`), for an API to answer with.
    pub fn to_validation_errors(&self) -> ValidationErrors {
        ValidationErrors {
            errors: self
                .errors
                .iter()
                .map(|error| {
                    FieldError::new(
                        error.field.clone(),
                        format!(
                            "line {}, column {}: {}",
                            error.line, error.column, error.message
                        ),
                    )
                })
                .collect(),
        }
    }
}

/// Reads the jobs of one file. The file holds one job object, a list of job
/// objects, or several of either separated by commas. Every job is
/// deserialized and validated, and job names must be unique in the file; all
/// problems of all jobs are reported together. `source` names the file in
/// messages.
pub fn parse_jobs(text: &str, source: &str) -> Result<Vec<JobSpec>, JobFileError> {
    let fail = |errors: Vec<Located>| JobFileError {
        source: source.to_string(),
        errors,
    };
    let document = lenient::parse(text).map_err(|error| {
        fail(vec![Located {
            line: error.line,
            column: error.column,
            field: SYNTAX_FIELD.to_string(),
            message: error.message,
        }])
    })?;
    let positions = document.positions;
    let mut errors = Vec::new();

    let mut candidates: Vec<(String, Value)> = Vec::new();
    let top_level_count = document.values.len();
    for (index, value) in document.values.into_iter().enumerate() {
        // A lone top-level value's paths carry no index (see `lenient::Positions`).
        let path = if top_level_count == 1 {
            String::new()
        } else {
            lenient::child_index_path("", index)
        };
        match value {
            Value::Array(items) if items.is_empty() => {
                errors.push(located(
                    &positions,
                    &path,
                    "",
                    false,
                    "the list of jobs is empty",
                ));
            }
            Value::Array(items) => candidates.extend(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(item, job)| (lenient::child_index_path(&path, item), job)),
            ),
            job => candidates.push((path, job)),
        }
    }

    let mut jobs: Vec<(String, JobSpec)> = Vec::new();
    for (path, value) in candidates {
        match serde_path_to_error::deserialize::<_, JobSpec>(value) {
            Err(error) => {
                let problem = SerdeProblem::new(&error);
                errors.push(located(
                    &positions,
                    &path,
                    &problem.field,
                    problem.at_key,
                    &problem.message,
                ));
            }
            Ok(job) => {
                if let Err(invalid) = job.validate() {
                    for error in invalid.errors {
                        errors.push(located(
                            &positions,
                            &path,
                            &error.field,
                            false,
                            &error.message,
                        ));
                    }
                }
                jobs.push((path, job));
            }
        }
    }

    let mut first_with_name: HashMap<&str, &str> = HashMap::new();
    for (path, job) in &jobs {
        match first_with_name.get(job.name()) {
            Some(first_path) => {
                let first = locate(&positions, &name_path(first_path), false);
                errors.push(located(
                    &positions,
                    path,
                    "task_configuration.name",
                    false,
                    &format!(
                        "another job in this file is already named {:?} (at {first})",
                        job.name()
                    ),
                ));
            }
            None => {
                first_with_name.insert(job.name(), path);
            }
        }
    }

    if errors.is_empty() {
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    } else {
        // Stable, so problems found at one place keep the order they were found in.
        errors.sort_by_key(|error| (error.line, error.column));
        Err(fail(errors))
    }
}

/// Why [`load_job_files`] could not load the jobs.
#[derive(Debug, thiserror::Error)]
pub enum LoadJobsError {
    /// A file could not be read; nothing after it was tried.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Files that do not parse, every problem of every file, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Parse(Vec<JobFileError>),
}

/// `FILE:LINE:COLUMN` of `field` (as `JobSpec::validate` names it) in the
/// job named `job`, in the first of the job files `paths` that has it;
/// `None` when no file does (or it cannot be read again).
pub fn locate_job_field(paths: &[std::path::PathBuf], job: &str, field: &str) -> Option<String> {
    use crate::lenient;
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(document) = lenient::parse(&text) else {
            continue;
        };
        let single = document.values.len() == 1;
        let mut candidates: Vec<(String, &serde_json::Value)> = Vec::new();
        for (index, value) in document.values.iter().enumerate() {
            let at = if single {
                String::new()
            } else {
                lenient::child_index_path("", index)
            };
            match value {
                serde_json::Value::Array(items) => candidates.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| (lenient::child_index_path(&at, i), item)),
                ),
                other => candidates.push((at, other)),
            }
        }
        for (at, value) in candidates {
            let name = value
                .get("task_configuration")
                .and_then(|t| t.get("name"))
                .and_then(|n| n.as_str());
            if name != Some(job) {
                continue;
            }
            let position = document
                .positions
                .value(&lenient::join_paths(&at, field))
                .or_else(|| document.positions.value(&at))?;
            return Some(format!("{}:{position}", path.display()));
        }
    }
    None
}

/// The jobs of every file in `paths`, masters before the jobs linked to
/// them ([`crate::job::order_masters_first`]). Every file is parsed before
/// any error is returned, so all problems are reported together.
pub fn load_job_files(
    paths: &[impl AsRef<std::path::Path>],
) -> Result<Vec<JobSpec>, LoadJobsError> {
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadJobsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match parse_jobs(&text, &path.display().to_string()) {
            Ok(parsed) => jobs.extend(parsed),
            Err(error) => problems.push(error),
        }
    }
    if !problems.is_empty() {
        return Err(LoadJobsError::Parse(problems));
    }
    crate::job::order_masters_first(&mut jobs);
    Ok(jobs)
}

/// Reads one job from a JSON value that has no text behind it: deserialized
/// naming the offending field, then validated. The tests use it to check
/// how fields are named without writing job text for each case.
#[cfg(test)]
fn parse_job_value(value: Value) -> Result<JobSpec, ValidationErrors> {
    let job = serde_path_to_error::deserialize::<_, JobSpec>(value).map_err(|error| {
        let problem = SerdeProblem::new(&error);
        let mut errors = ValidationErrors::default();
        errors.push(shown_field(&problem.field), problem.message);
        errors
    })?;
    job.validate()?;
    Ok(job)
}

/// A deserialization error restated as the field to blame and whether to
/// point at its key rather than its value.
struct SerdeProblem {
    /// Path inside the job.
    field: String,
    at_key: bool,
    message: String,
}

impl SerdeProblem {
    fn new(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let problem = Self::in_serde_words(error);
        // Located by serde's own wording above; shown in plain words.
        Self {
            message: crate::wording::plain_serde_message(&problem.message),
            ..problem
        }
    }

    fn in_serde_words(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let message = error.inner().to_string();
        let path = if error.path().iter().len() == 0 {
            // An empty path displays as "."; ours is "".
            String::new()
        } else {
            error.path().to_string()
        };
        let last_key = match error.path().iter().next_back() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.as_str()),
            _ => None,
        };
        if let Some(unknown) = backquoted_after(&message, "unknown field `") {
            // The path usually ends at the rejected key already; should it
            // stop at the containing object, the key is named in the message.
            let field = if last_key == Some(unknown) {
                path
            } else {
                lenient::child_key_path(&path, unknown)
            };
            return Self {
                field,
                at_key: true,
                message,
            };
        }
        if let Some(missing) = backquoted_after(&message, "missing field `") {
            // Blamed on the absent key; located at the object that lacks it.
            return Self {
                field: lenient::child_key_path(&path, missing),
                at_key: false,
                message,
            };
        }
        Self {
            field: path,
            at_key: false,
            message,
        }
    }
}

/// The name serde quotes in messages such as "unknown field `colour`,
/// expected one of ..." or "missing field `command`".
fn backquoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    // The name itself may contain a backquote; what follows it does not.
    match rest.find("`, ") {
        Some(end) => Some(&rest[..end]),
        None => rest.strip_suffix('`'),
    }
}

/// The error `message` about `field` (a path inside the job at `job_path`).
fn located(
    positions: &Positions,
    job_path: &str,
    field: &str,
    at_key: bool,
    message: &str,
) -> Located {
    let path = lenient::join_paths(job_path, field);
    let position = locate(positions, &path, at_key);
    Located {
        line: position.line,
        column: position.column,
        field: shown_field(&path).to_string(),
        message: message.to_string(),
    }
}

fn shown_field(path: &str) -> &str {
    if path.is_empty() {
        WHOLE_JOB_FIELD
    } else {
        path
    }
}

fn name_path(job_path: &str) -> String {
    lenient::join_paths(job_path, "task_configuration.name")
}

/// Where to point for a problem with the value at `path`: the value, else its
/// key, else the nearest enclosing value that is in the text (which at worst
/// is the job's opening brace). Fields that are absent from the file, such as
/// a missing `deployment_layout`, land on their enclosing object that way.
fn locate(positions: &Positions, path: &str, at_key: bool) -> Position {
    let direct = if at_key {
        positions.key(path).or_else(|| positions.value(path))
    } else {
        positions.value(path).or_else(|| positions.key(path))
    };
    if let Some(position) = direct {
        return position;
    }
    let mut current = path;
    while let Some(parent) = lenient::parent_path(current) {
        if let Some(position) = positions.value(parent) {
            return position;
        }
        current = parent;
    }
    Position { line: 1, column: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Principal;

    const SEED: &str = include_str!("../../../examples/jobs/seed-job-example.conf");

    fn errors_of(text: &str) -> Vec<Located> {
        parse_jobs(text, "jobs.conf").unwrap_err().errors
    }

    fn problem(line: usize, column: usize, field: &str) -> (usize, usize, String) {
        (line, column, field.to_string())
    }

    fn places(errors: &[Located]) -> Vec<(usize, usize, String)> {
        errors
            .iter()
            .map(|error| (error.line, error.column, error.field.clone()))
            .collect()
    }

    /// A valid job in the lenient format, one key per line; `extra` lands
    /// inside `task_configuration` on line 8.
    fn job_text(name: &str, extra: &str) -> String {
        format!(
            "{{\n  \"deployment_layout\": {{\"zone-a\": {{\"cpu\": 1}}}},\n  \"task_configuration\": {{\n    \"name\": \"{name}\",\n    \"command\": \"/bin/true\",\n    \"cpu\": .5,\n    \"mem\": 64,\n    {extra}\n  }},\n}}"
        )
    }

    #[test]
    fn the_seed_example_is_one_job() {
        let jobs = parse_jobs(SEED, "seed-job-example.conf").unwrap();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.name(), "Portal Server");
        let task = &job.task_configuration;
        assert_eq!(task.cpu, Some(0.5));
        assert_eq!(task.mem, Some(1200.0));
        assert_eq!(task.uid, Some(Principal::Id(0)));
        assert_eq!(task.command, "/opt/code/run_portal_server");
        assert!(task.ensure_alive && task.restart && !task.auto_start && !task.allow_exit);
        assert_eq!(task.max_restarts, -1);
        assert!(job.persistent);
        assert_eq!(job.dns_basename.as_deref(), Some("redis.startup.com"));
        assert_eq!(
            job.deployment_recipe.as_deref(),
            Some("mystartup.recipes.deploy")
        );
        assert_eq!(job.deployment_layout.len(), 2);
        let west = &job.deployment_layout["aws-us-west-2a"];
        assert_eq!((west.cpu, west.mem), (1, Some(500.0)));
        let east = &job.deployment_layout["aws-us-east-1b"];
        assert_eq!((east.cpu, east.mem), (10, Some(50.0)));
        assert_eq!(
            job.recipe_options.get("release_dir"),
            Some(&Value::from("/opt/startup/releases/"))
        );
    }

    #[test]
    fn a_missing_colon_is_a_syntax_error_at_the_value() {
        let text = "{\n  \"task_configuration\": {\n    \"cpu\" 1,\n  },\n}";
        let error = parse_jobs(text, "a.conf").unwrap_err();
        assert_eq!(
            error.to_string(),
            "a.conf:3:11: syntax: expected ':' after the key \"cpu\", found '1'"
        );
    }

    #[test]
    fn an_unterminated_string_is_reported_where_it_starts() {
        let errors = errors_of(&job_text("x", "\"cwd\": \"/srv,"));
        assert_eq!(places(&errors), vec![problem(8, 12, "syntax")]);
        assert!(
            errors[0].message.starts_with("unterminated string"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn an_unclosed_object_is_reported_at_the_end_with_its_opening() {
        let errors = errors_of("{\n  \"task_configuration\": {\n    \"name\": \"x\",\n");
        assert_eq!(places(&errors), vec![problem(4, 1, "syntax")]);
        assert_eq!(
            errors[0].message,
            "unexpected end of input: an object opened at 2:25 is not closed"
        );
    }

    #[test]
    fn a_bad_value_is_located_at_the_value() {
        // The file of the CLI's end-to-end test, with the value on line 6.
        let text = "{\n    \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n    \"task_configuration\": {\n        \"name\": \"x\",\n        \"command\": \"true\",\n        \"mem\": \"lots\",\n    },\n}\n";
        let error = parse_jobs(text, "broken.conf").unwrap_err();
        assert_eq!(
            places(&error.errors),
            vec![problem(6, 16, "task_configuration.mem")]
        );
        assert!(
            error.errors[0].message.contains("lots"),
            "{}",
            error.errors[0].message
        );
        assert_eq!(error.to_string().lines().count(), 1);
        assert!(error
            .to_string()
            .starts_with("broken.conf:6:16: task_configuration.mem: "));
    }

    #[test]
    fn an_unknown_key_is_located_at_the_key() {
        let errors = errors_of(&job_text("x", "\"colour\": \"red\","));
        assert_eq!(
            places(&errors),
            vec![problem(8, 5, "task_configuration.colour")]
        );
        // Near no field of the task: no suggestion, the fields instead.
        assert!(
            errors[0]
                .message
                .starts_with("unknown field `colour`; the known ones are `name`, `command`"),
            "{}",
            errors[0].message
        );
        let errors = errors_of(&job_text("x", "\"comand\": \"true\","));
        assert_eq!(
            places(&errors),
            vec![problem(8, 5, "task_configuration.comand")]
        );
        assert_eq!(
            errors[0].message,
            "unknown field `comand`, did you mean `command`?"
        );
        let errors = errors_of("{\"deployment_layout\": {\"z\": {\"cpu\": 1, \"disk\": 5}}}");
        assert_eq!(
            places(&errors),
            vec![problem(1, 40, "deployment_layout.z.disk")]
        );
    }

    #[test]
    fn type_errors_are_in_plain_words_at_the_value() {
        let text = "{\n  \"deployment_layout\": {\"zone-a\": {\"cpu\": 1.5}},\n  \"task_configuration\": {\"name\": \"x\", \"command\": \"true\", \"cpu\": \"lots\", \"restart\": \"yes\"},\n}";
        let error = parse_jobs(text, "words.conf").unwrap_err();
        // One deserialization error per job: serde stops at the first.
        assert_eq!(
            error.to_string(),
            "words.conf:2:43: deployment_layout.zone-a.cpu: expected a whole number (0 or more), found 1.5"
        );
        let text = "{\n  \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n  \"task_configuration\": {\"name\": \"x\", \"command\": \"true\", \"cpu\": \"lots\"},\n}";
        let error = parse_jobs(text, "words.conf").unwrap_err();
        assert_eq!(
            error.to_string(),
            "words.conf:3:65: task_configuration.cpu: expected a number, found the text \"lots\""
        );
    }

    #[test]
    fn a_missing_key_is_located_at_its_object() {
        let errors = errors_of("{\n  \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n  \"task_configuration\": {\"name\": \"x\"},\n}");
        assert_eq!(
            places(&errors),
            vec![problem(3, 25, "task_configuration.command")]
        );
        assert_eq!(errors[0].message, "missing field `command`");
        let errors = errors_of("{\"deployment_layout\": {}}");
        assert_eq!(places(&errors), vec![problem(1, 1, "task_configuration")]);
    }

    #[test]
    fn validation_errors_are_all_reported_at_their_values() {
        let text = "{\n  \"deployment_layout\": {\"zone a\": {\"cpu\": 1, \"mem\": -1}},\n  \"task_configuration\": {\n    \"name\": \"x\",\n    \"command\": \"true\",\n    \"cpu\": -2,\n  },\n}";
        let errors = errors_of(text);
        assert_eq!(
            places(&errors),
            vec![
                problem(2, 35, "deployment_layout.zone a"),
                problem(2, 53, "deployment_layout.zone a.mem"),
                problem(6, 12, "task_configuration.cpu"),
            ]
        );
        // A field absent from the file lands on the job's opening brace.
        let errors =
            errors_of("\n  {\"task_configuration\": {\"name\": \"x\", \"command\": \"true\"}}");
        assert_eq!(places(&errors), vec![problem(2, 3, "deployment_layout")]);
    }

    #[test]
    fn a_negative_cpu_is_caught_by_validation() {
        let errors = errors_of(&job_text("x", "\"time_limit\": -1,").replace(".5", "-.5"));
        assert_eq!(
            places(&errors),
            vec![
                problem(6, 12, "task_configuration.cpu"),
                problem(8, 19, "task_configuration.time_limit"),
            ]
        );
    }

    #[test]
    fn in_a_list_of_jobs_paths_carry_the_index() {
        let text = format!(
            "[\n{},\n{}\n]",
            job_text("a", ""),
            job_text("b", "\"mem\": 0,")
        );
        let errors = errors_of(&text);
        // The second job starts on line 12; its bad key is on its line 8.
        assert_eq!(places(&errors), vec![problem(19, 5, "syntax")]);

        let text = format!(
            "[\n{},\n{}\n]",
            job_text("a", ""),
            job_text("b", "\"cwd\": \"relative\",")
        );
        let errors = errors_of(&text);
        assert_eq!(
            places(&errors),
            vec![problem(19, 12, "[1].task_configuration.cwd")]
        );
        assert_eq!(
            parse_jobs(&text, "list.conf").unwrap_err().to_string(),
            "list.conf:19:12: [1].task_configuration.cwd: must be an absolute path"
        );
    }

    #[test]
    fn several_top_level_jobs_are_several_jobs() {
        let text = format!("{},\n{},\n", job_text("a", ""), job_text("b", ""));
        let jobs = parse_jobs(&text, "two.conf").unwrap();
        let names: Vec<&str> = jobs.iter().map(JobSpec::name).collect();
        assert_eq!(names, vec!["a", "b"]);

        let text = format!(
            "{},\n{}",
            job_text("a", ""),
            job_text("b", "\"colour\": 1,")
        );
        let errors = errors_of(&text);
        // The second job starts on line 11.
        assert_eq!(
            places(&errors),
            vec![problem(18, 5, "[1].task_configuration.colour")]
        );
    }

    #[test]
    fn job_names_are_unique_in_a_file() {
        let text = format!("{},\n{}", job_text("same", ""), job_text("same", ""));
        let errors = errors_of(&text);
        // The second job starts on line 11.
        assert_eq!(
            places(&errors),
            vec![problem(14, 13, "[1].task_configuration.name")]
        );
        assert_eq!(
            errors[0].message,
            "another job in this file is already named \"same\" (at 4:13)"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second_key() {
        let errors = errors_of(&job_text("x", "\"cpu\": 2,"));
        assert_eq!(places(&errors), vec![problem(8, 5, "syntax")]);
        assert_eq!(
            errors[0].message,
            "duplicate key \"cpu\": it is already set at 6:5"
        );
    }

    #[test]
    fn problems_of_all_jobs_come_together_in_file_order() {
        let text = format!(
            "[{},\n{},\n\"not a job\"]",
            job_text("a", "\"cwd\": \"relative\","),
            job_text("b", "\"colour\": 1,")
        );
        let error = parse_jobs(&text, "many.conf").unwrap_err();
        assert_eq!(
            places(&error.errors),
            vec![
                problem(8, 12, "[0].task_configuration.cwd"),
                problem(18, 5, "[1].task_configuration.colour"),
                problem(21, 1, "[2]"),
            ]
        );
        assert_eq!(error.to_string().lines().count(), 3);
        let fields = error.to_validation_errors();
        assert_eq!(fields.errors[0].field, "[0].task_configuration.cwd");
        assert_eq!(
            fields.errors[0].message,
            "line 8, column 12: must be an absolute path"
        );
    }

    #[test]
    fn odd_shapes_are_explained() {
        assert_eq!(places(&errors_of("[]")), vec![problem(1, 1, "job")]);
        let errors = errors_of("42");
        assert_eq!(places(&errors), vec![problem(1, 1, "job")]);
        assert_eq!(errors[0].message, "expected an object {...}, found 42");
        assert_eq!(places(&errors_of("")), vec![problem(1, 1, "syntax")]);
    }

    #[test]
    fn json_values_are_checked_with_field_names() {
        let value: Value = serde_json::from_str(
            r#"{"deployment_layout": {"z": {"cpu": 1}}, "task_configuration": {"name": "x", "command": "true", "mem": "lots"}}"#,
        )
        .unwrap();
        let errors = parse_job_value(value).unwrap_err();
        assert_eq!(errors.errors.len(), 1);
        assert_eq!(errors.errors[0].field, "task_configuration.mem");

        let value: Value = serde_json::from_str(
            r#"{"deployment_layout": {"z": {"cpu": 1}}, "task_configuration": {"name": "x", "command": "true", "colour": 1}}"#,
        )
        .unwrap();
        let errors = parse_job_value(value).unwrap_err();
        assert_eq!(errors.errors[0].field, "task_configuration.colour");

        let value: Value = serde_json::from_str(
            r#"{"task_configuration": {"name": "x", "command": "true", "cpu": -1}}"#,
        )
        .unwrap();
        let fields: Vec<String> = parse_job_value(value)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(fields, vec!["task_configuration.cpu", "deployment_layout"]);

        let job = parse_job_value(lenient::parse(SEED).unwrap().values.remove(0)).unwrap();
        assert_eq!(job.name(), "Portal Server");
        assert_eq!(
            parse_job_value(Value::from(3)).unwrap_err().errors[0].field,
            "job"
        );
    }

    #[test]
    fn a_job_field_is_located_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.json");
        let many = dir.path().join("many.json");
        std::fs::write(
            &one,
            "{\n  \"task_configuration\": {\"name\": \"a\"},\n  \"dns_basename\": \"a.example.org\",\n}\n",
        )
        .unwrap();
        std::fs::write(
            &many,
            "[{\"task_configuration\": {\"name\": \"b\"}},\n {\"task_configuration\": {\"name\": \"c\"}, \"dns_basename\": \"c.x\"}]\n",
        )
        .unwrap();
        let paths = vec![one.clone(), many.clone()];
        assert_eq!(
            super::locate_job_field(&paths, "a", "dns_basename"),
            Some(format!("{}:3:19", one.display()))
        );
        assert_eq!(
            super::locate_job_field(&paths, "c", "dns_basename"),
            Some(format!("{}:2:56", many.display()))
        );
        // A field the job does not have: the job itself.
        assert_eq!(
            super::locate_job_field(&paths, "b", "dns_basename"),
            Some(format!("{}:1:2", many.display()))
        );
        assert_eq!(super::locate_job_field(&paths, "z", "dns_basename"), None);
    }
}
