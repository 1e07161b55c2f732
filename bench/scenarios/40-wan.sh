#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Replication over a rate-limited link: sender and receiver in two network
# namespaces joined by a veth pair shaped with tbf, at 100 Mbit/s and 1 Gbit/s.
# For each rate, the initial full sync and an incremental epoch after 1% of the
# 4 KiB blocks changed, pvrepl (mutual TLS) against an rsync daemon over the same
# link. A benchmark, not a test: timings never fail the run; a standby that
# differs from its source does.
#
#   link    namespaces pvb-tx-PID (sender) and pvb-rx-PID (receiver), veth
#           veth-tx 10.241.0.1/30 <-> veth-rx 10.241.0.2/30 (the addresses exist
#           only inside those namespaces). tbf on the egress of BOTH ends, so the
#           data and the acks cross the same link:
#             100 Mbit/s  burst 128 KiB (~10 ms at line rate), latency 50 ms
#             1 Gbit/s    burst 512 KiB (~4 ms at line rate), latency 50 ms
#           the burst is at least twice the largest GSO packet (64 KiB), so tbf
#           never has to split one, and small enough not to hide the rate over
#           a run of seconds; latency (the queue tbf may hold) is generous so
#           that TCP, not qdisc drops, sets the pace. Drops are reported.
#   images  mixed-v1-256m for 100 Mbit/s, mixed-v1-1024m for 1 Gbit/s (QUICK=1:
#           128m and 256m), from mixed-data.py, kept in BENCH_WORK
#   peers   `pvrepl receive` in the rx namespace (started fresh for every run),
#           `pvrepl send -o json` in the tx namespace; mutual TLS with
#           certificates from `pvrepl certs`, --allow vol=source. rsync: a daemon
#           (`rsync --daemon --no-detach`, module path in scratch, listening on
#           10.241.0.2) in the rx namespace, the client
#           `rsync --inplace --no-whole-file --stats` in the tx namespace; no -z,
#           and the daemon protocol is not encrypted
#   a.      initial sync, RUNS rounds (3; QUICK=1: 1 unless RUNS is set), order
#           alternating per round: pvrepl to a fresh sparse standby with fresh
#           state dirs; rsync to a module without the file. The last pvrepl
#           pair's state dirs are kept as the synced pair
#   b.      a copy of the image gets 1% of its 4 KiB blocks rewritten
#           (mixed-data.py write, SEED=1); RUNS rounds, order alternating: each
#           standby is returned to the image by writing back the image's content
#           at the changed offsets (pvrepl's state dirs restored from the synced
#           pair), then one timed incremental transfer
#
# Every timed run: page cache dropped first; time from the start to the ack
# (pvrepl; an acked epoch is durable) or to the end of rsync plus `sync STANDBY`;
# the receiver's "applied" log line waited for (bounded) before the standby is
# compared with `cmp` against the source after EVERY run. Bytes on the wire are
# the tx namespace's veth counters (tx_bytes + rx_bytes) before and after the run;
# utilisation = wire bits / (link rate x seconds). Medians are reported.
#   output  $RESULTS_DIR/40-wan.md, .json, raw output in 40-wan-raw/, and
#           40-wan-seconds.png when bench_plot_bars is available
#   env     BUILD, QUICK, RUNS, BENCH_WORK, RESULTS_DIR, SEED (1)
# Needs root (namespaces, tc, drop_caches), ip, tc and rsync; exits 77 with the
# reason otherwise.
set -euo pipefail
NAME=40-wan
RUNS_GIVEN=${RUNS:-}
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
# rate label, Mbit/s, image MiB, tbf burst, tbf latency
if [ "$QUICK" = 1 ]; then
	LINKS=("100mbit 100 128 128kb 50ms" "1gbit 1000 256 512kb 50ms")
	[ -n "$RUNS_GIVEN" ] || RUNS=1
