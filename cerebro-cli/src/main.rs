//! `cerebro`: drive a Cerebro cluster from a laptop.

use anyhow::{anyhow, bail, Result};
use cerebro_client::{ClientError, ClusterClient, HttpClient};
use cerebro_types::cluster::{
    ClusterStatus, IdleLimitRequest, InstanceKey, InstanceView, JobResult, JobView, PlanReply,
    RunMode, UpdateRequest,
};
use cerebro_types::health::{capacity_cores, cores, instances_text, jobs_text, trim};
use cerebro_types::job::JobSpec;
use cerebro_types::task_api::LogQuery;
use cerebro_types::LogStream;
use clap::{Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_CLUSTER: &str = "http://127.0.0.1:30000";

#[derive(Debug, Parser)]
#[command(
    name = "cerebro",
    version,
    about = "Drive a Cerebro cluster: jobs, machines, logs"
)]
struct Cli {
    /// The clustersitter's URL (else env CEREBRO_CLUSTER, else the last --cluster the cluster
    /// answered at, saved in ~/.config/cerebro/cli.toml, else http://127.0.0.1:30000).
    #[arg(long, global = true, value_name = "URL")]
    cluster: Option<String>,
    /// File holding the cluster's bearer token (else env CEREBRO_TOKEN, else the token a
    /// clustersitter on this host recorded for this URL in ~/.config/cerebro/tokens).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update the jobs in these files (validated locally first).
    Updatejobcfg {
        /// Job files (lenient JSON: comments and trailing commas allowed); each
        /// holds one job, a list of jobs, or several separated by commas.
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
        /// Print where every instance would go, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rolling restart of a job, one machine at a time.
    Updatejob {
        /// The job's name (its task_configuration.name).
        #[arg(value_name = "JOB")]
        name: String,
        /// Version label the instances see as CEREBRO_JOB_VERSION.
        #[arg(long)]
        version: Option<String>,
        /// Seconds each machine's instances must run before the next machine.
        #[arg(long, value_name = "SECONDS", value_parser = seconds)]
        min_healthy: Option<f64>,
        /// Machines restarted at a time.
        #[arg(long, value_name = "N", value_parser = whole_number::<usize>)]
        max_parallel: Option<usize>,
    },
    /// Restart instances of a job now, with the same config: one
    /// (--instance N), a few (--instance N repeated) or every one at once
    /// (--all). For one machine at a time, use updatejob.
    #[command(after_help = "Instance numbers are the # column of `cerebro status JOB`.")]
    Restart {
        /// The job's name (its task_configuration.name).
        job: String,
        /// The instance to restart: its number in `cerebro status JOB`
        /// (counted job-wide from 0); repeat for several.
        #[arg(long, short = 'i', value_name = "N", value_parser = whole_number::<usize>)]
        instance: Vec<usize>,
        /// Restart every instance of the job at once.
        #[arg(long, conflicts_with = "instance")]
        all: bool,
    },
    /// Remove a job; its instances stop.
    Removejob {
        /// The job's name (its task_configuration.name).
        #[arg(value_name = "JOB")]
        name: String,
    },
    /// Start every instance of a job (also those placed later), whatever its auto_start says.
    Startjob {
        /// The job's name (its task_configuration.name).
        #[arg(value_name = "JOB")]
        name: String,
    },
    /// Stop every instance of a job (also those placed later); the job stays.
    Stopjob {
        /// The job's name (its task_configuration.name).
        #[arg(value_name = "JOB")]
        name: String,
    },
    /// Jobs with their health, running (by health) and desired instances, and ports.
    Listjobs,
    /// Machines with their zone, state, reserved and used resources, and instances.
    Listmachines,
    /// The cluster at a glance, or one job's instances.
    Status {
        /// A job's name: its instances (numbered as --instance takes them),
        /// machines, health and why, restarts, violations, DNS names and
        /// ports. Without it, the whole cluster.
        job: Option<String>,
    },
    /// An instance's output.
    Logs {
        /// The job's name (its task_configuration.name).
        job: String,
        /// Which instance: its number in `cerebro status JOB` (counted job-wide from 0).
        #[arg(long, short = 'i', default_value_t = 0, value_name = "N", value_parser = whole_number::<usize>)]
        instance: usize,
        /// Show standard error instead of standard output.
        #[arg(long)]
        stderr: bool,
        /// How many of the last lines to show.
        #[arg(long, short = 'n', default_value_t = 100, value_name = "LINES", value_parser = whole_number::<u64>)]
        tail: u64,
        /// Keep printing new output until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Idle machines kept per zone (all zones, or one with --zone).
    Updateidlelimit {
        /// Machines without instances kept ready in each zone (more are
        /// decommissioned, fewer are not provisioned ahead).
        #[arg(value_name = "N", value_parser = whole_number::<u32>)]
        limit: u32,
        /// Only this zone (as named in the cluster config and `cerebro status`); else every zone.
        #[arg(long)]
        zone: Option<String>,
    },
    /// Each instance's deployment attempts: release, outcome, and every
    /// step with its outcome, duration, exit code and output tail.
    Deploylog {
        /// The job's name (its task_configuration.name).
        job: String,
        /// Only this instance (its number in `cerebro status JOB`).
        #[arg(long, short = 'i', value_name = "N", value_parser = whole_number::<usize>)]
        instance: Option<usize>,
    },
    /// The DNS provider and every record Cerebro wants it to hold
    /// (`GET /api/v1/dns`).
    Dns,
    /// Recent events, newest first.
    Events {
        /// How many events to show at most.
        #[arg(long, default_value_t = 50, value_name = "N", value_parser = whole_number::<usize>)]
        limit: usize,
    },
}

/// The cluster's API, called one request at a time: the CLI is synchronous
/// and blocks on each answer.
struct Api {
    client: ClusterClient,
    runtime: tokio::runtime::Runtime,
    /// Where the URL came from, named when the cluster cannot be reached.
    source: UrlSource,
    /// Whether the cluster has answered (any HTTP status) in this run.
    answered: std::cell::Cell<bool>,
}

impl Api {
    fn explain(&self, error: ClientError) -> anyhow::Error {
        match &error {
            ClientError::Status { status, body, .. } => {
                match serde_json::from_str::<cerebro_types::ErrorBody>(body) {
                    // The server's message already lists every field at fault.
                    Ok(refusal) if !is_not_an_api(*status, &refusal) => {
                        anyhow!("the cluster answered {status}: {}", refusal.error)
                    }
                    // A URL that is not a cluster's API: say which URL, and
                    // where it came from, not the whole page it answered.
                    _ => anyhow!(
                        "{} is not a Cerebro cluster's API: it answered {status}: {}{}",
                        self.client.base(),
                        first_line(body),
                        self.source.hint()
                    ),
                }
            }
            ClientError::Transport { .. } => anyhow!(
                "cannot reach the cluster at {}: {error}{}",
                self.client.base(),
                self.source.hint()
            ),
            ClientError::Decode { .. } => anyhow!(
                "unexpected answer from {}: {error}{}",
                self.client.base(),
                self.source.hint()
            ),
        }
    }

    /// Notes whether the cluster answered; the first answer to a URL given
    /// with --cluster remembers it. Only an answer does: a mistyped URL must
    /// not become where every later command goes, while a URL that answered
    /// (even a refusal, such as 401 or an unknown job) is the right one.
    fn settle<T>(&self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        let answered = match &result {
            Ok(_) => true,
            // Only a refusal in the cluster's own words: any web server
            // answers something.
            Err(error @ ClientError::Status { status, .. }) => error
                .error_body()
                .is_some_and(|refusal| !is_not_an_api(*status, &refusal)),
            Err(ClientError::Transport { .. } | ClientError::Decode { .. }) => false,
        };
        if answered && !self.answered.replace(true) && self.source == UrlSource::Flag {
            remember_cluster(self.client.base());
        }
        result
    }

    /// Runs one call of the client to its answer.
    fn call<'a, T, F>(&'a self, call: impl FnOnce(&'a ClusterClient) -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, ClientError>> + 'a,
    {
        self.settle(self.runtime.block_on(call(&self.client)))
            .map_err(|e| self.explain(e))
    }
}

/// Whether a JSON refusal says the URL is not the API's: the 404 a
/// cluster gives for a path it does not serve (`nothing at /api/api/v1/jobs`:
/// a `--cluster` URL with a path of its own), or any answer without the
/// error body Cerebro's daemons give.
fn is_not_an_api(status: u16, refusal: &cerebro_types::ErrorBody) -> bool {
    status == 404 && refusal.error.starts_with("nothing at ")
}

/// The first line of `text`, at most 200 characters: enough of another
/// server's page to recognise it.
fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut short: String = line.trim().chars().take(200).collect();
    if short.len() < line.trim().len() {
        short.push('…');
    }
    short
}

/// A job the cluster refused (400) for its fields, each field error at
/// its place in the job's file: `FILE:LINE:COLUMN: job 'NAME': FIELD:
/// MESSAGE`, one per line, as a config error at start reads. `None` for
/// any other error, or when no field could be found in the files.
fn refused_fields(error: &ClientError, files: &[PathBuf], job: &str) -> Option<String> {
    let ClientError::Status {
        status: 400, body, ..
    } = error
    else {
        return None;
    };
    let body: cerebro_types::ErrorBody = serde_json::from_str(body).ok()?;
    let lines: Vec<String> = body
        .errors
        .iter()
        .map(|e| {
            let at = cerebro_types::job_file::locate_job_field(files, job, &e.field)?;
            Some(format!("{at}: job '{job}': {}: {}", e.field, e.message))
        })
        .collect::<Option<_>>()?;
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Where the CLI remembers the cluster URL.
fn config_file() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(dir.join("cerebro").join("cli.toml"))
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CliConfig {
    cluster: Option<String>,
}

/// The URL saved by an earlier command, and the file it is saved in.
fn remembered_cluster() -> Option<(String, PathBuf)> {
    let path = config_file()?;
    let text = std::fs::read_to_string(&path).ok()?;
    let url = toml::from_str::<CliConfig>(&text).ok()?.cluster?;
    Some((url, path))
}

fn remember_cluster(url: &str) {
    let Some(path) = config_file() else { return };
    let config = CliConfig {
        cluster: Some(url.to_string()),
    };
    let Ok(text) = toml::to_string(&config) else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = cerebro_host::fs::atomic_write(&path, text.as_bytes());
}

/// Where the cluster URL came from. A URL saved on an earlier day is easy
/// to forget, so errors about reaching it say where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlSource {
    /// `--cluster`, typed with this command.
    Flag,
    /// Env `CEREBRO_CLUSTER`.
    Env,
    /// The config file (its path) an earlier `--cluster` was saved in.
    Saved(PathBuf),
    /// None given: the local cluster's default.
    Default,
}

impl UrlSource {
    /// What to add to an error about reaching the URL: where it came from
    /// and how to use another (nothing for a URL typed with the command).
    fn hint(&self) -> String {
        match self {
            UrlSource::Flag => String::new(),
            UrlSource::Env => {
                " (the URL in env CEREBRO_CLUSTER; pass --cluster to use another)".into()
            }
            UrlSource::Saved(path) => format!(
                " (the URL saved in {}; pass --cluster to use another)",
                home_relative(path)
            ),
            UrlSource::Default => {
                " (the default URL; pass --cluster or set CEREBRO_CLUSTER to use another)".into()
            }
        }
    }
}

/// `path` with the home directory written `~`, as people know it.
fn home_relative(path: &std::path::Path) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home
        .as_deref()
        .and_then(|home| path.strip_prefix(home).ok())
    {
        Some(rest) if !rest.as_os_str().is_empty() => format!("~/{}", rest.display()),
        _ => path.display().to_string(),
    }
}

/// The cluster URL and where it came from: `--cluster`, else env
/// `CEREBRO_CLUSTER`, else the saved one, else the default.
fn choose_cluster(
    flag: Option<&str>,
    env: Option<String>,
    saved: Option<(String, PathBuf)>,
) -> Result<(String, UrlSource)> {
    let (url, source) = match (flag, env.filter(|u| !u.is_empty()), saved) {
        (Some(url), _, _) => (url.to_string(), UrlSource::Flag),
        (None, Some(url), _) => (url, UrlSource::Env),
        (None, None, Some((url, path))) => (url, UrlSource::Saved(path)),
        (None, None, None) => (DEFAULT_CLUSTER.to_string(), UrlSource::Default),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        let from = match &source {
            UrlSource::Flag => "--cluster".to_string(),
            UrlSource::Env => "env CEREBRO_CLUSTER".to_string(),
            UrlSource::Saved(path) => format!("the URL saved in {}", home_relative(path)),
            UrlSource::Default => "the default URL".to_string(),
        };
        bail!("{from} '{url}' is not an http:// or https:// URL");
    }
    Ok((url.trim_end_matches('/').to_string(), source))
}

/// Aligned columns, the header first.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", format_table(header, rows));
}

