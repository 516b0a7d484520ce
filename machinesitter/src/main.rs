use clap::error::ErrorKind;
use clap::Parser;
use machinesitter::config::Cli;
use std::process::exit;

const USAGE_ERROR: i32 = 2;

fn main() {
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
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            eprintln!("machinesitter: {} (see --help)", message.join(" "));
            exit(USAGE_ERROR);
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("machinesitter: error: {errors}");
            exit(USAGE_ERROR);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("machinesitter: error: cannot start the runtime: {error}");
            exit(1);
        }
    };
    if let Err(error) = runtime.block_on(machinesitter::run(config)) {
        eprintln!("machinesitter: error: {error}");
        exit(1);
    }
}
