//! Deployment recipes: the recipe file format (TOML), the [`Deployment`] a
//! clustersitter hands a machinesitter with each instance, and what the
//! machinesitter reports of it ([`DeployStatus`], [`DeployAttempt`]).
//!
//! A recipe is an ordered list of steps, each with a timeout:
//!
//! ```toml
//! description = "Fetch a release tarball, unpack it, switch to it"
//!
//! [[steps]]
//! kind = "fetch"                       # download, verify, optionally unpack
//! url = "{{ options.url }}"            # http, https or file
//! sha256 = "{{ options.sha256 }}"      # required: 64 hex digits
//! unpack = "auto"                      # none (default), auto, tar.gz, tar.zst, zip
//! timeout = "5m"
//!
//! [[steps]]
//! kind = "write"                       # a file in the release
//! path = "config/app.env"
//! template = "PORT={{ options.port }}\n"   # or `content`, written as is
//! mode = "0640"
//!
//! [[steps]]
//! kind = "run"                         # `sh -c COMMAND` in the release directory
//! command = "./install.sh --prefix \"$CEREBRO_RELEASE_DIR\""
//! env = { MODE = "{{ options.mode }}" }
//!
//! [[steps]]
//! kind = "check"                       # after the task starts: its readiness
//! http = "http://127.0.0.1:{{ options.port }}/health"   # or tcp = "HOST:PORT", or command = "..."
//! timeout = "30s"
//! ```
//!
//! Templates are [minijinja](https://docs.rs/minijinja) (Jinja2 syntax)
//! with undefined variables as errors. They are rendered in fetch `url`,
//! `sha256` and `dest`, write `path` and `template`, run `env` values and
//! check `http` and `tcp`; shell commands are not templates (a shell's
//! `${#x}` would read as one) and get the same values from the
//! environment ([`Deployment::environment`]). The variables: `job`,
//! `version` (empty when the job has none), `instance` (the slot, `N` in
//! `N.ZONE`), `zone`, `machine`, `cluster`, `release_dir` and `options`
//! (the job's `recipe_options`).

use crate::error::{line_column, located_lines, LocatedProblem};
use crate::{FieldError, ValidationErrors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use toml::Spanned;

/// Steps of one recipe at most: more is a generated file gone wrong.
pub const MAX_STEPS: usize = 100;
/// The longest a step may be given, in seconds (a day).
pub const MAX_STEP_TIMEOUT_SECS: f64 = 86_400.0;
/// Bytes of a step's output kept (its tail), per step.
pub const STEP_OUTPUT_TAIL_BYTES: usize = 64 * 1024;
/// The names a template may use at its top level.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "job",
    "version",
    "instance",
    "zone",
    "machine",
    "cluster",
    "release_dir",
    "options",
];

/// A parsed, validated recipe: what the file said, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub steps: Vec<Step>,
}

/// One step: what it does and how long it may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The file's `name`, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds; a step still running then is stopped and fails as timed out.
    pub timeout_secs: f64,
    pub action: StepAction,
}

/// What a step does. On the wire, `{"kind": "fetch", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepAction {
    /// Downloads `url` (http, https, file), verifies its SHA-256 and puts it
    /// at `dest` in the release, or unpacks it there.
    Fetch {
        url: String,
        sha256: String,
        /// Relative to the release directory. Default: the release
        /// directory itself when unpacking, else the URL's file name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dest: Option<String>,
        unpack: Unpack,
    },
    /// Writes a file in the release: `content` as is, or rendered when
    /// `template` is true.
    Write {
        path: String,
        content: String,
        template: bool,
        /// Unix permission bits, e.g. `0o644`.
        mode: u32,
    },
    /// Runs `sh -c command` in the release directory as the task's user.
    Run {
        command: String,
        /// Values are templates.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
    },
    /// Probes until it succeeds or the step times out; runs after the task
    /// has started, as the instance's readiness.
    Check {
        probe: Probe,
        /// Seconds between attempts.
        interval_secs: f64,
    },
}

/// What a check step probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// An HTTP GET answered 2xx (a template).
    Http { url: String },
    /// A TCP connection accepted at `HOST:PORT` (a template).
    Tcp { address: String },
    /// `sh -c command` exits 0.
    Command { command: String },
}

/// How a fetched artifact is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unpack {
    /// Kept as the file it is.
    None,
    /// `.tar.gz` / `.tgz`.
    TarGz,
    /// `.tar.zst`.
    TarZst,
    /// `.zip`.
    Zip,
    /// By the rendered URL's extension; a URL with none of the above is an
    /// error when the step is rendered.
    Auto,
}

impl Unpack {
    /// The format a URL's (or file name's) extension names, if any.
    pub fn from_extension(url: &str) -> Option<Unpack> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
            Some(Unpack::TarGz)
        } else if path.ends_with(".tar.zst") || path.ends_with(".tzst") {
            Some(Unpack::TarZst)
        } else if path.ends_with(".zip") {
            Some(Unpack::Zip)
        } else {
            None
        }
    }
}

impl StepAction {
    /// `fetch`, `write`, `run` or `check`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Fetch { .. } => "fetch",
            StepAction::Write { .. } => "write",
            StepAction::Run { .. } => "run",
            StepAction::Check { .. } => "check",
        }
    }
}

impl Step {
    /// How logs and errors name the step at `index` (0-based):
    /// `step 2 (fetch "release tarball")`.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("step {} ({} \"{name}\")", index + 1, self.action.kind()),
            None => format!("step {} ({})", index + 1, self.action.kind()),
        }
    }

    /// Whether the step runs after the task starts (checks) rather than
    /// before (everything else).
    pub fn is_check(&self) -> bool {
        matches!(self.action, StepAction::Check { .. })
    }
}

