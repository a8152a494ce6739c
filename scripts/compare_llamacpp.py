#!/usr/bin/env python3
"""Speed of effbench against llama.cpp's own benchmark, `llama-bench`, on the same GGUF files.

For each case (a model in one format) and each thread count, one row: llama-bench runs, then
`effbench bench` runs, back to back, on the same file, with the same thread count and the same
token counts, before the next row starts. Both are llama-bench's tests: pp N (prefill N tokens in
one batch), tg N (decode N tokens one at a time) and tg N @ dD (decode N tokens after D tokens
already in the KV cache, untimed). llama-bench is run as a binary with `-o json`, never through
a language binding (a binding's per-call overhead makes llama.cpp look slower than it is).
Figures are the median of each engine's repetitions (llama-bench's `samples_ts`, effbench's
`samples_tok_per_s`); the ratio is effbench / llama.cpp.

Each row also gives its roofline: `effbench hw --calibrate` measures this machine's STREAM triad
bandwidth and f32 GEMM peak at each thread count before any model is loaded; a tg row's ceiling
is the bandwidth over the bytes one decode step reads (effbench's `decode_bytes_per_token`:
weights, head, an embedding row, and the mean K/V, the depth's included), a pp row's the GEMM
peak over the flops per prefilled token.

Cases (--cases, comma-separated):
  smollm2-q4_0, smollm2-q8_0, smollm2-f16   SmolLM2-135M-Instruct, written by llama.cpp's own
                                            `llama-quantize --allow-requantize` from the shipped
                                            Q4_1 file (so f16 holds the dequantized Q4_1
                                            weights) and cached in <cache>/derived/
  smollm2-q4_1                              SmolLM2-135M-Instruct as shipped
  qwen0.5b-q4_k_m, qwen1.5b-q4_k_m          Qwen2.5-Coder-0.5B/1.5B-Instruct as shipped
  gemma3-270m-q4_k_m                        Gemma-3-270M as shipped
effbench runs every file with `--weights as-stored`, so both engines read the same tensors.

llama.cpp's tools come from scripts/build-llamacpp-tools.sh (built once from the pinned
llama-cpp-python sdist into the cache; ~10 min on 2 cores). effbench is built with
`cargo build --release -p effbench` unless --effbench names a binary.

The output (--out DIR) records both commits (effbench's `git rev-parse HEAD` and whether the tree
was dirty; llama.cpp's `build_commit` from llama-bench's JSON), the machine (`effbench hw`,
/proc/cpuinfo, the load average before each row), every command run, and every sample:
DIR/results.json (raw) and DIR/README.md (the table). Both are rewritten atomically after each
row, so a run cut short leaves a readable partial record ("complete": false).

Publish only a run at a clean commit on a quiet machine: the figures move with anything else
running (up to 30% between runs on a shared 2-core VM).

Example (the full table):
  scripts/compare_llamacpp.py --threads 1,2 --reps 5 --out results/speed-vs-llama-bench
A quick check of the plumbing:
  scripts/compare_llamacpp.py --cases smollm2-q4_0 --threads 1 --reps 1 --n-prompt 32 \\
      --n-gen 8 --depth 32 --out /tmp/compare-check
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("EFFBENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "effbench"
)

# case -> (effbench asset, llama-quantize type to derive or None, model label, format label)
CASES = {
    "smollm2-q4_0": ("smollm2-135m-instruct", "Q4_0", "SmolLM2-135M-Instruct", "Q4_0 (llama-quantize from Q4_1)"),
    "smollm2-q4_1": ("smollm2-135m-instruct", None, "SmolLM2-135M-Instruct", "Q4_1 as shipped"),
    "smollm2-q8_0": ("smollm2-135m-instruct", "Q8_0", "SmolLM2-135M-Instruct", "Q8_0 (llama-quantize from Q4_1)"),
    "smollm2-f16": ("smollm2-135m-instruct", "F16", "SmolLM2-135M-Instruct", "f16 (llama-quantize from Q4_1)"),
    "qwen0.5b-q4_k_m": ("qwen2.5-coder-0.5b-instruct", None, "Qwen2.5-Coder-0.5B-Instruct", "Q4_K_M as shipped"),
    "qwen1.5b-q4_k_m": ("qwen2.5-coder-1.5b-instruct", None, "Qwen2.5-Coder-1.5B-Instruct", "Q4_K_M as shipped"),
    "gemma3-270m-q4_k_m": ("gemma-3-270m", None, "Gemma-3-270M", "Q4_K_M as shipped"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, commands, **kw):
    """Runs `cmd` (a list), recording it; returns stdout. Stops the script on failure."""
    commands.append(shlex.join(str(c) for c in cmd))
    log("$ " + commands[-1])
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {commands[-1]}\n{p.stderr[-4000:]}")
    return p.stdout


def git(*args):
    p = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def effbench_provenance():
    # As the binary's build script decides it: tracked files, results/ left out.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def effbench_binary(args, commands):
    if args.effbench:
        return Path(args.effbench)
    run(["cargo", "build", "--release", "-p", "effbench", "--quiet"], commands, cwd=ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "effbench"


def llama_bin(args, commands):
    if args.llama_bin:
        return Path(args.llama_bin)
    return Path(run([ROOT / "scripts" / "build-llamacpp-tools.sh"], commands).strip())


def asset_path(binary, name, commands):
    out = run([binary, "fetch", name], commands)
    return Path(out.strip().split(": ", 1)[1])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# GGML type ids (ggml.h) of the formats these files hold; others print as their number.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"}


def gguf_tensor_types(path):
    """How many tensors of each GGML type a GGUF file holds, read from its header, so a row's
    format says what llama-quantize actually wrote (it keeps some tensors in other types)."""
    import struct

    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def skip_string():
            f.seek(read("Q"), 1)

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def skip_value(vtype):
            if vtype == 8:
                skip_string()
            elif vtype == 9:
                inner, n = read("I"), read("Q")
                if inner in scalar:
                    f.seek(n * struct.calcsize(scalar[inner]), 1)
                else:
                    for _ in range(n):
                        skip_value(inner)
            else:
                read(scalar[vtype])

        if f.read(4) != b"GGUF" or read("I") < 2:
            return {}
        n_tensors, n_kv = read("Q"), read("Q")
        for _ in range(n_kv):
            skip_string()
            skip_value(read("I"))
        counts = {}
        for _ in range(n_tensors):
            skip_string()
            f.seek(8 * read("I"), 1)
            name = GGML_TYPES.get(read("I"), "type")
            read("Q")
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def derived_gguf(quantize, src, qtype, commands):
    """`src` rewritten as `qtype` by llama-quantize, made once and cached."""
    dst = CACHE / "derived" / f"{src.stem}.{qtype}.gguf"
    cmd = [quantize, "--allow-requantize", src, dst, qtype]
    if dst.exists():
        log(f"cached: {dst}")
        return dst, shlex.join(str(c) for c in cmd) + "  # cached from an earlier run"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    run([quantize, "--allow-requantize", src, tmp, qtype], commands)
    os.replace(tmp, dst)
    return dst, shlex.join(str(c) for c in cmd)


def llama_test_name(r):
    name = f"pp{r['n_prompt']}" if r["n_prompt"] > 0 else f"tg{r['n_gen']}"
    return name + (f" @ d{r['n_depth']}" if r.get("n_depth", 0) > 0 else "")


def median_sd(xs):
    return statistics.median(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def write_atomic(path, text):
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt_row(r):
    return (f"| {r['model']} | {r['format']} | {r['threads']} | {r['test']} | "
            f"{r['llamacpp_tok_s']:.1f} ± {r['llamacpp_sd']:.1f} | "
            f"{r['effbench_tok_s']:.1f} ± {r['effbench_sd']:.1f} | **{r['ratio']:.2f}** | "
            f"{r['roof_kind']} {r['roofline_tok_s']:.0f} | {100 * r['llamacpp_roofline_fraction']:.0f}% | "
            f"{100 * r['effbench_roofline_fraction']:.0f}% |")


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def test_kind(test):
    """`pp`, `tg` or `tg @ depth`: the groups the summary averages over."""
    return test[:2] + (" @ depth" if "@" in test else "")


def summary_lines(rows):
    ratios = [r["ratio"] for r in rows]
    out = [f"Geometric mean of effbench / llama.cpp over {len(rows)} rows: **{geomean(ratios):.2f}**, "
           f"{sum(x < 1.0 for x in ratios)} rows below 1.0."]
    for kind in dict.fromkeys(test_kind(r["test"]) for r in rows):
        sel = [r["ratio"] for r in rows if test_kind(r["test"]) == kind]
        out.append(f"- {kind}: {geomean(sel):.2f} over {len(sel)} rows, {sum(x < 1.0 for x in sel)} below 1.0")
    return out


def readme(meta, roofs, rows, complete):
    head = ["| model | format | threads | test | llama.cpp tok/s | effbench tok/s | effbench / llama.cpp "
            "| roofline tok/s | llama.cpp % of roofline | effbench % of roofline |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    table = "\n".join(head + [fmt_row(r) for r in rows])
    roof_md = ["| threads | STREAM triad GB/s | read GB/s | f32 GEMM GFLOP/s |", "|---|---|---|---|"]
    for t, r in sorted(roofs.items()):
        roof_md.append(f"| {t} | {r['triad_gb_per_s']:.1f} | {r['read_gb_per_s']:.1f} | "
                       f"{r['gemm_f32_gflop_per_s']:.1f} |")
    eb, lc, m = meta["effbench"], meta["llama_cpp"], meta["machine"]
    # The binary's own record of its build wins over the tree's state when the script started.
    commit = eb.get("binary_commit") or eb["commit"]
    dirty = eb["binary_dirty"] if "binary_dirty" in eb else eb["dirty"]
    dirty = {True: " (**built from a dirty tree**: not publishable)", False: " (clean tree)",
             None: " (clean or dirty: unknown)"}[dirty]
    tests = ", ".join(meta["tests"])
    files = "\n".join(f"- {c}: `{f['path']}` ({f['bytes']} bytes, sha256 `{f['sha256'][:16]}…`; tensors: "
                      + ", ".join(f"{n} {t}" for t, n in f["tensor_types"].items()) + ")"
                      + (f", made by `{f['made_by']}`" if f.get("made_by") else "")
                      for c, f in meta["files"].items())
    status = "" if complete else "\n**Incomplete**: the run stopped before every row was measured.\n"
    return f"""# effbench vs llama-bench: prefill, decode and decode at depth
{status}
```sh
{meta['command']}
```

