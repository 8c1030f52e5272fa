#!/usr/bin/env bash
# Rewrites python/constraints.txt from what the project's venv holds now, so the next fresh set-up
# installs exactly the same versions.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Exact versions the set-up installs (pip install -c python/constraints.txt ...)."
  echo "# Regenerate after changing python/pyproject.toml: scripts/lock-python.sh"
  .venv/bin/python -m pip freeze --exclude-editable | grep -viE '^(-e |oss-finetune|oss_finetune)'
} > python/constraints.txt
echo "python/constraints.txt: $(grep -vc '^#' python/constraints.txt) pinned packages"
