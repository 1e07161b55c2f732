#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The engine against fio: the same O_DIRECT io_uring reads of one image file, done
# by fio and by kfio-bench (the kfio engine), so a slow engine shows as a ratio
# below 1. Two workloads, each run RUNS times (default 3), interleaved fio / kfio
# (the order alternates per round) with the page cache dropped before every run:
#
#   seqread   the whole image, bs 1 MiB, queue depth 16
#   randread  4 KiB random reads, queue depth 64, for SECONDS_RAND (10 s; QUICK=1: 3 s)
#
# The median of the runs is reported, with the ratio kfio/fio. A benchmark, not a
# test: no thresholds, nothing passes or fails on timings. Runs during which other
# processes used the disk or the CPUs noticeably are named in the report as
# disturbed, with how much else happened, rather than silently averaged in.
#
#   image      $BENCH_WORK/engine-<GiB>g.img (default bench/work/), 4 GiB (QUICK=1:
#              1 GiB) of random data written once by fio, reused while its size fits
#   output     Markdown on stdout and in $RESULTS_DIR/engine.md, numbers in
#              $RESULTS_DIR/engine.json, every run's raw JSON in $RESULTS_DIR/engine-raw/
#   env        BUILD, QUICK, RUNS, SECONDS_RAND, BENCH_WORK, RESULTS_DIR, FIO_EXTRA
#              (extra fio options for both workloads, e.g. "--fixedbufs"), KFIO_BENCH
#              (another kfio-bench binary, e.g. one built from an engine patch)
#
# Needs root (drop_caches); exits 77 with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=bench/plot.sh
. "$REPO/bench/plot.sh"
BUILD=${BUILD:-build}
KFIO_BENCH=${KFIO_BENCH:-$REPO/$BUILD/kfio-bench}
QUICK=${QUICK:-0}
RUNS=${RUNS:-3}
if [ "$QUICK" = 1 ]; then
	IMAGE_GIB=1
	SECONDS_RAND=${SECONDS_RAND:-3}
else
	IMAGE_GIB=4
	SECONDS_RAND=${SECONDS_RAND:-10}
fi
BENCH_WORK=${BENCH_WORK:-$REPO/bench/work}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
FIO_EXTRA=${FIO_EXTRA:-}
RUN_TIMEOUT_S=600 # a hung run is killed, not waited for

IMAGE=$BENCH_WORK/engine-${IMAGE_GIB}g.img
IMAGE_BYTES=$((IMAGE_GIB << 30))
RAW=$RESULTS_DIR/engine-raw

skip() {
	echo "engine: skipped: $*"
	exit 77
}
die() {
	echo "engine: $*" >&2
	exit 1
}

cleanup() {
	# Only a half-written image is ours to remove; a finished one is kept for reuse.
	rm -f "$IMAGE.tmp.$$"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || skip "needs root to drop the page cache (/proc/sys/vm/drop_caches)"
echo 3 2>/dev/null >/proc/sys/vm/drop_caches ||
	skip "cannot write /proc/sys/vm/drop_caches (read-only /proc/sys?)"
command -v fio >/dev/null || skip "fio is not installed (make deps)"
command -v python3 >/dev/null || skip "python3 is not installed"
[ -x "$KFIO_BENCH" ] || die "$KFIO_BENCH not found; build it with 'make $BUILD/kfio-bench'"
case $RUNS in '' | *[!0-9]* | 0) die "RUNS='$RUNS': want a positive number" ;; esac

mkdir -p "$BENCH_WORK" "$RAW"

# ------------------------------------------------------------------ the image
if [ -f "$IMAGE" ] && [ "$(stat -c %s "$IMAGE")" -eq "$IMAGE_BYTES" ]; then
	echo "engine: reusing $IMAGE" >&2
else
	echo "engine: writing $IMAGE_GIB GiB of random data to $IMAGE" >&2
	# fio fills every buffer with fresh pseudo-random bytes (refill_buffers), which is
	# several times faster than /dev/urandom and just as incompressible; the data
	# must not be zeros, or a filesystem or device could short-cut the reads.
	fio --name=fill --filename="$IMAGE.tmp.$$" --rw=write --bs=1M --size="$IMAGE_BYTES" \
		--direct=1 --ioengine=io_uring --iodepth=16 --refill_buffers=1 \
		--output-format=terse >/dev/null
	sync "$IMAGE.tmp.$$"
	mv "$IMAGE.tmp.$$" "$IMAGE"
