//! Build-script helper shared by every package whose binaries or test executables
//! link libtorch (through tch).
//!
//! `cargo:rustc-link-arg` only reaches the binaries and tests of the package whose
//! build script prints it, so each such package calls [`link_libtorch`] from its own
//! `build.rs`. It does two things the torch-sys build does not:
//!
//! - an rpath to libtorch's `lib/`, so binaries run without `LD_LIBRARY_PATH`;
//! - `--no-as-needed -ltorch_cuda`, because with the default `--as-needed` the linker
//!   drops `libtorch_cuda.so` (nothing references it by symbol) and CUDA then reports
//!   unavailable on a GPU machine.
//!
//! [`compile_against_libtorch`] builds a package's own C++ (libtorch functions tch does
//! not bind) with the flags torch-sys uses for its wrapper.

use std::path::PathBuf;

/// Emits the link arguments for libtorch found through `LIBTORCH` (set by
/// `.cargo/config.toml` to the `.libtorch` link that `scripts/setup.sh` makes).
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:warning=LIBTORCH is not set: run scripts/setup.sh first");
        return;
    };
    // Resolve the `.libtorch` symlink so the rpath names the real, cached location.
    let libtorch = libtorch.canonicalize().unwrap_or(libtorch);
    let lib_dir = libtorch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// Compiles `sources` (C++ calling libtorch) into a static library named `name` that
/// the calling package links, with torch-sys's flags (C++17, the wheel's C++11 ABI)
/// and include paths. Files that include only the `ATen/ops/*.h` they need compile
/// in seconds; the autograd headers take about ten.
pub fn compile_against_libtorch(name: &str, sources: &[&str]) {
    for source in sources {
        println!("cargo:rerun-if-changed={source}");
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run scripts/setup.sh first (it links .libtorch)");
    };
    let libtorch = libtorch.canonicalize().unwrap_or(libtorch);
    cc::Build::new()
        .cpp(true)
        .files(sources)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile(name);
    // After the static library, so its references to ATen resolve.
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
