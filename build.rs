fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/monitor.proto");
    // A position-dependent executable: with PIE, the loader relocates .data.rel.ro in
    // every process, so each per-pod monitor carried a private copy (about 450 KiB
    // measured). Linked non-PIE the linker resolves those relocations and the pages stay
    // clean and shared with the daemon. Shared libraries are still randomized; Go's
    // containerd shims are non-PIE too.
    println!("cargo:rustc-link-arg-bin=crius=-no-pie");
    prost_build::compile_protos(&["proto/monitor.proto"], &["proto/"])?;
    Ok(())
}