- effbench: commit `{commit}`{dirty}, `effbench bench --weights as-stored --json`
- llama.cpp: commit `{lc['build_commit']}` (build {lc['build_number']}), `llama-bench -o json`, from
  {lc['source']}
- Machine: {m['cpu_model']}, {m['physical_cores']} cores / {m['logical_threads']} threads,
  {m['memory_gib']:.0f} GiB, {m['os']}; load average {meta['loadavg_start']} at the start
- {meta['started']} to {meta['finished']}; {meta['reps']} repetitions per test after one warm-up
  (each engine's own); tests {tests}

Each row: llama-bench, then effbench, on the same file with the same threads and token counts;
figures are medians ± sd of the repetitions; the ratio is of the medians.

{table}

{chr(10).join(summary_lines(rows)) if rows else ''}

Roofline: a tg row's ceiling is the STREAM triad bandwidth over the bytes one effbench decode step
reads (`decode_bytes_per_token`: weights, head, an embedding row, the mean K/V including the
depth's; effbench's KV cache is f32, llama.cpp's f16, so at depth llama.cpp reads less K/V than
counted); a pp row's is the f32 GEMM peak over the linear layers' flops per token (integer dot
products can pass it on quantized formats: an f32-equivalent reference there, not a bound). The
roofs, measured by `effbench hw --calibrate` in this run before any model was loaded:

{chr(10).join(roof_md)}

Files (the same file for both engines):
{files}

Differences between the engines' tests that remain: llama.cpp's KV cache is f16 by default and
effbench's f32; llama-bench's tg warm-up decodes one token and effbench's a whole repetition;
llama-bench prefills its depth once and restores that state before each repetition, effbench
prefills it once and truncates back to it. Every sample and command is in `results.json`.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated, from the list above (default: all)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per test after a warm-up (default 5, llama-bench's)")
    ap.add_argument("--n-prompt", type=int, default=512, help="tokens of the pp test; 0 skips it (default 512)")
    ap.add_argument("--n-gen", type=int, default=128, help="tokens of the tg tests; 0 skips them (default 128)")
    ap.add_argument("--depth", type=int, default=512,
                    help="tokens in the KV cache before the tg @ d test; 0 skips it (default 512)")
    ap.add_argument("--out", default=None, help="directory for README.md and results.json (default: print only)")
    ap.add_argument("--effbench", default=None, help="effbench binary to use instead of building one")
    ap.add_argument("--llama-bin", default=None,
                    help="directory with llama-bench and llama-quantize (default: scripts/build-llamacpp-tools.sh's)")
    args = ap.parse_args()

    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        sys.exit(f"--threads takes comma-separated integers, not {args.threads!r}")
    if not thread_counts or min(thread_counts) < 1:
        sys.exit("--threads: thread counts must be positive")
    if args.reps < 1 or min(args.n_prompt, args.n_gen, args.depth) < 0:
        sys.exit("--reps must be at least 1, and token counts not negative")
    if args.n_prompt == 0 and args.n_gen == 0:
        sys.exit("nothing to measure: --n-prompt and --n-gen are both 0")
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    commands = []
    started = datetime.datetime.now(datetime.timezone.utc)
    provenance = effbench_provenance()
    if provenance["dirty"]:
        log("warning: the effbench tree differs from its commit; the record will say so")
    binary = effbench_binary(args, commands)
    bindir = llama_bin(args, commands)
    bench, quantize = bindir / "llama-bench", bindir / "llama-quantize"
    for tool in (bench, quantize):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: run scripts/build-llamacpp-tools.sh")

    hw = json.loads(run([binary, "hw", "--json"], commands))
    # Before any model is loaded, so nothing else competes for memory bandwidth.
    cal = json.loads(run([binary, "hw", "--json", "--calibrate", "-t", ",".join(map(str, thread_counts))],
                         commands))
    roofs = {r["threads"]: r for r in cal["roofline"]}
    for t in thread_counts:
        r = roofs[t]
        log(f"roofline, {t} thread(s): triad {r['triad_gb_per_s']:.1f} GB/s, "
            f"f32 GEMM {r['gemm_f32_gflop_per_s']:.1f} GFLOP/s")

    files = {}
    for case in cases:
        asset, qtype, _, _ = CASES[case]
        src = asset_path(binary, asset, commands)
        made_by = None
        path = src
        if qtype:
            path, made_by = derived_gguf(quantize, src, qtype, commands)
        files[case] = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256(path),
                       "tensor_types": gguf_tensor_types(path), "made_by": made_by}

    cpu = hw.get("cpu", {})
    meta = {
        "command": shlex.join([sys.argv[0], *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "effbench": {**provenance, "binary": str(binary)},
        "llama_cpp": {"build_commit": None, "build_number": None, "bin": str(bindir),
                      "source": f"the llama-cpp-python {os.environ.get('LLAMA_CPP_PYTHON_VERSION', '0.3.36')} sdist "
                                "(scripts/build-llamacpp-tools.sh)"},
        "machine": {
            "cpu_model": cpu_model(),
            "effbench_hw": hw,
            "physical_cores": cpu.get("physical_cores"),
            "logical_threads": cpu.get("logical_threads"),
            "memory_gib": hw.get("memory", {}).get("total_bytes", 0) / 2**30,
            "os": hw.get("os", {}).get("name") or platform.platform(),
            "hostname": platform.node(),
        },
        "loadavg_start": "%.2f %.2f %.2f" % os.getloadavg(),
        "reps": args.reps, "n_prompt": args.n_prompt, "n_gen": args.n_gen, "depth": args.depth,
        "threads": thread_counts, "cases": cases, "files": files,
    }
    rows, raw = [], []

    def save(complete):
        if not out:
            return
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = {"complete": complete, "meta": meta, "commands": commands, "roofline": roofs,
                  "rows": rows, "raw": raw}
        write_atomic(out / "results.json", json.dumps(record, indent=2) + "\n")
        write_atomic(out / "README.md", readme(meta, roofs, rows, complete))

    # One group per llama-bench invocation: (n_prompt, n_gen, depth).
    groups = [(args.n_prompt, args.n_gen, 0)]
    if args.depth and args.n_gen:
        groups.append((0, args.n_gen, args.depth))
    meta["tests"] = [f"pp{args.n_prompt}"] * bool(args.n_prompt) + [f"tg{args.n_gen}"] * bool(args.n_gen) \
        + [f"tg{args.n_gen} @ d{args.depth}"] * bool(args.depth and args.n_gen)

    for case in cases:
        _, _, model, label = CASES[case]
        path = files[case]["path"]
        for threads in thread_counts:
            loadavg = "%.2f %.2f %.2f" % os.getloadavg()
            log(f"== {case}, {threads} thread(s), load average {loadavg}")
            for n_prompt, n_gen, depth in groups:
                lcmd = [bench, "-m", path, "-t", threads, "-p", n_prompt, "-n", n_gen, "-r", args.reps, "-o", "json"]
                if depth:
                    lcmd += ["-d", depth]
                theirs = json.loads(run(lcmd, commands))
                ecmd = [binary, "bench", "-m", path, "--weights", "as-stored", "-t", threads,
                        "-p", n_prompt, "-n", n_gen, "-r", args.reps, "--json"]
                if depth:
                    ecmd += ["--depth", depth]
                ours = json.loads(run(ecmd, commands))
                if ours.get("git_commit") and "binary_commit" not in meta["effbench"]:
                    meta["effbench"]["binary_commit"] = ours["git_commit"]
                    meta["effbench"]["binary_dirty"] = ours.get("git_dirty")
                    if ours["git_commit"] != provenance["commit"]:
                        log(f"warning: the effbench binary was built at {ours['git_commit']}, "
                            f"the tree is at {provenance['commit']}")
                raw.append({"case": case, "threads": threads, "loadavg_before": loadavg,
                            "llama_bench_command": shlex.join(map(str, lcmd)), "llama_bench": theirs,
                            "effbench_command": shlex.join(map(str, ecmd)), "effbench": ours})
                for r in theirs:
                    for key in ("build_commit", "build_number"):
                        meta["llama_cpp"][key] = r.get(key)
                their_tests = {llama_test_name(r): r for r in theirs}
                roof = roofs[threads]
                for res in ours["results"]:
                    test = res["test"]
                    if test not in their_tests:
                        sys.exit(f"llama-bench reported no {test!r} (it reported {', '.join(their_tests)})")
                    if int(their_tests[test]["n_threads"]) != threads:
                        sys.exit(f"llama-bench ran {test} on {their_tests[test]['n_threads']} threads, not {threads}")
                    om, osd = median_sd(res["samples_tok_per_s"])
                    tm, tsd = median_sd(their_tests[test]["samples_ts"])
                    if test.startswith("tg"):
                        kind, ceiling = "bandwidth", roof["triad_gb_per_s"] * 1e9 / ours["decode_bytes_per_token"]
                    else:
                        kind, ceiling = "f32 GEMM", roof["gemm_f32_gflop_per_s"] * 1e9 / ours["prefill_flops_per_token"]
                    row = dict(case=case, model=model, format=label, threads=threads, test=test,
                               llamacpp_tok_s=tm, llamacpp_sd=tsd, effbench_tok_s=om, effbench_sd=osd,
                               ratio=om / tm, roof_kind=kind, roofline_tok_s=ceiling,
                               llamacpp_roofline_fraction=tm / ceiling, effbench_roofline_fraction=om / ceiling,
                               decode_bytes_per_token=ours["decode_bytes_per_token"],
                               prefill_flops_per_token=ours["prefill_flops_per_token"],
                               effbench_variant=ours["variant"], llamacpp_model_type=their_tests[test]["model_type"],
                               llamacpp_samples=their_tests[test]["samples_ts"],
                               effbench_samples=res["samples_tok_per_s"], loadavg_before=loadavg)
                    rows.append(row)
                    log(fmt_row(row))
            save(complete=False)

    save(complete=True)
    print(readme(meta, roofs, rows, True) if not out else f"wrote {out / 'README.md'} and {out / 'results.json'}")
    if out:
        print("\n".join(summary_lines(rows)))


if __name__ == "__main__":
    main()
