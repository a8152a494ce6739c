#!/usr/bin/env bash
# The long fuzzing campaign: every target (or the one named) until 10 million executions, one
# target at a time on one core, each writing results/fuzz/TARGET.json (executions, seconds,
# libFuzzer's cov and ft, corpus size, crashes, git commit and dirtiness, the command).
#
#   scripts/fuzz-long.sh [TARGET|all] [RUNS]
#
# FUZZ_MAX_SECONDS caps each target's time; a target stopped short records the count it reached.
set -euo pipefail
exec "$(dirname "$0")/fuzz.sh" --runs "${2:-10000000}" "${1:-all}"
