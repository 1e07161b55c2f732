#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Capture: what making every epoch one instant of the source (`--capture
# freeze`: rounds of tracked live reads, then FIFREEZE of the file system, the
# last set read, FITHAW) costs the writes on the source, and what it does to the
# recovery point. A benchmark, not a test: the issue's target is printed next to
# the numbers, it never fails the run.
#
#   src.img (2 GiB; QUICK=1: 512 MiB, ext4) ─loop --direct-io=on─► $LOOP ─mount─► $MNT
#        ▲ fio randwrite 4k at RATE on $MNT/fio.dat (1 GiB; QUICK=1: 256 MiB, written once)
#   $LOOP ──pvrepl replicate --capture freeze|none --interval 1s──► 127.0.0.1 ──pvrepl receive──► standby.img (sparse)
#
#   setup   mkfs.ext4 (4 KiB blocks, no lazy init: no kernel thread writes behind
#           the runs' backs) on a file in the scratch dir, a loop device over it
#           (--direct-io=on: the tracker needs a blk-mq device), mounted; fio's
#           file written once with zeros (O_DIRECT, fsync'ed), so no run
#           allocates. `pvrepl receive --listen 127.0.0.1:0` on a sparse standby
#           (mutual TLS, certificates from `pvrepl certs`, --allow vol=source);
#           the initial sync is a `pvrepl send --capture freeze --track bpf` (it
#           ends in rounds like any captured epoch; it attaches the tracker,
#           pinned under /sys/fs/bpf/pvrepl-bench-PID, this run's own)
#   a run   per RATE (5 and 20 MiB/s), per MODE and per capture (freeze, none),
#           the pair of a rate and mode back to back, their order alternating
#           between the rates to spread drift:
#             direct    fio --direct=1, io_uring (libaio where fio has no
#                       io_uring), iodepth 8
#             buffered  fio --direct=0, psync, --fsync=32 (an fsync after every
#                       32 writes)
#           fio randwrite bs=4k --rate=RATE, time_based, starts; then `pvrepl
#           replicate --capture C --interval 1s -o json` for DURATION s (20;
#           QUICK=1: 10): --max-epochs DURATION bounds it, SIGTERM at the deadline
#           (the epoch in flight finishes within --stop-timeout 2s), `timeout`
#           around it; fio gets SIGINT when replicate exits (it then writes its
#           JSON), so its latencies cover the whole replicate run and a little
#           before. The same --randseed for both captures of a rate and mode.
#           Before each run, with nothing writing, one `send --capture none`
#           (applied before the run goes on), so every run starts from a synced
#           pair, then `sync` and 1 s of quiet. An epoch the SIGTERM cut is
#           counted apart, not as failed
#   measured  per epoch (replicate's JSON, one object a line): capture,
#           crash_consistent, rounds, freeze_ms (how long the file system was
#           frozen), freeze_read_bytes, result, lag_seconds (the RPO); per run
#           fio's write completion latency (clat) percentiles and, buffered, its
#           fsync latency; the receiver's warnings and errors during the run (a
#           failed epoch's reason is on the receiver's side). Percentiles of epochs are nearest-rank (with ~20
#           epochs a p99 is the max). Anomalies, never fatal: failed epochs (with
#           their message), --capture freeze epochs not crash_consistent, runs
#           that did not reach their epochs; after the last run the file system
#           is unmounted, one last `send --capture none` and the standby is
#           compared with the source (cmp)
#
#   output  $RESULTS_DIR/26-capture.md, .json, raw output in 26-capture-raw/
#   env     BUILD, QUICK, BENCH_WORK, RESULTS_DIR, DURATION (seconds per run),
#           RATES ("5 20", MiB/s), MODES ("direct buffered"), SEED (1)
# Budget: about 3.7 minutes on 2 cores (8 runs of ~25 s; QUICK=1: about 2,
# 8 runs of ~14 s). RUNS is not used: one run per rate, mode and capture.
# Needs root, kernel BTF, loop devices, bpffs, fio, mkfs.ext4 and fsfreeze;
# exits 77 with the reason otherwise.
set -euo pipefail
NAME=26-capture
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	DEV_MIB=512 FILE_MIB=256 DURATION=${DURATION:-10}
else
	DEV_MIB=2048 FILE_MIB=1024 DURATION=${DURATION:-20}
