#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bandwidth caps bite: --max-read-rate holds a scan's reads back (and says
# for how long), --max-rate paces the replication traffic. Assertions are lower
# bounds on elapsed time implied by the cap (a cap that does nothing finishes
# far sooner), never a speed the machine must reach.
#
#   src.img (32 MiB random) ──pvrepl send --max-rate 8M──► 127.0.0.1 ──► dst.img
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

head -c 32M /dev/urandom >"$TMP/src.img"
truncate -s 32M "$TMP/dst.img"

# 32 MiB at 8 MiB/s with one 1 MiB chunk of burst: at least (32 - 1) / 8 s.
"$PVREPL" scan --device "$TMP/src.img" --state-dir "$TMP/scan" --max-read-rate 8M \
	--progress none -o json >"$TMP/scan.json"
python3 - "$TMP/scan.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["seconds"] >= 31 / 8 * 0.95, f"--max-read-rate did not hold back the scan: {j['seconds']} s"
assert j["throttled_seconds"] > 1.0, f"throttled_seconds not reported: {j['throttled_seconds']}"
PY
"$PVREPL" scan --device "$TMP/src.img" --state-dir "$TMP/scan" --max-read-rate 1x 2>"$TMP/err" &&
	fail "a bad --max-read-rate was accepted"
grep -q "expected a rate of at least 4k bytes per second" "$TMP/err" || fail "no clear message for a bad rate"

certs_make "$TMP"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
# 32 MiB of random data (lz4 cannot shrink it) paced at 8 MiB/s: at least ~3.5 s.
"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
	--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --max-rate 8M \
	--progress none -o json >"$TMP/send.json"
python3 - "$TMP/send.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["result"] == "ok", j["message"]
assert j["seconds"] >= 3.5, f"--max-rate did not pace the epoch: {j['seconds']} s"
PY
wait_applied "$TMP/rstate/vol" 1
cmp "$TMP/src.img" "$TMP/dst.img" || fail "standby differs"
echo "ok: --max-read-rate and --max-rate hold the load back"
