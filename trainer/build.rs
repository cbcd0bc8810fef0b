fn main() {
    expcluster_build_support::link_libtorch();
    // libtorch functions tch does not bind (src/native): the fused optimizer kernels,
    // a oneDNN-backed linear layer (with and without its ReLU) and a one-pass
    // cross-entropy.
    // The header the sources share (build-support watches the sources only).
    println!("cargo:rerun-if-changed=csrc/handed_over.h");
    expcluster_build_support::compile_against_libtorch(
        "expcluster_native",
        &[
            "csrc/fused_optim.cpp",
            "csrc/onednn_linear.cpp",
            "csrc/cross_entropy.cpp",
        ],
    );
}