/// A recipe file that cannot be used, located in it: one
/// `FILE:LINE:COLUMN: message` per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", located_lines(.problems))]
pub struct RecipeError {
    pub problems: Vec<LocatedProblem>,
}

/// The file as written: every value spanned so errors can point at it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    steps: Option<Spanned<Vec<Spanned<StepFile>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    kind: Spanned<String>,
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<toml::Value>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    dest: Option<Spanned<String>>,
    #[serde(default)]
    unpack: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    content: Option<Spanned<String>>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    mode: Option<Spanned<toml::Value>>,
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    http: Option<Spanned<String>>,
    #[serde(default)]
    tcp: Option<Spanned<String>>,
    #[serde(default)]
    interval: Option<Spanned<toml::Value>>,
}

/// Collects located problems while a recipe is read.
struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    found: Vec<LocatedProblem>,
}

impl Problems<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.found.push(LocatedProblem {
            path: self.file.to_string(),
            line_column: Some(line_column(self.text, span.start)),
            message: message.into(),
        });
    }
}

impl Recipe {
    /// Reads a recipe file's text. `file` names it in errors.
    ///
    /// # Errors
    /// Every problem found, each as `FILE:LINE:COLUMN: message`: TOML
    /// syntax, unknown keys, a key that does not belong to its step's kind,
    /// a missing required key, a bad URL scheme, digest, mode, duration or
    /// path, a template that does not parse or uses an unknown variable,
    /// a check followed by a step that is not one.
    pub fn parse(text: &str, file: &str) -> Result<Recipe, RecipeError> {
        let parsed: RecipeFile = toml::from_str(text).map_err(|error| RecipeError {
            problems: vec![LocatedProblem {
                path: file.to_string(),
                line_column: error.span().map(|span| line_column(text, span.start)),
                // serde's wording ("expected u32", every field listed) in plain words.
                message: crate::wording::plain_serde_message(error.message().trim()),
            }],
        })?;
        let mut problems = Problems {
            file,
            text,
            found: Vec::new(),
        };
        let Some(steps) = parsed.steps else {
            return Err(RecipeError {
                problems: vec![LocatedProblem {
                    path: file.to_string(),
                    line_column: None,
                    message: "a recipe needs at least one [[steps]] table".into(),
                }],
            });
        };
        let steps_span = steps.span();
        let steps = steps.into_inner();
        if steps.is_empty() {
            problems.at(steps_span.clone(), "a recipe needs at least one step");
        }
        if steps.len() > MAX_STEPS {
            problems.at(
                steps_span,
                format!("{} steps; a recipe has at most {MAX_STEPS}", steps.len()),
            );
        }
        let mut out = Vec::new();
        let mut seen_check: Option<usize> = None;
        for (index, step) in steps.into_iter().enumerate() {
            let span = step.span();
            let Some(step) = read_step(index, step.into_inner(), &mut problems) else {
                continue;
            };
            if step.is_check() {
                seen_check.get_or_insert(index);
            } else if let Some(check) = seen_check {
                problems.at(
                    span,
                    format!(
                        "{} comes after the check of step {}: checks run after the task starts, so they come last",
                        step.label(index),
                        check + 1
                    ),
                );
            }
            out.push(step);
        }
        if problems.found.is_empty() {
            Ok(Recipe {
                description: parsed.description,
                steps: out,
            })
        } else {
            Err(RecipeError {
                problems: problems.found,
            })
        }
    }

    /// The steps that run before the task starts, with their indexes.
    pub fn install_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps.iter().enumerate().filter(|(_, s)| !s.is_check())
    }

    /// The check steps, run after the task starts, with their indexes.
    pub fn check_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.steps.iter().enumerate().filter(|(_, s)| s.is_check())
    }
}

/// Seconds from a TOML number or a duration string (`"30s"`, `"5m"`).
fn seconds_of(value: &toml::Value) -> Result<f64, String> {
    match value {
        toml::Value::Integer(n) => Ok(*n as f64),
        toml::Value::Float(n) => Ok(*n),
        toml::Value::String(text) => crate::human::parse_duration(text).map(|d| d.as_secs_f64()),
        other => Err(format!(
            "expected seconds or a duration such as \"30s\", got {}",
            other.type_str()
        )),
    }
}

/// Which keys each kind takes, besides `kind`, `name` and `timeout`.
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "fetch" => &["url", "sha256", "dest", "unpack"],
        "write" => &["path", "content", "template", "mode"],
        "run" => &["command", "env"],
        "check" => &["http", "tcp", "command", "interval"],
        _ => &[],
    }
}

fn default_timeout(kind: &str) -> f64 {
    match kind {
        "write" => 30.0,
        "check" => 60.0,
        _ => 600.0,
    }
}

