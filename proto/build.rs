fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps a fresh machine free of manual installs.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/job.proto",
            "proto/cluster.proto",
            "proto/exchange.proto",
            "proto/raft.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
