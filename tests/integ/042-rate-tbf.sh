#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bandwidth caps over a real rate-limited link: a tbf qdisc holds the
# sender's egress to 40 Mbit/s, then
#   1. a full sync of 24 MiB of random data (lz4 cannot shrink it) with a cap
#      above the link (--max-rate 100M) takes at least what the link implies, the
#      cap is not counted as throttling (the link set the pace), and the standby
#      equals the source;
#   2. an incremental epoch of 8 MiB with --max-rate 2M (below the link) takes at
#      least what the cap implies, well above what the link alone would allow;
#   3. `replicate --max-read-rate 4M --metrics-addr` reports
#      pvrepl_throttled_seconds_total > 0 (scraped inside the sender's namespace).
# Assertions are lower bounds on elapsed time implied by the link or a cap (a cap
# that does nothing finishes far sooner), never a speed the machine must reach,
# plus byte equality of the standby.
#
#   namespace pvr-a-$$ (primary)                    namespace pvr-b-$$ (standby)
#   ┌─────────────────────────────────────┐        ┌────────────────────────────────┐
#   │ pvrepl send / replicate             │        │ pvrepl receive                 │
#   │ 127.0.0.1:$MPORT/metrics            │  veth  │                                │
#   │ vethA 10.231.42.1/30 ─[tbf 40mbit]──┼────────┼──► vethB 10.231.42.2/30:PORT   │
#   └─────────────────────────────────────┘        └────────────────────────────────┘
#     $TMP/src.img (24 MiB random)                    $TMP/dst.img
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
command -v ip >/dev/null || skip "needs iproute2 (ip)"
command -v tc >/dev/null || skip "needs iproute2 (tc)"
trap cleanup_common EXIT

MiB=$((1 << 20))
SIZE=$((24 * MiB))
LINK_BITS=40000000 # tc's "40mbit" is 40 * 10^6 bit/s
MPORT=9542         # the sender's namespace has a loopback of its own: no clash

netns_pair 42
# 40 Mbit/s = 5 MB/s. burst 64 KiB holds one full GSO packet (tbf segments larger
# ones) and is 13 ms of the rate, negligible next to the seconds measured; latency
# 50 ms bounds the queue (~250 KB) so TCP sees the bottleneck without huge RTTs.
tc -n "$NS_A" qdisc replace dev vethA root tbf rate 40mbit burst 64kb latency 50ms ||
	skip "cannot add a tbf qdisc (sch_tbf missing?)"
tc -n "$NS_A" qdisc show dev vethA | grep -q tbf || skip "tbf qdisc not in place"

certs_make "$TMP/certs"
head -c "$SIZE" /dev/urandom >"$TMP/src.img"
truncate -s "$SIZE" "$TMP/dst.img"

rxlog=$TMP/receiver.log
receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" --listen "$ADDR_B:0" \
	--tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary --journal-size 64M
receiver_wait "$rx" "$TMP/ready" "$rxlog"

n=0
send() { # send [ARGS...]: one epoch from namespace A; JSON in $out
	n=$((n + 1))
	local rc=0
	timeout 60 ip netns exec "$NS_A" "$PVREPL" send --volume vol --device "$TMP/src.img" \
		--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
		--server-name standby --progress none -o json "$@" \
		>"$TMP/send$n.json" 2>"$TMP/send$n.err" || rc=$?
	[ "$rc" = 0 ] || { cat "$TMP/send$n.err" "$TMP/send$n.json"; tail -n 5 "$rxlog"; fail "send $n exit $rc"; }
	out=$TMP/send$n.json
}
converged() { # the last epoch is applied and the standby equals the source
	wait_applied "$TMP/rstate/vol" "$1" || fail "epoch $1 not applied on the standby"
	dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "after epoch $1 the standby differs from the source"
}

# 1. The link alone: 24 MiB at 5 MB/s is at least 5.0 s (TLS and framing only add).
send --max-rate 100M
python3 - "$out" "$SIZE" "$LINK_BITS" <<'PY' || fail "full sync over the tbf link: see above"
import json, sys
j, size, bits = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
assert j["result"] == "ok", j["message"]
assert j["kind"] == "full sync" and j["epoch"] == 1, j
assert j["wire_bytes"] >= size, f"wire_bytes {j['wire_bytes']} < {size}: data was compressed?"
floor = 0.85 * size * 8 / bits
print(f"1. full sync {size} B over 40 Mbit/s: {j['seconds']:.2f} s (link floor {floor:.2f} s), "
      f"wire {j['wire_bytes']} B, throttled {j['throttled_seconds']}")
assert j["seconds"] >= floor, f"faster than the link allows: {j['seconds']} s < {floor:.2f} s (tbf not in the path?)"
# The sender blocked on its socket for most of it, but the link, not the cap, set
# the pace: not throttling.
assert j["throttled_seconds"] < 0.5, f"a cap above the link counted as throttling: {j['throttled_seconds']} s"
PY
converged 1