fn read_step(index: usize, file: StepFile, problems: &mut Problems<'_>) -> Option<Step> {
    let kind = file.kind.get_ref().clone();
    if !["fetch", "write", "run", "check"].contains(&kind.as_str()) {
        problems.at(
            file.kind.span(),
            format!("unknown step kind '{kind}' (use fetch, write, run or check)"),
        );
        return None;
    }
    let step_label = format!("step {} ({kind})", index + 1);
    // Keys present in the file, to refuse those of another kind.
    let present: [(&str, Option<std::ops::Range<usize>>); 13] = [
        ("url", file.url.as_ref().map(Spanned::span)),
        ("sha256", file.sha256.as_ref().map(Spanned::span)),
        ("dest", file.dest.as_ref().map(Spanned::span)),
        ("unpack", file.unpack.as_ref().map(Spanned::span)),
        ("path", file.path.as_ref().map(Spanned::span)),
        ("content", file.content.as_ref().map(Spanned::span)),
        ("template", file.template.as_ref().map(Spanned::span)),
        ("mode", file.mode.as_ref().map(Spanned::span)),
        ("command", file.command.as_ref().map(Spanned::span)),
        ("env", file.env.as_ref().map(Spanned::span)),
        ("http", file.http.as_ref().map(Spanned::span)),
        ("tcp", file.tcp.as_ref().map(Spanned::span)),
        ("interval", file.interval.as_ref().map(Spanned::span)),
    ];
    let allowed = keys_of(&kind);
    let before = problems.found.len();
    for (key, span) in &present {
        if let Some(span) = span {
            if !allowed.contains(key) {
                problems.at(
                    span.clone(),
                    format!(
                        "'{key}' does not belong to a {kind} step (it takes: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
    let timeout_secs = match &file.timeout {
        None => default_timeout(&kind),
        Some(value) => match seconds_of(value.get_ref()) {
            Ok(secs) if secs > 0.0 && secs <= MAX_STEP_TIMEOUT_SECS => secs,
            Ok(secs) => {
                problems.at(
                    value.span(),
                    format!(
                        "timeout {secs} s is out of range (more than 0, at most {MAX_STEP_TIMEOUT_SECS})"
                    ),
                );
                0.0
            }
            Err(message) => {
                problems.at(value.span(), format!("timeout: {message}"));
                0.0
            }
        },
    };
    let name = file.name.map(Spanned::into_inner);
    let template = |field: &Option<Spanned<String>>, problems: &mut Problems<'_>| {
        if let Some(value) = field {
            if let Err(message) = check_template_syntax(value.get_ref()) {
                problems.at(value.span(), format!("{step_label}: {message}"));
            }
        }
    };
    let required = |field: &Option<Spanned<String>>, key: &str, problems: &mut Problems<'_>| {
        if field.is_none() {
            problems.at(file.kind.span(), format!("a {kind} step needs '{key}'"));
        }
    };
    let action = match kind.as_str() {
        "fetch" => {
            required(&file.url, "url", problems);
            required(&file.sha256, "sha256", problems);
            for field in [&file.url, &file.sha256, &file.dest] {
                template(field, problems);
            }
            if let Some(url) = file.url.as_ref().filter(|u| !is_template(u.get_ref())) {
                if let Err(message) = check_url(url.get_ref()) {
                    problems.at(url.span(), message);
                }
            }
            if let Some(digest) = file.sha256.as_ref().filter(|d| !is_template(d.get_ref())) {
                if let Err(message) = check_sha256(digest.get_ref()) {
                    problems.at(digest.span(), message);
                }
            }
            if let Some(dest) = file.dest.as_ref().filter(|d| !is_template(d.get_ref())) {
                if let Err(message) = check_relative_path(dest.get_ref()) {
                    problems.at(dest.span(), format!("dest: {message}"));
                }
            }
            let unpack = match &file.unpack {
                None => Unpack::None,
                Some(value) => match value.get_ref().as_str() {
                    "none" => Unpack::None,
                    "tar.gz" | "tgz" => Unpack::TarGz,
                    "tar.zst" => Unpack::TarZst,
                    "zip" => Unpack::Zip,
                    "auto" => {
                        let url = file
                            .url
                            .as_ref()
                            .map(|u| u.get_ref().as_str())
                            .unwrap_or("");
                        if !is_template(url) && Unpack::from_extension(url).is_none() {
                            problems.at(
                                value.span(),
                                "unpack = \"auto\" needs a URL ending in .tar.gz, .tgz, .tar.zst or .zip; name the format instead",
                            );
                        }
                        Unpack::Auto
                    }
                    other => {
                        problems.at(
                            value.span(),
                            format!("unknown archive format '{other}' (use none, auto, tar.gz, tar.zst or zip)"),
                        );
                        Unpack::None
                    }
                },
            };
            StepAction::Fetch {
                url: file.url.map(Spanned::into_inner).unwrap_or_default(),
                sha256: file.sha256.map(Spanned::into_inner).unwrap_or_default(),
                dest: file.dest.map(Spanned::into_inner),
                unpack,
            }
        }
        "write" => {
            required(&file.path, "path", problems);
            template(&file.path, problems);
            template(&file.template, problems);
            if let Some(path) = file.path.as_ref().filter(|p| !is_template(p.get_ref())) {
                if let Err(message) = check_file_path(path.get_ref()) {
                    problems.at(path.span(), format!("path: {message}"));
                }
            }
            if file.content.is_some() == file.template.is_some() {
                problems.at(
                    file.kind.span(),
                    "a write step needs exactly one of 'content' (written as is) and 'template' (rendered)",
                );
            }
            let mode = match &file.mode {
                None => 0o644,
                Some(value) => match mode_of(value.get_ref()) {
                    Ok(mode) => mode,
                    Err(message) => {
                        problems.at(value.span(), message);
                        0
                    }
                },
            };
            let is_template = file.template.is_some();
            StepAction::Write {
                path: file.path.map(Spanned::into_inner).unwrap_or_default(),
                content: file
                    .template
                    .or(file.content)
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
                template: is_template,
                mode,
            }
        }
        "run" => {
            required(&file.command, "command", problems);
            if let Some(command) = &file.command {
                if command.get_ref().trim().is_empty() {
                    problems.at(command.span(), "the command is empty");
                }
            }
            let env = file.env.map(Spanned::into_inner).unwrap_or_default();
            for value in env.values() {
                if let Err(message) = check_template_syntax(value) {
                    problems.found.push(LocatedProblem {
                        path: problems.file.to_string(),
                        line_column: None,
                        message: format!("{step_label}: env: {message}"),
                    });
                }
            }
            StepAction::Run {
                command: file.command.map(Spanned::into_inner).unwrap_or_default(),
                env,
            }
        }
        _ => {
            let given = [&file.http, &file.tcp, &file.command]
                .iter()
                .filter(|f| f.is_some())
                .count();
            if given != 1 {
                problems.at(
                    file.kind.span(),
                    "a check step needs exactly one of 'http' (a URL), 'tcp' (HOST:PORT) and 'command'",
                );
            }
            template(&file.http, problems);
            template(&file.tcp, problems);
            if let Some(address) = file.tcp.as_ref().filter(|a| !is_template(a.get_ref())) {
                if let Err(message) = check_host_port(address.get_ref()) {
                    problems.at(address.span(), message);
                }
            }
            if let Some(url) = file.http.as_ref().filter(|u| !is_template(u.get_ref())) {
                if !url.get_ref().starts_with("http://") && !url.get_ref().starts_with("https://") {
                    problems.at(
                        url.span(),
                        "a check's http URL starts with http:// or https://",
                    );
                }
            }
            let interval_secs = match &file.interval {
                None => 1.0,
                Some(value) => match seconds_of(value.get_ref()) {
                    Ok(secs) if (0.01..=3600.0).contains(&secs) => secs,
                    Ok(secs) => {
                        problems.at(
                            value.span(),
                            format!("interval {secs} s is out of range (10ms to 1h)"),
                        );
                        1.0
                    }
                    Err(message) => {
                        problems.at(value.span(), format!("interval: {message}"));
                        1.0
                    }
                },
            };
            let probe = if let Some(url) = file.http {
                Probe::Http {
                    url: url.into_inner(),
                }
            } else if let Some(address) = file.tcp {
                Probe::Tcp {
                    address: address.into_inner(),
                }
            } else {
                Probe::Command {
                    command: file.command.map(Spanned::into_inner).unwrap_or_default(),
                }
            };
            StepAction::Check {
                probe,
                interval_secs,
            }
        }
    };
    (problems.found.len() == before).then_some(Step {
        name,
        timeout_secs,
        action,
    })
}

fn mode_of(value: &toml::Value) -> Result<u32, String> {
    let mode = match value {
        toml::Value::String(text) => {
            let digits = text.trim_start_matches("0o");
            u32::from_str_radix(digits, 8)
                .map_err(|_| format!("mode '{text}' is not octal (e.g. \"0644\")"))?
        }
        toml::Value::Integer(n) => {
            u32::try_from(*n).map_err(|_| format!("mode {n} is out of range"))?
        }
        other => {
            return Err(format!(
                "mode is an octal string such as \"0644\", not {}",
                other.type_str()
            ))
        }
    };
    check_mode(mode)?;
    Ok(mode)
}

/// A write step's mode: permission bits and the sticky bit only. A recipe
/// does not make setuid or setgid files (it may run as root).
fn check_mode(mode: u32) -> Result<(), String> {
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} has bits beyond 07777"));
    }
    if mode & 0o6000 != 0 {
        return Err(format!(
            "mode {mode:04o} sets the setuid or setgid bit; a recipe does not make such files"
        ));
    }
    Ok(())
}

/// Whether a string holds template syntax, so its checks wait for rendering.
fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Instructions one template may run: thousands of times what a real
/// recipe's templates need, and a bound on what a nested loop over a long
/// option can cost the daemon rendering it (the clustersitter at submit,
/// under its lock).
pub const TEMPLATE_FUEL: u64 = 200_000;
/// The longest a rendered template may be, in bytes.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Parses a template and checks it uses only [`TEMPLATE_VARIABLES`].
fn check_template_syntax(text: &str) -> Result<(), String> {
    let env = environment();
    let template = env.template_from_str(text).map_err(|e| {
        format!(
            "template does not parse: {}",
            e.detail().unwrap_or("syntax error")
        )
    })?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !TEMPLATE_VARIABLES.contains(&name.as_str()))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown template variable {} (there are: {})",
            unknown.join(", "),
            TEMPLATE_VARIABLES.join(", ")
        ))
    }
}

