#!/usr/bin/env bash
# Runs every test suite (the linters, jest, pytest, the end-to-end suite in JupyterLab + Chromium) after the
# idempotent set-up, and ends with one line: `N passed, N failed`, summed over the suites.
# Exits non-zero when any suite fails or cannot run.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --browser || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

LOGS=.setup/test-logs
mkdir -p "$LOGS"
total_passed=0
total_failed=0
status=0


playwright_count() {
  local n; n=$(grep -oE "^\s+[0-9]+ $1" "$LOGS/e2e.log" | tail -n 1 | grep -oE '[0-9]+')
  echo "${n:-0}"
}

run_suite() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  local passed failed
  case "$name" in
    jest)
      passed=$(grep -E '^Tests:' "$LOGS/$name.log" | tail -n 1 | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
      failed=$(grep -E '^Tests:' "$LOGS/$name.log" | tail -n 1 | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+') ;;
    pytest)
      local line; line=$(grep -E '(passed|failed|error|no tests ran)' "$LOGS/$name.log" | grep -E ' in [0-9.]+s' | tail -n 1)
      passed=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
      failed=$(( $(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0) + $(echo "$line" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+' || echo 0) )) ;;
    lint)
      passed=$(grep -oE '^lint: [0-9]+ passed' "$LOGS/$name.log" | tail -n 1 | grep -oE '[0-9]+')
      failed=$(grep -oE '^lint: [0-9]+ passed, [0-9]+ failed' "$LOGS/$name.log" | tail -n 1 | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+') ;;
    e2e)
      # Playwright's closing lines: "  4 failed", "  1 flaky", "  5 passed (2.6m)".
      passed=$(playwright_count passed)
      failed=$(( $(playwright_count failed) + $(playwright_count flaky) )) ;;
  esac
  passed=${passed:-0}; failed=${failed:-0}
  # Anything but a plain count means the summary could not be read: count it as a failure.
  [[ "$passed" =~ ^[0-9]+$ ]] || { passed=0; failed=$((failed + 1)); }
  # A suite that crashed before reporting (or reported nothing) counts as one failure.
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "$name ran no test"; fi
  [ "$failed" -eq 0 ] || status=1
  echo "=== $name: $passed passed, $failed failed"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}

run_suite lint bash scripts/lint.sh
run_suite jest npx jest --ci
run_suite pytest .venv/bin/python -m pytest -q -p no:cacheprovider python/tests
if [ -f tests/e2e/playwright.config.ts ]; then
  run_suite e2e npx playwright test -c tests/e2e/playwright.config.ts
fi

echo
echo "$total_passed passed, $total_failed failed"
exit $status
