#!/usr/bin/env bash
# Warm set-up overhead: the time `npm test` and `npm run tutorial` spend in scripts/setup.sh when
# everything is already installed and built. Runs it N times (default 5) and prints each time.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
bash scripts/setup.sh --browser >/dev/null   # make sure it is warm
for i in $(seq "$n"); do
  start=$(date +%s.%N)
  bash scripts/setup.sh --browser >/dev/null
  awk -v a="$start" -v b="$(date +%s.%N)" -v i="$i" 'BEGIN { printf "run %d: %.2f s\n", i, b - a }'
done
