#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Daemon logs: --log-format json gives one JSON object per stderr line with ts,
# level, component and msg, plus volume, peer and epoch where they apply; text
# lines carry the same as key=value; -v 0 keeps only errors; a fatal start-up
# error is also written to --termination-log.
#
#   src.img ──pvrepl send──► 127.0.0.1 ──pvrepl receive --log-format json──► dst.img
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 8M /dev/urandom >"$TMP/src.img"
truncate -s 8M "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary --log-format json
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
	--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none >/dev/null
wait_applied "$TMP/rstate/vol" 1
kill "$rpid"
wait_pid "$rpid" 10 rx_rc
python3 - "$TMP/recv.log" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no log lines"
recs = [json.loads(l) for l in lines]  # every line is one JSON object
for r in recs:
    for k in ("ts", "level", "component", "msg"):
        assert k in r, f"line lacks {k}: {r}"
    assert r["component"] == "receive", r
done = [r for r in recs if "full sync complete" in r["msg"]]
assert done, "no sync-complete line"
assert done[0]["volume"] == "vol" and done[0]["epoch"] == 1 and done[0]["peer"] == "127.0.0.1", done[0]
PY

# A fatal start-up error: logged, written to the termination log, non-zero exit.
rc=0
"$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/r2" \
	--volume "vol=$TMP/missing.img" --termination-log "$TMP/term" -v 0 2>"$TMP/fatal.err" || rc=$?
[ "$rc" != 0 ] || fail "a receiver with a missing device started"
grep -q "missing.img" "$TMP/term" || fail "termination log lacks the reason: $(cat "$TMP/term" 2>/dev/null)"
grep -q " error receive .*missing.img" "$TMP/fatal.err" || fail "text log line lacks level/component"
! grep -q " info " "$TMP/fatal.err" || fail "-v 0 still printed info lines"
echo "ok: JSON and text logs, verbosity, termination log"
