#!/usr/bin/env bash
set -x
B=/tmp/distill-pub/effbench
date -u
$B distill -m smollm2-135m-instruct --out /tmp/distill-pub/student-init --steps 0 --sequences 1 --seq-len 32
date -u
$B distill -m smollm2-135m-instruct --out /tmp/distill-pub/student \
  --keep-layers every-other --sequences 112 --seq-len 256 --seed 0 \
  --steps 60 --batch 4 --lr 4e-4 --warmup 5 --min-lr-ratio 0.1 --temperature 2 --alpha 0 \
  --save-every 10 --max-minutes 30
date -u
