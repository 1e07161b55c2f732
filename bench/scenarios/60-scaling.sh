#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# How the cost of change detection and of the initial sync grows with the volume,
# and what a second worker thread buys. The claim to check: both are linear in the
# volume size (constant seconds per GiB), so a volume's numbers extrapolate. A
# benchmark, not a test: no thresholds.
#
#   images  $BENCH_WORK/mixed-v1-{1024,4096,16384}m.img (QUICK=1: 256m, 1024m), the
#           shared mixed images (mixed-data.py), kept for reuse. The 16 GiB size is
#           skipped, saying so in the report, when $BENCH_WORK has less than 40 GB
#           free (its image, the standby, the journal, with room to spare)
#   a.      per size, RUNS rounds (3) of:
#             full sync  a fresh receiver (`pvrepl receive --listen 127.0.0.1:0`,
#                        mutual TLS, certificates from `pvrepl certs`), a fresh
#                        sparse standby file and state dirs; `pvrepl send` timed
#                        to the ack, and to the receiver's log line saying the
#                        epoch is applied
#             rescan     `pvrepl scan` of the unchanged image against the map that
#                        full sync left on the sender (no changes: read + xxh3)
#           then the standby and both state dirs are deleted
#   b.      on the 4 GiB image (QUICK=1: 1 GiB), workers 1 and 2, RUNS rounds, the
#           order alternating: `pvrepl scan -w N` as a no-change rescan and as a
#           first scan (no map: every block hashed and lz4-compressed, what a full
#           sync prepares); and, when `pvrepl send --help` offers --workers, the
#           full sync with --workers N
#
# The page cache is dropped before every timed run; medians are reported, with
# seconds per GiB and its ratio to the smallest size's (1.00 = linear).
#   output  $RESULTS_DIR/60-scaling.md, .json, raw output in 60-scaling-raw/, plots
#           60-scaling-*.png when bench_plot_* exist
#   env     BUILD, QUICK, RUNS, BENCH_WORK, RESULTS_DIR, SIZES_MIB (sizes to run,
#           e.g. "1024 4096"), WORKERS_MIB (the size of part b)
# QUICK=1 keeps RUNS (it fits). Budget: about 6 minutes (QUICK=1: under a minute), the images' first write aside
# (mixed-data.py writes about 150 MiB/s here: the 16 GiB image takes 2 minutes).
# Needs root (drop_caches); exits 77 with the reason otherwise.
set -euo pipefail
NAME=60-scaling
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	SIZES_MIB=${SIZES_MIB:-"256 1024"} WORKERS_MIB=${WORKERS_MIB:-1024}
else
	SIZES_MIB=${SIZES_MIB:-"1024 4096 16384"} WORKERS_MIB=${WORKERS_MIB:-4096}
fi
NEED_BIG_GB=40
need_root
need_tools
T_SCENARIO=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# The disk check comes first: the 16 GiB size needs room for its image (if not
# yet cached), a standby and a journal.
avail_kib=$(df -Pk "$BENCH_WORK" | awk 'NR == 2 { print $4 }')
AVAIL_GB=$((avail_kib * 1024 / 1000000000))
SKIPPED=
sizes=()
for mib in $SIZES_MIB; do
	if [ "$mib" -ge 16384 ] && [ "$AVAIL_GB" -lt "$NEED_BIG_GB" ]; then
		SKIPPED+="${SKIPPED:+, }$((mib >> 10)) GiB"
		say "skipping the $((mib >> 10)) GiB size: $AVAIL_GB GB free in $BENCH_WORK, needs $NEED_BIG_GB"
		continue
	fi
	# Any size: the image (unless cached) plus a standby and a journal.
	need=$(((mib >> 10) * 2 + 2))
	if [ ! -f "$BENCH_WORK/mixed-v1-${mib}m.img" ]; then need=$((need + (mib >> 10))); fi
	if [ "$AVAIL_GB" -lt "$need" ]; then
		SKIPPED+="${SKIPPED:+, }$mib MiB"
		say "skipping $mib MiB: $AVAIL_GB GB free in $BENCH_WORK, needs $need"
		continue
	fi
	sizes+=("$mib")
