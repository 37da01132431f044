#!/bin/bash
# Session 20: s2 final checkpoint and baseline, en->fr at 500k tokens, finetune_cpu_epochs, seeds 0-2.
# Copy A does the baseline (stopped when it reaches the final checkpoint), copy B the final checkpoint
# (protocol copy with baseline: false, same name), side by side; then B's rows and outputs join A, and A is run
# again to add the gains (paired bootstrap against the baseline).
set -u
cd /work/main
T=.venv/bin/testbed
A=/work/probe20/ep500k/dec-s2-syn_en_fr-m40-seed0
B=/work/probe20/ep500k_final/dec-s2-syn_en_fr-m40-seed0
ARGS="--task syn_en-syn_fr --size 500000 --steps final --protocol finetune_cpu_epochs"
echo "start $(date +%T)"
OMP_NUM_THREADS=1 $T finetune $A $ARGS > /work/probe20/ep500k_A.log 2>&1 &
pa=$!
OMP_NUM_THREADS=1 $T --config-path /work/probe20/nobase finetune $B $ARGS > /work/probe20/ep500k_B.log 2>&1 &
pb=$!
while kill -0 $pa 2>/dev/null; do
  if grep -q "from step 690" /work/probe20/ep500k_A.log; then kill $pa; echo "A stopped at the final checkpoint $(date +%T)"; break; fi
  sleep 5
done
wait $pa
echo "A done $(date +%T)"
wait $pb
echo "B done rc=$? $(date +%T)"
