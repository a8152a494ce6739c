#!/usr/bin/env python3
"""WikiText-2 perplexity from llama.cpp's own `llama-perplexity` and from `effbench perplexity`,
on the same GGUF files and text, side by side.

    scripts/peer_perplexity.py [--cases gemma3-270m-q4_k_m,smollm2-q4_1,...] [--chunks 8]
                               [--ctx 512] [--threads 2] [--out results/peer-perplexity]

Both engines read the WikiText-2 raw test split with LF line endings (the file ships with CRLF;
effbench reads text with LF, so the copy handed to llama-perplexity has its CRs removed), cut it
into --chunks windows of --ctx tokens, start each window with BOS when the model asks for one,
and score positions ctx/2..ctx-2: llama.cpp's method. Two llama.cpp configurations are run,
because they differ from each other by more than our tolerance on some models:

  default   llama-perplexity as a user runs it (f16 K/V cache, flash attention chosen by the tool)
  f32       -ctk f32 -ctv f32 -fa off: f32 K/V and the plain attention path

and effbench with its f32 cache (the default) and its f16 cache. The table pairs effbench f32
with llama.cpp f32, and effbench f16 with llama.cpp's default. Cases are those of
scripts/compare_llamacpp.py (derived files are made there with llama-quantize).

Writes DIR/results.json and DIR/README.md, each atomically after every case, with the commands,
effbench's commit and whether its tree was dirty, and llama.cpp's build.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare_llamacpp import CACHE, CASES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def run(cmd):
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), file=sys.stderr, flush=True)
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout + out.stderr


def model_path(case):
    asset, qtype, _, _ = CASES[case]
    shipped = Path(run([ROOT / "target/release/effbench", "fetch", asset]).split(": ", 1)[1].strip())
    if qtype is None:
        return shipped
    derived = CACHE / "derived" / f"{shipped.stem}.{qtype}.gguf"
    if not derived.is_file():
        sys.exit(f"{derived} is missing: scripts/compare_llamacpp.py --cases {case} derives it")
    return derived


def llama_ppl(bin_dir, model, text, a, extra):
    cmd = [bin_dir / "llama-perplexity", "-m", model, "-f", text, "-c", a.ctx, "--chunks", a.chunks,
           "-b", a.ctx, "-t", a.threads, *extra]
    out = run(cmd)
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", out)]
    return {"command": " ".join(map(str, cmd)), "ppl": float(m.group(1)), "stderr": float(m.group(2)),
            "running": running}


def effbench_ppl(model, a, kv):
    cmd = [ROOT / "target/release/effbench", "perplexity", "-m", model, "--ctx", a.ctx, "--chunks", a.chunks,
           "-t", a.threads, "--kv-dtype", kv, "--json"]
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return {"command": " ".join(map(str, cmd)).replace(str(ROOT) + "/", ""),
            "ppl": r["result"]["perplexity"], "stderr": r["result"]["perplexity_stderr"],
            "running": r["result"]["running"], "variant": r["variant"]}


def write_atomic(path, text):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def table(record):
    rows = ["| model, format | llama.cpp f32 | effbench f32 | diff | llama.cpp default | effbench f16 K/V | diff |",
            "|---|---|---|---|---|---|---|"]
    for c in record["cases"]:
        d = lambda ours, theirs: f"{(ours / theirs - 1) * 100:+.2f}%"  # noqa: E731
        rows.append(
            f"| {c['model']}, {c['format']} | {c['llama_f32']['ppl']:.4f} | {c['effbench_f32']['ppl']:.4f} | "
            f"{d(c['effbench_f32']['ppl'], c['llama_f32']['ppl'])} | {c['llama_default']['ppl']:.4f} | "
            f"{c['effbench_f16']['ppl']:.4f} | {d(c['effbench_f16']['ppl'], c['llama_default']['ppl'])} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results/peer-perplexity")
    a = ap.parse_args()
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    bin_dir = Path(run([ROOT / "scripts/build-llamacpp-tools.sh"]).strip().splitlines()[-1])
    wiki = Path(run([ROOT / "target/release/effbench", "fetch", "wikitext-2"]).split(": ", 1)[1].strip())
    scratch = tempfile.TemporaryDirectory()
    lf = Path(scratch.name) / "wiki.test.lf.raw"
    lf.write_bytes(wiki.read_bytes().replace(b"\r\n", b"\n"))
    build = re.search(r"version: (.*)", run([bin_dir / "llama-perplexity", "--version"]))
    record = {
        "command": " ".join(map(shlex.quote, sys.argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "llama_cpp_build": build.group(1) if build else None,
        "text": f"{wiki} with CRLF turned into LF",
        "chunks": a.chunks, "ctx": a.ctx, "threads": a.threads,
        "cases": [],
    }
    a.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        _, _, model, label = CASES[case]
        path = model_path(case)
        record["cases"].append({
            "case": case, "model": model, "format": label, "file": str(path),
            "llama_f32": llama_ppl(bin_dir, path, lf, a, ["-ctk", "f32", "-ctv", "f32", "-fa", "off"]),
            "effbench_f32": effbench_ppl(path, a, "f32"),
            "llama_default": llama_ppl(bin_dir, path, lf, a, []),
            "effbench_f16": effbench_ppl(path, a, "f16"),
        })
        write_atomic(a.out / "results.json", json.dumps(record, indent=1) + "\n")
        write_atomic(a.out / "README.md", readme(record))
    print(table(record))


def readme(record):
    return f"""# WikiText-2 perplexity: effbench against llama-perplexity

`{record['command']}` at effbench commit {record['git_commit'][:7]}{' (dirty tree)' if record['git_dirty'] else ''},
llama.cpp build {record['llama_cpp_build']}, {record['date']}. {record['chunks']} windows of {record['ctx']}
tokens from the start of the WikiText-2 raw test split (LF line endings), positions ctx/2..ctx-2 scored,
BOS first in each window for models that ask for it, {record['threads']} threads. Every command and each
engine's running perplexity are in `results.json`.

"llama.cpp f32" is `llama-perplexity -ctk f32 -ctv f32 -fa off` against effbench's f32 cache (its
default); "llama.cpp default" is the tool as a user runs it (f16 K/V, flash attention as it
chooses) against effbench's f16 cache. The two llama.cpp columns can differ from each other by
more than either differs from effbench.

{table(record)}
"""


if __name__ == "__main__":
    main()
