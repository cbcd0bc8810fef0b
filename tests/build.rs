fn main() {
    expcluster_build_support::link_libtorch();
}
