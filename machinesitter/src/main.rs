use machinesitter::config::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    machinesitter::DAEMON.main(Cli::into_config, |config, listener, shutdown| async move {
        let listener = listener.expect("the machinesitter always listens");
        machinesitter::serve(config, listener, shutdown)
            .await
            .map(|()| 0)
    })
}
