#!/usr/bin/env python3
"""Reference token ids from llama.cpp, for effbench-tokenizer's GGUF tokenizer test.

Tokenizes a fixed set of texts with llama.cpp's own `llama-tokenize` tool (vocabulary only; built
by scripts/build-llamacpp-tools.sh) for each GGUF model the tests use, both parsing special tokens
(control tokens such as <|im_start|> in the text become their id) and not, never adding BOS,
and writes the ids as JSON:

    scripts/build-llamacpp-tools.sh
    python3 scripts/llamacpp_token_ids.py \
        --wikitext ~/.cache/effbench/wikitext-2/wiki.test.raw \
        --out runtime/tokenizer/tests/fixtures/llamacpp_token_ids.json

Models are read from $EFFBENCH_CACHE (default ~/.cache/effbench) at <cache>/<asset>/<file>, the
layout `effbench fetch` writes (see scripts/fetch-test-assets.sh). A missing model is an error.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = [
    ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"),
    ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct.Q4_K_M.gguf"),
    ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
]

TEXTS = [
    ("english", "Hello, world! The year 1234567 was long; pi is 3.14159, isn't it?"),
    ("contractions", "I'm sure they'll say we've done it, but he'd disagree. DON'T SHOUT, It'S fine."),
    ("whitespace", "multiple   spaces\tand\t\ttabs\n\nnewlines\r\n  indented\n    deeper   \n\n\n   "),
    ("unicode", "Café naïve résumé — “quotes” … 🙂👍🏽 🇫🇷 ½ ² ℃ \u00a0nbsp\u3000ideographic"),
    ("code", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)  # O(2^n)\n\n"
             "print([fib(i) for i in range(10)])\nx = {'a': 1, \"b\": [2, 3]}; y = x['a'] ** 2 // 3 != 4\n"),
    ("chinese", "你好，世界！今天是2024年10月1日。机器学习很有趣，对吧？"),
    ("scripts", "Привет мир! Γειά σου Κόσμε! مرحبا بالعالم! नमस्ते दुनिया ١٢٣"),
    ("numbers", "3.14 1,000,000 0x1F 1e-9 v2.0.1 12345678901234567890"),
    ("chat", "<|im_start|>user\nhi<|im_end|>"),
    ("chat_turns", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\nSure!<|im_end|>\n"),
    ("specials_in_text", "a</s>b <tool_call>{\"x\": 1}</tool_call> <|endoftext|><|im_start|><|im_end|>"),
    ("edges", "  leading and trailing  "),
    ("empty", ""),
    ("single_space", " "),
    ("single_newline", "\n"),
]


# Pieces whose mixes stress the pre-tokenizer regexes: contractions in both cases, every kind of
# whitespace, digits and numerals of other scripts, combining marks, symbols, emoji sequences,
# special tokens glued to text.
SOUP = [" ", "  ", "\n", "\r\n", "\t", "'s", "'S", "'ll", "'LL", "'", "a", "Z", "é", "ß", "İ", "ǅ",
        "5", "٣", "½", "²", "Ⅻ", ".", ",", "!", "?", "...", "—", "“", "€", "$", "+", "<", "=", "^", "`",
        "|", "~", "🙂", "👍🏽", "🇫🇷", "\u200b", "\u00a0", "\u3000", "\u2028", "\u0301", "\u0915\u094d",
        "你", "好", "の", "한", "\x0b", "\x0c", "\x1c", "\x85", "_", "-", "@", "#", "<|im_start|>",
        "<|im_end|>", "</s>", "<tool_call>", "<|endoftext|>", "<reponame>", "hello", "World", "123",
        "0x1F"]


def soup_texts(n: int) -> list:
    rng = random.Random(0)
    return [(f"soup_{i}", "".join(rng.choice(SOUP) for _ in range(rng.randint(5, 30)))) for i in range(n)]


def tokenize(tool: Path, model: Path, text: str, parse_special: bool) -> list:
    """llama-tokenize on `text` read verbatim from a file: no escapes, no BOS."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        cmd = [str(tool), "-m", str(model), "-f", f.name, "--ids", "--no-bos", "--no-escape",
               "--log-disable"]
        if not parse_special:
            cmd.append("--no-parse-special")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wikitext", type=Path, required=True,
                        help="WikiText-2 raw test split (wiki.test.raw); its first --wiki-chars chars are a text")
    parser.add_argument("--wiki-chars", type=int, default=2000)
    parser.add_argument("--soup", type=int, default=40, help="random mixes of tricky pieces to add")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tool", type=Path, help="llama-tokenize (default: the one "
                        "scripts/build-llamacpp-tools.sh builds)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("EFFBENCH_CACHE") or Path.home() / ".cache" / "effbench"))
    args = parser.parse_args()

    # Bytes, not text mode: text mode would turn the file's \r\n into \n.
    wiki = args.wikitext.read_bytes().decode("utf-8")[: args.wiki_chars]
    texts = TEXTS + [("wikitext_head", wiki)] + soup_texts(args.soup)

    tool = args.tool or Path(subprocess.run(
        [str(Path(__file__).parent / "build-llamacpp-tools.sh")], check=True, capture_output=True,
        text=True).stdout.strip()) / "llama-tokenize"
    models = []
    for asset, file in MODELS:
        path = args.cache / asset / file
        if not path.is_file():
            print(f"missing model {path} (run scripts/fetch-test-assets.sh)", file=sys.stderr)
            return 1
        models.append({
            "asset": asset,
            "file": file,
            "parse_special": [tokenize(tool, path, t, True) for _, t in texts],
            "no_parse_special": [tokenize(tool, path, t, False) for _, t in texts],
        })
        print(f"{asset}: {len(texts)} texts", file=sys.stderr)

    fixture = {
        "generator": "scripts/llamacpp_token_ids.py",
        "llama_cpp": "llama-tokenize from the llama-cpp-python 0.3.36 sdist's vendored tree",
        "texts": [{"name": n, "text": t} for n, t in texts],
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # One id list per line keeps the fixture small and diffable: lay the lists out compactly in
    # place of unique placeholders.
    compact = {}
    for m in models:
        for key in ("parse_special", "no_parse_special"):
            for i, ids in enumerate(m[key]):
                placeholder = f"@ids:{m['file']}:{key}:{i}@"
                compact[json.dumps(placeholder)] = json.dumps(ids, separators=(",", ":"))
                m[key][i] = placeholder
    text = json.dumps(fixture, ensure_ascii=False, indent=1)
    for placeholder, ids in compact.items():
        text = text.replace(placeholder, ids)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(texts)} texts x {len(models)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
