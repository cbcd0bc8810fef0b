//! Generates the gRPC code from `expcluster/v1/*.proto` with a vendored `protoc`, so a
//! fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure().compile_protos(&["expcluster/v1/expcluster.proto"], &["."])?;
    println!("cargo:rerun-if-changed=expcluster/v1");
    Ok(())
}