/// The `options.KEY` names a template reads.
fn options_used(text: &str) -> Vec<String> {
    let env = environment();
    let Ok(template) = env.template_from_str(text) else {
        return Vec::new();
    };
    template
        .undeclared_variables(true)
        .into_iter()
        .filter_map(|name| name.strip_prefix("options.").map(|k| k.to_string()))
        .collect()
}

/// Renders a template with strict undefined variables.
///
/// # Errors
/// The template's syntax or rendering error (an undefined variable, a
/// failing filter), as text.
pub fn render(text: &str, variables: &serde_json::Value) -> Result<String, String> {
    if !is_template(text) && !text.contains("{#") {
        return Ok(text.to_string());
    }
    let env = environment();
    let template = env.template_from_str(text).map_err(|e| e.to_string())?;
    let rendered = template
        .render(minijinja::Value::from_serialize(variables))
        .map_err(|e| {
            if e.kind() == minijinja::ErrorKind::OutOfFuel {
                return format!(
                    "the template runs too long (more than {TEMPLATE_FUEL} instructions)"
                );
            }
            let mut message = e.to_string();
            if let Some(detail) = e.detail() {
                if !message.contains(detail) {
                    message = format!("{message}: {detail}");
                }
            }
            message
        })?;
    if rendered.len() > MAX_RENDERED_BYTES {
        return Err(format!(
            "the template renders to {} bytes; at most {MAX_RENDERED_BYTES}",
            rendered.len()
        ));
    }
    Ok(rendered)
}

/// Checks a fetch URL's scheme: http, https or file.
fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    match url.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => Ok(()),
        Some(_) => Err(format!(
            "'{url}': a file URL needs an absolute path (file:///...)"
        )),
        None => Err(format!(
            "'{url}': a fetch URL starts with http://, https:// or file://"
        )),
    }
}

