//! The clustersitter daemon, with the EC2 provider built in.

fn main() -> std::process::ExitCode {
    clustersitter::main_entry_with(&cerebro_ec2::Ec2Factory)
}
