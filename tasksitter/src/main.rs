use std::path::PathBuf;
use std::process::{exit, ExitCode};
use tasksitter::cli::Cli;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == tasksitter::GUARD_SUBCOMMAND)
    {
        let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        exit(tasksitter::supervisor::guard_main(&dirs));
    }
    tasksitter::DAEMON.main(Cli::into_config, |config, listener, shutdown| async move {
        let code = tasksitter::serve(config, listener, shutdown).await?;
        // A shell code is 0..=255; anything else would be a bug, reported as 1.
        Ok::<_, tasksitter::SitterError>(u8::try_from(code).unwrap_or(1))
    })
}