/// Checks a SHA-256 digest: 64 hex digits.
fn check_sha256(digest: &str) -> Result<(), String> {
    if digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "sha256 '{digest}' is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)"
        ))
    }
}

/// Checks a path inside the release: relative, no `..`, not empty.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "'{path}' is absolute; paths are relative to the release directory"
        ));
    }
    if path.contains('\0') {
        return Err("the path holds a NUL byte".into());
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("'{path}' leaves the release directory (..)"));
    }
    Ok(())
}

/// Checks a path that names a file in the release: [`check_relative_path`],
/// and not the release directory itself nor a directory (`.`, `a/`).
pub fn check_file_path(path: &str) -> Result<(), String> {
    check_relative_path(path)?;
    if path.ends_with('/') || path.split('/').all(|part| part.is_empty() || part == ".") {
        return Err(format!("'{path}' names a directory, not a file"));
    }
    Ok(())
}

/// Checks a check's `HOST:PORT` (`[::1]:80` for IPv6).
fn check_host_port(address: &str) -> Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "'{address}' is not HOST:PORT (e.g. 127.0.0.1:8080)"
        )),
    }
}

/// What a clustersitter hands a machinesitter with one instance: the
/// recipe and everything its templates and environment read. The
/// machinesitter installs it as one release; equal deployments are the
/// same release ([`Deployment::release_id`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The job's `deployment_recipe` as written.
    pub recipe_name: String,
    /// Where it was found: a file path, or `builtin:NAME` for the recipes
    /// shipped with Cerebro.
    pub recipe_source: String,
    /// SHA-256 of the recipe file's bytes, hex.
    pub recipe_sha256: String,
    pub recipe: Recipe,
    /// The job's `recipe_options`.
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    pub job: String,
    /// From `cerebro updatejob --version`; `None` before any.
    #[serde(default)]
    pub version: Option<String>,
    /// The instance's slot (`N` in `N.ZONE`).
    pub instance: u32,
    pub zone: String,
    pub machine: String,
    pub cluster: String,
}

impl Deployment {
    /// The release this deployment installs: `VERSION-DIGEST`, the version
    /// (`unversioned` without one) with anything but `[A-Za-z0-9._-]` as
    /// `_`, and the first 12 hex digits of the SHA-256 of the deployment's
    /// JSON. Equal deployments give equal ids, so a release that already
    /// succeeded is not installed again.
    pub fn release_id(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let version: String = self
            .version
            .as_deref()
            .unwrap_or("unversioned")
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // A leading dot would hide the directory; `..` would be a parent.
        let version = version.trim_start_matches('.');
        format!("{}-{hex}", if version.is_empty() { "v" } else { version })
    }

    /// The template variables (see the module's doc) for a release at
    /// `release_dir`.
    pub fn variables(&self, release_dir: &str) -> serde_json::Value {
        serde_json::json!({
            "job": self.job,
            "version": self.version.clone().unwrap_or_default(),
            "instance": self.instance,
            "zone": self.zone,
            "machine": self.machine,
            "cluster": self.cluster,
            "release_dir": release_dir,
            "options": self.options,
        })
    }

    /// The environment every step gets (on top of the task's own):
    /// `CEREBRO_JOB`, `CEREBRO_JOB_VERSION` (when set), `CEREBRO_INSTANCE`,
    /// `CEREBRO_ZONE`, `CEREBRO_MACHINE`, `CEREBRO_CLUSTER`,
    /// `CEREBRO_RELEASE_DIR`, and `CEREBRO_OPT_<KEY>` per option (see
    /// [`option_env_name`]; strings as they are, other values as JSON).
    pub fn environment(&self, release_dir: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("CEREBRO_JOB".to_string(), self.job.clone());
        if let Some(version) = &self.version {
            env.insert("CEREBRO_JOB_VERSION".to_string(), version.clone());
        }
        env.insert("CEREBRO_INSTANCE".to_string(), self.instance.to_string());
        env.insert("CEREBRO_ZONE".to_string(), self.zone.clone());
        env.insert("CEREBRO_MACHINE".to_string(), self.machine.clone());
        env.insert("CEREBRO_CLUSTER".to_string(), self.cluster.clone());
        env.insert("CEREBRO_RELEASE_DIR".to_string(), release_dir.to_string());
        for (key, value) in &self.options {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.insert(option_env_name(key), text);
        }
        env
    }

