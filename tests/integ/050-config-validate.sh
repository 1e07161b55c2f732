#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl config validate`: a good file is accepted (exit 0, "ok, 2 volume(s)"), a
# bad one is refused with exit 78 and one "FILE:LINE: message" per problem, -o json
# gives the same problems, and a missing file exits 66. No network, no devices.
#
#   $TMP/good.ini  [receiver] [sender] [volume data] [volume logs]
#   $TMP/bad.ini   four mistakes on known lines
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

cat >"$TMP/good.ini" <<'INI'
[receiver]
listen = 0.0.0.0:7400
tls_dir = /etc/pvrepl/tls
state_dir = /var/lib/pvrepl

[sender]
tls_dir = /etc/pvrepl/tls
peer = standby:7400
interval = 30s

[volume data]
device = /dev/vg0/data
state_dir = /var/lib/pvrepl/data
allow = primary

[volume logs]
device = /dev/vg0/logs
state_dir = /var/lib/pvrepl/logs
INI
cat >"$TMP/bad.ini" <<'INI'
[receiver]
listen = 0.0.0.0:7400
tls_dir = /etc/pvrepl/tls
state_dir = /var/lib/pvrepl
timeout = soon
[volume data]
device = dev/sda
[volume data]
device = /dev/sdb
[volumes x]
INI

out=$("$PVREPL" config validate "$TMP/good.ini")
[ "$out" = "$TMP/good.ini: ok, 2 volume(s)" ] || fail "good file: '$out'"

rc=0
"$PVREPL" config validate "$TMP/bad.ini" >"$TMP/out" 2>"$TMP/err" || rc=$?
cat "$TMP/err"
[ "$rc" = 78 ] || fail "bad file: exit $rc, expected 78"
[ "$(wc -l <"$TMP/err")" = 4 ] || fail "expected 4 problems"
grep -qx "$TMP/bad.ini:5: timeout = soon: .*" "$TMP/err" || fail "no line 5 (timeout)"
grep -qx "$TMP/bad.ini:7: device = dev/sda: expected an absolute path.*" "$TMP/err" ||
	fail "no line 7 (device)"
grep -qx "$TMP/bad.ini:8: \[volume data\] appears twice (first on line 6).*" "$TMP/err" ||
	fail "no line 8 (duplicate volume)"
grep -qx "$TMP/bad.ini:10: unknown section \[volumes x\].*" "$TMP/err" ||
	fail "no line 10 (unknown section)"

rc=0
"$PVREPL" config validate -o json "$TMP/bad.ini" >"$TMP/json" || rc=$?
[ "$rc" = 78 ] || fail "json: exit $rc"
grep -q '"problem_count":4' "$TMP/json" || fail "json lacks problem_count 4: $(cat "$TMP/json")"
grep -q '{"line":8,"message":"\[volume data\] appears twice' "$TMP/json" || fail "json lacks line 8"

rc=0
"$PVREPL" config validate "$TMP/missing.ini" 2>"$TMP/err" || rc=$?
[ "$rc" = 66 ] || fail "missing file: exit $rc, expected 66"
grep -q "cannot open $TMP/missing.ini" "$TMP/err" || fail "missing file: no message"

"$PVREPL" config --help | grep -q "config validate FILE" || fail "config --help"
rc=0
"$PVREPL" config validate 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "no FILE: exit $rc, expected 2"
echo "ok"