fi
RATES=${RATES:-"5 20"}
MODES=${MODES:-"direct buffered"}
SEED=${SEED:-1}
IODEPTH=8
FSYNC_EVERY=32
STOP_TIMEOUT_S=2
TARGET_RATE=20 # MiB/s: the rate the target is about
TARGET_FREEZE_MS=50
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mount, FIFREEZE, the eBPF tracker)"
[ -r /sys/kernel/btf/vmlinux ] ||
	skip "no kernel BTF (/sys/kernel/btf/vmlinux): the tracker's tp_btf programs cannot load"
for t in losetup mount umount mountpoint fsfreeze; do
	command -v "$t" >/dev/null || skip "$t is not installed (util-linux)"
done
command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 is not installed (e2fsprogs)"
command -v fio >/dev/null || skip "fio is not installed (make deps)"
if fio --enghelp=io_uring >/dev/null 2>&1; then
	DIRECT_ENGINE=io_uring
elif fio --enghelp=libaio >/dev/null 2>&1; then
	DIRECT_ENGINE=libaio
else
	skip "this fio has neither the io_uring nor the libaio engine"
fi
case $DURATION in '' | *[!0-9]* | 0) die "DURATION='$DURATION': want whole seconds" ;; esac
for m in $MODES; do
	case $m in direct | buffered) ;; *) die "MODES: '$m' is not direct or buffered" ;; esac
done
need_root
# The pin dir of this run only (bpffs refuses dots in names), set before
# need_tools so that common.sh mounts no bpffs of its own.
PIN_DIR=/sys/fs/bpf/pvrepl-bench-$$
export PVREPL_TRACK_PIN_DIR=$PIN_DIR
need_tools
T_SCENARIO=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

FIO_PID=
REP_PID=
LOOP=
MNT=$WORK/mnt
SRC_IMG=$WORK/src.img
STANDBY=$WORK/standby.img

# thaw: the file system is never left frozen (a sender that died thaws through
# its watchdog; this is for everything else). Quiet when it is not frozen.
thaw() {
	if mountpoint -q "$MNT" 2>/dev/null; then fsfreeze -u "$MNT" 2>/dev/null || true; fi
}

teardown() {
	set +e
	# The sender first (its watchdog thaws when it dies), then the thaw: a
	# writer blocked on a frozen file system cannot die at all.
	stop_pid "$REP_PID"
	thaw
	stop_pid "$FIO_PID"
	thaw
	if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || say "could not unmount $MNT"; fi
	stop_receiver
	local d
	if [ -e "$SRC_IMG" ]; then
		for d in $(losetup -n -O NAME -j "$SRC_IMG" 2>/dev/null); do
			losetup -d "$d" 2>/dev/null || say "could not detach $d"
		done
	fi
	# The pins go after the device: nothing of this run stays attached.
	[ -d "$PIN_DIR" ] && rm -rf "$PIN_DIR"
	cleanup
}
trap teardown EXIT
trap 'exit 130' INT TERM

# jget FILE KEY: one field of a JSON object.
jget() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

avail_kib=$(df -Pk "$BENCH_WORK" | awk 'NR == 2 { print $4 }')
[ $((avail_kib >> 10)) -ge $((2 * DEV_MIB + 512)) ] ||
	die "$((avail_kib >> 10)) MiB free in $BENCH_WORK: the source and the standby need $((2 * DEV_MIB + 512))"

bench_certs
say "a $DEV_MIB MiB ext4 on a loop device, fio's $FILE_MIB MiB file written once"
truncate -s "${DEV_MIB}M" "$SRC_IMG"
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$SRC_IMG" ||
	die "mkfs.ext4 failed on $SRC_IMG"
LOOP=$(losetup --find --show --direct-io=on "$SRC_IMG") || skip "losetup failed (no free loop devices?)"
mkdir -p "$MNT"
mount -t ext4 "$LOOP" "$MNT" || skip "cannot mount the ext4 on $LOOP"
dd if=/dev/zero of="$MNT/fio.dat" bs=4M count=$((FILE_MIB / 4)) oflag=direct conv=fsync status=none ||
	die "cannot write $MNT/fio.dat"
