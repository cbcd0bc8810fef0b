//! Puts libtorch's library directory on the binary's rpath (the bench links the trainer),
//! so `expcluster-bench` starts with no environment.
fn main() {
    expcluster_build_support::link_libtorch();
}
