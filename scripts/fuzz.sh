#!/usr/bin/env bash
# Coverage-guided fuzzing of effbench's parsers of untrusted input (docs/fuzzing.md).
#
#   scripts/fuzz.sh TARGET SECONDS         one target for SECONDS
#   scripts/fuzz.sh all SECONDS            every target of `cargo fuzz list`, SECONDS each
#   scripts/fuzz.sh --runs N TARGET|all    until N executions, and write results/fuzz/TARGET.json
#                                          (scripts/fuzz-long.sh is this with N = 10 million)
#
# Seeds come from the committed fuzz/seeds/TARGET/ and are copied into fuzz/corpus/TARGET/, which
# libFuzzer grows; the seeds directory itself is never written. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes the script exit nonzero (after the other targets, for `all`).
#
# Environment:
#   CARGO_TARGET_DIR   where the instrumented build goes (default fuzz/target)
#   FUZZ_MAX_SECONDS   with --runs: stop at this many seconds even short of N (the JSON says so)
#   FUZZ_ARGS          extra libFuzzer flags, e.g. "-max_len=65536"
#   FUZZ_BUILD_ARGS    extra cargo-fuzz flags for both build and run, e.g. "--dev": an
#                      unoptimised build compiles in about half the time and runs slower, which
#                      suits CI's short smoke runs
#   FUZZ_JOBS          without --runs: how many targets run at once (default 1), each still
#                      for SECONDS; their output goes to stderr as each one ends
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

