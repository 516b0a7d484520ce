use std::path::PathBuf;
use std::process::exit;
use tasksitter::cli::Cli;

/// Exit status for bad flags and failures to start, as clap uses for usage errors.
const USAGE_ERROR: i32 = cerebro_web::daemon::USAGE_ERROR as i32;

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
    let cli: Cli = match cerebro_web::daemon::parse_flags("tasksitter") {
        Ok(cli) => cli,
        Err(_) => exit(USAGE_ERROR),
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