sync
truncate -s "${DEV_MIB}M" "$STANDBY"
start_receiver "$RAW/receiver.log"
say "initial sync of $LOOP (--capture freeze; attaches the tracker)"
t0=$(now)
timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send --volume vol --device "$LOOP" \
	--state-dir "$WORK/tx-state" --peer "$PEER" --tls-dir "$WORK/tls/tx" --server-name standby \
	--track auto --capture freeze -o json --progress none >"$RAW/initial.json" 2>"$RAW/initial.err" ||
	die "the initial sync failed: $(tail -n 3 "$RAW/initial.err") (receiver log: $RX_LOG)"
if [ "$(jget "$RAW/initial.json" tracking)" != bpf ]; then
	skip "the write tracker cannot run here: $(jget "$RAW/initial.json" tracking_off_reason)"
fi
wait_rx_applied "$(jget "$RAW/initial.json" epoch)"
printf '{"wall_seconds": %s}\n' "$(elapsed "$t0" "$(now)")" >"$RAW/initial-outer.json"
T_MEASURE=$EPOCHREALTIME
FIO_VERSION=$(fio --version)

# settle TAG: one `pvrepl send --capture none` with nothing writing (after a
# `sync`), so that every run starts from a synced pair (the previous run's tail,
# or its epoch cut at the deadline, is not the next run's first epoch); applied
# before the run. The file system still writes a little of its own (the
# journal's commit), which can meet a partial block between the harvest and its
# read: the standby refuses such an epoch and the next attempt sends whole
# blocks (080), so up to 3 attempts, each failure in TAG-settle-N.json.
settle() {
	local tag=$1 n
	sync
	for n in 1 2 3; do
		if timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send --volume vol \
			--device "$LOOP" --state-dir "$WORK/tx-state" --peer "$PEER" \
			--tls-dir "$WORK/tls/tx" --server-name standby --track bpf --capture none \
			-o json --progress none >"$RAW/$tag-settle.json" 2>"$RAW/$tag-settle.err"; then
			wait_rx_applied "$(jget "$RAW/$tag-settle.json" epoch)"
			return 0
		fi
		say "the epoch before $tag failed (attempt $n): $(head -n 1 "$RAW/$tag-settle.err")"
		mv "$RAW/$tag-settle.json" "$RAW/$tag-settle-$n.json"
		mv "$RAW/$tag-settle.err" "$RAW/$tag-settle-$n.err"
		sleep 1
	done
	die "the epoch before $tag failed 3 times (see $RAW/$tag-settle-3.err; receiver log: $RX_LOG)"
}

