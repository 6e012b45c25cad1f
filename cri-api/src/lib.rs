//! Types, clients and servers generated from the Kubernetes CRI v1 protobuf definitions
//! (`proto/v1.proto`; see `Cargo.toml` for where it comes from).

pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
