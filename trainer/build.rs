fn main() {
    expcluster_build_support::link_libtorch();
    // libtorch functions tch does not bind (src/native): the fused optimizer kernels
    // and a oneDNN-backed linear layer.
    expcluster_build_support::compile_against_libtorch(
        "expcluster_native",
        &["csrc/fused_optim.cpp", "csrc/onednn_linear.cpp"],
    );
}
