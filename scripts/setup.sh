#!/usr/bin/env bash
# Fresh-machine set-up for expcluster. Idempotent: a second run takes seconds.
#
# Installs, outside the clone (so CI and later builds reuse them):
#   - a Python venv with PyTorch 2.11.0 (the libtorch that tch 0.24 links against),
#     numpy, scipy, scikit-learn and statsmodels (example data and the statistics
#     references; a package added here is pip-installed into the existing venv);
#   - the Debian packages the tests use.
# Prints nothing but progress; `scripts/env.sh` exports the resulting paths.
set -euo pipefail

CACHE_DIR="${EXPCLUSTER_CACHE:-$HOME/.cache/expcluster}"
VENV="$CACHE_DIR/venv"
TORCH_VERSION="2.11.0"
PY_PACKAGES=(numpy scipy scikit-learn statsmodels mcp)
# iproute2, util-linux (nsenter, unshare) and nftables build the namespace cluster of
# the multi-host tests (tests/src/netns.rs); openssl makes the certificates of docs/security.md;
# chromium is the headless browser the dashboard's tests drive (tests/src/browser.rs);
# e2fsprogs (mkfs.ext4) and util-linux (mount -o loop, fsfreeze) make the stalled disks
# of the fault tests (tests/tests/it/faults.rs).
DEBIAN_PACKAGES=(tmux procps iproute2 util-linux nftables openssl chromium e2fsprogs)

mkdir -p "$CACHE_DIR"

install_debian_packages() {
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python_venv() {
    local stamp="$VENV/.expcluster-stamp"
    local want="torch==$TORCH_VERSION ${PY_PACKAGES[*]}"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "setup: creating the Python venv at $VENV (PyTorch $TORCH_VERSION, about 5 GB, once)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" "${PY_PACKAGES[@]}"
    echo "$want" > "$stamp"
}

link_libtorch() {
    # tch builds against the wheel's libtorch; `.cargo/config.toml` points LIBTORCH here.
    local repo torch_dir
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    torch_dir="$(ls -d "$VENV"/lib/python3*/site-packages/torch | head -n 1)"
    ln -sfn "$torch_dir" "$repo/.libtorch"
    # Data-parallel CUDA jobs: cudarc opens `libnccl.so`, the wheel ships only the
    # `libnccl.so.2` that libtorch_cuda loads. A link to that very file in libtorch's
    # lib/ (on every expcluster binary's rpath) lets both share one NCCL.
    local nccl="$torch_dir/../nvidia/nccl/lib/libnccl.so.2"
    if [ -f "$nccl" ]; then
        ln -sfn "../../nvidia/nccl/lib/libnccl.so.2" "$torch_dir/lib/libnccl.so"
    fi
}

prepare_data() {
    # The examples' dataset, made offline from scikit-learn's bundled digits.
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    mkdir -p "$CACHE_DIR/data"
    if [ ! -f "$CACHE_DIR/data/digits.npz" ]; then
        "$VENV/bin/python" "$repo/scripts/prepare_data.py" "$CACHE_DIR/data/digits.npz"
    fi
}

install_debian_packages
install_python_venv
link_libtorch
prepare_data
echo "setup: ready (venv $VENV)"
