//! Compiles the shipped protos (../proto) with protox — no system protoc — into the gRPC
//! server and client code, and keeps the descriptor set for reflection-based JSON checks.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "google/longrunning/operations.proto",
    "google/rpc/error_details.proto",
    "lro/v1/jobs.proto",
    "lro/v1/operation_metadata.proto",
    "lro/v1/error.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(PROTOS, ["../proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("lro_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
