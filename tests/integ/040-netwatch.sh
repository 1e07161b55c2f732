#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# netwatch (the libnl route watcher) must report the loss of the path to the peer
# at once, not after TCP timeouts, and its return at once, not after a backoff:
# `test-tool netwatch` watches 10.231.9.2 from namespace A while the test downs and
# ups vethA, takes vethB down (vethA loses carrier, its route stays), and deletes
# and re-adds the route. Each change must be reported within 1000 ms of the
# command (test-tool prints CLOCK_REALTIME ms, compared with `date +%s%3N` taken
# just before the command), with a reason that names the cause.
#
#   namespace pvr-a-$$                               namespace pvr-b-$$
#   ┌──────────────────────────────────────┐        ┌──────────────────────────┐
#   │ test-tool netwatch --peer 10.231.9.2 │        │                          │
#   │ vethA 10.231.9.1/30 ─────────────────┼── ✂ ───┼── vethB 10.231.9.2/30    │
#   │  (down/up, route del/add)            │  veth  │   (down/up: no carrier)  │
#   └──────────────────────────────────────┘        └──────────────────────────┘
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

LIMIT_MS=1000
netns_pair 9
out=$TMP/netwatch.out

# The loopback case, no namespace needed beyond A: lo up means reachable.
ip netns exec "$NS_A" "$TEST_TOOL" netwatch --peer 127.0.0.1 --seconds 0 >"$TMP/lo.out"
grep -q "reachable=1 route to 127.0.0.1 via lo is up" "$TMP/lo.out" ||
	fail "127.0.0.1 with lo up: $(cat "$TMP/lo.out")"

ip netns exec "$NS_A" "$TEST_TOOL" netwatch --peer "$ADDR_B" --seconds 60 >"$out" 2>&1 &
nw=$!
PIDS+=("$nw")

# wait_line N: waits (3 s at most) until $out has at least N lines.
wait_line() {
	local i
	for ((i = 0; i < 60; i++)); do
		[ "$(wc -l <"$out")" -ge "$1" ] && return 0
		pid_alive "$nw" || { cat "$out"; fail "test-tool netwatch exited"; }
		sleep 0.05
	done
	cat "$out"
	fail "no line $1 from test-tool netwatch within 3 s"
}

# step N WANT PATTERN WHAT CMD...: runs CMD, then expects line N to say
# reachable=WANT with PATTERN in its reason, within LIMIT_MS of the command.
lines=1
step() {
	local want=$1 pat=$2 what=$3 t0 line t1 delay
	shift 3
	t0=$(date +%s%3N)
	"$@"
	lines=$((lines + 1))
	wait_line "$lines"
	line=$(sed -n "${lines}p" "$out")
	case $line in
	*" reachable=$want "*"$pat"*) ;;
	*) cat "$out"; fail "$what: expected reachable=$want '$pat', got: $line" ;;
	esac
	t1=$(echo "$line" | cut -d' ' -f2)
	delay=$((t1 - t0))
	echo "$what: reported after ${delay} ms: $(echo "$line" | cut -d' ' -f3-)"
	[ "$delay" -lt "$LIMIT_MS" ] || fail "$what: reported after $delay ms (limit $LIMIT_MS ms)"
}

wait_line 1
grep -q "reachable=1 route to $ADDR_B via vethA is up" "$out" ||
	fail "at start: $(cat "$out")"

# Between steps, wait out the kernel's linkwatch rate limit: a carrier change of
# a veth whose peer has the same ifindex (in another namespace) is not "urgent",
# so the kernel itself announces it up to 1 s after its previous linkwatch run,
# which may itself have come up to 1 s after the previous step. That delay is the
# kernel's, before any netlink event exists to read, so it is not measured.
pause() { sleep 2.1; }

step 0 "link vethA (the route to $ADDR_B) is down" "vethA down" ip -n "$NS_A" link set vethA down
pause
step 1 "route to $ADDR_B via vethA is up" "vethA up" ip -n "$NS_A" link set vethA up
pause
step 0 "link vethA (the route to $ADDR_B) is up but has no carrier" "vethB down" \
	ip -n "$NS_B" link set vethB down
pause
step 1 "route to $ADDR_B via vethA is up" "vethB up" ip -n "$NS_B" link set vethB up
pause
step 0 "no route to $ADDR_B" "route deleted" ip -n "$NS_A" route del "10.231.9.0/30" dev vethA
pause
step 1 "route to $ADDR_B via vethA is up" "route added" \
	ip -n "$NS_A" route add "10.231.9.0/30" dev vethA src "$ADDR_A"

# Noise that does not change reachability must not print a line.
ip -n "$NS_A" addr add 10.231.99.1/24 dev lo
ip -n "$NS_A" link set lo mtu 1500
sleep 0.5
[ "$(wc -l <"$out")" -eq "$lines" ] || { cat "$out"; fail "a line without a change"; }

kill "$nw"
wait "$nw" 2>/dev/null || true
pid_forget "$nw"
echo "ok: every loss and return of the path to $ADDR_B reported within $LIMIT_MS ms"
