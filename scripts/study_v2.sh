#!/usr/bin/env bash
# The reference study v2 (configs/experiment/reference_study_v2.yaml), seed by seed, so that a stop at any
# point leaves complete paired seeds: for each seed, the 8 primary runs (4 tasks x cls, maxpool_mha) and the
# 2 runs of the pre-registered pooler arm (STS-B, head.use_pooler=false). A relaunch skips finished runs
# and resumes a killed one. Usage: scripts/study_v2.sh [FIRST_SEED] [LAST_SEED]   (default 1 20)
set -u
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-2}
first=${1:-1}; last=${2:-20}
status=0
for seed in $(seq "$first" "$last"); do
  echo "== seed $seed: primary $(date -u +%H:%M:%S)"
  $PYTHON train.py -m experiment=reference_study_v2 hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" \
    hydra.sweeper.params.seed="$seed" || status=1
  echo "== seed $seed: pooler arm $(date -u +%H:%M:%S)"
  $PYTHON train.py -m experiment=reference_study_v2 hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" \
    hydra.sweeper.params.seed="$seed" hydra.sweeper.params.task=stsb head.use_pooler=false || status=1
done
echo "== done $(date -u +%H:%M:%S) status $status"
exit $status
