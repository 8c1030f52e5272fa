#!/usr/bin/env bash
# The linters and type checkers, each a check that passes or fails: eslint and prettier for the
# TypeScript, ruff (lint and format) and mypy for the Python. Ends with `lint: N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
check() {
  local name=$1; shift
  if "$@"; then
    echo "lint: $name ok"; passed=$((passed + 1))
  else
    echo "lint: $name FAILED ($*)"; failed=$((failed + 1))
  fi
}
check "eslint + prettier (TypeScript)" npm run --silent lint:ts
check "ruff check (Python)" .venv/bin/ruff check python bench schema/scripts
check "ruff format (Python)" .venv/bin/ruff format --check python bench schema/scripts
check "mypy (Python)" .venv/bin/mypy --config-file python/pyproject.toml python/oss_finetune
echo "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
