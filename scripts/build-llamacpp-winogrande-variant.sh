#!/usr/bin/env bash
# Builds a variant of llama.cpp's llama-perplexity whose --winogrande scoring is changed in one or
# both of the two ways it differs from effbench's partial scoring, for the experiment in
# results/peer-winogrande. Only tools/perplexity/perplexity.cpp is recompiled (a sed-patched
# copy), linked against the libraries scripts/build-llamacpp-tools.sh built; nothing in the
# llama.cpp tree is changed. Prints the path of the variant's binary.
#
#   scripts/build-llamacpp-winogrande-variant.sh keep-last          # mean over every continuation token
#   scripts/build-llamacpp-winogrande-variant.sh always-partial     # partial scoring also for short tails
#   scripts/build-llamacpp-winogrande-variant.sh keep-last,always-partial
#   scripts/build-llamacpp-winogrande-variant.sh none             # unchanged: checks this recipe
#
# keep-last: llama.cpp leaves the continuation's last token out of its mean (`last_1st`,
#   `last_2nd`); the variant keeps it, as effbench does.
# always-partial: when either sentence has 3 or fewer tokens after the shared ones
#   (`k_min_trailing_ctx = 3`), llama.cpp scores from the first differing token, the option word
#   included; the variant sets the threshold to 0, so the continuation after the option is always
#   what is scored, as in effbench.
set -euo pipefail
PATCHES="${1:?usage: $0 none|keep-last|always-partial|keep-last,always-partial}"
CACHE="${EFFBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/effbench}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
SRC="$CACHE/llama.cpp-$VERSION/llama_cpp_python-$VERSION/vendor/llama.cpp"
BIN="$SRC/build/bin"
OUT="$CACHE/llama.cpp-$VERSION/winogrande-variants/${PATCHES//,/+}"
mkdir -p "$OUT"
cp "$SRC/tools/perplexity/perplexity.cpp" "$OUT/perplexity.cpp"
IFS=, read -ra LIST <<< "$PATCHES"
for p in "${LIST[@]}"; do
  case "$p" in
    keep-last)
      sed -i -E 's/(const int last_(1st|2nd) = ).*\? 1 : 0;/\10;/' "$OUT/perplexity.cpp"
      test "$(grep -c 'const int last_1st = 0;\|const int last_2nd = 0;' "$OUT/perplexity.cpp")" = 4 ;;
    always-partial)
      sed -i 's/constexpr int k_min_trailing_ctx = 3;/constexpr int k_min_trailing_ctx = 0;/' "$OUT/perplexity.cpp"
      grep -q 'k_min_trailing_ctx = 0;' "$OUT/perplexity.cpp" ;;
    none) ;;
    *) echo "unknown patch $p" >&2; exit 2 ;;
  esac
done
diff -u "$SRC/tools/perplexity/perplexity.cpp" "$OUT/perplexity.cpp" > "$OUT/patch.diff" || true
FLAGS=(-DGGML_BACKEND_SHARED -DGGML_SHARED -DGGML_USE_CPU -DLLAMA_SHARED -std=c++17 -O3 -DNDEBUG
       -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
       -I"$SRC/tools/perplexity" -I"$SRC/common" -I"$SRC/vendor" -I"$SRC/include" -I"$SRC/ggml/include")
c++ "${FLAGS[@]}" -o "$OUT/llama-perplexity" "$SRC/tools/perplexity/main.cpp" "$OUT/perplexity.cpp" \
  -L"$BIN" -Wl,-rpath,"$BIN" -lllama-common -lllama -lggml -lggml-base -lpthread >&2
echo "$OUT/llama-perplexity"
