//! The `lro-api` command line, built in this package because cargo hands integration tests the
//! paths of their own package's binaries only: the tests run it as a real process to see what an
//! operator sees (the refusal to start, the audit log).

fn main() {
    lro_api::cli::main();
}