# one_run RATE MODE CAPTURE ROUND: fio at RATE MiB/s in MODE, and meanwhile
# DURATION s of `pvrepl replicate --capture CAPTURE` (--max-epochs DURATION
# bounds it; SIGTERM at the deadline, the epoch in flight finishing within
# --stop-timeout); raw files TAG-*. The receiver's warnings and errors during
# the run (why an epoch was refused) go to TAG-receiver.log.
one_run() {
	local rate=$1 mode=$2 cap=$3 round=$4 tag=$1m-$2-$3 fio_opts rc=0 frc=0 t0 t1 rx0 stopped=false i
	if [ "$mode" = direct ]; then
		fio_opts=(--direct=1 --ioengine="$DIRECT_ENGINE" --iodepth="$IODEPTH")
	else
		fio_opts=(--direct=0 --ioengine=psync --fsync="$FSYNC_EVERY")
	fi
	settle "$tag"
	sync
	sleep 1
	rx0=$(wc -l <"$RX_LOG")
	say "$rate MiB/s $mode: fio and replicate --capture $cap for $DURATION s"
	# time_based for longer than the run can take; SIGINT ends it (fio then
	# writes its JSON and exits non-zero: the JSON is what is checked).
	fio --name="randwrite-4k" --filename="$MNT/fio.dat" --size="${FILE_MIB}M" --rw=randwrite \
		--bs=4k --rate="${rate}m" "${fio_opts[@]}" --numjobs=1 --time_based \
		--runtime=$((DURATION * 3 + 60)) --randseed=$((SEED * 1000 + round)) \
		--output-format=json --output="$RAW/$tag-fio.json" >"$RAW/$tag-fio.err" 2>&1 &
	FIO_PID=$!
	sleep 0.5
	kill -0 "$FIO_PID" 2>/dev/null || die "fio exited at once in $tag (see $RAW/$tag-fio.err)"
	t0=$(now)
	timeout --kill-after=10 $((DURATION + STOP_TIMEOUT_S + 30)) "$PVREPL" replicate --volume vol \
		--device "$LOOP" --state-dir "$WORK/tx-state" --peer "$PEER" --tls-dir "$WORK/tls/tx" \
		--server-name standby --track bpf --capture "$cap" --interval 1s \
		--max-epochs "$DURATION" --stop-timeout "${STOP_TIMEOUT_S}s" --no-netwatch \
		--progress none -o json >"$RAW/$tag-replicate.json" 2>"$RAW/$tag-replicate.err" &
	REP_PID=$!
	for ((i = 0; i < DURATION * 10; i++)); do
		kill -0 "$REP_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$REP_PID" 2>/dev/null; then
		stopped=true
		kill -TERM "$REP_PID" 2>/dev/null || true # timeout passes it on
	fi
	wait "$REP_PID" || rc=$?
	REP_PID=
	t1=$(now)
	thaw
	kill -INT "$FIO_PID" 2>/dev/null || true
	wait "$FIO_PID" || frc=$?
	FIO_PID=
	python3 -c 'import json, sys
t = open(sys.argv[1]).read()
sys.exit(json.loads(t[t.find("{"):])["jobs"][0]["error"])' "$RAW/$tag-fio.json" 2>/dev/null ||
		die "fio failed in $tag (exit $frc; see $RAW/$tag-fio.err)"
	tail -n +$((rx0 + 1)) "$RX_LOG" | grep -E ' (warn|error) ' >"$RAW/$tag-receiver.log" || true
	printf '{"rate_mib": %s, "mode": "%s", "capture": "%s", "replicate_exit": %s, "stopped_at_deadline": %s, "wall_seconds": %s}\n' \
		"$rate" "$mode" "$cap" "$rc" "$stopped" "$(elapsed "$t0" "$t1")" >"$RAW/$tag-outer.json"
	[ -s "$RAW/$tag-replicate.json" ] ||
		die "replicate printed no epoch in $tag (exit $rc): $(tail -n 3 "$RAW/$tag-replicate.err")"
}

round=0
k=0
for rate in $RATES; do
	if [ $((k % 2)) -eq 0 ]; then order="freeze none"; else order="none freeze"; fi
	k=$((k + 1))
	for mode in $MODES; do
		round=$((round + 1))
		for cap in $order; do one_run "$rate" "$mode" "$cap" "$round"; done
	done
done
T_RUNS=$EPOCHREALTIME

# The standby against the source: the file system unmounted (nothing writes),
# one last epoch read live, the receiver's apply awaited, then cmp.
say "comparing the standby with the source"
umount "$MNT" || die "cannot unmount $MNT"
timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send --volume vol --device "$LOOP" \
	--state-dir "$WORK/tx-state" --peer "$PEER" --tls-dir "$WORK/tls/tx" --server-name standby \
	--track bpf --capture none -o json --progress none >"$RAW/final.json" 2>"$RAW/final.err" ||
	die "the last epoch failed: $(tail -n 3 "$RAW/final.err") (receiver log: $RX_LOG)"
wait_rx_applied "$(jget "$RAW/final.json" epoch)"
if cmp "$LOOP" "$STANDBY" >"$RAW/cmp.txt" 2>&1; then CMP=equal; else CMP=differs; fi
T_END=$EPOCHREALTIME

