#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Bad inputs to `pvrepl scan` get a clear error naming the path and the fix, the
# documented exit code, and change nothing on disk.
#
#   $TMP/a.img (8 MiB) --> /dev/loopN      $TMP/state (map of a.img)
#   $TMP/b.img (12 MiB, a different size)   $TMP/corrupt (a damaged map)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

head -c 8M /dev/urandom >"$TMP/a.img"
head -c 12M /dev/urandom >"$TMP/b.img"
loop_attach dev "$TMP/a.img"
state=$TMP/state
"$PVREPL" scan --device "$dev" --state-dir "$state" --block-size 16k --update -o json >/dev/null
sum_before=$(sha256sum "$state/map" | cut -d' ' -f1)

expect() { # expect CODE PATTERN -- cmd...
	local code=$1 pat=$2 rc=0
	shift 3
	"$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" = "$code" ] || { cat "$TMP/err"; fail "'$*' exit $rc, expected $code"; }
	grep -q -- "$pat" "$TMP/err" || { cat "$TMP/err"; fail "'$*' message lacks '$pat'"; }
}

expect 66 "does not exist" -- "$PVREPL" scan --device "$TMP/nope.img" --state-dir "$state"
expect 78 "$TMP/b.img" -- "$PVREPL" scan --device "$TMP/b.img" --state-dir "$state" --update
expect 78 "byte blocks" -- "$PVREPL" scan --device "$dev" --state-dir "$state" --block-size 64k
expect 2 "power of two" -- "$PVREPL" scan --device "$dev" --state-dir "$state" --block-size 3000
expect 2 "needs --device" -- "$PVREPL" scan --state-dir "$state"
expect 2 "unknown command" -- "$PVREPL" frobnicate
[ "$(sha256sum "$state/map" | cut -d' ' -f1)" = "$sum_before" ] || fail "a refused scan changed the map"

# A damaged map is refused as corrupt data (65), naming the file.
mkdir "$TMP/corrupt"
cp "$state/map" "$TMP/corrupt/map"
printf 'garbage' | dd of="$TMP/corrupt/map" bs=1 seek=200 conv=notrunc status=none
expect 65 "$TMP/corrupt/map" -- "$PVREPL" scan --device "$dev" --state-dir "$TMP/corrupt"

# --help is true: every option it lists is accepted.
"$PVREPL" scan --help >"$TMP/help"
for opt in $(grep -o -- '--[a-z-]*' "$TMP/help" | sort -u); do
	grep -q -- "\"${opt#--}\"" "$(dirname "$0")/../../replicator/cmd_scan.c" ||
		fail "--help lists $opt but the parser does not know it"
done
echo "ok: every bad input refused with a clear message; map untouched"