done
[ ${#sizes[@]} -gt 0 ] || skip "no size fits in the $AVAIL_GB GB free in $BENCH_WORK"

SEND_WORKERS=0
if "$PVREPL" send --help 2>&1 | grep -q -- '--workers'; then SEND_WORKERS=1; fi

STANDBY=$WORK/standby.img
trap 'stop_receiver; cleanup' EXIT
trap 'exit 130' INT TERM


bench_certs

declare -A IMAGES
for mib in "${sizes[@]}" "$WORKERS_MIB"; do
	[ -n "${IMAGES[$mib]:-}" ] || IMAGES[$mib]=$(mixed_image "$mib")
done
T_MEASURE=$EPOCHREALTIME # the images' first write is not in the budget


# full_sync TAG IMAGE [SEND OPTIONS...]: one timed initial sync to a fresh standby;
# the sender's JSON in TAG.json, wall seconds to the ack and to applied (the
# receiver's log) and the receiver's CPU in TAG-outer.json. Leaves the sender's
# map in $WORK/tx-state; deletes the standby and the receiver's state.
full_sync() {
	local tag=$1 img=$2 size c0 c1 t0 t1 t2 log=$RAW/$1-receiver.log
	shift 2
	size=$(stat -c %s "$img")
	rm -rf "$WORK/rx-state" "$WORK/tx-state" "$STANDBY"
	truncate -s "$size" "$STANDBY"
	start_receiver "$log"
	drop_caches
	c0=$(rx_cpu_ticks)
	t0=$(now)
	timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send --volume vol --device "$img" \
		--state-dir "$WORK/tx-state" --peer "$PEER" --tls-dir "$WORK/tls/tx" \
		--server-name standby -o json --progress none "$@" >"$RAW/$tag.json" ||
		die "pvrepl send failed in $tag (receiver log: $log)"
	t1=$(now)
	wait_rx_applied 1
	t2=$(now)
	c1=$(rx_cpu_ticks)
	outer_json "$RAW/$tag-outer.json" "$t0" "$t1" "$t2" "$c0" "$c1"
	stop_receiver
	rm -rf "$WORK/rx-state" "$STANDBY"
}

# timed_scan TAG IMAGE MAPDIR [SCAN OPTIONS...]: one timed `pvrepl scan`, cache
# dropped first; MAPDIR without a map makes it a first scan.
timed_scan() {
	local tag=$1 img=$2 dir=$3
	shift 3
	drop_caches
	scan "$RAW/$tag.json" --device "$img" --state-dir "$dir" "$@"
}

# a. Size scaling.
for mib in "${sizes[@]}"; do
	img=${IMAGES[$mib]}
	for round in $(seq 1 "$RUNS"); do
		say "a. ${mib} MiB round $round/$RUNS: full sync, then a no-change rescan"
		full_sync "full-$mib-$round" "$img"
		timed_scan "rescan-$mib-$round" "$img" "$WORK/tx-state"
		if [ "$mib" = "$WORKERS_MIB" ] && [ "$round" = "$RUNS" ]; then
			rm -rf "$WORK/map-workers"
			cp -a "$WORK/tx-state" "$WORK/map-workers"
		fi
		rm -rf "$WORK/tx-state"
	done
done

# b. Worker threads.
wimg=${IMAGES[$WORKERS_MIB]}
if [ ! -d "$WORK/map-workers" ]; then
	say "b. recording the map of $wimg"
	scan "$RAW/b-record.json" --device "$wimg" --state-dir "$WORK/map-workers" --update
fi
kinds=(rescan first)
[ "$SEND_WORKERS" = 1 ] && kinds+=(send)
run_workers() { # KIND WORKERS ROUND
	case $1 in
	rescan) timed_scan "w-rescan-$2-$3" "$wimg" "$WORK/map-workers" -w "$2" ;;
	first)
		rm -rf "$WORK/empty"
		timed_scan "w-first-$2-$3" "$wimg" "$WORK/empty" -w "$2"
		rm -rf "$WORK/empty"
		;;
	send)
		full_sync "w-send-$2-$3" "$wimg" --workers "$2"
		rm -rf "$WORK/tx-state"
		;;
	esac
}
for round in $(seq 1 "$RUNS"); do
	if [ $((round % 2)) -eq 1 ]; then order="1 2"; else order="2 1"; fi
	for kind in "${kinds[@]}"; do
		for w in $order; do
			say "b. round $round/$RUNS: $kind with $w worker(s)"
			run_workers "$kind" "$w" "$round"
		done
	done