    /// Renders every templated field of every step for a release at
    /// `release_dir` and checks the results (URL scheme, digest, paths
    /// inside the release). The machinesitter runs what this returns; the
    /// clustersitter calls it when a job is submitted so that a recipe its
    /// options cannot fill is refused then.
    ///
    /// # Errors
    /// Per failing step: its label and what is wrong.
    pub fn render_steps(&self, release_dir: &str) -> Result<Vec<Step>, Vec<String>> {
        let variables = self.variables(release_dir);
        let mut errors = Vec::new();
        let mut steps = Vec::new();
        for (index, step) in self.recipe.steps.iter().enumerate() {
            let label = step.label(index);
            let mut fail = |what: &str, message: String| {
                errors.push(format!("{label}: {what}: {message}"));
            };
            let mut text = |what: &str, value: &str| -> String {
                match render(value, &variables) {
                    Ok(rendered) => rendered,
                    Err(message) => {
                        fail(what, message);
                        String::new()
                    }
                }
            };
            let action = match &step.action {
                StepAction::Fetch {
                    url,
                    sha256,
                    dest,
                    unpack,
                } => {
                    let url = text("url", url);
                    let sha256 = text("sha256", sha256).to_ascii_lowercase();
                    let dest = dest.as_ref().map(|d| text("dest", d));
                    let unpack = match unpack {
                        Unpack::Auto => Unpack::from_extension(&url).unwrap_or_else(|| {
                            fail(
                                "unpack",
                                format!("\"auto\": '{url}' ends in none of .tar.gz, .tgz, .tar.zst, .zip"),
                            );
                            Unpack::Auto
                        }),
                        other => *other,
                    };
                    StepAction::Fetch {
                        url,
                        sha256,
                        dest,
                        unpack,
                    }
                }
                StepAction::Write {
                    path,
                    content,
                    template,
                    mode,
                } => StepAction::Write {
                    path: text("path", path),
                    content: if *template {
                        text("template", content)
                    } else {
                        content.clone()
                    },
                    template: false,
                    mode: *mode,
                },
                StepAction::Run { command, env } => StepAction::Run {
                    command: command.clone(),
                    env: env
                        .iter()
                        .map(|(k, v)| (k.clone(), text(&format!("env.{k}"), v)))
                        .collect(),
                },
                StepAction::Check {
                    probe,
                    interval_secs,
                } => StepAction::Check {
                    probe: match probe {
                        Probe::Http { url } => Probe::Http {
                            url: text("http", url),
                        },
                        Probe::Tcp { address } => Probe::Tcp {
                            address: text("tcp", address),
                        },
                        Probe::Command { command } => Probe::Command {
                            command: command.clone(),
                        },
                    },
                    interval_secs: *interval_secs,
                },
            };
            let before = errors.len();
            match &action {
                StepAction::Fetch {
                    url, sha256, dest, ..
                } => {
                    if let Err(m) = check_url(url) {
                        errors.push(format!("{label}: url: {m}"));
                    }
                    if let Err(m) = check_sha256(sha256) {
                        errors.push(format!("{label}: {m}"));
                    }
                    if let Some(Err(m)) = dest.as_deref().map(check_relative_path) {
                        errors.push(format!("{label}: dest: {m}"));
                    }
                }
                StepAction::Write { path, mode, .. } => {
                    if let Err(m) = check_file_path(path) {
                        errors.push(format!("{label}: path: {m}"));
                    }
                    if let Err(m) = check_mode(*mode) {
                        errors.push(format!("{label}: {m}"));
                    }
                }
                StepAction::Check {
                    probe: Probe::Tcp { address },
                    ..
                } => {
                    if let Err(m) = check_host_port(address) {
                        errors.push(format!("{label}: tcp: {m}"));
                    }
                }
                StepAction::Check {
                    probe: Probe::Http { url },
                    ..
                } if !url.starts_with("http://") && !url.starts_with("https://") => {
                    errors.push(format!("{label}: http: '{url}' is not an http(s) URL"));
                }
                _ => {}
            }
            // What the file's parser bounds, checked again for a
            // deployment that came over the wire.
            if !(step.timeout_secs > 0.0 && step.timeout_secs <= MAX_STEP_TIMEOUT_SECS) {
                errors.push(format!(
                    "{label}: timeout {} s is out of range (more than 0, at most {MAX_STEP_TIMEOUT_SECS})",
                    step.timeout_secs
                ));
            }
            if let StepAction::Check { interval_secs, .. } = &action {
                if !(0.01..=3600.0).contains(interval_secs) {
                    errors.push(format!(
                        "{label}: interval {interval_secs} s is out of range (10ms to 1h)"
                    ));
                }
            }
            if errors.len() == before {
                steps.push(Step {
                    name: step.name.clone(),
                    timeout_secs: step.timeout_secs,
                    action,
                });
            }
        }
        if errors.is_empty() {
            Ok(steps)
        } else {
            Err(errors)
        }
    }

    /// What the clustersitter checks when a job is submitted: every
    /// `options.KEY` a template reads is in the job's `recipe_options`
    /// (field `recipe_options.KEY`), no two options share an environment
    /// name, and every step renders (field `deployment_recipe`).
    pub fn check(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut env_names: BTreeMap<String, &String> = BTreeMap::new();
        for key in self.options.keys() {
            if let Some(other) = env_names.insert(option_env_name(key), key) {
                errors.push(
                    format!("recipe_options.{key}"),
                    format!(
                        "'{key}' and '{other}' would both reach the recipe as {}",
                        option_env_name(key)
                    ),
                );
            }
        }
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (index, step) in self.recipe.steps.iter().enumerate() {
            for text in step.templates() {
                for key in options_used(text) {
                    let root = key.split('.').next().unwrap_or(&key).to_string();
                    if !self.options.contains_key(&root) {
                        missing.entry(root).or_default().push(step.label(index));
                    }
                }
            }
        }
        for (key, steps) in &missing {
            let mut steps = steps.clone();
            steps.dedup();
            errors.push(
                format!("recipe_options.{key}"),
                format!(
                    "recipe '{}' reads options.{key} in {}, and the job's recipe_options has no '{key}'",
                    self.recipe_name,
                    steps.join(", ")
                ),
            );
        }
        if missing.is_empty() {
            if let Err(problems) = self.render_steps("/release") {
                for problem in problems {
                    errors.push(
                        "deployment_recipe",
                        format!("recipe '{}': {problem}", self.recipe_name),
                    );
                }
            }
        }
        errors.into_result(())
    }
}

impl Step {
    /// The templated strings of this step.
    fn templates(&self) -> Vec<&str> {
        match &self.action {
            StepAction::Fetch {
                url, sha256, dest, ..
            } => {
                let mut out = vec![url.as_str(), sha256.as_str()];
                out.extend(dest.as_deref());
                out
            }
            StepAction::Write {
                path,
                content,
                template,
                ..
            } => {
                let mut out = vec![path.as_str()];
                if *template {
                    out.push(content.as_str());
                }
                out
            }
            StepAction::Run { env, .. } => env.values().map(String::as_str).collect(),
            StepAction::Check { probe, .. } => match probe {
                Probe::Http { url } => vec![url.as_str()],
                Probe::Tcp { address } => vec![address.as_str()],
                Probe::Command { .. } => Vec::new(),
            },
        }
    }
}

