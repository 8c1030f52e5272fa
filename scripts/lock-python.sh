#!/usr/bin/env bash
# Rewrites python/constraints.txt from what the project's venv holds now, so the next fresh set-up
# installs exactly the same versions.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Exact versions the set-up installs (pip install -c python/constraints.txt ...)."
  echo "# Regenerate after changing python/pyproject.toml: scripts/lock-python.sh"
  # A package installed from a local wheel is pinned by its version, not by this machine's path.
  .venv/bin/python -m pip freeze --exclude-editable | grep -viE '^(-e |oss-finetune|oss_finetune)' |
    sed -E 's#^([A-Za-z0-9_.-]+) @ file://.*/[^/]+-([0-9][^-]*)-(py|cp).*$#\1==\2#'
} > python/constraints.txt
echo "python/constraints.txt: $(grep -vc '^#' python/constraints.txt) pinned packages"
