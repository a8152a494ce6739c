#!/usr/bin/env python3
"""Assembles results/quant-smollm2/table.md (+ table.json) from the outputs of the commands in
README.md: `effbench run` (wikitext-2, mmlu-lite) summaries and `effbench bench --json` files."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TECHNIQUES = ["f16", "int4", "int4-gptq", "int2", "int2-gptq", "int4-g32"]


def load(*parts):
    with open(os.path.join(HERE, *parts)) as f:
        return json.load(f)


wt = {t["technique"]: t for t in load("wikitext-2", "summary.json")}
mmlu = {t["technique"]: t for t in load("mmlu-lite-0shot", "summary.json")["techniques"]}
bench = {t: load(f"bench-{t}.json") for t in TECHNIQUES}


def speed(t, test):
    r = next(r for r in bench[t]["results"] if r["test"].startswith(test))
    return r["mean_tok_per_s"], r["sd_tok_per_s"]


rows = []
for t in TECHNIQUES:
    b = bench[t]
    pp, pp_sd = speed(t, "pp")
    tg, tg_sd = speed(t, "tg")
    pp0, _ = speed("f16", "pp")
    tg0, _ = speed("f16", "tg")
    w = wt[t]
    vs = w["vs_baseline"]
    m = mmlu[t]
    rows.append(
        {
            "technique": t,
            "weights": w["label"],
            "weight_bytes": b["weight_bytes"],
            "block_bits_per_weight": b.get("block_bits_per_weight"),
            "prefill_tok_s": pp,
            "prefill_sd": pp_sd,
            "decode_tok_s": tg,
            "decode_sd": tg_sd,
            "prefill_speedup": pp / pp0,
            "decode_speedup": tg / tg0,
            "ppl": w["perplexity"]["ppl"],
            "ppl_stderr": w["perplexity"]["ppl_stderr"],
            "ppl_ratio": vs["perplexity"]["ratio"] if vs else None,
            "kl_mean": vs["kl"]["mean"] if vs else None,
            "same_top1": vs["same_top"]["rate"] if vs else None,
            "mmlu_acc": m["accuracy"]["mean"],
            "mmlu_stderr": m["accuracy"]["stderr"],
            "mmlu_vs_f16": m["vs_baseline"]["verdict"] if m.get("vs_baseline") else "baseline",
        }
    )

out = [
    "| Technique | Weights | Weight bytes | Block bpw | Prefill tok/s (pp512) | Decode tok/s (tg128) | WikiText-2 PPL | PPL ratio | Mean KL | Same top-1 | mmlu-lite 0-shot | vs f16 (paired) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for r in rows:
    bpw = f"{r['block_bits_per_weight']:.2f}" if r["block_bits_per_weight"] else "-"
    ratio = f"{r['ppl_ratio']:.3f}" if r["ppl_ratio"] else "baseline"
    kl = f"{r['kl_mean']:.3f}" if r["kl_mean"] is not None else "-"
    top = f"{100 * r['same_top1']:.1f} %" if r["same_top1"] is not None else "-"
    out.append(
        f"| {r['technique']} | {r['weights']} | {r['weight_bytes'] / 2**20:.1f} MiB | {bpw} "
        f"| {r['prefill_tok_s']:.0f} ± {r['prefill_sd']:.0f} ({r['prefill_speedup']:.2f}x) "
        f"| {r['decode_tok_s']:.1f} ± {r['decode_sd']:.1f} ({r['decode_speedup']:.2f}x) "
        f"| {r['ppl']:.4g} ± {r['ppl_stderr']:.2g} | {ratio} | {kl} | {top} "
        f"| {100 * r['mmlu_acc']:.1f} ± {100 * r['mmlu_stderr']:.1f} % | {r['mmlu_vs_f16']} |"
    )
with open(os.path.join(HERE, "table.md"), "w") as f:
    f.write("\n".join(out) + "\n")
with open(os.path.join(HERE, "table.json"), "w") as f:
    json.dump(rows, f, indent=1)
print("\n".join(out))
