//! Generates the gRPC client and message types from the project's protos, as they are in `protos/`.

use std::env;
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    // Imports in the protos are relative to `protos/` (e.g. "plasma/common/v1/common.proto").
    let protos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protos");
    let edge = protos.join("plasma/edge/v1/edge.proto");

    // A `protoc` named by PROTOC wins; otherwise the one vendored by protoc-bin-vendored, so that the build needs
    // nothing but cargo. Its include directory holds the well-known types (google/protobuf/timestamp.proto).
    let mut config = prost_build::Config::new();
    let protoc = match env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    let well_known = protoc_bin_vendored::include_path()?;

    // Client stubs only; edge.proto pulls in plasma.common.v1 through its import, and google.protobuf.Timestamp
    // maps to prost_types::Timestamp.
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_with_config(config, &[edge], &[protos.clone(), well_known])?;

    // prost-build emits no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed={}", protos.join("plasma").display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
