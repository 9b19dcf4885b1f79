//! Compiles the Talos API subset in `proto/` with protox (pure Rust, no protoc) and
//! generates prost messages plus tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/common/common.proto",
        "proto/machine/machine.proto",
        "proto/cluster/cluster.proto",
        "proto/google/rpc/status.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // MemInfo is handed to callers as is (all 48 fields); serde makes it JSON-ready.
        .type_attribute(
            "machine.MemInfo",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
