#!/usr/bin/env bash
# A real Slurm on this one machine (munged, slurmctld and slurmd from Debian's slurm-wlm and
# munge, configured in a temporary directory) runs effbench as a 4-task job array:
#   1. a single-process reference run of the suite;
#   2. the array via submit.sh, merged by the dependent merge job; records must be
#      bit-identical to the reference;
#   3. a fault: one array task is killed mid-run, re-submitted (it resumes), then merged;
#      again bit-identical, and no item scored twice.
# Needs root (to start the daemons) and apt for the packages. Slow (minutes), so it is not in
# the default test command; .ci/run runs it when EFFBENCH_SLURM_TEST=1.
#   scripts/slurm/test-local-slurm.sh [ITEMS_PER_SUBJECT]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
per_subject="${1:-2}"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
# Builds the test profile's binary (CI has already made it for the tests) and fetches the model.
scripts/fetch-test-assets.sh >/dev/null
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/effbench"

work="$(mktemp -d /tmp/effbench-slurm.XXXXXX)"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
mkdir -p "$work"/{state,spool,log,munge,results}
cleanup() {
    [[ -f "$work/slurmd.pid" ]] && kill "$(cat "$work/slurmd.pid")" 2>/dev/null || true
    [[ -f "$work/slurmctld.pid" ]] && kill "$(cat "$work/slurmctld.pid")" 2>/dev/null || true
    [[ -f "$work/munge/munged.pid" ]] && kill "$(cat "$work/munge/munged.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# munge: a fresh key and socket of our own, so nothing system-wide is touched.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
chmod 700 "$work/munge"
munged --key-file="$work/munge/munge.key" --socket="$work/munge/munge.socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed" --force

cat > "$work/slurm.conf" <<CONF
ClusterName=effbench-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 1
done
sinfo

export EFFBENCH_BIN="$bin" EFFBENCH_RESULTS="$work/results"
# One CPU and modest memory per task, so several array tasks share this machine.
export EFFBENCH_SBATCH_OPTS="--cpus-per-task=1 --mem=3G --time=60 --partition=test --output=$work/log/%x-%A_%a.out"
run_args=(--suite mmlu-lite --items-per-subject "$per_subject" --techniques as-stored --no-speed --batch 1)

wait_for() {  # wait until every listed job has left the queue
    while squeue -h -j "$1" 2>/dev/null | grep -q .; do sleep 2; done
}
compare_with_reference() {  # $1: merged run dir
    python3 - "$work/results/reference/items-as-stored.jsonl" "$1/items-as-stored.jsonl" <<'PY'
import json, sys
ref = {json.loads(l)["item"]: l for l in open(sys.argv[1])}
lines = open(sys.argv[2]).read().splitlines()
got = {json.loads(l)["item"]: l for l in lines}
assert len(lines) == len(got), "an item appears twice in the merged run"
assert set(ref) == set(got), f"{len(set(ref) ^ set(got))} items differ"
bad = [k for k in ref if json.loads(ref[k])["logprobs"] != json.loads(got[k])["logprobs"]]
assert not bad, f"{len(bad)} items' log-likelihoods differ, e.g. {bad[:3]}"
print(f"{len(got)} items, every log-likelihood bit-identical to the single-process run")
PY
}

echo "== reference: one process" >&2
"$bin" run "${run_args[@]}" --threads 1 --run-id reference --out "$work/results" >/dev/null

echo "== a 4-task array and its merge job" >&2
out=$(scripts/slurm/submit.sh 4 array "${run_args[@]}")
echo "$out"
merge_job=$(echo "$out" | sed -n 's/.*merge job \([0-9]*\).*/\1/p')
array_job=$(echo "$out" | sed -n 's/^array job \([0-9]*\).*/\1/p')
wait_for "$array_job"
wait_for "$merge_job"
state=$(sacct -n -X -j "$merge_job" -o State 2>/dev/null | head -1 | tr -d ' ' || true)
[[ -f "$work/results/array/report.json" ]] || { echo "merge job did not produce a report (state: ${state:-unknown}); logs in $work/log" >&2; exit 1; }
compare_with_reference "$work/results/array"

echo "== fault: task 2 killed mid-run, re-submitted with resume" >&2
export EFFBENCH_RUN_ID=fault EFFBENCH_ARGS="${run_args[*]}" EFFBENCH_SHARDS=4
read -r -a extra <<< "$EFFBENCH_SBATCH_OPTS"
job=$(sbatch --parsable "${extra[@]}" --array=0-3 --export=ALL scripts/slurm/effbench-array.sbatch)
shard2="$work/results/fault/shard-2-of-4/items-as-stored.jsonl"
for _ in $(seq 600); do
    [[ -f "$shard2" ]] && (( $(wc -l < "$shard2") >= 3 )) && break
    sleep 0.5
done
scancel --signal=KILL "${job}_2"
wait_for "$job"
killed_at=$(wc -l < "$shard2")
[[ -f "$work/results/fault/shard-2-of-4/shard.json" ]] && { echo "task 2 finished before it could be killed; raise ITEMS_PER_SUBJECT" >&2; exit 1; }
echo "task 2 killed after $killed_at records" >&2
requeued=$(sbatch --parsable "${extra[@]}" --array=2 --export=ALL scripts/slurm/effbench-array.sbatch)
wait_for "$requeued"
merged=$(sbatch --parsable "${extra[@]}" --export=ALL scripts/slurm/effbench-merge.sbatch)
wait_for "$merged"
[[ -f "$work/results/fault/report.json" ]] || { echo "fault run did not merge; logs in $work/log" >&2; exit 1; }
compare_with_reference "$work/results/fault"
echo "slurm test passed" >&2
