#!/usr/bin/env bash
# Builds llama.cpp through the llama-cpp-python package into a venv in effbench's cache, for
# scripts/llamacpp_perplexity.py (llama.cpp's perplexity figures that the real-model tests
# compare with). Idempotent; the build takes ~10 min on 2 cores. Prints the venv's python path.
# Never time llama.cpp through this binding: its per-call overhead understates llama.cpp's speed;
# scripts/compare_llamacpp.py runs llama.cpp's own llama-bench (scripts/build-llamacpp-tools.sh).
set -euo pipefail
CACHE="${EFFBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/effbench}"
VENV="$CACHE/llama-venv"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
if ! "$VENV/bin/python" -c "import llama_cpp, numpy; assert llama_cpp.__version__ == '$VERSION'" 2>/dev/null; then
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  # Native build: the comparison is only fair if llama.cpp uses this CPU's SIMD as we do.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/pip" install --quiet "llama-cpp-python==$VERSION" numpy >&2
fi
echo "$VENV/bin/python"
