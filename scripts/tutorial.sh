#!/usr/bin/env bash
# The main job: runs the "Run All" tutorial notebook headless on the embedded default and writes the
# executed notebook and a standalone HTML export to notebooks/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

NOTEBOOK=${1:-notebooks/gpt-oss-multilingual-reasoning.ipynb}
OUT=notebooks/out
mkdir -p "$OUT"
name=$(basename "$NOTEBOOK" .ipynb)

echo "tutorial: running $NOTEBOOK"
.venv/bin/jupyter nbconvert --to notebook --execute \
  --ExecutePreprocessor.kernel_name=oss-finetune --ExecutePreprocessor.timeout=900 \
  --output-dir "$OUT" --output "$name" "$NOTEBOOK"
.venv/bin/jupyter nbconvert --to html --output-dir "$OUT" --output "$name" "$OUT/$name.ipynb" >/dev/null 2>&1

echo "tutorial: executed notebook  $OUT/$name.ipynb"
echo "tutorial: standalone HTML    $OUT/$name.html"