/// [`print_table`]'s text: each line ends with a newline, trailing blanks trimmed.
fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
    out
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn load_job_files(files: &[PathBuf]) -> Result<Vec<JobSpec>> {
    use cerebro_types::job_file::LoadJobsError;
    cerebro_types::job_file::load_job_files(files).or_else(|error| match error {
        LoadJobsError::Read { path, source } => {
            Err(anyhow::Error::new(source).context(format!("cannot read {}", path.display())))
        }
        LoadJobsError::Parse(_) => bail!("{error}"),
    })
}

/// `startjob` (`run`) or `stopjob`.
fn run_job(api: &Api, json: bool, name: &str, run: bool) -> Result<()> {
    let done = if run {
        "starting: every instance runs"
    } else {
        "stopping: every instance stops; the job stays"
    };
    let reply = if run {
        api.call(|c| c.start_job(name))?
    } else {
        api.call(|c| c.stop_job(name))?
    };
    if json {
        return print_json(&reply);
    }
    println!("{name}: {done}");
    Ok(())
}

/// Why `cerebro restart JOB` alone does nothing, and what to type instead.
fn restart_which(job: &str) -> String {
    format!(
        "say which instances of {job} to restart: --instance N (the # column of \
         `cerebro status {job}`; repeat for several) or --all (every instance at once); \
         for a rolling restart, one machine at a time: cerebro updatejob {job}"
    )
}

