//! The `lro` command, built in this package because cargo hands integration tests the paths of
//! their own package's binaries only: `tests/tests/it/cli.rs` runs it as an operator would.

fn main() -> std::process::ExitCode {
    lro_cli::main()
}