done

machine_env
T_END=$EPOCHREALTIME
S_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
export S_LOAD_START=$LOAD_START S_LOAD_END
export S_RAW=$RAW S_RUNS=$RUNS S_QUICK=$QUICK S_SIZES="${sizes[*]}" S_SKIPPED=$SKIPPED
export S_AVAIL_GB=$AVAIL_GB S_NEED_BIG_GB=$NEED_BIG_GB S_WORKERS_MIB=$WORKERS_MIB
export S_SEND_WORKERS=$SEND_WORKERS S_WORK=$WORK S_KINDS="${kinds[*]}"
S_SECONDS=$(elapsed "$T_SCENARIO" "$T_END")
S_MEASURE_SECONDS=$(elapsed "$T_MEASURE" "$T_END")
export S_SECONDS S_MEASURE_SECONDS
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs = env["S_RAW"], int(env["S_RUNS"])
sizes = [int(x) for x in env["S_SIZES"].split()]
wmib = int(env["S_WORKERS_MIB"])
kinds = env["S_KINDS"].split()
GIB = 1 << 30
med = statistics.median


def load(path):
    return json.load(open(path))


def full(tag):
    j = load(f"{raw}/{tag}.json")
    if j["result"] != "ok" or j["kind"] != "full sync":
        sys.exit(f"60-scaling: {tag}: {j['kind']}, {j['result']}")
    j.update(load(f"{raw}/{tag}-outer.json"))
    j["size_bytes"] = j["blocks_scanned"] * j["block_size"]
    return j


def scan(tag, changes):
    j = load(f"{raw}/{tag}.json")
    if not changes and j["blocks_changed"]:
        sys.exit(f"60-scaling: {tag}: the no-change rescan found changed blocks")
    j["wall_seconds"] = j["seconds"]
    return j


def stats(rs, key="wall_seconds"):
    size = rs[0]["size_bytes"]
    s = med(r[key] for r in rs)
    return {"seconds": s, "gbps": size / s / 1e9, "s_per_gib": s / (size / GIB),
            "cpu_s_per_gib": med(r["cpu_seconds"] for r in rs) / (size / GIB),
            "runs": [r[key] for r in rs]}


by_size = {}
for mib in sizes:
    f = [full(f"full-{mib}-{r}") for r in range(1, runs + 1)]
    s = [scan(f"rescan-{mib}-{r}", False) for r in range(1, runs + 1)]
    by_size[mib] = {"full_sync": f, "rescan": s,
                    "median": {"full_sync": stats(f), "full_sync_applied": stats(f, "applied_seconds"),
                               "rescan": stats(s)}}
base = by_size[sizes[0]]["median"]


def fit(k):
    """Least squares seconds = a + b * GiB over the sizes' medians; the largest
    deviation of a median from the line, relative."""
    xs = [mib / 1024 for mib in sizes]
    ys = [by_size[mib]["median"][k]["seconds"] for mib in sizes]
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    dev = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
    return {"fixed_seconds": a, "seconds_per_gib": b, "max_rel_deviation": dev}


fits = {k: fit(k) for k in ("full_sync", "full_sync_applied", "rescan")}
for mib in sizes:
    for k, m in by_size[mib]["median"].items():
        m["ratio_to_smallest"] = m["s_per_gib"] / base[k]["s_per_gib"]

