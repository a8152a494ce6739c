#!/usr/bin/env python3
"""llama.cpp's perplexity figure for a GGUF, by the method of its perplexity tool, through
llama-cpp-python (scripts/setup-llamacpp.sh): windows of --ctx tokens from the start of the text,
each evaluated from an empty cache, positions ctx/2..ctx-2 scoring the next token (or every
position with --first-scored 0). Text is read with LF line endings, no BOS is added.

Usage: llamacpp_perplexity.py MODEL.gguf TEXT [--ctx 512] [--chunks 4] [--first-scored N]
                              [--threads 2] [--kv f16|f32]
"""
import argparse
import math

import numpy as np
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("text")
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--chunks", type=int, default=4)
ap.add_argument("--first-scored", type=int, default=None)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--kv", choices=["f16", "f32"], default="f16")
a = ap.parse_args()
first = a.ctx // 2 if a.first_scored is None else a.first_scored
kv = dict(type_k=0, type_v=0) if a.kv == "f32" else {}
llm = Llama(model_path=a.model, n_ctx=a.ctx, n_batch=a.ctx, n_ubatch=a.ctx, logits_all=True,
            verbose=False, n_threads=a.threads, n_threads_batch=a.threads, **kv)
# Text mode: universal newlines give LF, as effbench reads corpora.
text = open(a.text, encoding="utf-8").read()[: a.chunks * a.ctx * 8]
toks = llm.tokenize(text.encode(), add_bos=False, special=False)
nll, n = 0.0, 0
for c in range(a.chunks):
    window = toks[c * a.ctx:(c + 1) * a.ctx]
    llm.reset()
    llm.eval(window)
    scores = np.array(llm.scores[: a.ctx], dtype=np.float64)
    for p in range(first, a.ctx - 1):
        row = scores[p]
        m = row.max()
        nll += m + math.log(np.exp(row - m).sum()) - row[window[p + 1]]
        n += 1
print(f"perplexity: {math.exp(nll / n):.4f} ({a.chunks} windows of {a.ctx}, {n} scored, kv {a.kv})")
