#!/usr/bin/env bash
# Builds effbench with `--features cuda` (candle's CUDA backend), also on a machine with no GPU and
# no CUDA toolkit: the compiler comes from PyPI's CUDA 13 wheels, and the NVIDIA driver, which no
# wheel has, is replaced at link time by a stub. The result runs only where a real driver is.
#
#   scripts/build-cuda.sh            # -> target/cuda/release/effbench (stripped)
#
# Environment (all optional):
#   EFFBENCH_CUDA_CACHE   where the wheels' venv, the link folder and the stub live
#                         (default ~/.cache/effbench/cuda, outside the repository)
#   CUDA_HOME             use this CUDA toolkit (with bin/nvcc) instead of the wheels
#   CUDA_COMPUTE_CAP      GPU architecture to build the kernels for (default 90: H100/H200)
#   CARGO_TARGET_DIR      default target/cuda, so the CPU build's target/ is left alone
#   EFFBENCH_CUDA_RUSTFLAGS  default "-C target-cpu=x86-64-v3": the binary runs on the GPU
#                         machine's CPU, not this one, so .cargo/config.toml's target-cpu=native
#                         (which may enable AVX-512 that the GPU host lacks) is overridden.
#   BUILD_JOBS            cargo -j and nvcc's parallelism (default: nproc)
#   EFFBENCH_CUDA_SMOKE   1 (default): after the build, start the binary against the stub driver
#                         and check it reports "built with cuda, no usable GPU" in one line
#
# Why each step (../shared/notes/cuda-build.md has the background):
# - candle-core 0.9.2's `cuda` pulls cudarc 0.19 with `dynamic-linking` and
#   `cuda-version-from-build-system` (it runs `nvcc --version`), and candle-kernels, whose build
#   compiles .cu files with nvcc (bindgen_cuda) and links -lcudart -lstdc++.
# - The wheels ship versioned libraries only (libcublas.so.13); the linker wants -lcublas, so a
#   folder of unversioned symlinks is named by CUDA_ROOT (cudarc adds $CUDA_ROOT/lib to the search;
#   candle-kernels' bindgen_cuda wants $CUDA_ROOT/include/cuda.h, so include/ is linked there too).
# - `dynamic-linking` links -lcuda, the driver. The stub libcuda.so (soname libcuda.so.1) defines
#   every cu* function of cudarc's driver bindings, each returning 34 (CUDA_ERROR_STUB_LIBRARY).
#   It is for linking only: it must never be on a GPU machine's library path.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cache=${EFFBENCH_CUDA_CACHE:-$HOME/.cache/effbench/cuda}
jobs=${BUILD_JOBS:-$(nproc)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
mkdir -p "$cache"

# Pinned to CUDA 13.0: candle JIT-loads PTX through the driver, and newer PTX needs a newer driver.
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85
    "nvidia-cublas<13.1" nvidia-curand==10.4.0.35
)

if [[ -z "${CUDA_HOME:-}" ]]; then
    venv=$cache/venv
    stamp=$venv/.effbench-wheels
    if [[ ! -f $stamp || "$(cat "$stamp")" != "${wheels[*]}" ]]; then
        echo "build-cuda: installing the CUDA 13 wheels into $venv (about 1.2 GB)" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"
        echo "${wheels[*]}" >"$stamp"
    fi
    CUDA_HOME=$("$venv/bin/python" -c \
        'import pathlib, sysconfig; print(pathlib.Path(sysconfig.get_paths()["purelib"], "nvidia", "cu13"))')
fi
export CUDA_HOME
[[ -x $CUDA_HOME/bin/nvcc ]] || { echo "build-cuda: no nvcc at $CUDA_HOME/bin/nvcc" >&2; exit 1; }
export PATH=$CUDA_HOME/bin:$PATH
export RAYON_NUM_THREADS=$jobs CUDAFORGE_THREADS=$jobs
echo "build-cuda: $(nvcc --version | grep -m1 release)" >&2

