//! The `lro-worker` command line with the built-in kinds, built in this package because cargo
//! hands integration tests the paths of their own package's binaries only: the fault tests run it
//! as a real process to kill, pause and resume.

fn main() {
    lro_worker::cli::main(lro_worker::Kinds::builtin());
}
