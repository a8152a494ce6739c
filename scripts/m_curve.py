#!/usr/bin/env python3
"""The m-curve of every weight format, published: what one pass over m = 1..9 activation rows
costs against one row (runtime/kernels/benches/m_curve.rs, Qwen2.5-1.5B's 8960 x 1536 MLP
matrix, weights cycled through 1 GB so they stream from memory as in a forward pass).

Speculative decoding verifies k drafted tokens in one pass of k + 1 rows; the issue's target is
at most 1.3x the m = 1 time for m <= 5. For each thread count the script runs the criterion
bench (built by `cargo bench --no-run`), parses its medians, and writes DIR/README.md (the
table: time per pass, ratio to m = 1, GB/s of weights at m = 1) and DIR/results.json, with the
command, the commit, whether the tree was dirty, and the machine.

  scripts/m_curve.py --threads 1,2 --out results/m-curve

Publish only a run at a clean commit on a quiet machine.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# criterion: "m_curve/q4_k/t1/1" then "time:   [low unit median unit high unit]".
NAME = re.compile(r"^(m_curve/(\S+)/t(\d+)/(\d+))")
TIME = re.compile(r"time:\s+\[\S+ \S+ (\S+) (ns|µs|us|ms|s) ")
THRPT = re.compile(r"thrpt:\s+\[\S+ \S+ (\S+) (B|KiB|MiB|GiB)/s ")
SCALE = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
GIB = {"B": 1 / 2**30, "KiB": 1 / 2**20, "MiB": 1 / 2**10, "GiB": 1.0}


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def bench_binary():
    out = subprocess.run(
        ["cargo", "bench", "-p", "effbench-kernels", "--bench", "m_curve", "--no-run",
         "--message-format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "m_curve":
            return msg["executable"]
    sys.exit("m_curve.py: cargo built no m_curve bench executable")


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(binary, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    proc = subprocess.run([binary, "--bench", "--noplot"], env=env, capture_output=True,
                          text=True, check=True)
    rows, name = {}, None
    for line in proc.stdout.splitlines():
        m = NAME.match(line)
        if m:
            name = (m.group(2), int(m.group(4)))
        m = TIME.search(line)
        if m and name:
            rows.setdefault(name, {})["ms"] = float(m.group(1)) * SCALE[m.group(2)]
        m = THRPT.search(line)
        if m and name:
            rows.setdefault(name, {})["gib_s"] = float(m.group(1)) * GIB[m.group(2)]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    # What the bench binary is built from: uncommitted Markdown and results do not change it.
    dirty_paths = [line[3:] for line in git("status", "--porcelain", "--", ".", ":!results",
                                           ":!*.md").splitlines()]
    binary = bench_binary()
    results = {t: run(binary, t) for t in threads}
    meta = {
        "command": "scripts/m_curve.py " + " ".join(sys.argv[1:]),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(dirty_paths),
        "dirty_paths": dirty_paths,
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
        "env": {k: os.environ[k] for k in ("M_CURVE_POOL_MB", "M_CURVE_FORMATS",
                                           "EFFBENCH_PREFETCH", "EFFBENCH_Q8_LANES")
                if k in os.environ},
        "load_average_at_start": os.getloadavg(),
    }
    doc = {"meta": meta, "rows": [
        {"threads": t, "format": f, "m": m, **v}
        for t, rows in results.items() for (f, m), v in sorted(rows.items())]}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out / "results.json")

    lines = [
        "# The m-curve: one pass over m activation rows against one row, every weight format",
        "",
        f"```sh\n{meta['command']}\n```",
        "",
        f"- commit `{meta['commit']}`" + (" (**dirty tree**: not publishable)" if meta["dirty"]
                                          else " (clean tree)"),
        f"- {meta['started']} to {meta['finished']}; {meta['machine']}; load average "
        f"{' '.join(f'{x:.2f}' for x in meta['load_average_at_start'])} at the start",
        *([f"- environment: {meta['env']}"] if meta["env"] else []),
        "- `runtime/kernels/benches/m_curve.rs`: Qwen2.5-1.5B's MLP up projection (8960 x 1536),",
        "  weights cycled through 1 GB so every pass streams them from memory; median of 20",
        "  criterion samples. Target: at most 1.3x the m = 1 time for m <= 5.",
        "",
    ]
    for t in threads:
        rows = results[t]
        formats = list(dict.fromkeys(f for f, _ in rows))  # the bench's order
        ms = sorted({m for _, m in rows})
        lines += [f"## {t} thread{'s' if t > 1 else ''}", "",
                  "| format | m = 1 (GB/s of weights) | " +
                  " | ".join(f"m = {m}" for m in ms[1:]) + " | max ratio, m <= 5 |",
                  "|---|---|" + "---|" * (len(ms) - 1) + "---|"]
        for f in formats:
            one = rows[(f, 1)]["ms"]
            cells = [f"{rows[(f, m)]['ms']:.3f} ms ({rows[(f, m)]['ms'] / one:.2f}x)"
                     for m in ms[1:]]
            worst = max(rows[(f, m)]["ms"] / one for m in ms if m <= 5)
            gbs = rows[(f, 1)].get("gib_s", 0) * 2**30 / 1e9
            lines.append(f"| {f} | {one:.3f} ms ({gbs:.1f}) | " + " | ".join(cells) +
                         f" | {'**' if worst <= 1.3 else ''}{worst:.2f}x"
                         f"{'**' if worst <= 1.3 else ''} |")
        lines.append("")
    tmp = out / "README.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(out / "README.md")
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
