#!/usr/bin/env bash
# Submits an effbench run as a Slurm job array of N shards plus a merge job that runs when
# every shard succeeded.
#   scripts/slurm/submit.sh N RUN_ID [effbench run arguments...]
#   scripts/slurm/submit.sh 8 mmlu-full --suite mmlu --techniques f16,as-stored -m qwen2.5-coder-1.5b-instruct
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shards="${1:?usage: submit.sh N RUN_ID [run arguments...]}"
run_id="${2:?usage: submit.sh N RUN_ID [run arguments...]}"
shift 2
bin="${EFFBENCH_BIN:-effbench}"

# Fetch models and data once, here, into the shared cache: N tasks fetching the same file at
# once would each download it.
model=smollm2-135m-instruct
suite=mmlu-lite
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        -m | --model) model="${args[$((i + 1))]}" ;;
        --suite) suite="${args[$((i + 1))]}" ;;
    esac
done
[[ -e "$model" ]] || "$bin" fetch "$model"
case "$suite" in
    mmlu | mmlu-lite) "$bin" fetch mmlu ;;
    wikitext-2) "$bin" fetch wikitext-2 ;;
esac

# Extra sbatch options for both jobs (they override the scripts' #SBATCH lines), e.g.
# EFFBENCH_SBATCH_OPTS="--partition=gpu --gres=gpu:1 --cpus-per-task=8".
read -r -a extra <<< "${EFFBENCH_SBATCH_OPTS:-}"
export EFFBENCH_RUN_ID="$run_id" EFFBENCH_ARGS="$*" EFFBENCH_SHARDS="$shards"
array=$(sbatch --parsable "${extra[@]}" --array="0-$((shards - 1))" --export=ALL "$here/effbench-array.sbatch")
merge=$(sbatch --parsable "${extra[@]}" --dependency="afterok:${array%%;*}" --export=ALL "$here/effbench-merge.sbatch")
echo "array job $array ($shards shards), merge job $merge; results in ${EFFBENCH_RESULTS:-$PWD/results}/$run_id"
