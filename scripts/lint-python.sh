#!/usr/bin/env bash
# Lints the Python code with the settings in python/pyproject.toml: ruff's rules, ruff's formatting
# (checked, never applied) and mypy (strict for oss_finetune.core). Prints one line per tool and exits
# non-zero when any of them fails. Each tool's full output goes to .setup/lint-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

LOGS=.setup/lint-logs
mkdir -p "$LOGS"
status=0

run() {
  local name=$1; shift
  if "$@" > "$LOGS/$name.log" 2>&1; then
    echo "$name: ok"
  else
    status=1
    # Each tool sums up in one line: "Found 3 errors.", "2 files would be reformatted, ...".
    local summary
    summary=$(grep -E '^Found [0-9]+ error|would be reformatted' "$LOGS/$name.log" | tail -n 1 || true)
    echo "$name: FAILED: ${summary:-$(tail -n 1 "$LOGS/$name.log")} (see $LOGS/$name.log)"
  fi
}

run ruff-check .venv/bin/ruff check --output-format concise python bench
run ruff-format .venv/bin/ruff format --check python bench
run mypy .venv/bin/mypy --config-file python/pyproject.toml

exit "$status"
