#!/usr/bin/env bash
# The GPU checks of the GPU issue, in two halves: `prepare` here (where Rust and the registries
# are), `run` on the GPU machine (no Rust, no network, at most 64 MiB carried per call).
#
#   scripts/build-cuda.sh                 # here: the cuda binary (target/cuda/release/effbench)
#   scripts/gpu-check.sh prepare          # here: target/gpu-bundle/ and its carry plan
#   # then, on the GPU machine, one call per carry group (printed by prepare), in quick
#   # succession (a machine keeps carried files only while it stays warm), the last one with:
#   scripts/gpu-check.sh run [all|ppl|mmlu|bench|batch|synthetic|cost]
#
# `run` rebuilds the model from its parts and checks every file's sha256 (and effbench's own
# catalogue checksums), then:
#   ppl    perplexity of SmolLM2-135M-Instruct on WikiText-2, GPU vs this machine's CPU:
#          must agree within 0.5% (GPU_CHECK_PPL_CHUNKS windows of 512, default 40)
#   mmlu   mmlu-lite (0-shot) on the GPU and the CPU, techniques GPU_CHECK_TECHNIQUES
#          (default as-stored,f16; plain names such as int4, int4-g32, not student:...): the same
#          answer on >= 99% of items; the GPU run also records
#          speed and NVML (peak VRAM, power, J/token, SM clock) in its report.json
#   bench  pp512/tg128 at batch 1 on GPU and CPU, per technique (GPU_CHECK_TECHNIQUES)
#   batch  throughput by batch size on the GPU: serve-bench, contiguous cache, every request
#          at once, --max-running over GPU_CHECK_BATCHES (default 1,8,32,64,128); the best batch
#          is the one with the highest output tok/s
#   synthetic  f16 decode (tg128) and prefill (pp512) at published shapes with random weights
#          made on the device, labelled synthetic (GPU_CHECK_SHAPES, default
#          qwen2.5-1.5b,llama-3.1-8b), as a share of the GPU's peak memory bandwidth (NVML's
#          bus width and memory clock)
#   cost   $/1M output tokens at the GPU's list price (harness/report/prices.toml, matched on
#          the NVML name, or GPU_CHECK_USD_PER_HOUR) at batch 1 and at the best batch, against
#          the source article's "a 1000-token conversation costs about $0.01" ($10 per 1M)
# Results go to $OUT (the device tool's output folder) or target/gpu-check-out: one folder per
# check, plus summary.md with PASS/FAIL lines. It exits non-zero if a check fails.
#
# A dry run of the plumbing without a GPU: GPU_CHECK_BIN=target/debug/effbench GPU_CHECK_DEVICE=cpu
# GPU_CHECK_PPL_CHUNKS=2 GPU_CHECK_MMLU_ARGS="--items-per-subject 1 --speed-reps 1
# --speed-prompt 64 --speed-gen 16" GPU_CHECK_BENCH_ARGS="-p 64 -n 16 -r 1" GPU_CHECK_BATCHES=1,4
# GPU_CHECK_REQUESTS=8 GPU_CHECK_SERVE_ARGS="--max-model-len 512" scripts/gpu-check.sh run all
# (it compares the CPU with itself).
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=target/gpu-bundle
part_size=${GPU_CHECK_PART_MIB:-27}M

