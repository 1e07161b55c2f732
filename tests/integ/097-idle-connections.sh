#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Strangers cannot keep a sender out (issue 11, defect 9: 32 idle
# unauthenticated TCP connections locked every sender out for about 30 s). A
# connection not yet authorised has 5 s for its TLS handshake and HELLO; at
# most 16 are held (4 per address), a new one cutting the oldest, and an
# authorised connection is never cut.
#
#   python: 48 idle TCP connections to the receiver (40 from 127.0.0.1, 8 from
#           127.0.0.2), bounded in count and time
#   src.img ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► dst.img
#
# Checked:
#   1. with the idle connections held, an epoch succeeds, in under 4 s;
#   2. every idle connection is closed by the receiver within 12 s (cut for room,
#      or at the end of its 5 s);
#   3. an epoch after that still succeeds, and the standby equals the source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 8M /dev/urandom >"$TMP/src.img"
truncate -s 8M "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
PORT=${RX_ADDR##*:}
send_one() {
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json >"$TMP/send.json" 2>"$TMP/send.err"
}

# The strangers: connect, say nothing; report when each is closed (bounded 15 s).
python3 - "$PORT" "$TMP/idle.out" "$TMP/idle.go" <<'PY' &
import os, select, socket, sys, time
port, out, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
socks = []
for i in range(48):
    s = socket.socket()
    s.bind(("127.0.0.1" if i < 40 else "127.0.0.2", 0))
    s.connect(("127.0.0.1", port))
    socks.append((s, time.monotonic()))
open(go, "w").close()
closed, deadline = {}, time.monotonic() + 15
while len(closed) < len(socks) and time.monotonic() < deadline:
    r, _, _ = select.select([s for s, _ in socks if s.fileno() not in closed], [], [], 0.2)
    for s in r:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed[s.fileno()] = time.monotonic()
t0 = min(t for _, t in socks)
with open(out, "w") as f:
    f.write("%d %d %d\n" % (len(socks), len(closed), 1000 * (max(closed.values(), default=0) - t0)))
PY
ppid=$!
PIDS+=("$ppid")
for ((i = 0; i < 100; i++)); do [ -e "$TMP/idle.go" ] && break; sleep 0.1; done
[ -e "$TMP/idle.go" ] || fail "the idle connections were not made"

# 1. An epoch gets through at once.
t0=$(date +%s%3N)
send_one || { cat "$TMP/send.json" "$TMP/send.err"; fail "send with 48 idle connections held failed"; }
t=$(($(date +%s%3N) - t0))
echo "epoch with 48 idle connections held: $t ms"
((t < 4000)) || fail "the epoch took $t ms with idle connections held"

# 2. The strangers are all closed within 12 s.
wait "$ppid" || true
pid_forget "$ppid"
read -r made closed last <"$TMP/idle.out"
echo "idle connections: $made made, $closed closed by the receiver, the last after $last ms"
[ "$closed" = "$made" ] || fail "only $closed of $made idle connections were closed"
((last < 12000)) || fail "the last idle connection was closed after $last ms"
grep -q "cut a connection still unauthorised" "$TMP/recv.log" || fail "no log line about the cut connections"

# 3. Business as usual.
head -c 1M /dev/urandom | dd of="$TMP/src.img" bs=1M seek=3 conv=notrunc status=none
send_one || { cat "$TMP/send.json" "$TMP/send.err"; fail "send after the idle connections failed"; }
wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/send.json")"
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "the standby differs from the source"
echo "ok"