/// `cerebro restart`: asks the cluster to restart each instance in
/// `indices` (job-wide numbers), going on past a refusal so one stuck
/// instance does not keep the others from restarting; fails if any was
/// refused.
fn restart_instances(api: &Api, json: bool, job: &str, indices: &[usize]) -> Result<()> {
    if indices.is_empty() {
        bail!("{job} has no instances to restart");
    }
    let mut results = Vec::new();
    let mut refused = Vec::new();
    for &index in indices {
        match api.call(|c| c.restart_instance(job, index)) {
            Ok(_) => {
                if !json {
                    println!("{job}: instance {index} restarting");
                }
                results.push(serde_json::json!({"instance": index, "result": "restarting"}));
            }
            Err(error) => {
                results.push(serde_json::json!({"instance": index, "error": format!("{error:#}")}));
                refused.push((index, error));
            }
        }
    }
    if json {
        print_json(&results)?;
    }
    match refused.len() {
        0 => Ok(()),
        1 if indices.len() == 1 => Err(refused.remove(0).1),
        count => {
            for (index, error) in &refused {
                eprintln!("cerebro: instance {index} of {job}: {error:#}");
            }
            bail!(
                "{count} of {} instances of {job} not restarted",
                indices.len()
            )
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // The saved URL is read only when neither the flag nor env gives one.
    let saved = if cli.cluster.is_none() && std::env::var("CEREBRO_CLUSTER").is_err() {
        remembered_cluster()
    } else {
        None
    };
    let (url, source) = choose_cluster(
        cli.cluster.as_deref(),
        std::env::var("CEREBRO_CLUSTER").ok(),
        saved,
    )?;
    let token = match cerebro_web::load_token(cli.token_file.as_deref(), "CEREBRO_TOKEN") {
        Ok(token) => token.map(|t| t.expose().to_string()),
        Err(error) => bail!("{error}"),
    }
    // A clustersitter on this host that generated its token left it here.
    .or_else(|| {
        cerebro_client::token_store::default_dir()
            .and_then(|dir| cerebro_client::token_store::read_for_url(&dir, &url))
    });
    let api = Api {
        client: ClusterClient::new(HttpClient::new(Duration::from_secs(30), 2), &url, token),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        source,
        answered: std::cell::Cell::new(false),
    };
    match cli.command {
        Command::Updatejobcfg { files, dry_run } => {
            let jobs = load_job_files(&files)?;
            if dry_run {
                let reply = api.call(|c| c.plan(&jobs))?;
                if cli.json {
                    return print_json(&reply);
                }
                print!("{}", dry_run_text(&reply));
                return Ok(());
            }
            let mut rows = Vec::new();
            let mut replies = Vec::new();
            for job in &jobs {
                let reply = api
                    .settle(api.runtime.block_on(api.client.put_job(job)))
                    .map_err(|error| match refused_fields(&error, &files, job.name()) {
                        Some(located) => anyhow!("{located}"),
                        None => api.explain(error),
                    })?;
                let rollout = reply.job.as_ref().and_then(|j| j.rollout.as_ref());
                rows.push(vec![
                    job.name().to_string(),
                    match rollout {
                        Some(rollout) if reply.result == JobResult::Updated => format!(
                            "updated, rolling to generation {}",
                            rollout.target_generation
                        ),
                        _ => reply.result.as_str().to_string(),
                    },
                    reply
                        .job
                        .as_ref()
                        .map_or("-".into(), |j| j.desired_instances.to_string()),
                ]);
                replies.push(reply);
            }
            if cli.json {
                return print_json(&replies);
            }
            print_table(&["JOB", "RESULT", "INSTANCES"], &rows);
        }
        Command::Updatejob {
            name,
            version,
            min_healthy,
            max_parallel,
        } => {
            let request = UpdateRequest {
                version,
                min_healthy_secs: min_healthy,
                max_parallel,
            };
            let reply = api.call(|c| c.update_job(&name, &request))?;
            if cli.json {
                return print_json(&reply);
            }
            println!(
                "{name}: rolling update to generation {} started",
                reply.job.map_or("-".into(), |j| j.generation.to_string())
            );
        }
        Command::Restart { job, instance, all } => {
            let indices: Vec<usize> = if all {
                let view = api.call(|c| c.job(&job))?;
                view.instances.iter().map(|i| i.index).collect()
            } else if instance.is_empty() {
                // Restarting every instance at once is never a default: a
                // supervisorctl user writes `restart all`, here `--all`.
                bail!("{}", restart_which(&job));
            } else {
                // An instance named twice is restarted once.
                let mut instance = instance;
                instance.sort_unstable();
                instance.dedup();
                instance
            };
            restart_instances(&api, cli.json, &job, &indices)?;
        }
        Command::Startjob { name } => run_job(&api, cli.json, &name, true)?,
        Command::Stopjob { name } => run_job(&api, cli.json, &name, false)?,
        Command::Removejob { name } => {
            let reply = api.call(|c| c.remove_job(&name))?;
            if cli.json {
                return print_json(&reply);
            }
            println!("{name}: removed; its instances stop");
        }
        Command::Listjobs => {
            let jobs = api.call(|c| c.jobs())?;
            if cli.json {
                return print_json(&jobs);
            }
            print!("{}", render_jobs(&jobs));
        }
        Command::Listmachines => {
            let machines = api.call(|c| c.machines())?;
            if cli.json {
                return print_json(&machines);
            }
            print!("{}", render_machines(&machines));
        }
        Command::Status { job: None } => {
            let status = api.call(|c| c.status())?;
            if cli.json {
                return print_json(&status);
            }
            // The plan names an unplaced instance by its zone-local slot;
            // its number is in its job's view.
            let jobs = if status.unplaced.is_empty() {
                Vec::new()
            } else {
                api.call(|c| c.jobs())?
            };
            print!("{}", render_status(&status, &jobs));
        }
        Command::Status { job: Some(name) } => {
            let job = api.call(|c| c.job(&name))?;
            if cli.json {
                return print_json(&job);
            }
            print!("{}", render_job_status(&job));
        }
        Command::Logs {
            job,
            instance,
            stderr,
            tail,
            follow,
        } => {
            let stream = if stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            let tail = LogQuery {
                tail: Some(usize::try_from(tail).unwrap_or(usize::MAX)),
                ..LogQuery::default()
            };
            let chunk = api.call(|c| c.instance_log(&job, instance, stream, &tail))?;
            if cli.json && !follow {
                return print_json(&chunk);
            }
            print!("{}", chunk.data);
            if !follow {
                return Ok(());
            }
            let mut offset = chunk.next_offset;
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let from = LogQuery {
                    offset: Some(offset),
                    ..LogQuery::default()
                };
                let chunk = api.call(|c| c.instance_log(&job, instance, stream, &from))?;
                print!("{}", chunk.data);
                use std::io::Write;
                let _ = std::io::stdout().flush();
                offset = chunk.next_offset;
            }
        }
        Command::Updateidlelimit { limit, zone } => {
            let request = IdleLimitRequest {
                limit,
                zone: zone.clone(),
            };
            let status = api.call(|c| c.set_idle_limit(&request))?;
            if cli.json {
                return print_json(&status);
            }
            match zone {
                Some(zone) => println!("idle limit in {zone}: {limit}"),
                None => println!("idle limit in every zone: {limit}"),
            }
        }
        Command::Deploylog { job, instance } => {
            let logs = api.call(|c| c.deploy_log(&job, instance))?;
            if cli.json {
                return print_json(&logs);
            }
            print!("{}", render_deploy_logs(&logs));
        }
        Command::Dns => {
            let status = api.call(|c| c.dns())?;
            if cli.json {
                return print_json(&status);
            }
            print!("{}", render_dns(&status));
        }
        Command::Events { limit } => {
            let events = api.call(|c| c.events(Some(limit)))?;
            if cli.json {
                return print_json(&events);
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        cerebro_types::time::format_rfc3339_ms(e.at_ms),
                        e.kind.category().to_string(),
                        e.subject.name().to_string(),
                        e.message.clone(),
                    ]
                })
                .collect();
            print_table(&["WHEN", "KIND", "SUBJECT", "WHAT"], &rows);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // A closed pipe (`cerebro events | head`) ends the CLI quietly, as it
    // ends every Unix filter, instead of panicking in println!.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // A URL given with --cluster is remembered once the cluster answers
    // (`Api::settle`), whatever then becomes of the command.
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cerebro: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// An instance's deployment in a table cell: its state and release, and
/// for a failure the step that failed (`cerebro deploylog` has the rest).
fn deploy_cell(deploy: Option<&cerebro_types::deploy::DeployStatus>) -> String {
    use cerebro_types::deploy::DeployState;
    let Some(deploy) = deploy else {
        return "-".into();
    };
    match (deploy.state, &deploy.step) {
        (DeployState::Failed, Some(step)) => {
            format!("{} {} at {step}", deploy.state, deploy.release)
        }
        (DeployState::Installing | DeployState::Checking, Some(step)) => {
            format!("{} {} ({step})", deploy.state, deploy.release)
        }
        _ => format!("{} {}", deploy.state, deploy.release),
    }
}

/// Milliseconds as people read them: `850 ms`, `3.2 s`, `2 min 5 s`.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// `cerebro deploylog`: per instance, its attempts newest first, each
/// step with its outcome, duration, exit code and output tail (indented).
fn render_deploy_logs(logs: &[cerebro_types::deploy::InstanceDeployLog]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let word = |text: String| text.replace('_', " ");
    for log in logs {
        let _ = writeln!(
            out,
            "instance {} ({} in {}, on {})",
            log.instance,
            log.task,
            log.zone,
            log.machine.as_deref().unwrap_or("no machine")
        );
        if let Some(error) = &log.error {
            let _ = writeln!(out, "  cannot read its deploy log: {error}");
        }
        if log.attempts.is_empty() && log.error.is_none() {
            let _ = writeln!(out, "  no deployment attempts");
        }
        for attempt in &log.attempts {
            let outcome = word(
                serde_json::to_value(attempt.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            );
            let took = attempt
                .finished_ms
                .map(|end| {
                    format!(
                        ", took {}",
                        human_ms(end.saturating_sub(attempt.started_ms))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  release {} (version {}), attempt {}: {outcome}, started {}{took}",
                attempt.release,
                attempt.version.as_deref().unwrap_or("-"),
                attempt.attempt,
                cerebro_types::time::format_rfc3339_ms(attempt.started_ms),
            );
            for step in &attempt.steps {
                let outcome = word(
                    serde_json::to_value(step.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                );
                let _ = writeln!(
                    out,
                    "    {}: {outcome}, {}, exit code {}{}",
                    step.label,
                    human_ms(step.duration_ms),
                    step.exit_code.map_or("-".into(), |c| c.to_string()),
                    if step.detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", step.detail)
                    }
                );
                for line in step.output.lines() {
                    let _ = writeln!(out, "      | {line}");
                }
            }
        }
    }
    out
}

/// A flag's whole number, refused in plain words rather than clap's
/// own (`invalid digit found in string`).
fn whole_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| "must be a whole number, 0 or more (such as 0, 1 or 50)".to_string())
}

/// A flag's number of seconds (`30`, `1.5`), refused in plain words.
fn seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("must be a number of seconds, 0 or more (such as 30 or 1.5)".to_string()),
    }
}

/// What `updatejobcfg --dry-run` prints: each planned instance by its
/// job-wide number (`?` from a cluster too old to tell it) with its zone
/// and machine (or why it has none), the machines to provision, and the
/// cluster's warnings (a plan past `max_machines`).
fn dry_run_text(reply: &PlanReply) -> String {
    use std::fmt::Write;
    let number = |key: &InstanceKey| {
        reply
            .number_of(key)
            .map_or("?".to_string(), |n| n.to_string())
    };
    let mut rows = Vec::new();
    for a in &reply.plan.assignments {
        rows.push(vec![
            a.key.job.clone(),
            number(&a.key),
            a.key.zone.clone(),
            a.machine.clone(),
        ]);
    }
    for u in &reply.plan.unplaced {
        rows.push(vec![
            u.key.job.clone(),
            number(&u.key),
            u.key.zone.clone(),
            format!("({})", u.reason),
        ]);
    }
    let mut out = format_table(&["JOB", "#", "ZONE", "MACHINE"], &rows);
    let _ = writeln!(
        out,
        "dry run: nothing applied; {} new machine(s) would be provisioned",
        reply.plan.provision.len()
    );
    for warning in &reply.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// `figure/capacity` in cores (`0.40/2`), never `-0.00`: the numbers the
/// overview and the machine page show as `0.40 of 2 cores`.
fn cores_of(figure: f64, capacity: f64) -> String {
    format!("{}/{}", cores(figure), capacity_cores(capacity))
}

/// `figure/capacity` in MB (`128/1200`), as [`cores_of`].
fn mb_of(figure: f64, capacity: f64) -> String {
    format!("{}/{}", trim(figure, 0), trim(capacity, 0))
}

/// `cerebro listjobs`: each job's health, its running (by health) of
/// desired instances, layout, version, update, run mode, and every
/// instance's ports (`#N address:port`).
fn render_jobs(jobs: &[JobView]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let zones: Vec<String> = j
                .spec
                .deployment_layout
                .iter()
                .map(|(zone, layout)| format!("{zone}:{}", layout.cpu))
                .collect();
            let ports: Vec<String> = j
                .instances
                .iter()
                .filter(|i| !i.ports.is_empty())
                .map(|i| format!("#{} {}", i.index, endpoints_text(i)))
                .collect();
            vec![
                j.name.clone(),
                j.health.to_string(),
                format!("{}/{}", j.running_instances, j.desired_instances),
                if let Some(master) = &j.spec.linked_job {
                    format!("linked to {master}")
                } else {
                    zones.join(" ")
                },
                j.version.clone().unwrap_or_else(|| "-".into()),
                j.generation.to_string(),
                match &j.rollout {
                    Some(r) if r.stopped.is_some() => "stopped".into(),
                    Some(_) => "rolling".into(),
                    None => "-".into(),
                },
                match j.run_mode() {
                    RunMode::Started => "started",
                    RunMode::Stopped => "stopped",
                    RunMode::Auto => "auto",
                    RunMode::OnStart => "on startjob",
                }
                .into(),
                if ports.is_empty() {
                    "-".into()
                } else {
                    ports.join(" ")
                },
            ]
        })
        .collect();
    format_table(
        &[
            "JOB", "HEALTH", "RUNNING", "LAYOUT", "VERSION", "GEN", "UPDATE", "RUNS", "PORTS",
        ],
        &rows,
    )
}

