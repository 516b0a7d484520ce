//! `cerebrod`: the clustersitter under the name the original installed it as.

fn main() -> std::process::ExitCode {
    cerebrod::main_entry()
}
