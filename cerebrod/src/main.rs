//! The clustersitter daemon, with the EC2 and Route 53 providers built in.

fn main() -> std::process::ExitCode {
    cerebrod::main_entry()
}
