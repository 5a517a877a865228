//! `lro`, the operators' command; everything is in the library (`lro_cli`), which the tests run
//! as the same program.

fn main() -> std::process::ExitCode {
    lro_cli::main()
}
