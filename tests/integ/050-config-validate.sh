#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl config validate`: a good file is accepted (exit 0, "ok, 2 volume(s)"), a
# bad one is refused with exit 78 and one "FILE:LINE: message" per problem, -o json
# gives the same problems, and a missing file exits 66. The devices are checked as
# the daemons check them: a missing one is a problem (not with --syntax-only), and
# two volumes over one storage (a file under two names) are refused. No network;
# regular files stand for the devices.
#
#   $TMP/good.ini  [receiver] [sender] [volume data] [volume logs] on $TMP/*.img
#   $TMP/bad.ini   four mistakes on known lines
#   $TMP/ghost.ini devices that do not exist; $TMP/twice.ini data.img and a symlink to it
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

cat >"$TMP/good.ini" <<'INI'
[receiver]
listen = 0.0.0.0:7400
tls_dir = @TMP@/tls
state_dir = /var/lib/pvrepl

[sender]
tls_dir = @TMP@/tls
peer = standby:7400
interval = 30s

[volume data]
device = @TMP@/data.img
state_dir = /var/lib/pvrepl/data
allow = primary

[volume logs]
device = @TMP@/logs.img
state_dir = /var/lib/pvrepl/logs
INI
truncate -s 1M "$TMP/data.img" "$TMP/logs.img"
ln -s data.img "$TMP/alias.img"
mkdir "$TMP/tls"
sed -i "s|@TMP@|$TMP|" "$TMP/good.ini"
sed "s|$TMP/data.img|/dev/vg0/data|; s|$TMP/logs.img|/dev/vg0/logs|; s|$TMP/tls|/etc/pvrepl/tls|" \
	"$TMP/good.ini" >"$TMP/ghost.ini"
sed "s|$TMP/logs.img|$TMP/alias.img|" "$TMP/good.ini" >"$TMP/twice.ini"
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
"$PVREPL" config validate --syntax-only "$TMP/bad.ini" >"$TMP/out" 2>"$TMP/err" || rc=$?
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
"$PVREPL" config validate --syntax-only -o json "$TMP/bad.ini" >"$TMP/json" || rc=$?
[ "$rc" = 78 ] || fail "json: exit $rc"
grep -q '"problem_count":4' "$TMP/json" || fail "json lacks problem_count 4: $(cat "$TMP/json")"
grep -q '{"line":8,"message":"\[volume data\] appears twice' "$TMP/json" || fail "json lacks line 8"

# Devices that do not exist here: problems with their lines, unless the file is
# checked for another machine (--syntax-only).
rc=0
"$PVREPL" config validate "$TMP/ghost.ini" >"$TMP/out" 2>"$TMP/err" || rc=$?
cat "$TMP/err"
[ "$rc" = 78 ] || fail "missing devices: exit $rc, expected 78"
grep -qx "$TMP/ghost.ini:11: \[volume data\] device /dev/vg0/data: No such file or directory.*" "$TMP/err" ||
	fail "missing devices: no problem for /dev/vg0/data on line 11"
grep -q "/dev/vg0/logs: No such file" "$TMP/err" || fail "missing devices: no problem for /dev/vg0/logs"
grep -q "\[receiver\] tls_dir /etc/pvrepl/tls is not a directory here" "$TMP/err" ||
	fail "a missing tls_dir is not a problem"
out=$("$PVREPL" config validate --syntax-only "$TMP/ghost.ini")
[ "$out" = "$TMP/ghost.ini: ok, 2 volume(s)" ] || fail "--syntax-only: '$out'"

# One file under two names: the receiver would write one standby for two
# volumes (and the sender read one source as two).
rc=0
"$PVREPL" config validate "$TMP/twice.ini" >"$TMP/out" 2>"$TMP/err" || rc=$?
cat "$TMP/err"
[ "$rc" = 78 ] || fail "one file under two names: exit $rc, expected 78"
grep -q "volumes data and logs share storage: $TMP/data.img and $TMP/alias.img are both file" "$TMP/err" ||
	fail "one file under two names: not refused naming both volumes and paths"

rc=0
"$PVREPL" config validate "$TMP/missing.ini" 2>"$TMP/err" || rc=$?
[ "$rc" = 66 ] || fail "missing file: exit $rc, expected 66"
grep -q "cannot open $TMP/missing.ini" "$TMP/err" || fail "missing file: no message"

"$PVREPL" config --help | grep -q "config validate FILE" || fail "config --help"
rc=0
"$PVREPL" config validate 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "no FILE: exit $rc, expected 2"
echo "ok"
