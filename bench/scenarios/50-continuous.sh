#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Continuous replication under a steady write load: `pvrepl replicate` every
# INTERVAL while fio writes random blocks to the source at a fixed rate. What it
# measures is the recovery point the standby actually holds (the lag), and what
# keeping it costs: reads on the source, CPU on each side, bytes on the wire. A
# benchmark, not a test: no thresholds (the final byte comparison must pass).
#
#   source  a copy of $BENCH_WORK/mixed-v1-2048m.img (QUICK=1: 256m) attached as a
#           loop device with --direct-io=on; the standby is a sparse file
#   peers   `pvrepl receive --listen 127.0.0.1:0 --metrics-addr ...` (one for the
#           whole scenario), mutual TLS with certificates from `pvrepl certs`,
#           --allow vol=source; `pvrepl send` once for the initial sync, then per
#           run `pvrepl replicate --interval INTERVAL --metrics-addr ... -o json`
#   load    fio randwrite, direct=1, libaio QD 4, one thread, time_based RUNTIME s
#           (20; QUICK=1: 10), per config BS@RATE: 4k@5m and 16k@20m (fio's m is
#           MiB/s); --randseed from the config and run (the same in every
#           scenario run); fio's data is incompressible
#   a run   replicate starts and its first (no-change) epoch completes; then fio
#           starts and, for the same RUNTIME s, a sampler reads every 200 ms:
#             lag   now - pvrepl_consistent_point_timestamp_seconds{volume="vol"}
#                   from the receiver's /metrics (the source-side capture time of
#                   the committed epoch)
#             cost  the sender's pvrepl_source_read_bytes_total, sent_bytes_total
#                   and syncs_total, /proc/PID/io read_bytes, and /proc/PID/stat
#                   utime+stime of both daemons (deltas over the loaded window)
#           fio stops; replicate runs until an epoch captured after fio's end is
#           committed, gets SIGTERM; once the receiver applied the last epoch
#           (test-tool wait-applied) the standby is compared with the source
#           (O_DIRECT reads, cmp) -- a difference fails the scenario
#   RUNS    runs per config (3; QUICK=1: 1), configs interleaved per round
#
# INTERVAL is 5s by default, so runs stay comparable with reports made before
# write tracking, when every epoch rescanned the whole source (~1-2 s for 2 GiB
# here). With tracking (replicate's default on a loop device) an epoch reads only
# the blocks written since the last, and INTERVAL=1s is the setting to measure:
# the source read load should then stay a small multiple of the write rate.
#   output  $RESULTS_DIR/50-continuous.md, .json, raw samples and logs in
#           50-continuous-raw/, plots 50-continuous-*.png when bench_plot_* exist
#   env     BUILD, QUICK, RUNS, BENCH_WORK, RESULTS_DIR, INTERVAL (5s), RUNTIME
#           (seconds), CONFIGS ("4k:5m 16k:20m")
# Budget: about 5 minutes (QUICK=1: under a minute), the image's first write aside.
# Needs root (loop devices) and fio; exits 77 with the reason otherwise.
set -euo pipefail
NAME=50-continuous
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	IMAGE_MIB=256 RUNTIME=${RUNTIME:-10} RUNS=1
else
	IMAGE_MIB=2048 RUNTIME=${RUNTIME:-20}
fi
INTERVAL=${INTERVAL:-5s}
CONFIGS=${CONFIGS:-"4k:5m 16k:20m"}
SAMPLE_S=0.2
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, drop_caches)"
command -v fio >/dev/null || skip "fio is not installed (make deps)"
command -v losetup >/dev/null || skip "losetup is not installed"
need_root
need_tools
case $RUNTIME in '' | *[!0-9]* | 0) die "RUNTIME='$RUNTIME': want whole seconds" ;; esac
INTERVAL_S=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", sys.argv[1])
if not m:
    sys.exit(1)
print(float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)])' "$INTERVAL") ||
	die "INTERVAL='$INTERVAL': want a duration such as 5s"
