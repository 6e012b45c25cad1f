fn main() {
    println!("cargo:rerun-if-changed=proto/v1.proto");
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_protos(&["proto/v1.proto"], &["proto/"])
        .unwrap();
}