machine_env
S_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
export S_LOAD_START=$LOAD_START S_LOAD_END
export S_RAW=$RAW S_QUICK=$QUICK S_RATES=$RATES S_MODES=$MODES S_DURATION=$DURATION
export S_DEV_MIB=$DEV_MIB S_FILE_MIB=$FILE_MIB S_IODEPTH=$IODEPTH S_FSYNC_EVERY=$FSYNC_EVERY
export S_DIRECT_ENGINE=$DIRECT_ENGINE S_FIO_VERSION=$FIO_VERSION S_SEED=$SEED S_CMP=$CMP
export S_TARGET_RATE=$TARGET_RATE S_TARGET_FREEZE_MS=$TARGET_FREEZE_MS
S_SECONDS=$(elapsed "$T_SCENARIO" "$T_END")
S_RUNS_SECONDS=$(elapsed "$T_MEASURE" "$T_RUNS")
export S_SECONDS S_RUNS_SECONDS
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import collections, json, math, os, re, sys

env = os.environ
raw = env["S_RAW"]
rates = [int(x) for x in env["S_RATES"].split()]
modes = env["S_MODES"].split()
caps = ("freeze", "none")
odd = []  # what pvrepl did that it should not have, or a run that fell short


def load(path):
    text = open(path).read()  # fio may print warnings before its JSON
    return json.loads(text[text.find("{"):])


def objects(path):
    """Every JSON object in the file, however they are laid out (one a line,
    or pretty-printed one after another)."""
    text, dec, out, i = open(path).read(), json.JSONDecoder(), [], 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        o, i = dec.raw_decode(text, i)
        out.append(o)


def pct(xs, p):
    """Nearest-rank percentile; None for no samples."""
    xs = sorted(xs)
    if not xs:
        return None
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def stats(xs):
    xs = list(xs)
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else None}


def lat(d):
    """fio latency block (ns) -> ms percentiles."""
    if not d or not d.get("N", 1):
        return None
    p = d.get("percentile", {})
    g = lambda k: p[k] / 1e6 if k in p else None
    return {"mean": d["mean"] / 1e6, "p50": g("50.000000"), "p99": g("99.000000"),
            "p99_9": g("99.900000"), "max": d["max"] / 1e6}


