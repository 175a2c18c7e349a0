fn main() -> std::process::ExitCode {
    writ_cli::main()
}