runs=""
if [[ "${1:-}" == "--runs" ]]; then
    runs="${2:?--runs needs a count}"
    shift 2
    [[ $# -eq 1 ]] || usage
    target="$1"
    seconds="${FUZZ_MAX_SECONDS:-0}"
else
    [[ $# -eq 2 ]] || usage
    target="$1"
    seconds="$2"
fi
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
jobs="${FUZZ_JOBS:-1}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: FUZZ_JOBS must be a positive count" >&2; exit 2; }
# A campaign's seconds and executions per target are only comparable one target at a time.
[[ -z "$runs" ]] || jobs=1

# The nightly flags cargo-fuzz passes (sanitizers, coverage) are unlocked on stable by this.
export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-fuzz/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [[ "$target" == "all" ]]; then
    mapfile -t targets < <(cargo fuzz list)
else
    targets=("$target")
fi

# One build of every target first: `cargo fuzz run` then only links, and build time is not
# counted against any target's seconds.
build_start=$SECONDS
# shellcheck disable=SC2206 # FUZZ_BUILD_ARGS is a list of flags
build_args=(${FUZZ_BUILD_ARGS:-})
if [[ "$target" == "all" ]]; then
    cargo fuzz build "${build_args[@]}" --target-dir "$target_dir" >&2
else
    cargo fuzz build "${build_args[@]}" --target-dir "$target_dir" "$target" >&2
fi
echo "fuzz.sh: build took $((SECONDS - build_start)) s" >&2

json_escape() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '%s' "$s"
}

# Each target leaves its summary line (and a mark if it failed) here, read back in order.
outcomes="$(mktemp -d)"
trap 'rm -rf "$outcomes"' EXIT

fuzz_one() {
    local t="$1"
    seeds="fuzz/seeds/$t"
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    if [[ $t == safetensors_header ]]; then
        # No weights are committed, so this target's seed is made here: a header with one
        # 2x3 f16 tensor and its 12 data bytes, then a 0 byte and a tiny config.json.
        python3 - "$corpus/generated-f16.bin" <<'PY'
import json, struct, sys
header = json.dumps({"t": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
config = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "vocab_size": 96, "rms_norm_eps": 1e-5, "max_position_embeddings": 512}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + bytes(12) + b"\0" + config)
PY
    elif [[ $t == quant_sidecar ]]; then
        # Likewise: one int4 (groups of 32, symmetric) 2x32 matrix, 36 bytes, as quantize writes.
        python3 - "$corpus/generated-int4.bin" <<'PY'
import json, struct, sys
header = json.dumps({"__metadata__": {"blk.0.ffn_up.weight": "4,32,sym,2,32"},
                     "blk.0.ffn_up.weight": {"dtype": "U8", "shape": [36], "data_offsets": [0, 36]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + bytes(range(36)))
PY
    elif [[ -d "$seeds" ]]; then
        cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    else
        echo "fuzz.sh: warning: no seeds in $seeds" >&2
    fi
    before=$(find "$artifacts" -type f | wc -l)
    # Low memory limits on purpose: an allocation sized by the input must fail the run here
    # rather than pass on a machine with memory to spare.
    flags=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30 -print_final_stats=1)
    if [[ -n "$runs" ]]; then
        flags+=(-runs="$runs")
        [[ "$seconds" -gt 0 ]] && flags+=(-max_total_time="$seconds")
    else
        flags+=(-max_total_time="$seconds")
    fi
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
    flags+=(${FUZZ_ARGS:-})
    command=(cargo fuzz run "${build_args[@]}" --target-dir "$target_dir" "$t" "$corpus" -- "${flags[@]}")
    log="$(mktemp)"
    echo "fuzz.sh: ${command[*]}" >&2
    start=$SECONDS
    status=0
    if [[ "$jobs" -eq 1 ]]; then
        "${command[@]}" 2>&1 | tee "$log" >&2 || status=$?
    else
        "${command[@]}" >"$log" 2>&1 || status=$?
        { echo "fuzz.sh: output of $t:"; cat "$log"; } >&2
    fi
    elapsed=$((SECONDS - start))
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: U/SIZE ...".
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [[ -n "$execs" ]] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
    crashes=$(($(find "$artifacts" -type f | wc -l) - before))
    line="$t: ${execs:-?} executions in ${elapsed} s, cov ${cov:-?} ft ${ft:-?}, corpus ${corp:-?}"
    if [[ $status -ne 0 ]]; then
        line+=", FAILED (exit $status; input in $artifacts/)"
        touch "$outcomes/$t.failed"
        [[ $crashes -gt 0 ]] || crashes=1
    fi
    echo "$line" >"$outcomes/$t.line"
    if [[ -n "$runs" ]]; then
        mkdir -p results/fuzz
        commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
        dirty=false
        # The campaign's own result files do not make the measured code dirty.
        [[ -z "$(git status --porcelain -- . ':!results/fuzz' 2>/dev/null)" ]] || dirty=true
        reached=false
        [[ -n "$execs" && "$execs" -ge "$runs" ]] && reached=true
        cat >"results/fuzz/$t.json" <<EOF
{
  "target": "$t",
  "executions": ${execs:-0},
  "runs_asked": $runs,
  "reached_runs": $reached,
  "seconds": $elapsed,
  "cov": ${cov:-null},
  "ft": ${ft:-null},
  "corpus_size": ${corp:-null},
  "crashes": $crashes,
  "exit_status": $status,
  "git_commit": "$commit",
  "git_dirty": $dirty,
  "command": "$(json_escape "RUSTC_BOOTSTRAP=1 ${command[*]}")"
}
EOF
    fi
    rm -f "$log"
}

for t in "${targets[@]}"; do
    if [[ "$jobs" -eq 1 ]]; then
        fuzz_one "$t"
    else
        while [[ $(jobs -rp | wc -l) -ge "$jobs" ]]; do
            wait -n || true
        done
        fuzz_one "$t" &
    fi
done
wait

failed=()
echo >&2
for t in "${targets[@]}"; do
    if [[ -f "$outcomes/$t.line" ]]; then
        cat "$outcomes/$t.line"
    else
        echo "$t: did not finish (its job stopped before the fuzzer ended)"
        touch "$outcomes/$t.failed"
    fi
    [[ ! -f "$outcomes/$t.failed" ]] || failed+=("$t")
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: crashes or failures in: ${failed[*]} (see docs/fuzzing.md to turn a crash into a test)" >&2
    exit 1
fi
