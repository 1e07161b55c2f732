#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command runs the demo: a real replication over mutual TLS on
# loopback with a receiver killed mid-epoch. It must succeed, verify the standby
# after every epoch, and leave nothing behind (files or processes).
#
#   pvrepl demo ──fork/exec──► pvrepl receive (127.0.0.1:random port)
#       │ source.img ──mTLS──► standby.img       in /var/tmp/pvrepl-demo-XXXXXX (removed)
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
[ "$(grep -c 'standby == source' "$TMP/out")" = 3 ] || fail "demo did not verify 3 epochs"
grep -q 'standby holds the .* epoch exactly' "$TMP/out" || fail "no crash consistency check"
grep -q '^Epochs replicated: *3$' "$TMP/out" || fail "demo did not replicate 3 epochs"
# The receiver it started is gone (its pid is printed).
for pid in $(sed -n 's/.*pid \([0-9]*\).*/\1/p' "$TMP/out"); do
	! kill -0 "$pid" 2>/dev/null || fail "demo left receiver pid $pid running"
done
after=$(count_demo_dirs)
[ "$before" = "$after" ] || fail "demo left its temporary directory behind"
"$PVREPL" demo --bogus >/dev/null 2>&1 && fail "demo accepted an unknown option"
echo "ok: demo ran and cleaned up"