# The link folder: unversioned names for what the linker asks for, and the driver stub.
root=$cache/link
mkdir -p "$root/lib"
for lib in cudart cublas cublasLt curand nvrtc; do
    found=$(find -L "$CUDA_HOME"/lib* -maxdepth 1 -name "lib$lib.so*" 2>/dev/null | sort | head -n 1 || true)
    if [[ -z $found ]]; then
        echo "build-cuda: lib$lib.so not found under $CUDA_HOME" >&2
        exit 1
    fi
    ln -sfn "$found" "$root/lib/lib$lib.so"
done

# candle-kernels' build (bindgen_cuda) looks for include/cuda.h under CUDA_PATH or CUDA_ROOT.
ln -sfn "$CUDA_HOME/include" "$root/include"

# Generate the stub from the cudarc that this build resolves (its driver bindings).
cudarc_dir=$(cargo metadata --format-version 1 --features effbench/cuda --locked 2>/dev/null |
    python3 -c 'import json, sys, os
pk = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
pk.sort(key=lambda p: [int(x) for x in p["version"].split(".")[:3]])
print(os.path.dirname(pk[-1]["manifest_path"]))')
bindings=$cudarc_dir/src/driver/sys/mod.rs
[[ -f $bindings ]] || cargo fetch --locked >/dev/null
stub_c=$root/cuda_stub.c
{
    echo "/* Link-only stand-in for the NVIDIA driver, generated from $bindings. */"
    echo "/* Every function returns 34, CUDA_ERROR_STUB_LIBRARY. Never load it on a GPU machine. */"
    grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$bindings" | awk '{print $4}' | sort -u |
        sed 's/.*/int &(void) { return 34; }/'
} >"$stub_c.new"
if ! cmp -s "$stub_c.new" "$stub_c" || [[ ! -f $root/lib/libcuda.so ]]; then
    mv "$stub_c.new" "$stub_c"
    cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$root/lib/libcuda.so" "$stub_c"
else
    rm -f "$stub_c.new"
fi
export CUDA_ROOT=$root

export RUSTFLAGS=${EFFBENCH_CUDA_RUSTFLAGS:--C target-cpu=x86-64-v3}
echo "build-cuda: cargo build --release --features cuda into $CARGO_TARGET_DIR" >&2
cargo build --release --locked -j "$jobs" -p effbench --features cuda

bin=$CARGO_TARGET_DIR/release/effbench
strip "$bin"
echo "build-cuda: built $bin ($(du -h "$bin" | cut -f1)); it needs these at load time:" >&2
readelf -d "$bin" | awk '/NEEDED/ {print "  " $NF}' >&2

# Smoke test, here where there is no GPU: with the stub standing in for the driver, the binary
# must start, know it was built with `cuda`, and turn the driver's refusal into one line.
if [[ "${EFFBENCH_CUDA_SMOKE:-1}" == 1 ]]; then
    smoke=$(mktemp -d)
    trap 'rm -rf "$smoke"' EXIT
    ln -s "$root/lib/libcuda.so" "$smoke/libcuda.so.1"
    run_stub() { LD_LIBRARY_PATH="$smoke:$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin" "$@"; }
    run_stub hw --json | python3 -c 'import json, sys
c = json.load(sys.stdin)["gpu_compute"]
assert c["built_with_cuda"] is True and c["auto_device"] == "cpu", c
assert "no usable CUDA GPU" in c["reason"], c
print("build-cuda: smoke test: starts, built_with_cuda, and with no GPU:", c["reason"][:90] + "...", file=sys.stderr)'
    if err=$(run_stub generate --device cuda -p hi -m /nonexistent.gguf 2>&1); then
        echo "build-cuda: smoke test: --device cuda should have failed without a GPU" >&2
        exit 1
    fi
    [[ $(grep -c '^error:' <<<"$err") == 1 && $err == *"no usable CUDA GPU"* ]] || {
        echo "build-cuda: smoke test: want one error line about the GPU, got: $err" >&2
        exit 1
    }
fi
echo "build-cuda: run it only where the NVIDIA driver (libcuda.so.1) and the CUDA 13 libraries" >&2
echo "  (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10) are; never with the stub." >&2