fi
[ "$(od -An -tx1 -N4096 -j $((IMAGE_BYTES / 2)) "$IMAGE" | tr -d ' 0\n')" ] ||
	die "$IMAGE reads as zeros; remove it and run again"

# ------------------------------------------------------------------- the runs
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# What else ran during a run: the device's sectors beyond what the tool read, and
# the CPU time of the whole machine beyond the tool's own. Another process on the
# same disk or CPUs makes that run's number meaningless, and the report says so
# instead of hiding it in a median.
dev_name=$(basename "$(findmnt -n -o SOURCE -T "$IMAGE")")
DEV_STAT=/sys/class/block/$dev_name/stat
[ -r "$DEV_STAT" ] || DEV_STAT=
# Prints "sectors_read sectors_written machine_busy_ticks children_ticks ns": the
# device counters (512-byte units; 0 0 when unknown), the busy jiffies of all CPUs
# from /proc/stat (user nice system irq softirq), the CPU time of this shell's
# waited-for children (cutime + cstime), which is where the tool's time lands, and
# the wall clock.
snapshot() {
	if [ -n "$DEV_STAT" ]; then
		awk '{ printf "%s %s ", $3, $7 }' "$DEV_STAT"
	else
		printf '0 0 '
	fi
	awk '/^cpu / { printf "%.0f ", $2 + $3 + $4 + $7 + $8 }' /proc/stat
	# Field 2 (comm) of the shell's own stat has no spaces: "bash".
	awk '{ printf "%.0f ", $16 + $17 }' "/proc/$$/stat"
	date +%s%N
}

# run_fio WORKLOAD ROUND: fio's full JSON goes to $RAW/fio-WORKLOAD-ROUND.json.
run_fio() {
	local workload=$1 round=$2 args
	case $workload in
	seqread) args=(--rw=read --bs=1M --iodepth=16) ;;
	randread) args=(--rw=randread --bs=4k --iodepth=64 --time_based
		--runtime="$SECONDS_RAND") ;;
	esac
	# shellcheck disable=SC2086 # FIO_EXTRA is a list of options
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		fio --name="$workload" --filename="$IMAGE" --ioengine=io_uring --direct=1 \
		"${args[@]}" $FIO_EXTRA --output-format=json \
		>"$RAW/fio-$workload-$round.json" ||
		die "fio $workload failed (output in $RAW/fio-$workload-$round.json)"
}

# run_kfio WORKLOAD ROUND: kfio-bench's JSON goes to $RAW/kfio-WORKLOAD-ROUND.json.
run_kfio() {
	local workload=$1 round=$2 args
	case $workload in
	seqread) args=(--bs 1M --depth 16) ;;
	randread) args=(--bs 4k --depth 64 --seconds "$SECONDS_RAND") ;;
	esac
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		"$KFIO_BENCH" "$workload" --file "$IMAGE" "${args[@]}" \
		>"$RAW/kfio-$workload-$round.json" ||
		die "kfio-bench $workload failed (see the message above)"
}

for round in $(seq 1 "$RUNS"); do
	for workload in seqread randread; do
		# Alternate who goes first so neither tool always inherits the other's
		# leftovers (device write-back, CPU frequency, host cache).
		if [ $((round % 2)) -eq 1 ]; then
			order="fio kfio"
		else
			order="kfio fio"
		fi
		for tool in $order; do
			echo "engine: round $round/$RUNS $workload $tool" >&2
			drop_caches
			before=$(snapshot)
			"run_$tool" "$workload" "$round"
			echo "$before $(snapshot) $(getconf CLK_TCK)" \
				>"$RAW/$tool-$workload-$round.others"
		done
	done
done

# ----------------------------------------------------------------- the report
mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
ENGINE_RAW=$RAW ENGINE_RUNS=$RUNS ENGINE_IMAGE=$IMAGE ENGINE_IMAGE_BYTES=$IMAGE_BYTES
ENGINE_SECONDS_RAND=$SECONDS_RAND ENGINE_QUICK=$QUICK ENGINE_FIO_EXTRA=$FIO_EXTRA
ENGINE_NPROC=$(nproc)
ENGINE_MEM_GIB=$(awk -v k="$mem_kib" 'BEGIN { printf "%.1f", k / 1048576 }')
ENGINE_KERNEL=$(uname -r)
ENGINE_FIO_VERSION=$(fio --version)
ENGINE_CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ENGINE_FS=$(findmnt -n -o FSTYPE,SOURCE -T "$IMAGE" | tr -s ' ')
ENGINE_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export ENGINE_RAW ENGINE_RUNS ENGINE_IMAGE ENGINE_IMAGE_BYTES ENGINE_SECONDS_RAND ENGINE_QUICK \
	ENGINE_FIO_EXTRA ENGINE_NPROC ENGINE_MEM_GIB ENGINE_KERNEL ENGINE_FIO_VERSION ENGINE_CPU \
	ENGINE_FS ENGINE_DATE