runs = {}
for rate in rates:
    for mode in modes:
        for cap in caps:
            tag = f"{rate}m-{mode}-{cap}"
            outer = load(f"{raw}/{tag}-outer.json")
            eps = [o for o in objects(f"{raw}/{tag}-replicate.json") if "result" in o]
            # The epoch in flight at the deadline, aborted by the SIGTERM after
            # --stop-timeout: cut, neither failed nor measured.
            cut = [e for e in eps[-1:] if outer["stopped_at_deadline"] and e["result"] != "ok"
                   and "stopping" in (e.get("message") or "")]
            eps = eps[:len(eps) - len(cut)]
            job = load(f"{raw}/{tag}-fio.json")["jobs"][0]
            w = job["write"]
            sync = job.get("sync", {}).get("lat_ns")
            ok = [e for e in eps if e["result"] == "ok"]
            bad = [e for e in eps if e["result"] != "ok"]
            froze = [e for e in eps if e.get("freeze_ms", 0) > 0]
            # Why the receiver refused or dropped an epoch: its warnings and
            # errors during the run, block numbers and times taken out, counted.
            rx = collections.Counter()
            for line in open(f"{raw}/{tag}-receiver.log"):
                line = line.split(" ", 1)[-1].strip()
                line = re.sub(r"peer=\S+ ", "", line)
                line = re.sub(r"\bepoch=\d+", "epoch=N", line)
                rx[re.sub(r"\bblock \d+", "block N", line)] += 1
            # The cut epoch's connection, closed by the stopping sender.
            for k in [k for k in rx if "interrupted" in k][:1]:
                rx[k] -= len(cut)
                if rx[k] <= 0:
                    del rx[k]
            if bad:
                msgs = collections.Counter(e.get("message") for e in bad)
                odd.append(f"`{tag}`: {len(bad)} of {len(eps)} epochs failed (each retried by replicate): "
                           + "; ".join(f"{m} (x{k})" for m, k in msgs.items())
                           + ("; the receiver said: " + "; ".join(f"\"{m}\" (x{k})" for m, k in rx.items())
                              if rx else ""))
            elif rx:
                odd.append(f"`{tag}`: the receiver logged: " + "; ".join(f"\"{m}\" (x{k})" for m, k in rx.items()))
            if cap == "freeze":
                for e in ok:
                    if not e.get("crash_consistent"):
                        odd.append(f"`{tag}` epoch {e.get('epoch')}: not crash_consistent "
                                   f"(capture {e.get('capture')}: {e.get('capture_note')})")
            for e in ok:
                if e.get("tracking") != "bpf" or e.get("scan") != "tracked":
                    odd.append(f"`{tag}` epoch {e.get('epoch')}: scan {e.get('scan')}, tracking "
                               f"{e.get('tracking')} {e.get('full_scan_reason') or e.get('tracking_off_reason') or ''}")
                if e.get("warning"):
                    odd.append(f"`{tag}` epoch {e.get('epoch')}: warning: {e['warning']}")
            if outer["replicate_exit"] != 0:
                odd.append(f"`{tag}`: replicate exited {outer['replicate_exit']} after {len(ok)} ok "
                           f"epoch(s) in {outer['wall_seconds']:.1f} s"
                           + (" (killed by the timeout)" if outer["replicate_exit"] in (124, 137) else ""))
            if not ok:
                odd.append(f"`{tag}`: no epoch completed in {outer['wall_seconds']:.1f} s")
            runs[tag] = {
                "rate_mib": rate, "mode": mode, "capture": cap,
                "wall_seconds": outer["wall_seconds"], "replicate_exit": outer["replicate_exit"],
                "stopped_at_deadline": outer["stopped_at_deadline"], "receiver_said": dict(rx),
                "epochs": len(eps), "epochs_ok": len(ok), "epochs_failed": len(bad),
                "epochs_cut_at_deadline": len(cut),
                "failed": [{"epoch": e.get("epoch"), "message": e.get("message")} for e in bad],
                "epochs_frozen": len(froze),
                "crash_consistent": sum(1 for e in ok if e.get("crash_consistent")),
                "freeze_ms": stats(e["freeze_ms"] for e in froze),
                "rounds": stats(e.get("rounds", 0) for e in ok),
                "freeze_read_bytes": stats(e.get("freeze_read_bytes", 0) for e in froze),
                "lag_seconds": stats(e["lag_seconds"] for e in eps if e.get("lag_seconds") is not None),
                "epoch_seconds": stats(e["seconds"] for e in ok),
                "source_read_bytes": sum(e.get("source_read_bytes", 0) for e in ok),
                "fio": {"iops": w["iops"], "bw_bytes": w["bw_bytes"], "runtime_ms": job.get("job_runtime"),
                        "ios": w.get("total_ios"), "clat_ms": lat(w["clat_ns"]),
                        "fsync_ms": lat(sync) if mode == "buffered" else None},
                "epoch_list": eps,
            }

# The epochs before the runs (nothing writing): their failed attempts.
settle = {}
for t in runs:
    j = load(f"{raw}/{t}-settle.json")
    tries = []
    n = 1
    while os.path.exists(f"{raw}/{t}-settle-{n}.json"):
        tries.append(open(f"{raw}/{t}-settle-{n}.err").readline().strip())
        n += 1
    settle[t] = {"seconds": j["seconds"], "source_read_bytes": j["source_read_bytes"],
                 "failed_attempts": tries}
    if tries:
        odd.append(f"the epoch before `{t}` (nothing writing, after a `sync`) failed "
                   f"{len(tries)} time(s) before it was ok: " + "; ".join(tries)
                   + " (see the receiver's log in 26-capture-raw/receiver.log)")

pairs = {}
for rate in rates:
    for mode in modes:
        f, n = runs[f"{rate}m-{mode}-freeze"], runs[f"{rate}m-{mode}-none"]
        fp, np_ = f["fio"]["clat_ms"]["p99"], n["fio"]["clat_ms"]["p99"]
        pairs[f"{rate}m-{mode}"] = {"clat_p99_ratio": fp / np_ if fp and np_ else None}