/// An instance's endpoints compactly: the address alone for a single
/// port, else `name=address` comma-separated.
fn endpoints_text(instance: &InstanceView) -> String {
    let endpoints = instance.endpoints();
    match endpoints.as_slice() {
        [(_, address)] => address.clone(),
        _ => endpoints
            .iter()
            .map(|(name, address)| format!("{name}={address}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// `cerebro status`: the headline, instances and jobs by health, the
/// zones' reservations, provisioning trouble, and each unplaced instance
/// by its job-wide number (looked up by zone and slot in `jobs`).
fn render_status(status: &ClusterStatus, jobs: &[JobView]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} ({} provider): {} jobs, {} machines, {}/{} instances running",
        status.cluster,
        status.provider,
        status.jobs,
        status.machines,
        status.instances.running,
        status.instances.total()
    );
    let _ = writeln!(out, "instances: {}", instances_text(&status.instances));
    let _ = writeln!(out, "jobs: {}", jobs_text(&status.jobs_by_health));
    let rows: Vec<Vec<String>> = status
        .zones
        .iter()
        .map(|z| {
            vec![
                z.zone.clone(),
                z.machines.to_string(),
                format!("{}/{}", z.idle_machines, z.idle_limit),
                cores_of(z.reserved.cpu, z.capacity.cpu),
                mb_of(z.reserved.mem_mb, z.capacity.mem_mb),
            ]
        })
        .collect();
    out.push_str(&format_table(
        &[
            "ZONE",
            "MACHINES",
            "IDLE/LIMIT",
            "RESERVED CORES",
            "RESERVED MB",
        ],
        &rows,
    ));
    for zone in &status.zones {
        if let Some(error) = &zone.provisioning_error {
            let _ = writeln!(
                out,
                "provisioning in {} fails: {} ({} failures in a row; next attempt at {})",
                zone.zone,
                error.message,
                error.failures,
                cerebro_types::time::format_rfc3339_ms(error.next_attempt_ms)
            );
        }
    }
    for unplaced in &status.unplaced {
        let key = &unplaced.key;
        let number = jobs
            .iter()
            .find(|j| j.name == key.job)
            .and_then(|j| {
                j.instances
                    .iter()
                    .find(|i| i.zone == key.zone && i.slot == key.slot)
            })
            .map(|i| i.index);
        let _ = match number {
            Some(n) => writeln!(
                out,
                "unplaced: {} #{n} ({}): {}",
                key.job, key.zone, unplaced.reason
            ),
            // Never the slot as if it were the number.
            None => writeln!(
                out,
                "unplaced: {} (an instance in {}): {}",
                key.job, key.zone, unplaced.reason
            ),
        };
    }
    out
}

/// A list of names in one cell: comma-separated, or `-` for none.
fn names_cell(names: &[String]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// `cerebro listmachines`: one row per machine: what placement reserved
/// on it and what its instances use (measured), each of its capacity, in
/// cores and MB (the overview's and machine page's numbers), its DNS
/// names last (the widest column).
fn render_machines(machines: &[cerebro_types::cluster::MachineView]) -> String {
    let mut rows: Vec<Vec<String>> = machines
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.zone.clone(),
                m.state.as_str().to_string(),
                m.address.clone().unwrap_or_else(|| "-".into()),
                cores_of(m.reserved.cpu, m.capacity.cpu),
                mb_of(m.reserved.mem_mb, m.capacity.mem_mb),
                cores_of(m.used.cpu, m.capacity.cpu),
                mb_of(m.used.mem_mb, m.capacity.mem_mb),
                m.instances.len().to_string(),
            ]
        })
        .collect();
    let mut headers = vec![
        "MACHINE",
        "ZONE",
        "STATE",
        "ADDRESS",
        "RESERVED CORES",
        "RESERVED MB",
        "USED CORES",
        "USED MB",
        "INSTANCES",
    ];
    add_provider_columns(machines, &mut headers, &mut rows);
    headers.push("DNS");
    for (row, machine) in rows.iter_mut().zip(machines) {
        row.push(names_cell(&machine.dns_names));
    }
    format_table(&headers, &rows)
}

