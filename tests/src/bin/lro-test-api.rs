//! The `lro-api` binary itself, compiled from its own `main.rs` in this package because cargo
//! hands integration tests the paths of their own package's binaries only: the TLS tests run it
//! as a real process to see what it says and how it exits at start.

include!("../../../api/src/main.rs");