result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"rates_mib": rates, "modes": modes, "duration_epochs": int(env["S_DURATION"]),
               "device_mib": int(env["S_DEV_MIB"]), "fio_file_mib": int(env["S_FILE_MIB"]),
               "direct_engine": env["S_DIRECT_ENGINE"], "iodepth": int(env["S_IODEPTH"]),
               "fsync_every": int(env["S_FSYNC_EVERY"]), "fio": env["S_FIO_VERSION"],
               "seed": int(env["S_SEED"]), "quick": env["S_QUICK"] == "1",
               "loadavg_start": env["S_LOAD_START"], "loadavg_end": env["S_LOAD_END"],
               "scenario_seconds": float(env["S_SECONDS"]), "runs_seconds": float(env["S_RUNS_SECONDS"])},
    "initial": {**load(f"{raw}/initial.json"), **load(f"{raw}/initial-outer.json")},
    "settle": settle,
    "runs": runs, "pairs": pairs, "standby_vs_source": env["S_CMP"],
}
if env["S_CMP"] != "equal":
    odd.append("the standby differs from the source after the last epoch (see 26-capture-raw/cmp.txt)")

T = []
tr, tms = int(env["S_TARGET_RATE"]), float(env["S_TARGET_FREEZE_MS"])
for mode in modes:
    if tr not in rates:
        continue
    fz = runs[f"{tr}m-{mode}-freeze"]["freeze_ms"]
    if fz["n"]:
        T.append((f"freeze window p99 <= {tms:g} ms at {tr} MiB/s", mode,
                  f"{fz['p99']:.1f} ms ({fz['n']} freezes)", fz["p99"] <= tms))
    else:
        T.append((f"freeze window p99 <= {tms:g} ms at {tr} MiB/s", mode, "no epoch froze", False))
result["targets"] = [{"target": t, "where": w, "measured": v, "met": bool(b)} for t, w, v, b in T]
result["anomalies"] = odd
json.dump(result, open(sys.argv[1], "w"), indent=1)

