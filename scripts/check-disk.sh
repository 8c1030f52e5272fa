#!/usr/bin/env bash
# check-disk.sh FOLDER GIB WHAT: fails with a message a person can act on when the disk holding FOLDER
# has less than GIB GiB free for WHAT.
set -euo pipefail
folder=$1 need_gib=$2 what=$3
free_kib=$(df -Pk "$folder" | awk 'NR == 2 { print $4 }')
case "$free_kib" in ''|*[!0-9]*) exit 0 ;; esac  # an unreadable df is no reason to refuse
if [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
  echo "setup: only $((free_kib / 1024)) MiB free on the disk that holds $(cd "$folder" && pwd);" \
    "$what needs about $need_gib GiB. Free some space and run again." >&2
  exit 1
fi
