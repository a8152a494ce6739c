#!/usr/bin/env bash
# The evaluation part of results/distill-smollm2, under the measurement lock.
set -x
B=/tmp/distill-pub/effbench-eval
R=/work/wt-distill/results/distill-smollm2
date -u
flock /tmp/effbench-measure.lock $B distill eval -m smollm2-135m-instruct \
  --student /tmp/distill-pub/student-init --student /tmp/distill-pub/student \
  --text wikitext-2 --ctx 512 --chunks 40 --speed-reps 3 --json $R/eval.json
date -u
flock /tmp/effbench-measure.lock $B distill eval -m smollm2-135m-instruct --weights f32 \
  --student /tmp/distill-pub/student --student-weights f32 \
  --text wikitext-2 --ctx 512 --chunks 4 --speed-reps 3 --json $R/eval-f32.json
date -u