python3 - "$RESULTS_DIR/engine.json" "$RESULTS_DIR/engine.md" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs = env["ENGINE_RAW"], int(env["ENGINE_RUNS"])
image_bytes = int(env["ENGINE_IMAGE_BYTES"])


def load_json(path):
    # fio may print warnings before its JSON document; start at the first brace.
    text = open(path).read()
    start = text.find("{")
    if start < 0:
        sys.exit(f"engine: no JSON in {path}")
    return json.loads(text[start:])


def others(tool, workload, rnd, run):
    # What the machine did during the run beyond the tool: see snapshot() in the shell.
    v = [int(x) for x in open(f"{raw}/{tool}-{workload}-{rnd}.others").read().split()]
    rd0, wr0, busy0, own0, ns0, rd1, wr1, busy1, own1, ns1, hz = v
    dev_bytes = (rd1 - rd0 + wr1 - wr0) * 512
    run["other_io_bytes"] = max(dev_bytes - run["bytes"], 0) if dev_bytes else None
    run["other_cpu_seconds"] = max((busy1 - busy0) - (own1 - own0), 0) / hz
    # The window includes the tool's start and exit, so it is longer than "seconds".
    run["window_seconds"] = (ns1 - ns0) / 1e9
    return run


def fio_run(workload, rnd):
    job = load_json(f"{raw}/fio-{workload}-{rnd}.json")["jobs"][0]
    rd = job["read"]
    secs = rd["runtime"] / 1000.0  # fio reports milliseconds
    opts = job.get("job options", {})
    return {
        "mode": workload,
        "bytes": rd["io_bytes"],
        "seconds": secs,
        "gbps": rd["io_bytes"] / secs / 1e9 if secs else 0.0,
        "iops": rd["iops"],
        "bs": {"seqread": 1 << 20, "randread": 4096}[workload],
        "depth": int(opts.get("iodepth", 0)),
        "cpu_usr_pct": job["usr_cpu"],
        "cpu_sys_pct": job["sys_cpu"],
    }


def kfio_run(workload, rnd):
    return load_json(f"{raw}/kfio-{workload}-{rnd}.json")


workloads = {
    "seqread": ("seqread 1 MiB, QD 16", "gbps", "GB/s"),
    "randread": ("randread 4 KiB, QD 64", "iops", "IOPS"),
}
result = {
    "machine": {
        "nproc": int(env["ENGINE_NPROC"]),
        "mem_gib": float(env["ENGINE_MEM_GIB"]),
        "cpu": env["ENGINE_CPU"],
        "kernel": env["ENGINE_KERNEL"],
        "fio": env["ENGINE_FIO_VERSION"],
        "filesystem": env["ENGINE_FS"],
    },
    "config": {
        "date": env["ENGINE_DATE"],
        "image": env["ENGINE_IMAGE"],
        "image_bytes": image_bytes,
        "runs": runs,
        "randread_seconds": int(env["ENGINE_SECONDS_RAND"]),
        "quick": env["ENGINE_QUICK"] == "1",
        "fio_extra": env["ENGINE_FIO_EXTRA"],
    },
    "workloads": {},
}
for w in workloads:
    fio = [others("fio", w, r, fio_run(w, r)) for r in range(1, runs + 1)]
    kfio = [others("kfio", w, r, kfio_run(w, r)) for r in range(1, runs + 1)]
    if w == "seqread":
        for tool, rs in (("fio", fio), ("kfio", kfio)):
            for r in rs:
                if r["bytes"] != image_bytes:
                    sys.exit(f"engine: {tool} seqread read {r['bytes']} bytes "
                             f"of {image_bytes}; the comparison is meaningless")
    med = {}
    for tool, rs in (("fio", fio), ("kfio", kfio)):
        med[tool] = {k: statistics.median(r[k] for r in rs)
                     for k in ("gbps", "iops", "seconds")}
    metric = workloads[w][1]
    ratio = med["kfio"][metric] / med["fio"][metric] if med["fio"][metric] else None
    result["workloads"][w] = {"metric": metric, "fio": fio, "kfio": kfio,
                              "median": med, "ratio_kfio_over_fio": ratio}