IMAGE=$(mixed_image "$IMAGE_MIB")
SIZE=$(stat -c %s "$IMAGE")
# source copy, standby, journal (1 GiB at most)
avail_kib=$(df -Pk "$BENCH_WORK" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge $((((SIZE >> 10) * 2) + (1 << 20))) ] ||
	skip "needs $(((SIZE * 2 >> 30) + 1)) GiB free in $BENCH_WORK, has $((avail_kib >> 20)) GiB"

SOURCE_IMG=$WORK/source.img
STANDBY=$WORK/standby.img
LOOP=
RX_PID=
TX_PID=
FIO_PID=
SAMPLER_PID=
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_SCENARIO=$EPOCHREALTIME

teardown() {
	set +e
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=
	stop_pid "$FIO_PID"
	FIO_PID=
	stop_pid "$TX_PID"
	TX_PID=
	stop_pid "$RX_PID"
	RX_PID=
	if [ -n "$LOOP" ]; then
		losetup -d "$LOOP" 2>/dev/null || say "could not detach $LOOP"
		LOOP=
	fi
	# A device attached to this run's own source file whose name never reached
	# LOOP (interrupted between losetup and the assignment): the exact devices
	# backed by that file, nothing else.
	local d
	if [ -e "$SOURCE_IMG" ]; then
		for d in $(losetup -n -O NAME -j "$SOURCE_IMG" 2>/dev/null); do
			losetup -d "$d" 2>/dev/null || say "could not detach $d"
		done
	fi
	cleanup
}
trap teardown EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# prom URL NAME LABEL=VALUE...: the value of the first sample of NAME whose labels
# include every LABEL=VALUE; nothing when there is none or the fetch failed.
cat >"$WORK/bin/prom.py" <<'EOF'
import re, sys, urllib.request
url, name, want = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
try:
    text = urllib.request.urlopen(url, timeout=2).read().decode()
except Exception:
    sys.exit(0)