/// `cerebro status JOB`: the job's headline (its health and instances by
/// health), its `ZONE.basename` names, recipe and rollout, then its
/// instances: number, zone, machine, health, restarts (all, and within
/// the crash-loop window), violations, `N.ZONE.basename` for a job with
/// a `dns_basename`, ports, and why it is not running or how it last
/// ended.
fn render_job_status(job: &cerebro_types::cluster::JobView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {}, {}/{} running ({}), generation {}{}",
        job.name,
        job.health,
        job.running_instances,
        job.desired_instances,
        instances_text(&job.health_counts),
        job.generation,
        job.version
            .as_ref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default()
    );
    let with_dns = job.spec.dns_basename.is_some()
        || !job.dns_names.is_empty()
        || job.instances.iter().any(|i| i.dns_name.is_some());
    if !job.dns_names.is_empty() {
        let _ = writeln!(out, "dns names: {}", job.dns_names.join(", "));
    } else if let Some(basename) = &job.spec.dns_basename {
        let _ = writeln!(out, "dns names: none yet (dns_basename {basename})");
    }
    if let Some(recipe) = &job.recipe {
        let _ = writeln!(
            out,
            "recipe {} ({}, sha256 {})",
            recipe.name,
            recipe.source,
            &recipe.sha256[..recipe.sha256.len().min(12)]
        );
    }
    if let Some(stop) = job.rollout.as_ref().and_then(|r| r.stopped.as_ref()) {
        let _ = writeln!(out, "rolling update stopped: {stop}");
    }
    let with_deploy = job.recipe.is_some() || job.instances.iter().any(|i| i.deploy.is_some());
    let with_ports = job.instances.iter().any(|i| !i.ports.is_empty());
    let rows: Vec<Vec<String>> = job
        .instances
        .iter()
        .map(|i| {
            let mut row = vec![
                i.index.to_string(),
                i.zone.clone(),
                i.machine.clone().unwrap_or_else(|| "-".into()),
                i.health.to_string(),
                i.pid.map_or("-".into(), |p| p.to_string()),
                cores(i.cpu_cores),
                trim(i.rss_bytes as f64 / (1024.0 * 1024.0), 1),
                i.restarts.to_string(),
                i.recent_restarts.to_string(),
                i.violations.to_string(),
            ];
            if with_deploy {
                row.push(deploy_cell(i.deploy.as_ref()));
            }
            if with_dns {
                row.push(i.dns_name.clone().unwrap_or_else(|| "-".into()));
            }
            if with_ports {
                row.push(ports_cell(i));
            }
            // Last: the widest column.
            row.push(i.why().unwrap_or_else(|| "-".into()));
            row
        })
        .collect();
    let mut headers = vec![
        "#",
        "ZONE",
        "MACHINE",
        "HEALTH",
        "PID",
        "CPU",
        "RSS MB",
        "RESTARTS",
        "IN 5 MIN",
        "VIOLATIONS",
    ];
    if with_deploy {
        headers.push("DEPLOY");
    }
    if with_dns {
        headers.push("DNS");
    }
    if with_ports {
        headers.push("PORTS");
    }
    headers.push("WHY");
    out.push_str(&format_table(&headers, &rows));
    out
}

