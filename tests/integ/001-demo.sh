#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command runs the demo: it must succeed, print its summary
# with a matching changed-block count, and leave nothing behind.
#
#   pvrepl demo --> /var/tmp/pvrepl-demo-XXXXXX/{source.img,state/} --> removed
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

count_demo_dirs() {
	local n=0 d
	for d in /var/tmp/pvrepl-demo-*; do [ -e "$d" ] && n=$((n + 1)); done
	echo "$n"
}
before=$(count_demo_dirs)
"$PVREPL" demo >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/out" "$TMP/err"; fail "demo failed"; }
cat "$TMP/out"
grep -q '^Result: *ok$' "$TMP/out" || fail "demo summary lacks 'Result: ok'"
changed=$(awk -F': *' '/^Rescan changed blocks/ {print $2}' "$TMP/out")
touched=$(awk -F': *' '/^Blocks actually touched/ {print $2}' "$TMP/out")
[ -n "$changed" ] && [ "$changed" = "$touched" ] || fail "changed $changed != touched $touched"
[ "$changed" -gt 0 ] || fail "demo changed nothing"
after=$(count_demo_dirs)
[ "$before" = "$after" ] || fail "demo left its temporary directory behind"
"$PVREPL" demo --bogus >/dev/null 2>&1 && fail "demo accepted an unknown option"
echo "ok: demo ran and cleaned up"