for m in re.finditer(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', text, re.M):
    labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    if m.group(1) == name and all(labels.get(k) == v for k, v in want.items()):
        print(m.group(3))
        break
EOF
prom() { python3 "$WORK/bin/prom.py" "$@"; }

# The sampler: every SAMPLE_S for DURATION s, one TSV line: wall time, the
# receiver's consistent point, the sender's counters, both daemons' CPU ticks and
# the sender's /proc/PID/io read_bytes. Fixed schedule; a late sample is skipped.
cat >"$WORK/bin/sampler.py" <<'EOF'
import re, sys, time, urllib.request
out, duration, period, rx_url, tx_url, rx_pid, tx_pid = sys.argv[1:8]
duration, period = float(duration), float(period)
LBL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', re.M)


def metrics(url, want):
    """{name: value} for the families in want, whose labels match want[name]."""
    try:
        text = urllib.request.urlopen(url, timeout=1).read().decode()
    except Exception:
        return {}
    got = {}
    for m in SAMPLE.finditer(text):
        name = m.group(1)
        if name in want and name not in got:
            labels = dict(LBL.findall(m.group(2) or ""))
            if all(labels.get(k) == v for k, v in want[name].items()):
                got[name] = m.group(3)
    return got


def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return str(int(f[11]) + int(f[12]))
    except Exception:
        return "-"


def io_read(pid):
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("read_bytes:"):
                return line.split()[1]
    except Exception:
        pass
    return "-"


RX = {"pvrepl_consistent_point_timestamp_seconds": {"volume": "vol", "role": "secondary"},
      "pvrepl_syncs_total": {"volume": "vol", "result": "success"}}
TX = {"pvrepl_source_read_bytes_total": {"volume": "vol"},
      "pvrepl_sent_bytes_total": {"volume": "vol"},
      "pvrepl_syncs_total": {"volume": "vol", "result": "success"}}
cols = ("t", "consistent_point", "rx_syncs_ok", "tx_read_bytes", "tx_sent_bytes",
        "tx_syncs_ok", "tx_io_read_bytes", "tx_ticks", "rx_ticks")
with open(out, "w") as f:
    f.write("\t".join(cols) + "\n")
    start = time.time()
    n = int(round(duration / period))
    for k in range(n + 1):
        now = time.time()
        due = start + k * period
        if due > now:
            time.sleep(due - now)
        elif now - due > period and k < n:
            continue
        tx_t, rx_t, tx_io = ticks(tx_pid), ticks(rx_pid), io_read(tx_pid)
        t0 = time.time()
        rx = metrics(rx_url, RX)
        t1 = time.time()
        tx = metrics(tx_url, TX)
        row = [f"{(t0 + t1) / 2:.3f}",
               rx.get("pvrepl_consistent_point_timestamp_seconds", "-"),
               rx.get("pvrepl_syncs_total", "-"),
               tx.get("pvrepl_source_read_bytes_total", "-"),
               tx.get("pvrepl_sent_bytes_total", "-"),
               tx.get("pvrepl_syncs_total", "-"), tx_io, tx_t, rx_t]
        f.write("\t".join(row) + "\n")
        f.flush()
EOF

bench_certs

say "copying the $IMAGE_MIB MiB image and attaching it as the source loop device"
cp --reflink=auto "$IMAGE" "$SOURCE_IMG"
LOOP=$(losetup --find --show --direct-io=on "$SOURCE_IMG") || {
	LOOP=
	skip "losetup failed on $SOURCE_IMG (no loop devices?)"
}
truncate -s "$SIZE" "$STANDBY"

RX_PORT=$(free_port)
RX_URL=http://127.0.0.1:$RX_PORT/metrics
start_receiver "$RAW/receiver.log" --metrics-addr "127.0.0.1:$RX_PORT"
TX_OPTS=(--volume vol --device "$LOOP" --state-dir "$WORK/tx-state" --peer "$PEER"
	--tls-dir "$WORK/tls/tx" --server-name standby -o json --progress none)

say "initial sync of $LOOP"
drop_caches
t0=$EPOCHREALTIME
timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send "${TX_OPTS[@]}" >"$RAW/initial-sync.json" ||
	die "the initial sync failed (see $RAW/receiver.log)"
t1=$EPOCHREALTIME
printf '{"wall_seconds": %s}\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
	>"$RAW/initial-sync-outer.json"

FIO_VERSION=$(fio --version)

# one_run CONFIG ROUND: one replicate process through one loaded window, then the
# drain and the comparison. Raw files: CONFIG-ROUND-*.
one_run() {
	local cfg=$1 round=$2 bs rate tag tx_port tx_url i t_end cp epoch n t_start t_load
	bs=${cfg%%:*} rate=${cfg#*:}
	tag=$bs-$rate-$round
	tx_port=$(free_port)
	tx_url=http://127.0.0.1:$tx_port/metrics
	t_start=$EPOCHREALTIME
	"$PVREPL" replicate "${TX_OPTS[@]}" --interval "$INTERVAL" \
		--metrics-addr "127.0.0.1:$tx_port" >"$RAW/$tag-replicate.jsonl" 2>"$RAW/$tag-replicate.log" &
	TX_PID=$!
	# Its first epoch (nothing changed since the last run) comes before the load;
	# replicate retries one the receiver refuses (e.g. still busy with the last run).
	for ((i = 0; i < 1200; i++)); do
		grep -q '"result":"ok"' "$RAW/$tag-replicate.jsonl" && break
		kill -0 "$TX_PID" 2>/dev/null || die "replicate exited at start (see $RAW/$tag-replicate.log)"
		sleep 0.1
	done
	grep -q '"result":"ok"' "$RAW/$tag-replicate.jsonl" ||
		die "no successful epoch from replicate within 120 s ($tag, see $RAW/$tag-replicate.jsonl)"

	python3 "$WORK/bin/sampler.py" "$RAW/$tag-samples.tsv" "$RUNTIME" "$SAMPLE_S" \
		"$RX_URL" "$tx_url" "$RX_PID" "$TX_PID" &
	SAMPLER_PID=$!
	t_load=$EPOCHREALTIME
	fio --name="randwrite-$bs" --filename="$LOOP" --rw=randwrite --bs="$bs" --rate="$rate" \
		--direct=1 --ioengine=libaio --iodepth=4 --thread --time_based --runtime="$RUNTIME" \
		--randseed="$(printf '%s' "$tag" | cksum | cut -d' ' -f1)" --output-format=json >"$RAW/$tag-fio.json" 2>"$RAW/$tag-fio.err" &
	FIO_PID=$!
	for ((i = 0; i < (RUNTIME + 60) * 10; i++)); do
		kill -0 "$FIO_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$FIO_PID" 2>/dev/null && die "fio still runs $((RUNTIME + 60)) s after its start ($tag)"
	wait "$FIO_PID" || die "fio failed ($tag, see $RAW/$tag-fio.err)"
	FIO_PID=
	t_end=$EPOCHREALTIME
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SAMPLER_PID" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=

	# The drain: until an epoch captured after fio's end is committed.
	n=$(awk -v s="$INTERVAL_S" 'BEGIN { printf "%d", (3 * s + 60) * 10 }')
	for ((i = 0; i < n; i++)); do
		cp=$(prom "$RX_URL" pvrepl_consistent_point_timestamp_seconds volume=vol role=secondary)
		[ -n "$cp" ] && awk -v a="$cp" -v b="$t_end" 'BEGIN { exit !(a >= b) }' && break
		kill -0 "$TX_PID" 2>/dev/null || die "replicate exited during the run ($tag)"
		sleep 0.1
	done
	awk -v a="${cp:-0}" -v b="$t_end" 'BEGIN { exit !(a >= b) }' ||
		die "no epoch captured after the load was committed within $((n / 10)) s ($tag)"
	local t_drained=$EPOCHREALTIME
	stop_pid "$TX_PID"
	TX_PID=
	epoch=$(grep '"result":"ok"' "$RAW/$tag-replicate.jsonl" | tail -n 1 |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["epoch"])')
	"$TEST_TOOL" wait-applied --state-dir "$WORK/rx-state/vol" --epoch "$epoch" \
		--timeout-ms 60000 >/dev/null || die "epoch $epoch not applied within 60 s ($tag)"
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout --kill-after=10 "$RUN_TIMEOUT_S" bash -c \
		'cmp <(dd if="$1" bs=4M iflag=direct status=none) <(dd if="$2" bs=4M iflag=direct status=none)' \
		_ "$LOOP" "$STANDBY" >"$RAW/$tag-cmp.txt" 2>&1 ||
		die "the standby differs from the source after $tag (epoch $epoch; $RAW/$tag-cmp.txt)"
	printf '{"start": %s, "fio_start": %s, "fio_end": %s, "drained": %s, "verified_at": %s, "last_epoch": %s, "verified": true}\n' \
		"$t_start" "$t_load" "$t_end" "$t_drained" "$EPOCHREALTIME" "$epoch" >"$RAW/$tag-outer.json"
}

for round in $(seq 1 "$RUNS"); do
	# interleaved, the order alternating per round
	read -r -a cfgs <<<"$CONFIGS"
	if [ $((round % 2)) -eq 0 ]; then mapfile -t cfgs < <(printf '%s\n' "${cfgs[@]}" | tac); fi
	for cfg in "${cfgs[@]}"; do
		say "round $round/$RUNS: fio randwrite ${cfg%%:*} at ${cfg#*:}/s for $RUNTIME s, replicate every $INTERVAL"
		one_run "$cfg" "$round"
	done
done
stop_pid "$RX_PID"
RX_PID=
T_SCENARIO_END=$EPOCHREALTIME

machine_env
S_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
export S_LOAD_START=$LOAD_START S_LOAD_END
export S_RAW=$RAW S_RUNS=$RUNS S_IMAGE=$IMAGE S_QUICK=$QUICK S_CONFIGS=$CONFIGS
export S_INTERVAL=$INTERVAL S_INTERVAL_S=$INTERVAL_S S_RUNTIME=$RUNTIME S_CLK_TCK=$CLK_TCK
export S_FIO_VERSION=$FIO_VERSION S_WORK=$WORK S_SAMPLE_S=$SAMPLE_S
S_SECONDS=$(awk -v a="$T_SCENARIO" -v b="$T_SCENARIO_END" 'BEGIN { printf "%.0f", b - a }')
export S_SECONDS
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, math, os, statistics, sys

env = os.environ
raw, runs = env["S_RAW"], int(env["S_RUNS"])
configs = env["S_CONFIGS"].split()
tck = float(env["S_CLK_TCK"])
GIB, MB = 1 << 30, 1e6


def load(path):
    text = open(path).read()  # fio may print warnings before its JSON
    return json.loads(text[text.find("{"):])


def pct(xs, p):
    """Percentile with linear interpolation between closest ranks."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def num(v):
    return None if v in ("-", "") else float(v)


def run_of(cfg, r):
    bs, rate = cfg.split(":")
    tag = f"{bs}-{rate}-{r}"
    rows = [l.rstrip("\n").split("\t") for l in open(f"{raw}/{tag}-samples.tsv")]
    head, rows = rows[0], [dict(zip(rows[0], x)) for x in rows[1:]]
    rows = [{k: num(v) for k, v in x.items()} for x in rows]
    lag = [x["t"] - x["consistent_point"] for x in rows if x["consistent_point"] is not None]
    t_rel = [round(x["t"] - rows[0]["t"], 3) for x in rows if x["consistent_point"] is not None]
    cps = [x["consistent_point"] for x in rows if x["consistent_point"] is not None]

    def delta(k):
        v = [x[k] for x in rows if x[k] is not None]
        return v[-1] - v[0] if len(v) >= 2 else float("nan")

    window = rows[-1]["t"] - rows[0]["t"]
    fio = load(f"{raw}/{tag}-fio.json")["jobs"][0]["write"]
    epochs = [json.loads(l) for l in open(f"{raw}/{tag}-replicate.jsonl") if l.strip()]
    bad = [e for e in epochs if e["result"] != "ok"]
    first_ok = next(i for i, e in enumerate(epochs) if e["result"] == "ok")
    loaded = [e for e in epochs[first_ok + 1:] if e["result"] == "ok"]  # the first ran before the load
    outer = load(f"{raw}/{tag}-outer.json")
    return {
        "config": cfg, "block_size": bs, "rate": rate, "run": r,
        "window_seconds": window, "samples": len(lag),
        "lag_p50": pct(lag, 50), "lag_p99": pct(lag, 99), "lag_max": max(lag),
        "lag_min": min(lag),
        "fio_write_bytes": fio["io_bytes"], "fio_seconds": fio["runtime"] / 1000.0,
        "fio_iops": fio["iops"],
        "read_bytes_proc": delta("tx_io_read_bytes"),
        "read_bytes_metric": delta("tx_read_bytes"),
        "sent_bytes": delta("tx_sent_bytes"),
        "epochs_window": delta("tx_syncs_ok"),
        "epochs_window_receiver": delta("rx_syncs_ok"),
        "cpu_sender_pct": delta("tx_ticks") / tck / window * 100,
        "cpu_receiver_pct": delta("rx_ticks") / tck / window * 100,
        "epochs_total": len(epochs), "epochs_failed": len(bad),
        "failures": [e["message"] for e in bad],
        "run_seconds": outer["verified_at"] - outer["start"],
        "epoch_seconds": [e["seconds"] for e in loaded],
        "epoch_wire_bytes": [e["wire_bytes"] for e in loaded],
        "epoch_blocks_changed": [e["blocks_changed"] for e in loaded],
        "last_epoch": outer["last_epoch"], "drain_seconds": outer["drained"] - outer["fio_end"],
        "verified": outer["verified"],
        "gauge_whole_seconds": all(c == int(c) for c in cps),
        "lag_series": list(zip(t_rel, [round(x, 3) for x in lag])),
    }


per = {cfg: [run_of(cfg, r) for r in range(1, runs + 1)] for cfg in configs}
init = load(f"{raw}/initial-sync.json")
init.update(load(f"{raw}/initial-sync-outer.json"))
size = init["blocks_scanned"] * init["block_size"]
summ = {}
for cfg, rs in per.items():
    lags = []
    for r in rs:
        lags += [v for _, v in r["lag_series"]]
    med = lambda k: statistics.median(r[k] for r in rs)
    summ[cfg] = {
        "lag_p50": pct(lags, 50), "lag_p99": pct(lags, 99), "lag_max": max(lags),
        "samples": len(lags),
        "read_mbps_proc": med("read_bytes_proc") / med("window_seconds") / MB,
        "read_mbps_metric": statistics.median(r["read_bytes_metric"] / r["window_seconds"]
                                              for r in rs) / MB,
        "write_mbps": statistics.median(r["fio_write_bytes"] / r["fio_seconds"] for r in rs) / MB,
        "sent_mbps": statistics.median(r["sent_bytes"] / r["window_seconds"] for r in rs) / MB,
        "sent_bytes": med("sent_bytes"),
        "sent_over_written": statistics.median(r["sent_bytes"] / r["fio_write_bytes"] for r in rs),
        "cpu_sender_pct": med("cpu_sender_pct"), "cpu_receiver_pct": med("cpu_receiver_pct"),
        "epochs_window": med("epochs_window"),
        "epoch_seconds_median": statistics.median(x for r in rs for x in r["epoch_seconds"]),
        "epoch_seconds_max": max(x for r in rs for x in r["epoch_seconds"]),
    }
whole = any(r["gauge_whole_seconds"] for rs in per.values() for r in rs)
result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"image": env["S_IMAGE"], "image_bytes": size, "runs": runs,
               "quick": env["S_QUICK"] == "1", "interval": env["S_INTERVAL"],
               "runtime_seconds": int(env["S_RUNTIME"]), "sample_seconds": float(env["S_SAMPLE_S"]),
               "block_size": init["block_size"], "fio": env["S_FIO_VERSION"],
               "loadavg_start": env["S_LOAD_START"], "loadavg_end": env["S_LOAD_END"],
               "scenario_seconds": int(env["S_SECONDS"]),
               "consistent_point_whole_seconds": whole},
    "initial_sync": init,
    "runs": per,
    "median": summ,
}
json.dump(result, open(sys.argv[1], "w"), indent=1)

label = lambda cfg: f"{cfg.split(':')[0].replace('k', ' KiB')} @ {cfg.split(':')[1].replace('m', ' MiB')}/s"
# Data for the plots: the lag of run 1 of each config over its loaded window.
with open(f"{env['S_WORK']}/plot-lag.dat", "w") as f:
    f.write("seconds " + " ".join(f'"{label(c)}"' for c in configs) + "\n")
    series = [per[c][0]["lag_series"] for c in configs]
    for k in range(max(len(s) for s in series)):
        f.write(f"{k * float(env['S_SAMPLE_S']):.1f} " +
                " ".join(f"{s[k][1]:.3f}" if k < len(s) else "-" for s in series) + "\n")

mc, c = result["machine"], result["config"]
lines = [
    "## Continuous replication under a write load: lag (RPO) and its cost",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}, "
    f"{c['fio']}; source: a {size / GIB:g} GiB mixed image on {mc['fs']} as a loop device "
    f"(--direct-io=on), capture mode none (live reads); standby a file; sender and receiver "
    f"on this machine, TLS 1.3 mutual over 127.0.0.1; map block size "
    f"{c['block_size'] // 1024} KiB.  ",
    f"Method: `pvrepl replicate --interval {c['interval']}` while fio writes random blocks "
    f"(randwrite, direct, libaio QD 4, rate-limited, incompressible data) for "
    f"{c['runtime_seconds']} s; lag = now - the receiver's "
    "`pvrepl_consistent_point_timestamp_seconds` (the source-side capture time of the "
    f"committed epoch), sampled every {c['sample_seconds'] * 1000:.0f} ms over the loaded window; "
    "read load, bytes sent and epochs from the sender's /metrics and /proc/PID/io, CPU from "
    "/proc/PID/stat (utime+stime, % of one core) over the same window. "
    f"{runs} run(s) per config, interleaved; after each run fio stops, one more epoch "
    "captured after it commits, replicate gets SIGTERM and the standby is compared byte "
    f"for byte with the source: {'equal after every run' if all(r['verified'] for rs in per.values() for r in rs) else '**differs**'}. "
    f"{mc['date']}; load average {c['loadavg_start']} at the start, {c['loadavg_end']} at "
    f"the end (the machine may be shared); the scenario took {c['scenario_seconds']} s.",
    "",
    f"Initial sync before the runs (`pvrepl send`): {init['wall_seconds']:.2f} s, "
    f"{size / init['wall_seconds'] / 1e9:.3f} GB/s, {init['wire_bytes'] / MB:,.1f} MB on the wire.",
    "",
    "| load (fio randwrite) | written MB/s | lag p50 s | lag p99 s | lag max s | "
    "source read MB/s | sent MB/s | sent / written | CPU sender % | CPU receiver % | "
    "epochs in window | epoch s (median / max) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]
for cfg in configs:
    m = summ[cfg]
    lines.append(
        f"| {label(cfg)} | {m['write_mbps']:.2f} | {m['lag_p50']:.2f} | {m['lag_p99']:.2f} | "
        f"{m['lag_max']:.2f} | {m['read_mbps_proc']:.0f} | {m['sent_mbps']:.2f} | "
        f"{m['sent_over_written']:.2f} | {m['cpu_sender_pct']:.0f} | {m['cpu_receiver_pct']:.0f} | "
        f"{m['epochs_window']:g} | {m['epoch_seconds_median']:.2f} / {m['epoch_seconds_max']:.2f} |")
lines += [
    "",
    f"Lag percentiles pool every sample of the config's runs ({', '.join(str(summ[c]['samples']) for c in configs)} "
    "samples); the other columns are medians of the runs. Source read MB/s is the sender's "
    "/proc/PID/io read_bytes over the window (the /metrics counter "
    "pvrepl_source_read_bytes_total, which moves once per epoch, gives "
    + ", ".join(f"{summ[c]['read_mbps_metric']:.0f}" for c in configs) +
    " MB/s); sent is pvrepl_sent_bytes_total (TLS included); sent / written compares it "
    "with the bytes fio wrote: every write costs its whole map block, and a block written "
    "twice within an epoch is sent once.",
]
if whole:
    lines += ["", "**Note:** the receiver's consistent-point gauge had whole-second precision in "
              "these runs, so each lag sample is overstated by up to 1 s."]
lines += [
    "",
    "### Individual runs",
    "",
    "| load | run | window s | samples | lag p50 / p99 / max s | source read MB/s | sent MB | "
    "CPU sender / receiver % | epochs ok in window / ok total / failed | drain s | standby equal |",
    "|---|---:|---:|---:|---|---:|---:|---|---|---:|---|",
]
for cfg in configs:
    for r in per[cfg]:
        lines.append(
            f"| {label(cfg)} | {r['run']} | {r['window_seconds']:.1f} | {r['samples']} | "
            f"{r['lag_p50']:.2f} / {r['lag_p99']:.2f} / {r['lag_max']:.2f} | "
            f"{r['read_bytes_proc'] / r['window_seconds'] / MB:.0f} | {r['sent_bytes'] / MB:,.1f} | "
            f"{r['cpu_sender_pct']:.0f} / {r['cpu_receiver_pct']:.0f} | "
            f"{r['epochs_window']:g} / {r['epochs_total'] - r['epochs_failed']} / {r['epochs_failed']} | "
            f"{r['drain_seconds']:.1f} | "
            f"{'yes' if r['verified'] else '**no**'} (epoch {r['last_epoch']}) |")
fails = {}
for rs in per.values():
    for r in rs:
        for msg in r["failures"]:
            fails[msg] = fails.get(msg, 0) + 1
lines += [
    "",
    "Drain s: from fio's end until an epoch captured after it was committed. A failed epoch "
    "is retried by replicate after a back-off; its time counts in the lag. Failed epochs: "
    + (", ".join(f"{n} x \"{m}\"" for m, n in sorted(fails.items(), key=lambda x: -x[1]))
       if fails else "none") + ".",
    "",
]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF

if type bench_plot_lines >/dev/null 2>&1; then
	bench_plot_lines "$NAME-lag" "Replication lag under load, run 1 (replicate --interval $INTERVAL)" \
		"seconds since the load started" "lag (s)" "$WORK/plot-lag.dat"
	{
		echo
		if type bench_plot_md >/dev/null 2>&1; then
			bench_plot_md "$NAME-lag" "Replication lag under load, run 1"
			echo
		elif [ -s "$RESULTS_DIR/$NAME-lag.png" ]; then
			printf '![Replication lag under load, run 1](%s-lag.png)\n\n' "$NAME"
		fi
	} >>"$RESULTS_DIR/$NAME.md"
fi
