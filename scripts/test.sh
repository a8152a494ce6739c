#!/usr/bin/env bash
# The project's test command: fetch what the integration tests need, then run every test.
# Tests that need a real model fail (not skip) here, because EFFBENCH_REQUIRE_ASSETS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-assets.sh
export EFFBENCH_REQUIRE_ASSETS=1
cargo test --workspace --all-targets
