#!/usr/bin/env bash
# The main job: runs the "Run All" tutorial notebook headless (kernel-bridge's runner) on the embedded
# default and writes the executed notebook and a standalone HTML export to notebooks/out/.
# --notebook PATH runs another tutorial (npm run tutorial:tools: notebooks/gpt-oss-tool-calling.ipynb).
# Other arguments go to the runner, e.g. --param MAX_STEPS=10.
set -euo pipefail
cd "$(dirname "$0")/.."

NOTEBOOK=notebooks/gpt-oss-multilingual-reasoning.ipynb
if [ "${1:-}" = "--notebook" ]; then
  NOTEBOOK=${2:?--notebook needs a path}
  shift 2
fi
[ -f "$NOTEBOOK" ] || { echo "tutorial: no notebook at $NOTEBOOK" >&2; exit 2; }
bash scripts/setup.sh

OUT=notebooks/out
name=$(basename "$NOTEBOOK" .ipynb)
mkdir -p "$OUT"

# The embedded base model is trained once and cached; building it is set-up, not the tutorial.
.venv/bin/python -m oss_finetune.embedded build

echo "tutorial: running $NOTEBOOK"
start=$(date +%s)
node kernel-bridge/lib/cli.js run "$NOTEBOOK" -o "$OUT/$name.ipynb" --kernel oss-finetune --timeout 900 "$@"
.venv/bin/jupyter nbconvert --to html --output-dir "$OUT" --output "$name" "$OUT/$name.ipynb" >/dev/null 2>&1

echo
echo "tutorial: finished in $(( $(date +%s) - start )) s"
# The notebook's last cell prints the summary: the final loss and the held-out rates before and after.
.venv/bin/python - "$OUT/$name.ipynb" <<'PY'
import json, sys
cells = [c for c in json.load(open(sys.argv[1]))["cells"] if c["cell_type"] == "code"]
for output in cells[-1].get("outputs", []):
    if output.get("output_type") == "stream":
        print("".join(output["text"]).rstrip())
PY
echo "tutorial: executed notebook  $OUT/$name.ipynb"
echo "tutorial: standalone HTML    $OUT/$name.html"