by_workers = {}
for kind in kinds:
    for w in (1, 2):
        if kind == "send":
            rs = [full(f"w-send-{w}-{r}") for r in range(1, runs + 1)]
        else:
            rs = [scan(f"w-{kind}-{w}-{r}", kind == "first") for r in range(1, runs + 1)]
        by_workers.setdefault(kind, {})[w] = {"runs": rs, "median": stats(rs)}

result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"sizes_mib": sizes, "skipped": env["S_SKIPPED"], "avail_gb": int(env["S_AVAIL_GB"]),
               "runs": runs, "quick": env["S_QUICK"] == "1", "workers_mib": wmib,
               "send_has_workers": env["S_SEND_WORKERS"] == "1",
               "block_size": by_size[sizes[0]]["full_sync"][0]["block_size"],
               "loadavg_start": env["S_LOAD_START"], "loadavg_end": env["S_LOAD_END"],
               "scenario_seconds": float(env["S_SECONDS"]),
               "measure_seconds": float(env["S_MEASURE_SECONDS"])},
    "sizes": by_size, "linear_fit": fits, "workers": by_workers,
}
json.dump(result, open(sys.argv[1], "w"), indent=1)

gib = lambda mib: f"{mib / 1024:g} GiB"
# Plot data: seconds per GiB against the size; GB/s per worker count.
with open(f"{env['S_WORK']}/plot-size.dat", "w") as f:
    f.write('GiB "full sync (to ack)" "full sync (to applied)" "no-change rescan"\n')
    for mib in sizes:
        m = by_size[mib]["median"]
        f.write(f"{mib / 1024:g} {m['full_sync']['s_per_gib']:.4f} "
                f"{m['full_sync_applied']['s_per_gib']:.4f} {m['rescan']['s_per_gib']:.4f}\n")
KL = {"rescan": "no-change rescan", "first": "first scan (hash + lz4)", "send": "full sync (send --workers N)"}
with open(f"{env['S_WORK']}/plot-workers.dat", "w") as f:
    f.write('what "1 worker" "2 workers"\n')
    for kind in kinds:
        f.write(f'"{KL[kind]}" ' + " ".join(f"{by_workers[kind][w]['median']['gbps']:.3f}"
                                           for w in (1, 2)) + "\n")

mc, c = result["machine"], result["config"]
runs_s = lambda m: ", ".join(f"{x:.2f}" for x in m["runs"])
lines = [
    "## Scaling: scan and full-sync cost against volume size and worker threads",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}; "
    f"mixed images (1 MiB pieces: half random, a quarter text, a quarter zeros) on {mc['fs']}; "
    "full sync: `pvrepl send` to a fresh `pvrepl receive` on this machine, TLS 1.3 mutual over "
    f"127.0.0.1, a fresh sparse standby file; map block size {c['block_size'] // 1024} KiB.  ",
    f"Method: median of {runs} run(s) each, page cache dropped before every timed run; full "
    "sync timed from the start of `pvrepl send` to the receiver's ack (and to its log line "
    "saying the epoch is applied), rescan = `pvrepl scan` of the unchanged image against the map "
    "that full sync left (read + xxh3, nothing to send). Ratio = s/GiB at that size / s/GiB at "
    f"the smallest (1.00 = linear). {mc['date']}; load average {c['loadavg_start']} at the "
    f"start, {c['loadavg_end']} at the end (the machine may be shared); measured in "
    f"{c['measure_seconds']:.0f} s" + (f" ({c['scenario_seconds']:.0f} s with the images' first write)."
    if c['scenario_seconds'] - c['measure_seconds'] >= 1 else " (the images were cached)."),
    "",
]
if c["skipped"]:
    lines += [f"**Skipped:** {c['skipped']}: {c['avail_gb']} GB free in BENCH_WORK, "
              f"the 16 GiB size needs {env['S_NEED_BIG_GB']} GB.", ""]