/// The environment variable an option reaches the steps as:
/// `CEREBRO_OPT_` and the key upper-cased, anything but `[A-Z0-9]` as `_`
/// (`release_dir` → `CEREBRO_OPT_RELEASE_DIR`).
pub fn option_env_name(key: &str) -> String {
    let upper: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CEREBRO_OPT_{upper}")
}

/// Where an instance's deployment stands on its machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Waiting for its first attempt or for the retry after a failure.
    Pending,
    /// Running the steps before the task starts.
    Installing,
    /// Installed and switched to; the task started and the checks run.
    Checking,
    /// Installed, switched to, and every check passed: the instance is ready.
    Ready,
    /// A step failed or timed out; see `step`, `error` and `output_tail`.
    /// Retried with backoff (`next_attempt_ms`).
    Failed,
}

impl DeployState {
    /// The word the API, CLI and UI use: `pending`, `installing`,
    /// `checking`, `ready`, `deploy failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Pending => "pending",
            DeployState::Installing => "installing",
            DeployState::Checking => "checking",
            DeployState::Ready => "ready",
            DeployState::Failed => "deploy failed",
        }
    }
}

impl std::fmt::Display for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance's deployment as its machinesitter reports it (in
/// `TaskView.deploy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployStatus {
    /// The release asked for ([`Deployment::release_id`]).
    pub release: String,
    pub version: Option<String>,
    pub state: DeployState,
    /// The release the task runs now (what `current` points at), if any:
    /// while a new release installs or after it failed, the previous one.
    pub running_release: Option<String>,
    /// The step running (installing, checking) or that failed, as
    /// [`Step::label`] gives it.
    pub step: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The last lines of the failed step's output (at most 4 KiB).
    pub output_tail: Option<String>,
    /// Attempts at this release so far.
    pub attempts: u32,
    /// When the next attempt starts, in ms since the epoch (after a failure).
    pub next_attempt_ms: Option<u64>,
    /// Last change, in ms since the epoch.
    pub updated_ms: u64,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Not run: an earlier step failed.
    Skipped,
}

/// One step of one attempt, as `GET .../deploylog` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 0-based position in the recipe.
    pub index: usize,
    /// [`Step::label`].
    pub label: String,
    pub outcome: StepOutcome,
    /// ms since the epoch.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// A command's exit code (run, command checks).
    pub exit_code: Option<i32>,
    /// What happened, in a line (`fetched 1.2 MiB, sha256 ok`, `exit 3`,
    /// `timed out after 10 s`).
    pub detail: String,
    /// The tail of its combined stdout and stderr, at most
    /// [`STEP_OUTPUT_TAIL_BYTES`].
    pub output: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running.
    Running,
    /// Installed and switched to (checks are recorded as their own attempt
    /// phase in `steps`).
    Succeeded,
    /// The release was already installed on this machine: switched to it
    /// without running the install steps again (a rollback).
    Reused,
    Failed,
}

/// One attempt at installing a release on one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployAttempt {
    pub release: String,
    pub version: Option<String>,
    /// 1 for the first attempt at this release, counting up on retries.
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub steps: Vec<StepRecord>,
}

/// `GET /api/v1/jobs/{job}/deploylog` of the clustersitter: one entry per
/// instance asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceDeployLog {
    pub instance: u32,
    pub zone: String,
    pub task: String,
    pub machine: Option<String>,
    /// Newest first, as the machine keeps them; empty when the machine did
    /// not answer (see `error`).
    pub attempts: Vec<DeployAttempt>,
    pub error: Option<String>,
}

