#!/usr/bin/env bash
# Train the quirky-arith recipe for several seeds in parallel (seed-robustness check of the split).
# Usage: benchmarks/train_seeds.sh OUT_DIR DEVICE SEED...   (then: elk-lens zoo train ... measures each card)
set -euo pipefail
out=$1; device=$2; shift 2
for seed in "$@"; do
  python3 -c "
from pathlib import Path
from elk_lens.quirky.recipe import QuirkyRecipe, train_quirky
train_quirky(QuirkyRecipe(seed=$seed, device='$device', threads=2), Path('$out/seed$seed'))
" > "$out/seed$seed.log" 2>&1 &
done
wait
