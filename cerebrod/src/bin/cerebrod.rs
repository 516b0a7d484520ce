//! `cerebrod`: the clustersitter under the name the original installed it as.

fn main() -> std::process::ExitCode {
    clustersitter::main_entry_with(&cerebro_ec2::Ec2Factory)
}
