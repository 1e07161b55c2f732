#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl status` on both sides: the table's columns, the JSON's stable field
# names and conditions, and --check's exit codes (0 ok, 1 degraded, 2 critical),
# read from the records the running daemons keep.
#
#   src.img ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► dst.img
#   status --state-dir sstate (primary)        status --state-dir rstate (secondary)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 16M /dev/urandom >"$TMP/src.img"
truncate -s 16M "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

# Before any epoch: the standby is in its initial sync, degraded.
"$PVREPL" status --state-dir "$TMP/rstate" >"$TMP/t0"
grep -q '^vol *secondary *initial_sync' "$TMP/t0" || fail "new standby not shown as initial_sync"
rc=0; "$PVREPL" status --state-dir "$TMP/rstate" --check >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "--check on a standby in initial sync: exit $rc, expected 1"

send() {
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --timeout 2s \
		--progress none -o json
}
send >/dev/null
wait_applied "$TMP/rstate/vol" 1

"$PVREPL" status --state-dir "$TMP/sstate" >"$TMP/t1"
head -n 1 "$TMP/t1" | grep -q 'VOLUME *ROLE *STATE *EPOCH *LAG *LAST SYNC *OUT OF SYNC *PEER' ||
	fail "table header differs: $(head -n 1 "$TMP/t1")"
grep -q '^vol *primary *replicating *1 ' "$TMP/t1" || fail "sender not replicating at epoch 1"
"$PVREPL" status --state-dir "$TMP/sstate" --check >/dev/null || fail "--check not 0 when replicating"
"$PVREPL" status --state-dir "$TMP/rstate" --check >/dev/null || fail "standby --check not 0"

"$PVREPL" status --state-dir "$TMP/rstate" -o json >"$TMP/j1"
python3 - "$TMP/j1" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["volumes"][0]
for k in ("volume", "role", "state", "epoch", "lagSeconds", "lastSyncTime", "lastSyncDuration",
          "lastSyncBytes", "consistentPointTime", "outOfSyncBytes", "peer", "conditions"):
    assert k in v, f"missing {k}"
assert v["role"] == "secondary" and v["state"] == "replicating" and v["epoch"] == 1, v
assert v["lastSyncBytes"] > 16 << 20, v["lastSyncBytes"]
assert "primary" in v["peer"], v["peer"]
conds = {c["type"]: c for c in v["conditions"]}
for t in ("Ready", "Consistent"):
    c = conds[t]
    for k in ("type", "status", "reason", "message", "lastTransitionTime"):
        assert k in c, f"condition lacks {k}"
assert conds["Ready"]["status"] == "True", conds["Ready"]
# A full sync is read live: a complete epoch, but not one instant of the source.
assert conds["Consistent"]["status"] == "False", conds["Consistent"]
assert conds["Consistent"]["reason"] == "LiveRead", conds["Consistent"]
PY

# The receiver goes away: the sender's next epoch fails; status says disconnected.
kill "$rpid"
wait_pid "$rpid" 10 rx_rc
send >/dev/null 2>&1 || true
grep -q '^vol *primary *disconnected' <("$PVREPL" status --state-dir "$TMP/sstate") ||
	fail "sender not shown as disconnected"
rc=0; "$PVREPL" status --state-dir "$TMP/sstate" --check >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "--check when disconnected: exit $rc, expected 1"

# Nothing to report is critical for a probe, and a clear message for a person.
rc=0; "$PVREPL" status --state-dir "$TMP/empty-$$" --check >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--check with no volumes: exit $rc, expected 2"
"$PVREPL" status --state-dir "$TMP/empty-$$" >"$TMP/e" 2>&1 || true
grep -q "no volume status under" "$TMP/e" || fail "no message for an empty state dir"
echo "ok: status table, JSON and --check on both sides"
