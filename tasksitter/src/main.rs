use clap::error::ErrorKind;
use clap::Parser;
use std::path::PathBuf;
use std::process::exit;
use tasksitter::cli::Cli;

/// Exit status for bad flags and failures to start, as clap uses for usage errors.
const USAGE_ERROR: i32 = 2;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == tasksitter::GUARD_SUBCOMMAND)
    {
        let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        exit(tasksitter::supervisor::guard_main(&dirs));
    }
    cerebro_web::logging::init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            error.exit()
        }
        Err(error) => {
            // clap's message may continue on indented lines before a blank line; keep it to one line.
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            eprintln!("tasksitter: {} (see --help)", message.join(" "));
            exit(USAGE_ERROR);
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("tasksitter: error: {errors}");
            exit(USAGE_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tasksitter: error: cannot start the runtime: {error}");
            exit(USAGE_ERROR);
        }
    };
    match runtime.block_on(tasksitter::run(config)) {
        Ok(code) => exit(code),
        Err(error) => {
            eprintln!("tasksitter: error: {error}");
            exit(USAGE_ERROR);
        }
    }
}