/// An instance's allocated ports for `status JOB`: `name=address:port`,
/// comma-separated; `-` for none.
fn ports_cell(instance: &cerebro_types::cluster::InstanceView) -> String {
    let endpoints = instance.endpoints();
    if endpoints.is_empty() {
        return "-".into();
    }
    endpoints
        .iter()
        .map(|(name, address)| format!("{name}={address}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `cerebro dns`: the provider, when it last matched, its failure streak
/// and conflicts, then every RRset Cerebro wants, one per line (TXT
/// values quoted as dig prints them, several values comma-separated).
fn render_dns(status: &cerebro_types::dns::DnsStatus) -> String {
    use cerebro_types::dns::RecordType;
    use cerebro_types::time::format_rfc3339_ms;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = write!(
        out,
        "dns: {}, zone {}, ttl {} s",
        status.kind,
        status.zone.as_deref().unwrap_or("-"),
        status.ttl
    );
    if let Some(listen) = &status.listen {
        let _ = write!(out, ", answering on {listen} (UDP and TCP)");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "last sync: {}",
        status
            .last_sync_ms
            .map_or("never".into(), format_rfc3339_ms)
    );
    if let Some(error) = &status.error {
        let _ = writeln!(
            out,
            "failing: {} ({} failures in a row; next attempt at {})",
            error.message,
            error.failures,
            format_rfc3339_ms(error.next_attempt_ms)
        );
    }
    for name in &status.conflicts {
        let _ = writeln!(
            out,
            "conflict: {name} is held by another owner (no ownership record of this cluster); left alone"
        );
    }
    if status.desired.is_empty() {
        out.push_str("no records wanted (no job with a dns_basename has instances)\n");
        return out;
    }
    let rows: Vec<Vec<String>> = status
        .desired
        .iter()
        .map(|set| {
            let values: Vec<String> = set
                .values
                .iter()
                .map(|v| match set.rtype {
                    RecordType::Txt => format!("\"{v}\""),
                    RecordType::A | RecordType::Aaaa => v.clone(),
                })
                .collect();
            vec![
                set.name.clone(),
                set.rtype.to_string(),
                set.ttl.to_string(),
                values.join(", "),
            ]
        })
        .collect();
    out.push_str(&format_table(&["NAME", "TYPE", "TTL", "VALUES"], &rows));
    out
}

/// Adds what the provider told of the machines (provider id, instance
/// type, region / AZ, addresses) as columns, each only when some machine
/// has it; none at all when no machine has details (the local provider's).
fn add_provider_columns(
    machines: &[cerebro_types::cluster::MachineView],
    headers: &mut Vec<&str>,
    rows: &mut [Vec<String>],
) {
    if machines.iter().all(|m| m.details.is_empty()) {
        return;
    }
    type Column = fn(&cerebro_types::cluster::MachineView) -> Option<String>;
    let columns: [(&str, Column); 5] = [
        ("PROVIDER ID", |m| m.provider_id.clone()),
        ("TYPE", |m| m.details.instance_type.clone()),
        ("REGION/AZ", |m| m.details.region_and_zone()),
        ("PRIVATE", |m| m.details.private_address.clone()),
        ("PUBLIC", |m| m.details.public_address.clone()),
    ];
    for (header, value) in columns {
        let values: Vec<Option<String>> = machines.iter().map(value).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        headers.push(header);
        for (row, value) in rows.iter_mut().zip(values) {
            row.push(value.unwrap_or_else(|| "-".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::cluster::{InstanceState, MachineState, MachineView};
    use cerebro_types::deploy::{
        AttemptOutcome, DeployAttempt, InstanceDeployLog, StepOutcome, StepRecord,
    };
    use cerebro_types::health::{HealthCounts, InstanceHealth, JobHealth};
    use cerebro_types::machine::Resources;

    fn instance(index: usize, zone: &str, machine: &str, dns: Option<&str>) -> InstanceView {
        InstanceView {
            index,
            job: "ticker".into(),
            zone: zone.into(),
            slot: index as u32,
            task_name: format!("ticker#{index}"),
            machine: Some(machine.into()),
            state: InstanceState::Running,
            pid: Some(100 + index as u32),
            restarts: 0,
            violations: 0,
            cpu_cores: 0.0,
            rss_bytes: 0,
            started_at_ms: None,
            generation: 1,
            deploy: None,
            dns_name: dns.map(str::to_string),
            ports: Default::default(),
            host: None,
            health: cerebro_types::health::InstanceHealth::Running,
            wanted_running: true,
            pending: None,
            last_exit: None,
            recent_restarts: 0,
        }
    }

    fn machine(id: &str, zone: &str, dns_names: &[&str]) -> MachineView {
        MachineView {
            id: id.into(),
            zone: zone.into(),
            provider: "local".into(),
            provider_id: None,
            details: Default::default(),
            address: Some("127.0.0.1:4100".into()),
            state: MachineState::Ready,
            capacity: Resources {
                cpu: 2.0,
                mem_mb: 1024.0,
            },
            reserved: Resources {
                cpu: 0.25,
                mem_mb: 64.0,
            },
            created_ms: 0,
            last_seen_ms: None,
            missed_polls: 0,
            instances: Vec::new(),
            used: Resources::default(),
            vitals: None,
            orphans: Vec::new(),
            dns_names: dns_names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn job(text: &str, instances: Vec<InstanceView>, dns_names: &[&str]) -> JobView {
        let spec = cerebro_types::job_file::parse_jobs(text, "test.conf")
            .unwrap()
            .remove(0);
        JobView {
            name: spec.name().to_string(),
            spec,
            version: None,
            generation: 1,
            created_ms: 0,
            updated_ms: 0,
            desired_instances: instances.len(),
            running_instances: instances.len(),
            health_counts: instances
                .iter()
                .fold(HealthCounts::default(), |mut counts, i| {
                    counts.add(i.health);
                    counts
                }),
            instances,
            health: cerebro_types::health::JobHealth::Healthy,
            rollout: None,
            run_requested: None,
            recipe: None,
            dns_names: dns_names.iter().map(|n| n.to_string()).collect(),
        }
    }

    const TICKER: &str = r#"{"dns_basename": "ticker.cerebro.test",
        "deployment_layout": {"local-a": {"cpu": 1}, "local-b": {"cpu": 1}},
        "task_configuration": {"name": "ticker", "command": "sleep 1000"}}"#;

    /// Every argument of every command (positional or flag, global ones
    /// included) explains itself in `cerebro help COMMAND`, and so does every
    /// command: an argument added without a doc comment fails here.
    /// A number flag given something else is refused in plain words, and
    /// an instance named twice is one.
    #[test]
    fn number_flags_are_refused_in_plain_words() {
        use clap::Parser;
        for args in [
            &["cerebro", "logs", "web", "--instance", "abc"][..],
            &["cerebro", "events", "--limit", "-"],
            &["cerebro", "restart", "web", "-i", "1.5"],
            &["cerebro", "updateidlelimit", "x"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(
                error.contains("must be a whole number, 0 or more") && !error.contains("digit"),
                "{args:?}: {error}"
            );
        }
        let error = Cli::try_parse_from(["cerebro", "updatejob", "web", "--min-healthy", "soon"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be a number of seconds"), "{error}");
    }

    #[test]
    fn every_command_and_argument_has_help() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let blank = arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty());
                if blank {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{path} (the command itself)"));
                }
                walk(sub, &path, missing);
            }
        }
        let mut command = Cli::command();
        // Built as clap builds it for `--help`, so its own help and version
        // flags and the `help` command are walked too.
        command.build();
        let mut missing = Vec::new();
        walk(&command, "cerebro", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn help_of_a_command_explains_its_positionals_and_flags() {
        use clap::CommandFactory;
        let help = |name: &str| {
            Cli::command()
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help()
                .to_string()
        };
        let logs = help("logs");
        for text in [
            "<JOB>",
            "The job's name",
            "--instance <N>",
            "its number in `cerebro status JOB`",
            "--stderr",
            "standard error",
            "--tail <LINES>",
        ] {
            assert!(logs.contains(text), "{text:?} in\n{logs}");
        }
        let restart = help("restart");
        for text in [
            "--instance <N>",
            "--all",
            "Restart every instance",
            "updatejob",
        ] {
            assert!(restart.contains(text), "{text:?} in\n{restart}");
        }
        assert!(help("updatejobcfg").contains("<FILES>..."));
        assert!(help("updateidlelimit").contains("Only this zone"));
        assert!(help("events").contains("How many events"));
    }

    #[test]
    fn restart_takes_instances_or_all_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["cerebro", "restart"], args].concat());
        let Command::Restart { job, instance, all } = parse(&["web", "-i", "2", "--instance", "0"])
            .unwrap()
            .command
        else {
            panic!("not restart");
        };
        assert_eq!((job.as_str(), instance, all), ("web", vec![2, 0], false));
        assert!(parse(&["web", "--all", "-i", "1"]).is_err());
        // Neither: parsed, then refused in words naming both and updatejob.
        assert!(parse(&["web"]).is_ok());
        let which = restart_which("web");
        for text in [
            "--instance N",
            "--all",
            "cerebro status web",
            "cerebro updatejob web",
        ] {
            assert!(which.contains(text), "{text:?} in {which}");
        }
    }

    #[test]
    fn the_cluster_url_says_where_it_came_from() {
        let saved = || {
            Some((
                "http://saved:30000/".to_string(),
                PathBuf::from("/cfg/cli.toml"),
            ))
        };
        let (url, source) =
            choose_cluster(Some("http://flag:1"), Some("http://env:2".into()), saved()).unwrap();
        assert_eq!((url.as_str(), &source), ("http://flag:1", &UrlSource::Flag));
        assert_eq!(source.hint(), "");
        let (url, source) = choose_cluster(None, Some("http://env:2".into()), saved()).unwrap();
        assert_eq!((url.as_str(), &source), ("http://env:2", &UrlSource::Env));
        // An empty env var is as good as none.
        let (url, source) = choose_cluster(None, Some(String::new()), saved()).unwrap();
        assert_eq!(url, "http://saved:30000");
        assert_eq!(
            source.hint(),
            " (the URL saved in /cfg/cli.toml; pass --cluster to use another)"
        );
        let (url, source) = choose_cluster(None, None, None).unwrap();
        assert_eq!(
            (url.as_str(), source),
            (DEFAULT_CLUSTER, UrlSource::Default)
        );
        let error = choose_cluster(
            None,
            None,
            Some(("ftp://x".into(), PathBuf::from("/cfg/cli.toml"))),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "the URL saved in /cfg/cli.toml 'ftp://x' is not an http:// or https:// URL"
        );
    }

    #[test]
    fn listmachines_shows_each_machines_names_or_a_dash() {
        let text = render_machines(&[
            machine(
                "local-a-1",
                "local-a",
                &[
                    "0.local-a.ticker.cerebro.test",
                    "0.local-a.web.cerebro.test",
                ],
            ),
            machine("local-b-2", "local-b", &[]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("INSTANCES  DNS"), "{text}");
        assert!(
            lines[1].ends_with("0.local-a.ticker.cerebro.test,0.local-a.web.cerebro.test"),
            "{text}"
        );
        assert!(lines[2].starts_with("local-b-2"), "{text}");
        assert!(lines[2].ends_with(" -"), "{text}");
    }

    #[test]
    fn status_of_a_job_shows_its_zone_names_and_each_instances_name() {
        let view = job(
            TICKER,
            vec![
                instance(
                    0,
                    "local-a",
                    "local-a-1",
                    Some("0.local-a.ticker.cerebro.test"),
                ),
                instance(1, "local-b", "local-b-2", None),
            ],
            &["local-a.ticker.cerebro.test", "local-b.ticker.cerebro.test"],
        );
        let text = render_job_status(&view);
        assert!(
            text.lines().any(|l| l
                == "dns names: local-a.ticker.cerebro.test, local-b.ticker.cerebro.test"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with('#')).unwrap();
        let table = lines[header..].join("\n");
        assert!(lines[header].contains("  DNS  "), "{text}");
        assert_eq!(cell(&table, "0", "DNS"), "0.local-a.ticker.cerebro.test");
        assert_eq!(cell(&table, "1", "DNS"), "-");

        // A basename whose names are not there yet says so.
        let waiting = render_job_status(&job(TICKER, Vec::new(), &[]));
        assert!(
            waiting.contains("dns names: none yet (dns_basename ticker.cerebro.test)"),
            "{waiting}"
        );
        // A job without a basename has no DNS line and no DNS column.
        let plain = job(
            r#"{"deployment_layout": {"local-a": {"cpu": 1}},
                "task_configuration": {"name": "plain", "command": "sleep 1000"}}"#,
            vec![instance(0, "local-a", "local-a-1", None)],
            &[],
        );
        let text = render_job_status(&plain);
        assert!(!text.contains("dns"), "{text}");
        assert!(!text.contains("DNS"), "{text}");
    }

    #[test]
    fn status_of_a_job_shows_each_instances_ports_at_its_machine() {
        let mut web = instance(0, "local-a", "local-a-1", None);
        web.ports = [("http".to_string(), 20017u16)].into();
        web.host = Some("127.0.0.1".into());
        let pending = instance(1, "local-b", "local-b-2", None);
        let text = render_job_status(&job(TICKER, vec![web, pending], &[]));
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with('#')).unwrap();
        let table = lines[header..].join("\n");
        assert_eq!(cell(&table, "0", "PORTS"), "http=127.0.0.1:20017");
        assert_eq!(cell(&table, "1", "PORTS"), "-");
    }

    /// A cell of `table` (as `format_table` prints it) by its header, in
    /// the row whose first cell is `first`: columns are found by the
    /// header's position, so a test reads what a person reads.
    fn cell(table: &str, first: &str, header: &str) -> String {
        let lines: Vec<&str> = table.lines().collect();
        let head = lines
            .iter()
            .find(|l| l.starts_with(table.split_whitespace().next().unwrap()))
            .unwrap();
        let start = head
            .find(header)
            .unwrap_or_else(|| panic!("{header} in {table}"));
        let row = lines
            .iter()
            .find(|l| l.split("  ").next() == Some(first))
            .unwrap_or_else(|| panic!("row {first} in {table}"));
        let rest: String = row.chars().skip(start).collect();
        // Up to the next column: two blanks (cells hold single blanks).
        rest.split("  ").next().unwrap_or("").trim().to_string()
    }

    #[test]
    fn listjobs_shows_health_running_by_health_and_ports() {
        let mut web = instance(0, "local-a", "local-a-1", None);
        web.ports = [("http".to_string(), 20017u16)].into();
        web.host = Some("127.0.0.1".into());
        let mut looping = instance(1, "local-b", "local-b-2", None);
        looping.health = InstanceHealth::CrashLooping;
        let mut view = job(TICKER, vec![web, looping], &[]);
        view.health = JobHealth::Degraded;
        view.running_instances = 1;
        let mut quiet = job(
            r#"{"deployment_layout": {"local-a": {"cpu": 1}},
                "task_configuration": {"name": "quiet", "command": "sleep 1000"}}"#,
            vec![instance(0, "local-a", "local-a-1", None)],
            &[],
        );
        quiet.name = "quiet".into();
        let text = render_jobs(&[view, quiet]);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("JOB     HEALTH    RUNNING"),
            "{text}"
        );
        assert_eq!(cell(&text, "ticker", "HEALTH"), "degraded");
        assert_eq!(cell(&text, "ticker", "RUNNING"), "1/2");
        assert_eq!(cell(&text, "ticker", "PORTS"), "#0 127.0.0.1:20017");
        assert_eq!(cell(&text, "quiet", "HEALTH"), "healthy");
        assert_eq!(cell(&text, "quiet", "PORTS"), "-");
    }

    #[test]
    fn status_of_a_job_shows_health_why_restarts_and_violations() {
        use cerebro_types::health::{ExitReason, Pending};
        use cerebro_types::task::{ExitStatus, Violation, ViolationKind};
        let mut oom = instance(0, "local-a", "local-a-1", None);
        oom.health = InstanceHealth::CrashLooping;
        oom.restarts = 12;
        oom.recent_restarts = 4;
        oom.violations = 12;
        oom.last_exit = Some(ExitReason {
            at_ms: 1,
            status: Some(ExitStatus::Signal(9)),
            violation: Some(Violation {
                kind: ViolationKind::Memory,
                measured: 210.0 * 1024.0 * 1024.0,
                limit: 128.0 * 1024.0 * 1024.0,
                by_kernel: true,
            }),
            by_request: false,
        });
        let mut waiting = instance(1, "local-b", "-", None);
        waiting.machine = None;
        waiting.health = InstanceHealth::Pending;
        waiting.pending = Some(Pending::new(
            "waiting_for_machine",
            "waiting for a new machine in local-b",
        ));
        let mut view = job(TICKER, vec![oom, waiting], &[]);
        view.health = JobHealth::Failing;
        view.running_instances = 0;
        let text = render_job_status(&view);
        assert!(
            text.starts_with(
                "ticker: failing, 0/2 running (0 running · 1 crash-looping · 1 pending of 2 instances)"
            ),
            "{text}"
        );
        let table = &text[text.find("\n#").unwrap() + 1..];
        assert_eq!(cell(table, "0", "HEALTH"), "crash-looping");
        assert_eq!(cell(table, "0", "RESTARTS"), "12");
        assert_eq!(cell(table, "0", "IN 5 MIN"), "4");
        assert_eq!(cell(table, "0", "VIOLATIONS"), "12");
        assert!(table.lines().nth(1).unwrap().ends_with(
            "killed by the kernel for memory: 210.0 MB used, limit 128.0 MB (killed by signal 9)"
        ), "{text}");
        assert_eq!(cell(table, "1", "HEALTH"), "pending");
        assert_eq!(cell(table, "1", "MACHINE"), "-");
        assert!(
            table
                .lines()
                .nth(2)
                .unwrap()
                .ends_with("waiting for a new machine in local-b"),
            "{text}"
        );
    }

    fn status_with(unplaced: Vec<cerebro_types::cluster::Unplaced>) -> ClusterStatus {
        let mut instances = HealthCounts::default();
        for health in [
            InstanceHealth::Running,
            InstanceHealth::Running,
            InstanceHealth::CrashLooping,
            InstanceHealth::Pending,
        ] {
            instances.add(health);
        }
        ClusterStatus {
            cluster: "test".into(),
            provider: "local".into(),
            zones: vec![cerebro_types::cluster::ZoneStatus {
                zone: "local-a".into(),
                machines: 1,
                idle_machines: 0,
                idle_limit: 1,
                capacity: Resources {
                    cpu: 2.0,
                    mem_mb: 1200.0,
                },
                // A sum of floats a hair below zero.
                reserved: Resources {
                    cpu: 0.3 - 0.1 - 0.2,
                    mem_mb: -1e-9,
                },
                provisioning_error: None,
            }],
            jobs: 2,
            machines: 1,
            desired_instances: 4,
            running_instances: 2,
            instances,
            jobs_by_health: [(JobHealth::Healthy, 1), (JobHealth::Failing, 1)].into(),
            unplaced,
            uptime_secs: 5,
        }
    }

    #[test]
    fn the_dry_run_names_instances_by_number_and_warns_of_the_machine_limit() {
        use cerebro_types::cluster::{Assignment, Plan, PlannedInstance, Unplaced};
        let key = |zone: &str, slot| InstanceKey {
            job: "web".into(),
            zone: zone.into(),
            slot,
        };
        let reply = PlanReply {
            jobs: vec!["web".into()],
            plan: Plan {
                assignments: vec![Assignment {
                    key: key("local-a", 0),
                    machine: "local-a-1".into(),
                }],
                provision: Vec::new(),
                unplaced: vec![Unplaced {
                    key: key("local-b", 0),
                    need: cerebro_types::job::Need {
                        cpu: 0.1,
                        mem_mb: 64.0,
                    },
                    reason: "the cluster's limit of 8 machines (max_machines) is reached".into(),
                }],
            },
            warnings: vec![
                "the plan needs 11 new machines in zone local-b but max_machines (8, with 3 machines already) lets only 5 be added"
                    .into(),
            ],
            numbers: vec![
                PlannedInstance {
                    key: key("local-a", 0),
                    number: 0,
                },
                PlannedInstance {
                    key: key("local-b", 0),
                    number: 1,
                },
            ],
        };
        let text = dry_run_text(&reply);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["JOB", "#", "ZONE", "MACHINE"]
        );
        assert!(lines[1].starts_with("web  0  local-a  local-a-1"), "{text}");
        assert!(
            lines[2].starts_with("web  1  local-b  (the cluster's limit"),
            "{text}"
        );
        assert!(
            text.contains(
                "warning: the plan needs 11 new machines in zone local-b but max_machines (8, with 3 machines already) lets only 5 be added"
            ),
            "{text}"
        );
    }

    #[test]
    fn cluster_status_counts_by_health_and_names_unplaced_by_number() {
        use cerebro_types::cluster::{InstanceKey, Unplaced};
        // local-b's slot 1 is the job's instance 2: never "#1".
        let mut third = instance(2, "local-b", "-", None);
        third.slot = 1;
        let mut second = instance(1, "local-b", "local-b-1", None);
        second.slot = 0;
        let jobs = [job(
            TICKER,
            vec![instance(0, "local-a", "local-a-1", None), second, third],
            &[],
        )];
        let unplaced = |zone: &str, slot: u32| Unplaced {
            key: InstanceKey {
                job: "ticker".into(),
                zone: zone.into(),
                slot,
            },
            need: cerebro_types::job::Need {
                cpu: 0.5,
                mem_mb: 64.0,
            },
            reason: "no machine of local-b has room".into(),
        };
        let text = render_status(
            &status_with(vec![unplaced("local-b", 1), unplaced("local-c", 0)]),
            &jobs,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "cluster test (local provider): 2 jobs, 1 machines, 2/4 instances running"
        );
        assert_eq!(
            lines[1],
            "instances: 2 running · 1 crash-looping · 1 pending of 4 instances"
        );
        assert_eq!(lines[2], "jobs: 1 healthy · 1 failing");
        assert!(lines[3].contains("RESERVED CORES  RESERVED MB"), "{text}");
        assert!(lines[4].ends_with("0.00/2          0/1200"), "{text}");
        assert!(!text.contains("-0"), "{text}");
        assert!(
            text.contains("unplaced: ticker #2 (local-b): no machine of local-b has room"),
            "{text}"
        );
        assert!(
            text.contains("unplaced: ticker (an instance in local-c): "),
            "{text}"
        );
        assert!(!text.contains("#1"), "{text}");
    }

    #[test]
    fn listmachines_labels_reserved_and_used_and_never_prints_negative_zero() {
        let mut busy = machine("local-a-1", "local-a", &[]);
        busy.reserved = Resources {
            cpu: 0.4,
            mem_mb: 128.0,
        };
        busy.used = Resources {
            cpu: 1.314,
            mem_mb: 11.4,
        };
        let mut emptied = machine("local-b-1", "local-b", &[]);
        // What is left of a sum once its instances went: a hair below zero.
        emptied.reserved = Resources {
            cpu: 0.3 - 0.1 - 0.2,
            mem_mb: -0.0001,
        };
        let text = render_machines(&[busy, emptied]);
        assert_eq!(cell(&text, "local-a-1", "RESERVED CORES"), "0.40/2");
        assert_eq!(cell(&text, "local-a-1", "RESERVED MB"), "128/1024");
        assert_eq!(cell(&text, "local-a-1", "USED CORES"), "1.31/2");
        assert_eq!(cell(&text, "local-a-1", "USED MB"), "11/1024");
        assert_eq!(cell(&text, "local-b-1", "RESERVED CORES"), "0.00/2");
        assert_eq!(cell(&text, "local-b-1", "RESERVED MB"), "0/1024");
        assert!(!text.contains("-0"), "{text}");
    }

    #[test]
    fn dns_shows_the_provider_its_trouble_and_every_wanted_rrset() {
        use cerebro_types::dns::{DnsErrorView, DnsStatus, RecordSet, RecordType};
        let set = |name: &str, rtype, values: &[&str]| RecordSet {
            name: name.into(),
            rtype,
            ttl: 60,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let status = DnsStatus {
            kind: "embedded".into(),
            zone: Some("cerebro.test".into()),
            ttl: 60,
            listen: Some("127.0.0.1:8600".into()),
            desired: vec![
                set(
                    "0.local-a.ticker.cerebro.test",
                    RecordType::A,
                    &["127.0.0.1"],
                ),
                set(
                    "0.local-a.ticker.cerebro.test",
                    RecordType::Txt,
                    &["heritage=cerebro,cerebro/owner=local"],
                ),
                set(
                    "local-a.ticker.cerebro.test",
                    RecordType::A,
                    &["127.0.0.1", "127.0.0.2"],
                ),
            ],
            last_sync_ms: Some(1_000),
            error: Some(DnsErrorView {
                message: "update: REFUSED: not authorized".into(),
                failures: 3,
                next_attempt_ms: 61_000,
            }),
            conflicts: vec!["1.local-b.ticker.cerebro.test".into()],
        };
        let text = render_dns(&status);
        for line in [
            "dns: embedded, zone cerebro.test, ttl 60 s, answering on 127.0.0.1:8600 (UDP and TCP)",
            "last sync: 1970-01-01T00:00:01.000Z",
            "failing: update: REFUSED: not authorized (3 failures in a row; next attempt at 1970-01-01T00:01:01.000Z)",
            "conflict: 1.local-b.ticker.cerebro.test is held by another owner (no ownership record of this cluster); left alone",
            "NAME                           TYPE  TTL  VALUES",
            "0.local-a.ticker.cerebro.test  A     60   127.0.0.1",
            "0.local-a.ticker.cerebro.test  TXT   60   \"heritage=cerebro,cerebro/owner=local\"",
            "local-a.ticker.cerebro.test    A     60   127.0.0.1, 127.0.0.2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let idle = render_dns(&DnsStatus {
            kind: "none".into(),
            ttl: 60,
            ..DnsStatus::default()
        });
        assert_eq!(
            idle,
            "dns: none, zone -, ttl 60 s\nlast sync: never\nno records wanted (no job with a dns_basename has instances)\n"
        );
    }

    #[test]
    fn a_deploy_log_shows_each_step_and_its_output_indented() {
        let logs = vec![
            InstanceDeployLog {
                instance: 0,
                zone: "local-a".into(),
                task: "web#0".into(),
                machine: Some("local-a-1".into()),
                attempts: vec![DeployAttempt {
                    release: "v2-0123456789ab".into(),
                    version: Some("v2".into()),
                    attempt: 2,
                    outcome: AttemptOutcome::Failed,
                    started_ms: 0,
                    finished_ms: Some(3200),
                    steps: vec![
                        StepRecord {
                            index: 0,
                            label: "step 1 (fetch)".into(),
                            outcome: StepOutcome::Succeeded,
                            started_ms: 0,
                            duration_ms: 850,
                            exit_code: None,
                            detail: "fetched 1 KiB, sha256 ok".into(),
                            output: String::new(),
                        },
                        StepRecord {
                            index: 1,
                            label: "step 2 (run \"install\")".into(),
                            outcome: StepOutcome::TimedOut,
                            started_ms: 850,
                            duration_ms: 2350,
                            exit_code: Some(137),
                            detail: "timed out after 2 s".into(),
                            output: "installing\nstill installing\n".into(),
                        },
                    ],
                }],
                error: None,
            },
            InstanceDeployLog {
                instance: 1,
                zone: "local-b".into(),
                task: "web#0".into(),
                machine: Some("local-b-2".into()),
                attempts: Vec::new(),
                error: Some("machine 'local-b-2' did not answer: refused".into()),
            },
        ];
        let text = render_deploy_logs(&logs);
        for line in [
            "instance 0 (web#0 in local-a, on local-a-1)",
            "  release v2-0123456789ab (version v2), attempt 2: failed, started 1970-01-01T00:00:00.000Z, took 3.2 s",
            "    step 1 (fetch): succeeded, 850 ms, exit code - (fetched 1 KiB, sha256 ok)",
            "    step 2 (run \"install\"): timed out, 2.4 s, exit code 137 (timed out after 2 s)",
            "      | installing",
            "      | still installing",
            "instance 1 (web#0 in local-b, on local-b-2)",
            "  cannot read its deploy log: machine 'local-b-2' did not answer: refused",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
