//! Code generated from the shipped protos (`proto/`, compiled by `build.rs`): the upstream
//! google.longrunning / google.rpc types and lro.v1, with gRPC servers and clients.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod lro {
    pub mod v1 {
        tonic::include_proto!("lro.v1");
    }
}

/// The encoded `google.protobuf.FileDescriptorSet` of every shipped proto and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lro_descriptor.bin"));
