//! Compiles `proto/*.proto` with protox (pure Rust: there is no protoc here)
//! and hands the descriptors to prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/bep.proto", "proto/local.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        .bytes([".bep.Response.data"])
        .compile_fds(descriptors)?;
    Ok(())
}