else
	LINKS=("100mbit 100 256 128kb 50ms" "1gbit 1000 1024 512kb 50ms")
fi
SEED=${SEED:-1}
NS_TX=pvb-tx-$$
NS_RX=pvb-rx-$$
VETH_TX=veth-tx
VETH_RX=veth-rx
ADDR_TX=10.241.0.1
ADDR_RX=10.241.0.2
RSYNC_PORT=8730

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, tc, drop_caches)"
command -v ip >/dev/null || skip "ip (iproute2) is not installed"
command -v tc >/dev/null || skip "tc (iproute2) is not installed"
command -v rsync >/dev/null || skip "rsync is not installed (make deps)"
need_root
need_tools

PIDS=() # every background process this script started, by PID
NETNS=()
RX_PID=
RSYNCD_PID=
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# descendants PID: the processes below PID, each before its parent (the rsync
# daemon forks per connection, and those fork again; found by PID, not by name).
descendants() {
	local c
	for c in $(pgrep -P "$1" || true); do
		descendants "$c"
		echo "$c"
	done
}

# stop PID: SIGTERM to PID and everything below it, up to 5 s, then SIGKILL to
# what is left; reaps PID.
stop() {
	local p=$1 i q all left
	[ -n "$p" ] || return 0
	mapfile -t all < <(descendants "$p")
	all+=("$p")
	kill -TERM "${all[@]}" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		left=0
		for q in "${all[@]}"; do alive "$q" && left=1; done
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	kill -KILL "${all[@]}" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	forget "$p"
}

