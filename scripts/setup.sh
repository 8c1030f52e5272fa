#!/usr/bin/env bash
# Sets up everything the project needs on a fresh clone, and skips each step that is already done:
#   npm ci · the Python venv in .venv (python/ with its test extras, pinned by python/constraints.txt)
#   · the TypeScript and labextension builds · the `oss-finetune` kernelspec (magics loaded at start)
#   · Debian's chromium
#   (only with --browser, for the end-to-end tests).
# A step is redone when its inputs changed since it last succeeded (stamps in .setup/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAMPS=.setup
mkdir -p "$STAMPS"

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "setup: unknown option $arg (known: --browser)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
t0=$(date +%s.%N)

# Hash of the given files' contents; a changed lock or manifest re-runs the step that reads it.
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# True when the stamp exists and holds the same fingerprint.
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# 1. npm packages ----------------------------------------------------------------------------
npm_fp=$(fingerprint package-lock.json)
if stamp_ok npm "$npm_fp" && [ -d node_modules ]; then
  say "npm packages up to date"
else
  say "npm ci"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_fp" > "$STAMPS/npm"
fi

# 2. TypeScript and the prebuilt labextension -------------------------------------------------
# Rebuild when any source under these folders is newer than the last successful build.
build_inputs=(schema extension kernel-bridge scripts package-lock.json)
newer_than_build() {
  [ -f "$STAMPS/build" ] || return 0
  [ -n "$(find "${build_inputs[@]}" -newer "$STAMPS/build" \
      -not -path '*/node_modules/*' -not -path '*/lib/*' -not -name '*.tsbuildinfo' \
      -not -path 'extension/coverage/*' -print -quit 2>/dev/null)" ]
}
if newer_than_build || [ ! -f python/oss_finetune/labextension/package.json ] \
    || [ ! -f python/oss_finetune/assets/tokenizer/tokenizer.json ]; then
  say "building TypeScript, the labextension and the Python package's assets"
  # The builds talk a lot; keep their output in a log and show it only when they fail.
  if ! { npm run --silent build && npm run --silent build:python-assets; } >"$STAMPS/build.log" 2>&1; then
    cat "$STAMPS/build.log"
    say "the build failed (log: $STAMPS/build.log)"
    exit 1
  fi
  touch "$STAMPS/build"
else
  say "builds up to date"
fi

# 3. Python venv -----------------------------------------------------------------------------
PY=.venv/bin/python
py_fp=$(fingerprint python/pyproject.toml python/constraints.txt)
if stamp_ok venv "$py_fp" && [ -x "$PY" ]; then
  say "Python venv up to date"
else
  # torch from PyPI brings its CUDA libraries: the venv takes about 6 GiB, plus the wheels while they
  # download. Say so up front rather than leave a half-installed venv and pip's bare ENOSPC.
  bash scripts/check-disk.sh . 7 "the Python venv (torch with its CUDA libraries)" || exit 1
  if [ ! -x "$PY" ]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  say "installing python/ and its test extras into .venv (pinned by python/constraints.txt)"
  "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # The build back-end goes in first so the editable install needs no isolated build env.
  "$PY" -m pip install --quiet --disable-pip-version-check -c python/constraints.txt \
    hatchling hatch-jupyter-builder editables
  # The builds above already made the labextension and the assets; the build hook would run npm again
  # (it skips its npm step only for wheels) and touch package-lock.json, which redid them next time.
  HATCH_JUPYTER_BUILDER_SKIP_NPM=1 "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    -c python/constraints.txt -e "python[test]"
  echo "$py_fp" > "$STAMPS/venv"
fi

# The editable install copies the labextension once; a link keeps the venv serving the live build.
link=.venv/share/jupyter/labextensions/oss-finetune
if [ -L "$link" ] && [ "$(readlink -f "$link")" = "$ROOT/python/oss_finetune/labextension" ]; then
  say "labextension linked"
else
  say "linking the labextension build into .venv"
  # Its deprecation notice and file-by-file lines say nothing a person needs; shown only if it fails.
  if ! PATH="$ROOT/.venv/bin:$PATH" .venv/bin/jupyter labextension develop --overwrite python \
    >"$STAMPS/labextension.log" 2>&1; then
    cat "$STAMPS/labextension.log"
    say "linking the labextension failed (log: $STAMPS/labextension.log)"
    exit 1
  fi
fi

# 4. kernelspec ------------------------------------------------------------------------------
# The kernel loads the %oss_finetune magics as it starts, so they survive a kernel restart.
if "$PY" -m oss_finetune kernel --user --python "$ROOT/.venv/bin/python" --check; then
  say "kernelspec oss-finetune up to date"
else
  say "installing kernelspec oss-finetune -> .venv/bin/python, with %oss_finetune loaded at start"
  "$PY" -m oss_finetune kernel --user --python "$ROOT/.venv/bin/python" >/dev/null
fi

# 5. Chromium, for the end-to-end tests --------------------------------------------------------
if [ "$want_browser" = 1 ]; then
  if [ -x /usr/bin/chromium ]; then
    say "chromium present"
  else
    say "installing Debian's chromium"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi

say "done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
