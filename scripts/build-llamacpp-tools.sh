#!/usr/bin/env bash
# Builds llama.cpp's own command-line tools (llama-perplexity, llama-bench, llama-quantize,
# llama-tokenize, llama-completion) from the source the llama-cpp-python sdist vendors, into effbench's cache, for
# the peer checks (never through a binding): scripts/compare_llamacpp.py times llama-bench and
# derives GGUFs with llama-quantize; the peer_*.py scripts run llama-perplexity;
# scripts/llamacpp_token_ids.py records llama-tokenize's ids; scripts/peer_generation.py runs
# llama-completion's greedy decoding for LAMBADA and GSM8K. Idempotent: builds only the
# tools missing. Prints the directory holding the binaries. ~10 min on 2 cores from scratch.
#
# AMX is turned off: on these virtual machines the CPU reports AMX, so -march=native compiles
# llama.cpp's AMX matmul in, and that kernel segfaults on its first call here. Explicit -mno-amx-*
# flags win over -march=native whatever their order.
set -euo pipefail
CACHE="${EFFBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/effbench}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
ROOT="$CACHE/llama.cpp-$VERSION"
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
BIN="$SRC/build/bin"
TOOLS=(llama-perplexity llama-bench llama-quantize llama-tokenize llama-completion)
missing=()
for tool in "${TOOLS[@]}"; do
  [ -x "$BIN/$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mkdir -p "$ROOT"
  if [ ! -d "$SRC" ]; then
    pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$ROOT" >&2
    tar xzf "$ROOT/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
  fi
  command -v cmake >/dev/null && command -v ninja >/dev/null || pip install cmake ninja >&2
  cmake -S "$SRC" -B "$SRC/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    -DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_OPENSSL=OFF >&2
  cmake --build "$SRC/build" -j"$(nproc)" --target "${missing[@]}" >&2
fi
echo "$BIN"