# 2. --max-rate 2M (2 MiB/s) inside the 5 MB/s link: 8 MiB of new random data
#    (512 blocks of 16 KiB) takes at least 0.85 * 4 s = 3.4 s, twice what the link
#    alone would need (1.7 s), so only the cap can explain it.
CHANGED=$((8 * MiB))
dd if=/dev/urandom of="$TMP/src.img" bs=1M seek=8 count=8 conv=notrunc status=none
send --max-rate 2M
python3 - "$out" "$CHANGED" "$LINK_BITS" <<'PY' || fail "--max-rate over the tbf link: see above"
import json, sys
j, changed, bits = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
assert j["result"] == "ok", j["message"]
assert j["kind"] == "incremental" and j["epoch"] == 2, j
assert j["blocks_changed"] == changed // 16384, j
assert j["wire_bytes"] >= changed, f"wire_bytes {j['wire_bytes']} < {changed}"
cap = 2 << 20
floor, link = 0.85 * changed / cap, changed * 8 / bits
assert floor > 1.5 * link, "test design: the cap's floor must lie well above the link's"
print(f"2. incremental {changed} B with --max-rate 2M: {j['seconds']:.2f} s "
      f"(cap floor {floor:.2f} s, link alone {link:.2f} s), throttled_seconds "
      f"{j['throttled_seconds']}")
assert j["seconds"] >= floor, f"--max-rate did not bite inside the link: {j['seconds']} s < {floor:.2f} s"
# The sender sat blocked on the paced socket for most of the epoch: it says so.
assert j["throttled_seconds"] >= 0.5 * floor, f"--max-rate bit but throttled_seconds is {j['throttled_seconds']}"
PY
converged 2

# 3. replicate --max-read-rate 4M: each epoch reads all 24 MiB at 4 MiB/s (one
#    1 MiB chunk of burst), so at least ~5.5 s of held-back reads; the metric is
#    updated once the epoch ends. throttled_seconds_total counts the read cap
#    (scan.c's token bucket); part 2 checks that it counts --max-rate too.
dd if=/dev/urandom of="$TMP/src.img" bs=16k seek=3 count=5 conv=notrunc status=none
ip netns exec "$NS_A" "$PVREPL" replicate --volume vol --device "$TMP/src.img" \
	--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
	--server-name standby --interval 60s --max-read-rate 4M --progress none -o json \
	--metrics-addr "127.0.0.1:$MPORT" >"$TMP/rep.json" 2>"$TMP/rep.err" &
rep=$!
PIDS+=("$rep")

metric() { # the sum of pvrepl_throttled_seconds_total for the primary, scraped in NS_A
	ip netns exec "$NS_A" curl -s --max-time 2 "http://127.0.0.1:$MPORT/metrics" 2>/dev/null |
		awk '/^pvrepl_throttled_seconds_total\{/ && /role="primary"/ { s += $NF; f = 1 }
		     END { if (f) printf "%.6f\n", s }'
}
val=
for ((i = 0; i < 250; i++)); do # 25 s at most
	pid_alive "$rep" || { cat "$TMP/rep.err"; fail "replicate exited early"; }
	val=$(metric || true)
	[ -n "$val" ] && awk -v v="$val" 'BEGIN { exit !(v > 0) }' && break
	sleep 0.1
done
if ! { [ -n "$val" ] && awk -v v="$val" 'BEGIN { exit !(v > 0) }'; }; then
	tail -n 20 "$TMP/rep.err"
	fail "pvrepl_throttled_seconds_total = '$val', expected > 0 within 25 s"
fi
for ((i = 0; i < 50; i++)); do [ -s "$TMP/rep.json" ] && break; sleep 0.1; done
python3 - "$TMP/rep.json" "$SIZE" "$val" <<'PY' || fail "replicate --max-read-rate: see above"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
size, metric = int(sys.argv[2]), float(sys.argv[3])
assert runs, "no epoch printed"
j = runs[0]
assert j["result"] == "ok" and j["epoch"] == 3 and j["blocks_changed"] == 5, j
floor = 0.85 * (size - (1 << 20)) / (4 << 20)
print(f"3. replicate epoch with --max-read-rate 4M: {j['seconds']:.2f} s (read floor {floor:.2f} s), "
      f"throttled_seconds {j['throttled_seconds']:.2f}, metric pvrepl_throttled_seconds_total {metric:.2f}")
assert j["seconds"] >= floor, f"--max-read-rate did not hold the reads back: {j['seconds']} s"
assert j["throttled_seconds"] > 0, j
assert abs(metric - j["throttled_seconds"]) < 1e-3, "metric differs from the epoch's throttled_seconds"
PY
converged 3
kill "$rep"
wait_pid "$rep" 10 rep_rc
[ -z "$(grep -E 'FAILED|VERIFY|refused' "$rxlog" || true)" ] || { cat "$rxlog"; fail "receiver logged a failure"; }
echo "ok: the tbf link and --max-rate bound the transfer, --max-read-rate counts in throttled_seconds_total"
