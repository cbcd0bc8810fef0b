fn main() {
    expcluster_build_support::link_libtorch();
    // libtorch's fused optimizer kernels, which tch does not bind (src/fused.rs).
    expcluster_build_support::compile_against_libtorch("expcluster_fused", &["csrc/fused.cpp"]);
}