prepare() {
    local bin=${EFFBENCH_CUDA_BIN:-target/cuda/release/effbench}
    [[ -x $bin ]] || {
        echo "gpu-check: no cuda binary at $bin (hint: scripts/build-cuda.sh)" >&2
        exit 1
    }
    local cpu_bin="" c
    for c in "${CARGO_TARGET_DIR:-target}"/{release,debug}/effbench "$(command -v effbench || true)"; do
        if [[ -n $c && -x $c ]]; then
            cpu_bin=$c
            break
        fi
    done
    if [[ -z $cpu_bin ]]; then
        cargo build --release -q -p effbench
        cpu_bin=${CARGO_TARGET_DIR:-target}/release/effbench
    fi
    # Fetch (or verify) the assets with the CPU build; the cuda one needs a driver to start.
    "$cpu_bin" fetch smollm2-135m-instruct wikitext-2 mmlu >&2
    local model wiki mmlu
    model=$(asset_path "$cpu_bin" smollm2-135m-instruct)
    wiki=$(asset_path "$cpu_bin" wikitext-2)
    mmlu=$(asset_path "$cpu_bin" mmlu)
    rm -rf "$bundle"
    mkdir -p "$bundle"
    cp "$bin" "$bundle/effbench"
    cp "$wiki" "$bundle/wiki.test.raw"
    cp "$mmlu" "$bundle/mmlu.jsonl"
    split -b "$part_size" -d -a 2 "$model" "$bundle/model.gguf.part-"
    (
        cd "$bundle"
        sha256sum effbench wiki.test.raw mmlu.jsonl >SHA256SUMS
        sha256sum <"$model" | sed 's/-$/model.gguf/' >>SHA256SUMS
    )
    # Carry groups: each call carries one group, within 64 MiB with the ~4 MiB working tree.
    local groups=("$bundle/effbench $bundle/wiki.test.raw $bundle/mmlu.jsonl $bundle/SHA256SUMS")
    local parts=("$bundle"/model.gguf.part-*)
    for ((i = 0; i < ${#parts[@]}; i += 2)); do
        groups+=("${parts[*]:i:2}")
    done
    {
        echo "# One device-tool call per line, in order and at once (carry = the paths on the line)."
        echo "# Each call may run 'true'; the last one runs: scripts/gpu-check.sh run all"
        printf '%s\n' "${groups[@]}"
    } >"$bundle/CARRY"
    echo "gpu-check: bundle in $bundle ($(du -sh "$bundle" | cut -f1)); carry plan:" >&2
    sed 's/^/  /' "$bundle/CARRY" >&2
}

asset_path() {
    "$1" fetch --list | awk -F'|' -v n="$2" '{gsub(/ /, "", $2)} $2 == n {gsub(/^ +| +$/, "", $6); print $6}'
}

# The CUDA 13 runtime libraries the binary links, wherever this machine keeps them. The driver
# (libcuda.so.1) must be the system's: never put build-cuda.sh's stub on this path.
find_cuda_libs() {
    local bin=$1 missing dirs=()
    missing=$(ldd "$bin" | awk '/not found/ {print $1}' | tr '\n' ' ')
    [[ -z $missing ]] && return 0
    local candidates=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
    while IFS= read -r d; do candidates+=("$d"); done < <(
        python3 - 2>/dev/null <<'EOF'
import glob, site, sys
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for d in glob.glob(sp + "/nvidia/*/lib") + glob.glob(sp + "/nvidia/*/*/lib"):
        print(d)
EOF
    )
    for lib in $missing; do
        for d in "${candidates[@]}"; do
            if [[ -e $d/$lib ]]; then
                dirs+=("$d")
                break
            fi
        done
    done
    if ((${#dirs[@]})); then
        LD_LIBRARY_PATH=$(printf '%s:' "${dirs[@]}" | sort -u)${LD_LIBRARY_PATH:-}
        export LD_LIBRARY_PATH
    fi
    missing=$(ldd "$bin" | awk '/not found/ {print $1}' | tr '\n' ' ')
    if [[ -n $missing ]]; then
        echo "gpu-check: the cuda binary cannot find: $missing (need the NVIDIA driver and CUDA 13 libraries)" >&2
        exit 1
    fi
}

assemble() {
    [[ -f $bundle/SHA256SUMS && -x $bundle/effbench ]] || {
        echo "gpu-check: $bundle is incomplete: carry the groups listed in its CARRY file first" >&2
        exit 1
    }
    if [[ ! -f $bundle/model.gguf ]]; then
        cat "$bundle"/model.gguf.part-* >"$bundle/model.gguf.tmp"
        mv "$bundle/model.gguf.tmp" "$bundle/model.gguf"
    fi
    (cd "$bundle" && sha256sum -c --quiet SHA256SUMS) || {
        echo "gpu-check: checksum mismatch: a part is missing or damaged (carry the groups again)" >&2
        rm -f "$bundle/model.gguf"
        exit 1
    }
    # effbench's own cache layout, so the catalogue checks each file's sha256 once more and the
    # known names (smollm2-135m-instruct, wikitext-2, mmlu) resolve without a network.
    export EFFBENCH_CACHE=$PWD/target/gpu-cache
    mkdir -p "$EFFBENCH_CACHE"/{smollm2-135m-instruct,wikitext-2,mmlu}
    ln -f "$bundle/model.gguf" "$EFFBENCH_CACHE/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    ln -f "$bundle/wiki.test.raw" "$EFFBENCH_CACHE/wikitext-2/wiki.test.raw"
    ln -f "$bundle/mmlu.jsonl" "$EFFBENCH_CACHE/mmlu/mmlu.jsonl"
    E=${GPU_CHECK_BIN:-$bundle/effbench}
    find_cuda_libs "$E"
    "$E" fetch smollm2-135m-instruct wikitext-2 mmlu >&2
}

out_dir() {
    local d=${OUT:-target/gpu-check-out}
    mkdir -p "$d"
    echo "$d"
}

verdict() { # name, pass (0/1), detail
    local line
    if [[ $2 == 1 ]]; then line="PASS $1: $3"; else line="FAIL $1: $3"; fi
    echo "$line" | tee -a "$(out_dir)/summary.md" >&2
    [[ $2 == 1 ]] || failed=1
}

check_ppl() {
    local o chunks=${GPU_CHECK_PPL_CHUNKS:-40}
    o=$(out_dir)/ppl
    mkdir -p "$o"
    "$E" perplexity --device "$GPU" --chunks "$chunks" --json >"$o/cuda.json"
    "$E" perplexity --device cpu --chunks "$chunks" --json >"$o/cpu.json"
    local r
    r=$(python3 - "$o" <<'EOF'
import json, sys
d = sys.argv[1]
g = json.load(open(f"{d}/cuda.json"))["result"]["perplexity"]
c = json.load(open(f"{d}/cpu.json"))["result"]["perplexity"]
rel = abs(g - c) / c
print(f"{int(rel <= 0.005)} GPU {g:.4f} vs CPU {c:.4f}: {100 * rel:.3f}% apart (limit 0.5%)")
EOF
    )
    verdict "perplexity GPU vs CPU" "${r%% *}" "${r#* }"
}

check_mmlu() {
    local o techniques=${GPU_CHECK_TECHNIQUES:-as-stored,f16}
    o=$(out_dir)/mmlu
    mkdir -p "$o"
    # The GPU run keeps its speed test: that is where NVML's figures are recorded.
    # shellcheck disable=SC2086 # extra arguments, split on purpose
    "$E" run --suite mmlu-lite --techniques "$techniques" --device "$GPU" --out "$o" --run-id cuda ${GPU_CHECK_MMLU_ARGS:-}
    # shellcheck disable=SC2086
    "$E" run --suite mmlu-lite --techniques "$techniques" --device cpu --out "$o" --run-id cpu --no-speed ${GPU_CHECK_MMLU_ARGS:-}
    local r
    r=$(python3 - "$o" "$techniques" <<'EOF'
import json, sys
d, techniques = sys.argv[1], sys.argv[2].split(",")
worst, notes = 1.0, []
for t in techniques:
    key = t.replace(":", "_").replace("/", "_")
    read = lambda dev: {r["item"]: r["pred"] for r in map(json.loads, open(f"{d}/{dev}/items-{key}.jsonl"))}
    g, c = read("cuda"), read("cpu")
    same = sum(g[i] == c.get(i) for i in g) / max(len(g), 1)
    worst = min(worst, same)
    notes.append(f"{t} {100 * same:.1f}% of {len(g)}")
print(f"{int(worst >= 0.99)} same answer: " + ", ".join(notes) + " (limit 99%)")
EOF
    )
    verdict "mmlu-lite GPU vs CPU" "${r%% *}" "${r#* }"
    python3 - "$o/cuda/report.json" <<'EOF' | tee -a "$(out_dir)/summary.md" >&2
import json, sys
for t in json.load(open(sys.argv[1]))["techniques"]:
    g = t.get("gpu") or {}
    s = t.get("speed") or {}
    print(f"- {t['technique']} ({t['label']}): pp {s.get('prefill_tok_per_s', 0):.0f} tok/s, "
          f"tg {s.get('decode_tok_per_s', 0):.0f} tok/s, peak VRAM (process) "
          f"{g.get('peak_process_memory_bytes')}, J/token {g.get('joules_per_output_token')}, "
          f"SM clock {g.get('mean_sm_clock_mhz')} MHz, GPU {g.get('name')} "
          f"[{g.get('status')}{': ' + g['reason'] if 'reason' in g else ''}]")
EOF
}

check_bench() {
    local o techniques=${GPU_CHECK_TECHNIQUES:-as-stored,f16}
    o=$(out_dir)/bench
    mkdir -p "$o"
    for t in ${techniques//,/ }; do
        # shellcheck disable=SC2086
        "$E" bench --weights "$t" --device "$GPU" --json ${GPU_CHECK_BENCH_ARGS:-} >"$o/$t-cuda.json"
        # shellcheck disable=SC2086
        "$E" bench --weights "$t" --device cpu --json ${GPU_CHECK_BENCH_ARGS:-} >"$o/$t-cpu.json"
    done
    echo "bench at batch 1 (pp512/tg128): $o" | tee -a "$(out_dir)/summary.md" >&2
}

check_batch() {
    local o best=0 best_b=0
    o=$(out_dir)/batch
    mkdir -p "$o"
    for b in ${GPU_CHECK_BATCHES//,/ }; do
        local n=${GPU_CHECK_REQUESTS:-$((b * 4 > 64 ? b * 4 : 64))}
        # shellcheck disable=SC2086
        "$E" serve-bench --device "$GPU" --cache contiguous --rate inf --requests "$n" \
            --max-running "$b" --out "$o/b$b" --json ${GPU_CHECK_SERVE_ARGS:-} >"$o/b$b.json"
        local tps
        tps=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(round(r["results"][0]["summary"]["output_tok_per_s"], 1))' "$o/b$b.json" 2>/dev/null || echo 0)
        echo "- batch $b: $tps output tok/s" | tee -a "$(out_dir)/summary.md" >&2
        if python3 -c "import sys; sys.exit(0 if float('$tps') > float('$best') else 1)"; then
            best=$tps best_b=$b
        fi
    done
    echo "best batch: $best_b ($best output tok/s)" | tee -a "$(out_dir)/summary.md" >&2
}

check_synthetic() {
    local o
    o=$(out_dir)/synthetic
    mkdir -p "$o"
    for shape in ${GPU_CHECK_SHAPES//,/ }; do
        # shellcheck disable=SC2086
        "$E" bench --synthetic "$shape" --device "$GPU" --json ${GPU_CHECK_SYNTHETIC_ARGS:--p 512 -n 128 -r 3} >"$o/$shape.json"
        python3 - "$o/$shape.json" "$(out_dir)/hw.json" <<'EOF' | tee -a "$(out_dir)/summary.md" >&2
import json, sys
b, hw = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
gpus = hw.get("gpus", {}).get("devices") or []
peak = None
if gpus and gpus[0].get("memory_bus_width_bits") and gpus[0].get("max_memory_clock_mhz"):
    peak = 2 * gpus[0]["max_memory_clock_mhz"] * 1e6 * gpus[0]["memory_bus_width_bits"] / 8
parts = []
for r in b["results"]:
    tps = r["mean_tok_per_s"]
    line = f"{r['test']} {tps:.1f} tok/s"
    if r["test"].startswith("tg"):
        line += (f" = {100 * tps * b['decode_bytes_per_token'] / peak:.1f}% of the {peak / 1e12:.2f} TB/s peak"
                 if peak else " (no GPU peak bandwidth known)")
    parts.append(line)
print(f"- {b['model']} ({b['variant']}) on {b['device']}, {b['weight_bytes'] / 2**30:.2f} GiB: " + ", ".join(parts))
EOF
    done
}

check_cost() {
    python3 - "$(out_dir)" "${GPU_CHECK_USD_PER_HOUR:-}" <<'EOF' | tee -a "$(out_dir)/summary.md" >&2
import glob, json, sys, tomllib
out, override = sys.argv[1], sys.argv[2]
hw = json.load(open(f"{out}/hw.json"))
gpus = hw.get("gpus", {}).get("devices") or []
name = gpus[0]["name"] if gpus else "none"
price, source = None, None
if override:
    price, source = float(override), "GPU_CHECK_USD_PER_HOUR"
else:
    for inst in tomllib.load(open("harness/report/prices.toml", "rb"))["instance"]:
        if any(g in name for g in inst.get("gpu_names", [])):
            price, source = inst["usd_per_hour"], f"prices.toml {inst['name']}"
            break
if price is None:
    print(f"cost: no list price for GPU `{name}` (set GPU_CHECK_USD_PER_HOUR)")
    sys.exit(0)
def per_million(tps):
    return price / (tps * 3600) * 1e6
lines = [f"cost at ${price:.2f}/h ({source}); the article's $0.01 per 1000-token conversation is $10.00 per 1M tokens:"]
for f in sorted(glob.glob(f"{out}/bench/*-cuda.json")) + sorted(glob.glob(f"{out}/synthetic/*.json")):
    b = json.load(open(f))
    for r in b["results"]:
        if r["test"].startswith("tg"):
            d = per_million(r["mean_tok_per_s"])
            lines.append(f"- batch 1, {b['model']} ({b['variant']}): ${d:.2f} per 1M output tokens, ${d / 1000:.4f} per 1000-token conversation")
best = 0.0
for f in glob.glob(f"{out}/batch/b*.json"):
    try:
        best = max(best, json.load(open(f))["results"][0]["summary"]["output_tok_per_s"])
    except (KeyError, IndexError, ValueError):
        pass
if best > 0:
    d = per_million(best)
    lines.append(f"- best batch ({best:.0f} output tok/s, SmolLM2): ${d:.4f} per 1M output tokens, ${d / 1000:.6f} per 1000-token conversation")
print("\n".join(lines))
EOF
}

run_checks() {
    local what=${1:-all}
    GPU_CHECK_BATCHES=${GPU_CHECK_BATCHES:-1,8,32,64,128}
    GPU_CHECK_SHAPES=${GPU_CHECK_SHAPES:-qwen2.5-1.5b,llama-3.1-8b}
    local o
    GPU=${GPU_CHECK_DEVICE:-cuda}
    assemble
    failed=0
    o=$(out_dir)
    nvidia-smi >"$o/nvidia-smi.txt" 2>&1 || true
    "$E" hw --json >"$o/hw.json"
    echo "# GPU check $(date -u +%FT%TZ)" >>"$o/summary.md"
    case $what in
        all) check_ppl && check_mmlu && check_bench && check_batch && check_synthetic && check_cost ;;
        ppl) check_ppl ;;
        mmlu) check_mmlu ;;
        bench) check_bench ;;
        batch) check_batch ;;
        synthetic) check_synthetic ;;
        cost) check_cost ;;
        *)
            echo "gpu-check: unknown check \`$what\` (all, ppl, mmlu, bench, batch, synthetic, cost)" >&2
            exit 2
            ;;
    esac
    return "$failed"
}

case ${1:-} in
    prepare) prepare ;;
    run) run_checks "${2:-all}" ;;
    *)
        echo "usage: scripts/gpu-check.sh prepare | run [all|ppl|mmlu|bench|batch|synthetic|cost]" >&2
        exit 2
        ;;
esac