on_exit() {
	local p n
	set +e
	for p in "${PIDS[@]}"; do stop "$p"; done
	for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
	cleanup # common.sh: removes $WORK
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers, Python for what the shell does badly ---------------------------
cat >"$WORK/bin/wan-tool" <<'EOF'
#!/usr/bin/env python3
import json, os, sys
cmd = sys.argv[1]
if cmd == "restore":  # restore FROM TO OFFSETS: FROM's 4 KiB blocks at OFFSETS into TO
    src, dst = os.open(sys.argv[2], os.O_RDONLY), os.open(sys.argv[3], os.O_WRONLY)
    with open(sys.argv[4]) as f:
        for off in map(int, f):
            if os.pwrite(dst, os.pread(src, 4096, off), off) != 4096:
                sys.exit(f"short write at {off}")
    os.fsync(dst)
EOF
chmod +x "$WORK/bin/wan-tool"
WAN_TOOL=$WORK/bin/wan-tool


# run_bounded SECONDS OUT CMD...: CMD in the background (so a signal reaches our
# traps at once), stdout to OUT, stderr to OUT.err; returns its exit code.
run_bounded() {
	local secs=$1 out=$2 pid rc=0
	shift 2
	timeout --kill-after=10 "$secs" "$@" >"$out" 2>"$out.err" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# --- the link -----------------------------------------------------------------
say "creating namespaces $NS_TX and $NS_RX joined by a veth pair"
ip netns add "$NS_TX" 2>/dev/null || skip "cannot create network namespaces"
NETNS+=("$NS_TX")
ip netns add "$NS_RX" || die "cannot create namespace $NS_RX"
NETNS+=("$NS_RX")
ip link add "$VETH_TX" netns "$NS_TX" type veth peer name "$VETH_RX" netns "$NS_RX" ||
	skip "cannot create a veth pair"
ip -n "$NS_TX" addr add "$ADDR_TX/30" dev "$VETH_TX"
ip -n "$NS_RX" addr add "$ADDR_RX/30" dev "$VETH_RX"
for ns in "$NS_TX" "$NS_RX"; do ip -n "$ns" link set lo up; done
ip -n "$NS_TX" link set "$VETH_TX" up
ip -n "$NS_RX" link set "$VETH_RX" up

# shape MBIT BURST LATENCY: the same tbf on both ends' egress.
shape() {
	tc -n "$NS_TX" qdisc replace dev "$VETH_TX" root tbf rate "$1mbit" burst "$2" latency "$3" &&
		tc -n "$NS_RX" qdisc replace dev "$VETH_RX" root tbf rate "$1mbit" burst "$2" latency "$3"
}
shape 100 128kb 50ms || skip "tc cannot attach a tbf qdisc to a veth"

# counters: "veth_tx veth_rx qdisc_tx_bytes qdisc_tx_drops qdisc_rx_bytes
# qdisc_rx_drops", the veth seen from the sender's namespace and both tbf qdiscs.
qdisc_stats() { tc -n "$1" -s qdisc show dev "$2" | awk '$1 == "Sent" { sub(",", "", $7); print $2, $7; exit }'; }
counters() {
	local s=/sys/class/net/$VETH_TX/statistics
	echo "$(ip netns exec "$NS_TX" cat "$s/tx_bytes" "$s/rx_bytes" | tr '\n' ' ')$(
		qdisc_stats "$NS_TX" "$VETH_TX") $(qdisc_stats "$NS_RX" "$VETH_RX")"
}
# link_json BEFORE AFTER SECONDS [APPLIED]: the run's outside view as JSON.
link_json() {
	local -a a b
	read -r -a a <<<"$1"
	read -r -a b <<<"$2"
	printf '{"seconds": %s, "applied_seconds": %s, "veth_tx_bytes": %d, "veth_rx_bytes": %d, ' \
		"$3" "${4:-null}" $((b[0] - a[0])) $((b[1] - a[1]))
	printf '"qdisc_tx_bytes": %d, "qdisc_tx_drops": %d, "qdisc_rx_bytes": %d, "qdisc_rx_drops": %d}\n' \
		$((b[2] - a[2])) $((b[3] - a[3])) $((b[4] - a[4])) $((b[5] - a[5]))
}

say "making a CA and the certificates of 'source' and 'standby'"
"$PVREPL" certs ca --out "$WORK/tls/ca" >/dev/null
"$PVREPL" certs issue --ca "$WORK/tls/ca" --name standby --out "$WORK/tls/rx" >/dev/null
"$PVREPL" certs issue --ca "$WORK/tls/ca" --name source --out "$WORK/tls/tx" >/dev/null

# The rsync daemon, once for the whole scenario (the link under it changes).
RSYNC_DIR=$WORK/rsync
mkdir -p "$RSYNC_DIR"
cat >"$WORK/rsyncd.conf" <<EOF
address = $ADDR_RX
port = $RSYNC_PORT
use chroot = no
uid = root
gid = root
log file = $RAW/rsyncd.log
[wan]
path = $RSYNC_DIR
read only = false
EOF
ip netns exec "$NS_RX" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" \
	>"$RAW/rsyncd.out" 2>&1 &
RSYNCD_PID=$!
PIDS+=("$RSYNCD_PID")
RSYNC_URL=rsync://$ADDR_RX:$RSYNC_PORT/wan
for ((i = 0; i < 50; i++)); do
	alive "$RSYNCD_PID" || die "the rsync daemon exited (see $RAW/rsyncd.out)"
	timeout 5 ip netns exec "$NS_TX" rsync "rsync://$ADDR_RX:$RSYNC_PORT/" 2>/dev/null |
		grep -q '^wan' && break
	sleep 0.1
done
timeout 5 ip netns exec "$NS_TX" rsync "rsync://$ADDR_RX:$RSYNC_PORT/" 2>/dev/null |
	grep -q '^wan' || die "the rsync daemon does not answer on $ADDR_RX:$RSYNC_PORT within 5 s"

# --- pvrepl ---------------------------------------------------------------------
# start_receiver TAG: a fresh receiver in the rx namespace for $STANDBY; sets PEER.
start_receiver() {
	local i
	RX_LOG=$RAW/$1-receiver.log
	rm -f "$WORK/ready"
	ip netns exec "$NS_RX" "$PVREPL" receive --listen "$ADDR_RX:0" --tls-dir "$WORK/tls/rx" \
		--state-dir "$WORK/rx-state" --volume "vol=$STANDBY" --allow vol=source \
		--ready-file "$WORK/ready" >"$RX_LOG" 2>&1 &
	RX_PID=$!
	PIDS+=("$RX_PID")
	for ((i = 0; i < 200; i++)); do
		[ -s "$WORK/ready" ] && break
		alive "$RX_PID" || die "the receiver exited at start (see $RX_LOG)"
		sleep 0.05
	done
	[ -s "$WORK/ready" ] || die "the receiver is not listening after 10 s (see $RX_LOG)"
	PEER=$(cat "$WORK/ready")
}
stop_receiver() {
	stop "$RX_PID"
	RX_PID=
}

# pvrepl_run TAG DEVICE: one timed `pvrepl send` from the tx namespace to the
# running receiver; waits until the receiver logged the epoch applied.
pvrepl_run() {
	local tag=$1 dev=$2 c0 c1 t0 t1 t2 epoch i done_re
	drop_caches
	c0=$(counters)
	t0=$(now)
	run_bounded "$RUN_S" "$RAW/$tag.json" ip netns exec "$NS_TX" "$PVREPL" send \
		--volume vol --device "$dev" --state-dir "$WORK/tx-state" --peer "$PEER" \
		--tls-dir "$WORK/tls/tx" --server-name standby -o json --progress none ||
		die "pvrepl send failed in $tag (see $RAW/$tag.json.err and $RX_LOG)"
	t1=$(now)
	# The ack of an incremental epoch means durable in the journal; the receiver
	# applies it to the standby right after. Polled before anything else, so
	# ack-to-applied is measured to the poll's 20 ms.
	[[ $(<"$RAW/$tag.json") =~ \"epoch\":([0-9]+) ]] || die "no epoch in $RAW/$tag.json"
	epoch=${BASH_REMATCH[1]}
	done_re="epoch=$epoch (committed and applied|full sync complete)"
	for ((i = 0; i < 3000; i++)); do
		grep -Eq "$done_re" "$RX_LOG" && break
		sleep 0.02
	done
	grep -Eq "$done_re" "$RX_LOG" ||
		die "the receiver did not log epoch $epoch applied within 60 s (see $RX_LOG)"
	t2=$(now)
	c1=$(counters)
	link_json "$c0" "$c1" "$(elapsed "$t0" "$t1")" "$(elapsed "$t0" "$t2")" >"$RAW/$tag-run.json"
}

# keep_state SRC DST: copies a state dir; the receiver's preallocated journal is
# copied sparse and preallocated again, so a restored pair starts like the
# synced one did.
keep_state() {
	local f
	rm -rf "$2"
	mkdir -p "$(dirname "$2")"
	cp -a --sparse=always "$1" "$2"
	while IFS= read -r -d '' f; do
		fallocate -l "$(stat -c %s "$f")" "$f"
	done < <(find "$2" -type f -print0)
}

# --- rsync ----------------------------------------------------------------------
# rsync_run TAG SOURCE: one timed rsync from the tx namespace into the daemon's
# module, then `sync` of the standby inside the timing (pvrepl's ack means durable).
rsync_run() {
	local tag=$1 c0 c1 t0 t1
	drop_caches
	c0=$(counters)
	t0=$(now)
	run_bounded "$RUN_S" "$RAW/$tag.txt" ip netns exec "$NS_TX" \
		rsync --inplace --no-whole-file --stats "$2" "$RSYNC_URL/standby.img" ||
		die "rsync failed in $tag (see $RAW/$tag.txt.err)"
	sync "$RSYNC_STANDBY"
	t1=$(now)
	c1=$(counters)
	link_json "$c0" "$c1" "$(elapsed "$t0" "$t1")" >"$RAW/$tag-run.json"
	grep -q '^Number of regular files transferred: 1$' "$RAW/$tag.txt" ||
		die "rsync transferred nothing in $tag (see $RAW/$tag.txt)"
}

# check SOURCE STANDBY TAG: the scenario fails on a standby that is not the source.
check() {
	cmp "$1" "$2" >/dev/null || die "$3: the standby differs from its source ($2 vs $1)"
}

# --- per link rate ---------------------------------------------------------------
RSYNC_STANDBY=$RSYNC_DIR/standby.img
STANDBY=$WORK/standby.img
CHANGED=$WORK/changed.img
for link in "${LINKS[@]}"; do
	read -r RATE MBIT MIB BURST LATENCY <<<"$link"
	IMAGE=$(mixed_image "$MIB")
	SIZE=$(stat -c %s "$IMAGE")
	# A run gets four times what the raw volume takes at line rate, plus a minute.
	RUN_S=$((SIZE * 8 * 4 / (MBIT * 1000000) + 60))
	avail_kib=$(df -Pk "$BENCH_WORK" | awk 'NR == 2 { print $4 }')
	[ "$avail_kib" -ge $(((SIZE >> 10) * 4 + (2 << 20))) ] ||
		skip "needs $(((SIZE * 4 >> 30) + 2)) GiB free in $BENCH_WORK, has $((avail_kib >> 20)) GiB"
	shape "$MBIT" "$BURST" "$LATENCY" || die "cannot set tbf to $MBIT mbit"
	tc -n "$NS_TX" qdisc show dev "$VETH_TX" >"$RAW/$RATE-tbf.txt"
	tc -n "$NS_RX" qdisc show dev "$VETH_RX" >>"$RAW/$RATE-tbf.txt"

	for round in $(seq 1 "$RUNS"); do
		if [ $((round % 2)) -eq 1 ]; then order="pvrepl rsync"; else order="rsync pvrepl"; fi
		for what in $order; do
			say "$RATE a. round $round/$RUNS initial sync ($((MIB)) MiB): $what"
			tag=$RATE-full-$what-$round
			if [ "$what" = pvrepl ]; then
				rm -rf "$WORK/rx-state" "$WORK/tx-state" "$STANDBY"
				truncate -s "$SIZE" "$STANDBY"
				start_receiver "$tag"
				pvrepl_run "$tag" "$IMAGE"
				stop_receiver
				check "$IMAGE" "$STANDBY" "$tag"
			else
				rm -f "$RSYNC_STANDBY"
				rsync_run "$tag" "$IMAGE"
				check "$IMAGE" "$RSYNC_STANDBY" "$tag"
			fi
		done
	done
	keep_state "$WORK/rx-state" "$WORK/synced/rx-state"
	keep_state "$WORK/tx-state" "$WORK/synced/tx-state"

	say "$RATE b. changing 1% of the 4 KiB blocks of a copy of the image"
	rm -f "$CHANGED"
	cp --reflink=auto "$IMAGE" "$CHANGED"
	python3 "$MIXED_DATA" write "$CHANGED" --seed "$SEED" --fraction 0.01 --block 4096 \
		--offsets "$WORK/offsets" >"$RAW/$RATE-writes.json"
	for round in $(seq 1 "$RUNS"); do
		if [ $((round % 2)) -eq 1 ]; then order="pvrepl rsync"; else order="rsync pvrepl"; fi
		for what in $order; do
			say "$RATE b. round $round/$RUNS 1% incremental: $what"
			tag=$RATE-incr-$what-$round
			if [ "$what" = pvrepl ]; then
				keep_state "$WORK/synced/rx-state" "$WORK/rx-state"
				keep_state "$WORK/synced/tx-state" "$WORK/tx-state"
				"$WAN_TOOL" restore "$IMAGE" "$STANDBY" "$WORK/offsets"
				check "$IMAGE" "$STANDBY" "$tag (restored)"
				start_receiver "$tag"
				pvrepl_run "$tag" "$CHANGED"
				stop_receiver
				check "$CHANGED" "$STANDBY" "$tag"
			else
				"$WAN_TOOL" restore "$IMAGE" "$RSYNC_STANDBY" "$WORK/offsets"
				check "$IMAGE" "$RSYNC_STANDBY" "$tag (restored)"
				rsync_run "$tag" "$CHANGED"
				check "$CHANGED" "$RSYNC_STANDBY" "$tag"
			fi
		done
	done
	tc -n "$NS_TX" -s qdisc show dev "$VETH_TX" >>"$RAW/$RATE-tbf.txt"
	tc -n "$NS_RX" -s qdisc show dev "$VETH_RX" >>"$RAW/$RATE-tbf.txt"
	rm -rf "$CHANGED" "$STANDBY" "$RSYNC_STANDBY" "$WORK/rx-state" "$WORK/tx-state" "$WORK/synced"
done
stop "$RSYNCD_PID"

# --- report -----------------------------------------------------------------------
machine_env
S_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
S_RSYNC_VERSION=$(rsync --version | sed -n 1p) # sed reads it all: no SIGPIPE
export S_LOAD_START=$LOAD_START S_LOAD_END S_RSYNC_VERSION
export S_RAW=$RAW S_RUNS=$RUNS S_QUICK=$QUICK S_SEED=$SEED S_BENCH_WORK=$BENCH_WORK
S_LINKS=$(printf '%s;' "${LINKS[@]}")
export S_LINKS
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" "$RAW/seconds.dat" <<'EOF'
import json, os, re, statistics, sys

env = os.environ
raw, runs = env["S_RAW"], int(env["S_RUNS"])
links = [l.split() for l in env["S_LINKS"].split(";") if l]
med = statistics.median


def load(p):
    return json.load(open(p))


def fail(msg):
    sys.exit(f"40-wan: {msg}")


def pvrepl(rate, kind, want):
    out = []
    for r in range(1, runs + 1):
        tag = f"{rate}-{kind}-pvrepl-{r}"
        j = load(f"{raw}/{tag}.json")
        if j["result"] != "ok":
            fail(f"{tag}: result {j['result']}: {j['message']}")
        if j["kind"] != want:
            fail(f"{tag}: ran as {j['kind']}, wanted {want}")
        if kind == "incr" and not j["blocks_changed"]:
            fail(f"{tag}: the incremental epoch found nothing to send")
        run = load(f"{raw}/{tag}-run.json")
        run.update(sender=j, sender_wire_bytes=j["wire_bytes"])
        out.append(run)
    return out


def rsync(rate, kind):
    out = []
    for r in range(1, runs + 1):
        tag = f"{rate}-{kind}-rsync-{r}"
        st = open(f"{raw}/{tag}.txt").read()
        num = lambda k: int(re.search(k + r": ([\d,]+)", st).group(1).replace(",", ""))
        run = load(f"{raw}/{tag}-run.json")
        run.update(rsync_sent=num("Total bytes sent"), rsync_received=num("Total bytes received"),
                   literal_bytes=num("Literal data"), matched_bytes=num("Matched data"))
        out.append(run)
    return out


def finish(rs, mbit, size):
    for r in rs:
        r["wire_bytes"] = r["veth_tx_bytes"] + r["veth_rx_bytes"]
        r["utilisation"] = r["wire_bytes"] * 8 / (mbit * 1e6 * r["seconds"])
        r["effective_mbit_s"] = size * 8 / r["seconds"] / 1e6
    keys = ("seconds", "applied_seconds", "wire_bytes", "utilisation", "effective_mbit_s",
            "qdisc_tx_bytes", "qdisc_rx_bytes", "qdisc_tx_drops", "qdisc_rx_drops")
    return {k: med(r[k] for r in rs) for k in keys if rs[0].get(k) is not None}


result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"runs": runs, "quick": env["S_QUICK"] == "1", "seed": int(env["S_SEED"]),
               "transport": "pvrepl: TLS 1.3, mutual; rsync: daemon protocol, unencrypted",
               "rsync": env["S_RSYNC_VERSION"],
               "rsync_client": "rsync --inplace --no-whole-file --stats (no -z)",
               "link": "veth between two namespaces, tbf on both ends' egress",
               "loadavg_start": env["S_LOAD_START"], "loadavg_end": env["S_LOAD_END"]},
    "links": {},
}
for rate, mbit, mib, burst, latency in links:
    mbit, size = int(mbit), int(mib) << 20
    L = {"rate_mbit": mbit, "tbf": {"burst": burst, "latency": latency},
         "image": f"{env['S_BENCH_WORK']}/mixed-v1-{mib}m.img", "image_bytes": size,
         "writes": load(f"{raw}/{rate}-writes.json")}
    for kind, want in (("full", "full sync"), ("incr", "incremental")):
        p, r = pvrepl(rate, kind, want), rsync(rate, kind)
        mp, mr = finish(p, mbit, size), finish(r, mbit, size)
        L[kind] = {"pvrepl": p, "rsync": r, "median": {"pvrepl": mp, "rsync": mr},
                   "pvrepl_over_rsync": {"seconds": mp["seconds"] / mr["seconds"],
                                         "wire_bytes": mp["wire_bytes"] / mr["wire_bytes"]}}
    result["links"][rate] = L
json.dump(result, open(sys.argv[1], "w"), indent=2)

mc, c = result["machine"], result["config"]
rsync_v = re.search(r"version (\S+)", c["rsync"]).group(1)
label = lambda mbit: f"{mbit // 1000} Gbit/s" if mbit >= 1000 else f"{mbit} Mbit/s"
size_s = lambda b: f"{b >> 30} GiB" if b >= 1 << 30 else f"{b >> 20} MiB"
mb = lambda b: f"{b / 1e6:,.1f}"
runs_s = lambda rs: ", ".join(f"{r['seconds']:.2f}" for r in rs)
quick = " (QUICK=1: smaller images" + (", 1 run" if runs == 1 else "") + ")" if c["quick"] else ""
imgs = ", ".join(f"{size_s(L['image_bytes'])} at {label(L['rate_mbit'])}"
                 for L in result["links"].values())
lines = [
    "## Replication over a rate-limited link (WAN): pvrepl vs rsync",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}; "
    f"images mixed (1 MiB pieces: half random, a quarter text, a quarter zeros) on {mc['fs']}: "
    f"{imgs}{quick}; {mc['date']}, load average {c['loadavg_start']} at the start, "
    f"{c['loadavg_end']} at the end (the machine may be shared).  ",
    f"Method: sender and receiver in two network namespaces joined by a veth pair, tbf at "
    f"the link rate on the egress of both ends (data and acks cross the same link; no added "
    f"delay, netem is unavailable). pvrepl `send` → `receive` over mutual TLS 1.3; "
    f"rsync {rsync_v} `--inplace --no-whole-file` (no `-z`) to an rsync daemon in "
    f"the receiver's namespace — **the rsync daemon protocol is unencrypted, pvrepl pays "
    f"for TLS**. Median of {runs} run{'s' if runs > 1 else ''} each, order alternating per "
    f"round, page cache dropped before every run. Time to the ack (pvrepl: durable) or to "
    f"the end of rsync plus `sync` of its standby. Every standby compared with its source "
    f"(`cmp`) after every run. Effective rate = volume size / seconds; wire = the sender "
    f"veth's tx + rx bytes; utilisation = wire bits / (link rate × seconds).",
    "",
]
plot = []
for rate, L in result["links"].items():
    mbit = L["rate_mbit"]
    lines += [f"### {label(mbit)} (tbf burst {L['tbf']['burst']}, latency "
              f"{L['tbf']['latency']}), volume {size_s(L['image_bytes'])}", "",
              "| scenario | pvrepl s | rsync s | pvrepl/rsync | effective Mbit/s pvrepl / rsync | "
              "wire MB pvrepl / rsync (ratio) | utilisation pvrepl / rsync |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, name in (("full", "initial full sync"), ("incr", "incremental, 1% of 4 KiB blocks")):
        m, q = L[kind]["median"], L[kind]["pvrepl_over_rsync"]
        p, r = m["pvrepl"], m["rsync"]
        lines.append(
            f"| {name} | {p['seconds']:.2f} | {r['seconds']:.2f} | {q['seconds']:.2f} | "
            f"{p['effective_mbit_s']:,.0f} / {r['effective_mbit_s']:,.0f} | "
            f"{mb(p['wire_bytes'])} / {mb(r['wire_bytes'])} ({q['wire_bytes']:.2f}) | "
            f"{p['utilisation']:.0%} / {r['utilisation']:.0%} |")
        plot.append((f'"{label(mbit)} {"full" if kind == "full" else "1%"}"', p["seconds"],
                     r["seconds"]))
    f, i = L["full"], L["incr"]
    drops = sum(r["qdisc_tx_drops"] + r["qdisc_rx_drops"]
                for k in ("full", "incr") for t in ("pvrepl", "rsync") for r in L[k][t])
    lines += [
        "",
        f"Runs (s): pvrepl full {runs_s(f['pvrepl'])}; rsync full {runs_s(f['rsync'])}; "
        f"pvrepl incremental {runs_s(i['pvrepl'])}; rsync incremental {runs_s(i['rsync'])}. "
        f"The incremental epoch is acked once durable in the receiver's journal and "
        f"applied to the standby after: ack to applied, median "
        f"{i['median']['pvrepl']['applied_seconds'] - i['median']['pvrepl']['seconds']:.2f} s "
        f"(a full sync writes the standby directly and is complete at its ack). {L['writes']['writes']:,} blocks rewritten "
        f"({mb(L['writes']['bytes_written'])} MB); the epoch sent "
        f"{mb(med(r['sender']['data_bytes'] for r in i['pvrepl']))} MB of frames, rsync "
        f"{mb(med(r['literal_bytes'] for r in i['rsync']))} MB literal. tbf drops: {drops}.",
        "",
    ]
lines += [
    "Wire bytes are the veth's own counters (L2 frames as the kernel hands them over; a "
    "GSO packet counts its headers once), so they run a few percent below what tbf "
    "charges per segment (`qdisc_*_bytes` in 40-wan.json). pvrepl elides zero blocks and "
    "compresses with lz4; rsync without `-z` sends the initial sync raw, zeros included.",
    "",
    "",
]
open(sys.argv[2], "w").write("\n".join(lines))
with open(sys.argv[3], "w") as f:
    f.write("scenario pvrepl rsync\n")
    for row in plot:
        f.write(f"{row[0]} {row[1]:.3f} {row[2]:.3f}\n")
EOF

# A bar chart when bench/plot.sh (sourced by common.sh) is there; none otherwise.
if type bench_plot_bars >/dev/null 2>&1; then
	bench_plot_bars 40-wan-seconds "WAN: seconds per scenario, medians (lower is better)" \
		"seconds" "$RAW/seconds.dat" 2>"$RAW/plot.err" || true
	if type bench_plot_md >/dev/null 2>&1; then
		{ bench_plot_md 40-wan-seconds "WAN seconds: pvrepl vs rsync"; echo; } >>"$RESULTS_DIR/$NAME.md"
	elif [ -f "$RESULTS_DIR/40-wan-seconds.png" ]; then
		printf '![WAN seconds: pvrepl vs rsync](40-wan-seconds.png)\n\n' >>"$RESULTS_DIR/$NAME.md"
	fi
fi
cat "$RESULTS_DIR/$NAME.md"
