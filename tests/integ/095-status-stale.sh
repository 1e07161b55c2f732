#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl status` tells the truth when a daemon is gone (issue 11, defect 4: a
# stopped receiver's last record said `replicating` and --check exited 0). The
# daemons stamp their records with their pid and a heartbeat refreshed every
# 10 s even when idle; a record whose daemon is gone (pid gone, or no heartbeat
# for 35 s) shows state `unknown`, condition Ready False / NotRunning, and
# --check exits 2. A record a one-shot `send` wrote is not a daemon's. --rpo
# checks the standby's consistent point on its own side, and replicate warns
# about the RPO during an outage, not only after a good epoch.
#
#   src.img ──pvrepl send / replicate──► 127.0.0.1 ──pvrepl receive──► dst.img
#
# Checked:
#   1. the receiver's record names its pid and a heartbeat, and the heartbeat
#      moves while the receiver is idle (within 13 s);
#   2. the receiver killed: state unknown, NotRunning naming the pid, --check 2;
#   3. a one-shot send's record stays `replicating`, --check 0, after it exits;
#   4. --rpo 1s on the standby side, its consistent point older: --check 1
#      (RPOExceeded); --rpo rejects a bad duration;
#   5. replicate --rpo 1s with the receiver gone: "past the RPO target" logged
#      while its epochs fail.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 8M /dev/urandom >"$TMP/src.img"
truncate -s 8M "$TMP/dst.img"
RX=(--listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate"
	--volume "vol=$TMP/dst.img" --allow vol=primary)
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
	--tls-dir "$TMP/primary" --server-name standby --progress none -o json >/dev/null
wait_applied "$TMP/rstate/vol" 1

field() { # field DIR NAME: a top-level field of the first volume of status -o json
	"$PVREPL" status --state-dir "$1" -o json | python3 -S -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
if sys.argv[1] == "Ready":
    c = [c for c in v["conditions"] if c["type"] == "Ready"][0]
    print(c["status"], c["reason"], c["message"])
else:
    print(v.get(sys.argv[1]))' "$2"
}

# 1. pid and heartbeat, refreshed while idle.
[ "$(field "$TMP/rstate" writerPid)" = "$rpid" ] || fail "the record does not name the receiver's pid $rpid"
hb0=$(field "$TMP/rstate" heartbeatTime)
[ "$hb0" != None ] || fail "the receiver's record has no heartbeat"
for ((i = 0; i < 130; i++)); do
	[ "$(field "$TMP/rstate" heartbeatTime)" != "$hb0" ] && break
	sleep 0.1
done
[ "$(field "$TMP/rstate" heartbeatTime)" != "$hb0" ] || fail "the idle receiver's heartbeat did not move in 13 s"
echo "heartbeat: $hb0 -> $(field "$TMP/rstate" heartbeatTime)"
"$PVREPL" status --state-dir "$TMP/rstate" --check >/dev/null || fail "--check not 0 while the receiver runs"

# 2. The receiver killed: its record says so.
kill -KILL "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"
[ "$(field "$TMP/rstate" state)" = unknown ] || fail "a killed receiver's volume shows state $(field "$TMP/rstate" state)"
ready=$(field "$TMP/rstate" Ready)
echo "after kill -9: $ready"
[[ $ready == "False NotRunning the receiver (pid $rpid) is not running"* ]] ||
	fail "Ready condition: '$ready'"
rc=0
"$PVREPL" status --state-dir "$TMP/rstate" --check >/dev/null || rc=$?
[ "$rc" = 2 ] || fail "--check with the receiver gone: exit $rc, expected 2"
"$PVREPL" status --state-dir "$TMP/rstate" | grep -q "^vol *secondary *unknown" ||
	fail "the table does not show state unknown"

# 3. A one-shot send is not a daemon: its record is not stale once it exits.
[ "$(field "$TMP/sstate" state)" = replicating ] || fail "the sender's record: $(field "$TMP/sstate" state)"
"$PVREPL" status --state-dir "$TMP/sstate" --check >/dev/null || fail "--check on a one-shot send's record"

# 4. --rpo on the standby side.
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
sleep 1.2
rc=0
"$PVREPL" status --state-dir "$TMP/rstate" --check --rpo 1s >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "--rpo 1s with an older consistent point: exit $rc, expected 1"
[[ $("$PVREPL" status --state-dir "$TMP/rstate" --rpo 1s -o json) == *RPOExceeded* ]] ||
	fail "--rpo 1s: no RPOExceeded"
"$PVREPL" status --state-dir "$TMP/rstate" --check --rpo 1h >/dev/null || fail "--rpo 1h: not ok"
rc=0
"$PVREPL" status --state-dir "$TMP/rstate" --rpo soon 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "--rpo soon: exit $rc, expected 2"

# 5. replicate warns about the RPO while its epochs fail.
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"
timeout 20 "$PVREPL" replicate --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
	--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
	--interval 1s --rpo 1s --timeout 1s --no-netwatch >"$TMP/rep.out" 2>"$TMP/rep.log" &
spid=$!
PIDS+=("$spid")
for ((i = 0; i < 100; i++)); do
	grep -q "past the RPO target" "$TMP/rep.log" && break
	sleep 0.1
done
kill "$spid" 2>/dev/null || true
wait "$spid" 2>/dev/null || true
pid_forget "$spid"
grep "past the RPO target" "$TMP/rep.log" | head -n 1
grep -q "past the RPO target of 1.0 s" "$TMP/rep.log" ||
	{ tail -n 5 "$TMP/rep.log"; fail "replicate did not warn about the RPO while its epochs failed"; }
echo "ok"
