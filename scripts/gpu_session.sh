#!/usr/bin/env bash
# One prepared session on a lent GPU machine (issue 23), run from the project root there:
#   GLUE_TASKS="RTE SST-2 STS-B" bash ../shared/tools/gpu-bundle.sh   # here, once: .bundle/
#   bash scripts/gpu_session.sh                                       # there (the device tool)
# Everything it prints and measures goes under $OUT (default /tmp/gpu_session): nvidia-smi, the GPU
# tests (make test-gpu), and the GPU benchmark (scripts/bench_gpu.py: ours vs the HF Trainer in
# bf16 + TF32 on SST-2 and RTE, runs per hour of a 4-seed sweep one after another vs 4 at once,
# recompilations with and without buckets). About 8 minutes on an H200.
# Here, a dry run of the same commands on the CPU (tiny models, a few rows): DRY=1 bash scripts/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
if [ -n "${DRY:-}" ]; then export BUNDLE_DRY=1; fi
# shellcheck disable=SC1091
source .bundle/setup.sh
start=$(date +%s)
{ nvidia-smi || echo "no nvidia-smi"; python -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
  > "$OUT/machine.txt" 2>&1
timeout 300 python -m pytest -q -m gpu tests -p no:cacheprovider > "$OUT/test_gpu.txt" 2>&1
echo "GPU tests: exit $? after $(( $(date +%s) - start )) s"; tail -3 "$OUT/test_gpu.txt"
timeout 420 python scripts/bench_gpu.py --out "$OUT" ${DRY:+--dry-run} > "$OUT/bench_gpu.log" 2>&1
echo "GPU bench: exit $? after $(( $(date +%s) - start )) s"; cat "$OUT/bench_gpu.md" 2>/dev/null || tail -20 "$OUT/bench_gpu.log"