mc, c, ini = result["machine"], result["config"], result["initial"]
f1 = lambda x: "—" if x is None else f"{x:.1f}"
f2 = lambda x: "—" if x is None else f"{x:.2f}"
trio = lambda s, f: f"{f(s['p50'])} / {f(s['p99'])} / {f(s['max'])}" if s["n"] else "—"
mb = lambda b: "—" if b is None else f"{b / 1e6:.2f} MB"
ok = lambda b: "yes" if b else "**no**"
lines = [
    "## Capture: frozen epochs (`--capture freeze`) under a write load",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}, "
    f"{c['fio']}; source a {c['device_mib']} MiB ext4 in a file on {mc['fs']}, a loop device "
    "(--direct-io=on), mounted; standby a sparse file; sender and receiver on this machine, "
    "TLS 1.3 mutual over 127.0.0.1; the eBPF tracker pinned under a pin dir of this run.  ",
    f"Method: fio randwrite bs=4k at a fixed rate (`--rate`, MiB/s) on a {c['fio_file_mib']} MiB "
    f"file written once, direct (`--direct=1`, {c['direct_engine']}, iodepth {c['iodepth']}) or "
    f"buffered (`--direct=0`, psync, `--fsync={c['fsync_every']}`), while `pvrepl replicate "
    f"--interval 1s -o json` runs for {c['duration_epochs']} s (`--max-epochs "
    f"{c['duration_epochs']}` bounds it; SIGTERM at the deadline, the epoch in flight "
    "finishes) with `--capture freeze` and, as the baseline, `--capture none` (same rate, "
    "mode, duration and --randseed; the pair back to back, its order alternating between the "
    "rates). fio starts first and gets SIGINT when replicate exits. freeze = how long the file "
    "system was frozen (`freeze_ms`), over the epochs that froze (an epoch whose last round "
    "found nothing new ends without one); rounds over the ok epochs; RPO = replicate's "
    "`lag_seconds` as each epoch ends, failed ones included; a failed epoch is retried by "
    "replicate; write latency = fio's completion latency (clat), ratio = p99 with "
    "`--capture freeze` / with `--capture none`; fio is a closed loop, so "
    "during a freeze only the writes in flight wait (at most the iodepth, direct; one, "
    "buffered) and a freeze shows in p99.9 and max more than in p99. Epoch percentiles are nearest-rank (with "
    "20 epochs or fewer p99 is the max). Before every run one `send --capture none` with "
    "nothing writing, so each run starts from a synced pair; an epoch cut by the SIGTERM at "
    "the deadline is counted apart (cut), not as failed. Initial sync (`send --capture "
    f"freeze`, nothing writing): capture {ini.get('capture')}, crash_consistent "
    f"{ini.get('crash_consistent')}, {ini['wall_seconds']:.1f} s. "
    f"{mc['date']}; load average {c['loadavg_start']} at the start, {c['loadavg_end']} at the "
    f"end (the machine may be shared); the runs took {c['runs_seconds']:.0f} s, the scenario "
    f"{c['scenario_seconds']:.0f} s.",
    "",
]
for mode in modes:
    lines += [
        f"### {mode.capitalize()} writes"
        + (f" (`--direct=1`, {c['direct_engine']}, iodepth {c['iodepth']})" if mode == "direct"
           else f" (`--direct=0`, psync, `--fsync={c['fsync_every']}`)"),
        "",
        "| rate | epochs ok / failed | froze | freeze ms p50 / p99 / max | rounds p50 / max | "
        "read while frozen p50 | RPO s p50 / p99 / max (freeze) | RPO s p50 / p99 / max (none) | "
        "write p99 ms freeze / none | ratio | write p99.9 ms freeze / none |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in rates:
        f, n = runs[f"{rate}m-{mode}-freeze"], runs[f"{rate}m-{mode}-none"]
        r = pairs[f"{rate}m-{mode}"]["clat_p99_ratio"]
        lines.append(
            f"| {rate} MiB/s | {f['epochs_ok']} / {f['epochs_failed']} | {f['epochs_frozen']} | "
            f"{trio(f['freeze_ms'], f1)} | {f['rounds']['p50']} / {f['rounds']['max']} | "
            f"{mb(f['freeze_read_bytes']['p50'])} | {trio(f['lag_seconds'], f2)} | "
            f"{trio(n['lag_seconds'], f2)} | {f2(f['fio']['clat_ms']['p99'])} / "
            f"{f2(n['fio']['clat_ms']['p99'])} | {'—' if r is None else f'{r:.2f}x'} | "
            f"{f2(f['fio']['clat_ms']['p99_9'])} / {f2(n['fio']['clat_ms']['p99_9'])} |")
    lines.append("")

lines += [
    "### fio per run",
    "",
    "| rate | mode | capture | written MiB/s | IOPS | write clat ms mean / p50 / p99 / p99.9 / max | "
    "fsync ms p99 / max | epochs ok / failed / cut | source read MB | replicate wall s |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
]
for rate in rates:
    for mode in modes:
        for cap in caps:
            x = runs[f"{rate}m-{mode}-{cap}"]
            cl, fs = x["fio"]["clat_ms"], x["fio"]["fsync_ms"]
            lines.append(
                f"| {rate} MiB/s | {mode} | {cap} | {x['fio']['bw_bytes'] / 1048576:.1f} | {x['fio']['iops']:,.0f} | "
                f"{f2(cl['mean'])} / {f2(cl['p50'])} / {f2(cl['p99'])} / {f2(cl['p99_9'])} / {f2(cl['max'])} | "
                + (f"{f2(fs['p99'])} / {f2(fs['max'])}" if fs else "—")
                + f" | {x['epochs_ok']} / {x['epochs_failed']} / {x['epochs_cut_at_deadline']} | "
                f"{x['source_read_bytes'] / 1e6:,.0f} | {x['wall_seconds']:.1f} |")
lines += [
    "",
    "### The issue's target (printed, never asserted)",
    "",
    "| target | mode | measured | met |",
    "|---|---|---|---|",
] + [f"| {t} | {w} | {v} | {ok(b)} |" for t, w, v, b in T] + [
    "",
    "### Anomalies",
    "",
]
lines += [f"- {x}" for x in odd] if odd else [
    "None: every epoch ok and tracked, every `--capture freeze` epoch crash-consistent, every "
    "run reached its epochs; the standby equals the source after the last epoch."]
lines += [""]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