json.dump(result, open(sys.argv[1], "w"), indent=2)

# The plots' data (bench/plot.sh draws them): the medians, then every run.
for w, unit_scale in (("seqread", 1), ("randread", 1e-3)):
    r, metric = result["workloads"][w], workloads[w][1]
    with open(os.path.join(os.path.dirname(sys.argv[1]), f"engine-{w}.dat"), "w") as f:
        f.write("run fio kfio\n")
        f.write(f"median {r['median']['fio'][metric] * unit_scale:.6g} "
                f"{r['median']['kfio'][metric] * unit_scale:.6g}\n")
        for i in range(runs if runs > 1 else 0):
            f.write(f"run-{i + 1} {r['fio'][i][metric] * unit_scale:.6g} "
                    f"{r['kfio'][i][metric] * unit_scale:.6g}\n")


def fmt(v, metric):
    return f"{v:.3f}" if metric == "gbps" else f"{v:,.0f}"


m, c = result["machine"], result["config"]
lines = [
    "## Engine vs fio: O_DIRECT reads through io_uring",
    "",
    f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, kernel {m['kernel']}, "
    f"{m['fio']}; image {c['image_bytes'] >> 30} GiB on {m['filesystem']}.  ",
    f"Median of {runs} runs each, fio and kfio interleaved, page cache dropped before "
    f"every run; randread runs {c['randread_seconds']} s"
    + (f"; fio extra options `{c['fio_extra']}`" if c["fio_extra"] else "")
    + f". {c['date']}.",
    "",
    "| workload | unit | fio | kfio | kfio / fio | fio runs | kfio runs |",
    "|---|---|---:|---:|---:|---|---|",
]
for w, (label, metric, unit) in workloads.items():
    r = result["workloads"][w]
    ratio = r["ratio_kfio_over_fio"]
    runs_of = lambda tool: ", ".join(fmt(x[metric], metric) for x in r[tool])
    lines.append(f"| {label} | {unit} | {fmt(r['median']['fio'][metric], metric)} | "
                 f"{fmt(r['median']['kfio'][metric], metric)} | "
                 f"{'n/a' if ratio is None else f'{ratio:.3f}'} | "
                 f"{runs_of('fio')} | {runs_of('kfio')} |")
rr = result["workloads"]["randread"]["median"]
lines += ["",
          f"randread in GB/s: fio {rr['fio']['gbps']:.3f}, kfio {rr['kfio']['gbps']:.3f}."]
# Name the runs that shared the disk or the CPUs with something else: more than
# 64 MiB of other device I/O, or other processes busy for over a quarter of one CPU
# (irq and kernel-thread work for the tool's own I/O stays well below that).
busy = []
for w in workloads:
    for tool in ("fio", "kfio"):
        for i, r in enumerate(result["workloads"][w][tool], 1):
            other_io, other_cpu = r["other_io_bytes"], r["other_cpu_seconds"]
            cpu_share = other_cpu / r["window_seconds"]
            if (other_io or 0) > 64 << 20 or cpu_share > 0.25:
                busy.append(f"{w} {tool} run {i} (other I/O "
                            f"{'?' if other_io is None else other_io >> 20} MiB, "
                            f"other CPU {cpu_share:.0%} of a core)")
if busy:
    lines.append("")
    lines.append("**Disturbed runs** (the machine was not quiet; treat these numbers "
                 "with care): " + "; ".join(busy) + ".")
lines.append("")
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF

# ------------------------------------------------------------------ the plots
bench_plot_bars engine-seqread "Engine vs fio: seqread 1 MiB, QD 16 (median, then each run)" \
	"GB/s" "$RESULTS_DIR/engine-seqread.dat"
bench_plot_bars engine-randread "Engine vs fio: randread 4 KiB, QD 64 (median, then each run)" \
	"kIOPS" "$RESULTS_DIR/engine-randread.dat"
{
	echo
	bench_plot_md engine-seqread "seqread GB/s, fio vs kfio"
	echo
	bench_plot_md engine-randread "randread kIOPS, fio vs kfio"
	echo
} >>"$RESULTS_DIR/engine.md"