/// A recipe problem as a field error, for a job submission.
impl From<&LocatedProblem> for FieldError {
    fn from(problem: &LocatedProblem) -> FieldError {
        FieldError::new("deployment_recipe", problem.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARBALL: &str = r#"
description = "release tarball"

[[steps]]
kind = "fetch"
url = "{{ options.url }}"
sha256 = "{{ options.sha256 }}"
unpack = "tar.gz"

[[steps]]
kind = "write"
path = "VERSION"
template = "{{ version }}\n"

[[steps]]
kind = "run"
command = "test -f VERSION"
env = { PORT = "{{ options.port }}" }
timeout = "30s"

[[steps]]
kind = "check"
http = "http://127.0.0.1:{{ options.port }}/"
timeout = 20
"#;

    fn deployment(options: serde_json::Value) -> Deployment {
        Deployment {
            recipe_name: "tarball".into(),
            recipe_source: "builtin:tarball".into(),
            recipe_sha256: "0".repeat(64),
            recipe: Recipe::parse(TARBALL, "tarball.toml").unwrap(),
            options: serde_json::from_value(options).unwrap(),
            job: "web".into(),
            version: Some("v1".into()),
            instance: 0,
            zone: "local-a".into(),
            machine: "m-1".into(),
            cluster: "c".into(),
        }
    }

    #[test]
    fn a_recipe_reads_with_defaults() {
        let recipe = Recipe::parse(TARBALL, "tarball.toml").unwrap();
        assert_eq!(recipe.steps.len(), 4);
        assert_eq!(recipe.steps[0].timeout_secs, 600.0);
        assert_eq!(recipe.steps[2].timeout_secs, 30.0);
        assert_eq!(recipe.steps[3].timeout_secs, 20.0);
        assert!(matches!(
            recipe.steps[1].action,
            StepAction::Write {
                mode: 0o644,
                template: true,
                ..
            }
        ));
        assert_eq!(recipe.install_steps().count(), 3);
        assert_eq!(recipe.check_steps().count(), 1);
    }

    #[test]
    fn problems_are_located() {
        let text =
            "[[steps]]\nkind = \"fetch\"\nurl = \"ftp://x/y\"\nsha256 = \"abc\"\nmode = \"0644\"\n";
        let error = Recipe::parse(text, "r.toml").unwrap_err().to_string();
        assert!(error.contains("r.toml:3:7: 'ftp://x/y'"), "{error}");
        assert!(error.contains("r.toml:4:10: sha256 'abc'"), "{error}");
        assert!(
            error.contains("r.toml:5:8: 'mode' does not belong to a fetch step"),
            "{error}"
        );
        let error = Recipe::parse("[[steps]]\nkind = \"run\"\ncomand = \"x\"\n", "r.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("r.toml:3:1: unknown field `comand`, did you mean `command`?"),
            "{error}"
        );
        let error = Recipe::parse(
            "[[steps]]\nkind = \"check\"\ntcp = \"x:1\"\n[[steps]]\nkind = \"run\"\ncommand = \"x\"\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("r.toml:4:1: step 2 (run) comes after the check"),
            "{error}"
        );
        let error = Recipe::parse(
            "[[steps]]\nkind = \"write\"\npath = \"../x\"\ntemplate = \"{{ nope }}\"\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("r.toml:3:8: path: '../x' leaves"), "{error}");
        assert!(error.contains("unknown template variable nope"), "{error}");
    }

    #[test]
    fn options_are_checked_against_the_templates() {
        let errors = deployment(serde_json::json!({"url": "http://x/a.tgz"}))
            .check()
            .unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["recipe_options.port", "recipe_options.sha256"]);
        let bad_digest = deployment(serde_json::json!({
            "url": "http://x/a.tgz", "sha256": "nothex", "port": 80
        }));
        let errors = bad_digest.check().unwrap_err();
        assert_eq!(errors.errors[0].field, "deployment_recipe");
        assert!(
            errors.errors[0].message.contains("step 1 (fetch)"),
            "{errors}"
        );
        let good = deployment(serde_json::json!({
            "url": "http://x/a.tgz", "sha256": "A".repeat(64), "port": 8080
        }));
        good.check().unwrap();
        let steps = good.render_steps("/r").unwrap();
        assert!(
            matches!(&steps[0].action, StepAction::Fetch { sha256, .. } if *sha256 == "a".repeat(64))
        );
        assert!(matches!(&steps[1].action, StepAction::Write { content, .. } if content == "v1\n"));
        assert!(
            matches!(&steps[3].action, StepAction::Check { probe: Probe::Http { url }, .. } if url == "http://127.0.0.1:8080/")
        );
    }

    #[test]
    fn releases_are_named_by_version_and_digest() {
        let a = deployment(serde_json::json!({"port": 1}));
        let id = a.release_id();
        assert!(id.starts_with("v1-") && id.len() == 15, "{id}");
        assert_eq!(a.release_id(), id);
        let mut b = a.clone();
        b.options.insert("port".into(), 2.into());
        assert_ne!(b.release_id(), id);
        b.version = Some("../x y".into());
        assert!(
            b.release_id().starts_with("_x_y-") || b.release_id().starts_with("_"),
            "{}",
            b.release_id()
        );
        assert!(!b.release_id().contains('/'));
        assert_eq!(option_env_name("release-dir"), "CEREBRO_OPT_RELEASE_DIR");
        let env = a.environment("/r");
        assert_eq!(env["CEREBRO_OPT_PORT"], "1");
        assert_eq!(env["CEREBRO_RELEASE_DIR"], "/r");
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    fn one_step(step: &str) -> Result<Recipe, String> {
        Recipe::parse(&format!("[[steps]]\n{step}"), "r.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_runaway_template_stops_at_its_fuel() {
        let template = "{% for a in options.l %}{% for b in options.l %}{% for c in options.l %}x{% endfor %}{% endfor %}{% endfor %}";
        let variables = serde_json::json!({"options": {"l": (0..300).collect::<Vec<_>>()}});
        let started = std::time::Instant::now();
        let error = render(template, &variables).unwrap_err();
        assert!(error.contains("runs too long"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let small = serde_json::json!({"options": {"l": [1, 2, 3]}});
        assert_eq!(render(template, &small).unwrap().len(), 27);
    }

    #[test]
    fn what_cannot_work_is_refused_before_it_runs() {
        for (step, wanted) in [
            (
                "kind = \"write\"\npath = \".\"\ncontent = \"x\"",
                "names a directory",
            ),
            (
                "kind = \"write\"\npath = \"a/\"\ncontent = \"x\"",
                "names a directory",
            ),
            (
                "kind = \"write\"\npath = \"x\"\ncontent = \"x\"\nmode = \"6755\"",
                "setuid",
            ),
            ("kind = \"check\"\ntcp = \"nohostport\"", "not HOST:PORT"),
        ] {
            let error = one_step(step).unwrap_err();
            assert!(error.contains(wanted), "{step}: {error}");
        }
        // Over the wire, the parser's bounds are checked again.
        let mut recipe = one_step("kind = \"write\"\npath = \"x\"\ncontent = \"x\"").unwrap();
        recipe.steps[0].timeout_secs = 1e12;
        if let StepAction::Write { mode, .. } = &mut recipe.steps[0].action {
            *mode = 0o6777;
        }
        let deployment = Deployment {
            recipe_name: "r".into(),
            recipe_source: "r.toml".into(),
            recipe_sha256: "0".repeat(64),
            recipe,
            options: BTreeMap::new(),
            job: "j".into(),
            version: None,
            instance: 0,
            zone: "z".into(),
            machine: "m".into(),
            cluster: "c".into(),
        };
        let errors = deployment.render_steps("/r").unwrap_err().join("\n");
        assert!(
            errors.contains("timeout") && errors.contains("setuid"),
            "{errors}"
        );
    }
}