lines += [
    "### Against volume size",
    "",
    "| size | what | seconds | GB/s | s per GiB | ratio to smallest | CPU s per GiB | runs (s) |",
    "|---|---|---:|---:|---:|---:|---:|---|",
]
for mib in sizes:
    for k, label in (("full_sync", "full sync, to the ack"), ("full_sync_applied", "full sync, to applied"),
                     ("rescan", "no-change rescan")):
        m = by_size[mib]["median"][k]
        cpu = f"{m['cpu_s_per_gib']:.3f}" + (" (sender)" if k.startswith("full") else "")
        lines.append(f"| {gib(mib)} | {label} | {m['seconds']:.2f} | {m['gbps']:.3f} | "
                     f"{m['s_per_gib']:.3f} | {m['ratio_to_smallest']:.2f} | "
                     f"{cpu if k != 'full_sync_applied' else '—'} | {runs_s(m)} |")
if fits["rescan"]:
    lines += ["", "Linear fit of the medians, seconds = intercept + marginal x GiB (a positive "
              "intercept is a fixed cost per run, process start, TLS handshake, state files, "
              "that makes small volumes dearer per GiB; a negative one means the larger sizes "
              "cost more per GiB than the smallest): " + "; ".join(
                  f"{lbl} {fits[k]['fixed_seconds']:+.2f} s + {fits[k]['seconds_per_gib']:.3f} s/GiB "
                  + (f"(largest deviation of a median from the line {fits[k]['max_rel_deviation'] * 100:.1f}%)"
                     if len(sizes) > 2 else "(two sizes: the line through both)")
                  for k, lbl in (("full_sync", "full sync to the ack"), ("rescan", "rescan"))) + "."]
lines += [
    "",
    f"### Against worker threads ({gib(wmib)} image)",
    "",
    "| what | workers | seconds | GB/s | CPU s per GiB | speed-up vs 1 worker | runs (s) |",
    "|---|---:|---:|---:|---:|---:|---|",
]
for kind in kinds:
    one = by_workers[kind][1]["median"]
    for w in (1, 2):
        m = by_workers[kind][w]["median"]
        lines.append(f"| {KL[kind]} | {w} | {m['seconds']:.2f} | {m['gbps']:.3f} | "
                     f"{m['cpu_s_per_gib']:.3f} | {one['seconds'] / m['seconds']:.2f} | {runs_s(m)} |")
lines += [""]
if not c["send_has_workers"]:
    lines += ["`pvrepl send` has no --workers option in this build: only `pvrepl scan -w` was "
              "measured against the worker count.", ""]
lines += ["First scan: `pvrepl scan -w N` without a map, so every block is changed: read, xxh3 "
          "and lz4 of the whole volume, what an initial sync prepares, without the network.", ""]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF

if type bench_plot_lines >/dev/null 2>&1 && type bench_plot_bars >/dev/null 2>&1; then
	PLOT_LOGX=2 bench_plot_lines "$NAME-size" "Seconds per GiB against volume size (flat = linear)" \
		"volume size (GiB)" "seconds per GiB" "$WORK/plot-size.dat"
	bench_plot_bars "$NAME-workers" "GB/s with 1 and 2 worker threads ($((WORKERS_MIB >> 10)) GiB image)" \
		"GB/s" "$WORK/plot-workers.dat"
	echo >>"$RESULTS_DIR/$NAME.md"
	for p in size:"Seconds per GiB against volume size" workers:"GB/s against worker threads"; do
		{
			if type bench_plot_md >/dev/null 2>&1; then
				bench_plot_md "$NAME-${p%%:*}" "${p#*:}"
				echo
			elif [ -s "$RESULTS_DIR/$NAME-${p%%:*}.png" ]; then
				printf '![%s](%s-%s.png)\n\n' "${p#*:}" "$NAME" "${p%%:*}"
			fi
		} >>"$RESULTS_DIR/$NAME.md"
	done
fi
