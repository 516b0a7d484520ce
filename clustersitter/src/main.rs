fn main() -> std::process::ExitCode {
    clustersitter::main_entry()
}
