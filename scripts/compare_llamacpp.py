#!/usr/bin/env python3
"""Speed of effbench and llama.cpp side by side: same GGUF, same threads, same token counts.

llama.cpp is driven through llama-cpp-python (scripts/setup-llamacpp.sh builds it). Both engines
run llama-bench's two tests: pp N (prefill N tokens in one batch) and tg N (decode N tokens one at
a time), after one warm-up, as the median (and sd) over --reps repetitions, tokenization excluded.

Each row also gives the roofline: `effbench hw --calibrate` measures this machine's STREAM triad
bandwidth and f32 GEMM peak at each thread count, `effbench bench` says how many bytes a decode
step reads and how many flops a prefilled token costs, and the table shows what fraction of
bandwidth / bytes-per-token decode reaches (and of GEMM peak / flops-per-token for prefill).

Usage:
  scripts/compare_llamacpp.py [--threads 1,2] [--n-prompt 512] [--n-gen 128] [--reps 3]
                              [--cases smollm2-q4_1,smollm2-f16,qwen1.5b-q4_k_m] [--out results/DIR]

The f16 case needs an f16 GGUF for llama.cpp; it is made once from the Q4_1 file with llama.cpp's
own quantize tool (dequantized, the same weights effbench's `--weights f16` uses) and cached.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EFFBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "effbench")

# case -> (asset name, effbench --weights, label)
CASES = {
    "smollm2-q4_1": ("smollm2-135m-instruct", "as-stored", "SmolLM2-135M-Instruct", "Q4_1 as stored"),
    "smollm2-f16": ("smollm2-135m-instruct", "f16", "SmolLM2-135M-Instruct", "f16 (dequantized from Q4_1)"),
    "qwen1.5b-q4_k_m": ("qwen2.5-coder-1.5b-instruct", "as-stored", "Qwen2.5-Coder-1.5B-Instruct", "Q4_K_M as stored"),
}


def effbench_bin():
    subprocess.run(["cargo", "build", "--release", "-p", "effbench", "--quiet"], cwd=ROOT, check=True)
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "effbench"


def asset_path(binary, name):
    out = subprocess.run([str(binary), "fetch", name], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().split(": ", 1)[1])


def f16_gguf(src: Path) -> Path:
    import llama_cpp

    dst = CACHE / "derived" / (src.stem + ".F16.gguf")
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 1  # LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama.cpp could not write an f16 copy of {src} (rc {rc})")
    tmp.rename(dst)
    return dst


def llamacpp_bench(path: Path, threads: int, n_prompt: int, n_gen: int, reps: int):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(n_prompt, n_gen) + 8, n_batch=max(n_prompt, 1),
                n_ubatch=max(n_prompt, 1), n_threads=threads, n_threads_batch=threads,
                verbose=False, logits_all=False)
    vocab = llm.n_vocab()
    rng = random.Random(0)
    results = {}
    if n_prompt:
        toks = [rng.randrange(vocab * 9 // 10) for _ in range(n_prompt)]
        samples = []
        for rep in range(reps + 1):
            llm.reset()
            llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
            t = time.perf_counter()
            llm.eval(toks)
            dt = time.perf_counter() - t
            if rep:
                samples.append(n_prompt / dt)
        results[f"pp{n_prompt}"] = samples
    if n_gen:
        toks = [rng.randrange(vocab * 9 // 10) for _ in range(n_gen)]
        samples = []
        for rep in range(reps + 1):
            llm.reset()
            llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
            t = time.perf_counter()
            for tok in toks:
                llm.eval([tok])
            dt = time.perf_counter() - t
            if rep:
                samples.append(n_gen / dt)
        results[f"tg{n_gen}"] = samples
    del llm
    return results


def effbench_bench(binary, asset, weights, threads, n_prompt, n_gen, reps):
    out = subprocess.run(
        [str(binary), "bench", "-m", asset, "--weights", weights, "-t", str(threads),
         "-p", str(n_prompt), "-n", str(n_gen), "-r", str(reps), "--json"],
        capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    return {r["test"]: r["samples_tok_per_s"] for r in report["results"]}, report


def calibrate(binary, threads):
    out = subprocess.run([str(binary), "hw", "--json", "--calibrate", "-t", ",".join(map(str, threads))],
                         capture_output=True, text=True, check=True)
    return {r["threads"]: r for r in json.loads(out.stdout)["roofline"]}


def median_sd(xs):
    return statistics.median(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=None, help="directory for results.json and results.md")
    args = ap.parse_args()

    binary = effbench_bin()
    thread_counts = [int(t) for t in args.threads.split(",")]
    # Before any model is loaded, so nothing else competes for memory bandwidth.
    roofs = calibrate(binary, thread_counts)
    for t in thread_counts:
        r = roofs[t]
        print(f"roofline, {t} thread(s): triad {r['triad_gb_per_s']:.1f} GB/s, read {r['read_gb_per_s']:.1f} GB/s, "
              f"f32 GEMM {r['gemm_f32_gflop_per_s']:.1f} GFLOP/s", flush=True)
    rows = []
    for case in args.cases.split(","):
        asset, weights, model, label = CASES[case]
        path = asset_path(binary, asset)
        ref_path = f16_gguf(path) if weights == "f16" else path
        for threads in thread_counts:
            ours, report = effbench_bench(binary, asset, weights, threads, args.n_prompt, args.n_gen, args.reps)
            theirs = llamacpp_bench(ref_path, threads, args.n_prompt, args.n_gen, args.reps)
            roof = roofs[threads]
            for test in ours:
                om, osd = median_sd(ours[test])
                tm, tsd = median_sd(theirs[test])
                if test.startswith("tg"):
                    ceiling = roof["triad_gb_per_s"] * 1e9 / report["decode_bytes_per_token"]
                else:
                    ceiling = roof["gemm_f32_gflop_per_s"] * 1e9 / report["prefill_flops_per_token"]
                row = dict(model=model, format=label, threads=threads, test=test,
                           effbench_tok_s=om, effbench_sd=osd, llamacpp_tok_s=tm, llamacpp_sd=tsd,
                           ratio=om / tm, roofline_tok_s=ceiling,
                           effbench_roofline_fraction=om / ceiling, llamacpp_roofline_fraction=tm / ceiling,
                           decode_bytes_per_token=report["decode_bytes_per_token"],
                           prefill_flops_per_token=report["prefill_flops_per_token"],
                           effbench_samples=ours[test], llamacpp_samples=theirs[test])
                rows.append(row)
                print(f"{model:28} {label:28} t={threads} {test:6} effbench {om:8.2f} ± {osd:6.2f}  "
                      f"llama.cpp {tm:8.2f} ± {tsd:6.2f}  ratio {om / tm:5.2f}  "
                      f"roofline {ceiling:8.1f} ({100 * om / ceiling:4.1f}% / {100 * tm / ceiling:4.1f}%)", flush=True)

    md = ["| model | format | threads | test | effbench tok/s | llama.cpp tok/s | effbench / llama.cpp "
          "| roofline tok/s | effbench % of roofline | llama.cpp % of roofline |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['format']} | {r['threads']} | {r['test']} | "
                  f"{r['effbench_tok_s']:.1f} ± {r['effbench_sd']:.1f} | "
                  f"{r['llamacpp_tok_s']:.1f} ± {r['llamacpp_sd']:.1f} | **{r['ratio']:.2f}** | "
                  f"{r['roofline_tok_s']:.0f} | {100 * r['effbench_roofline_fraction']:.1f}% | "
                  f"{100 * r['llamacpp_roofline_fraction']:.1f}% |")
    roof_md = ["| threads | STREAM triad GB/s | read GB/s | f32 GEMM GFLOP/s |", "|---|---|---|---|"]
    for t in thread_counts:
        r = roofs[t]
        roof_md.append(f"| {t} | {r['triad_gb_per_s']:.1f} | {r['read_gb_per_s']:.1f} | {r['gemm_f32_gflop_per_s']:.1f} |")
    table = "\n".join(md)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        import llama_cpp
        meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    command=" ".join(sys.argv), cpu=platform.processor() or platform.machine(),
                    llama_cpp_python=llama_cpp.__version__,
                    git_commit=subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                              text=True).stdout.strip(),
                    reps=args.reps, n_prompt=args.n_prompt, n_gen=args.n_gen)
        (out / "results.json").write_text(json.dumps(dict(meta=meta, roofline=roofs, rows=rows), indent=2))
        (out / "results.md").write_text(
            f"# effbench vs llama.cpp speed\n\nCommand: `{meta['command']}` at commit {meta['git_commit']}, "
            f"llama-cpp-python {meta['llama_cpp_python']}, {meta['date']}. Medians ± sd of {args.reps} "
            f"repetitions after a warm-up.\n\n{table}\n\n"
            "Roofline: decode (tg) rows divide the STREAM triad bandwidth by the bytes one decode step "
            "reads (weights, head, mean K/V); prefill (pp) rows divide the f32 GEMM peak by the linear "
            "layers' flops per token. This machine's roofs, measured by `effbench hw --calibrate` in the "
            f"same run:\n\n{chr(10).join(roof_md)}\n")


if __name__ == "__main__":
    main()
