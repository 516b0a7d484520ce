use machinesitter::config::Cli;
use std::process::exit;

const USAGE_ERROR: i32 = cerebro_web::daemon::USAGE_ERROR as i32;

fn main() {
    cerebro_web::logging::init_tracing();
    let cli: Cli = match cerebro_web::daemon::parse_flags("machinesitter") {
        Ok(cli) => cli,
        Err(_) => exit(USAGE_ERROR),
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
