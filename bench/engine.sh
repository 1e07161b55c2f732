#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The engine against fio: the same O_DIRECT io_uring reads of one image file, done
# by fio and by kfio-bench (the kfio engine), so a slow engine shows as a ratio
# below 1. Two workloads, each run RUNS times (default 3), interleaved fio / kfio
# (the order alternates per round) with the page cache dropped before every run:
#
#   seqread   the whole image, bs 1 MiB, queue depth 16
#   randread  4 KiB random reads, queue depth 64, for SECONDS (10 s; QUICK=1: 3 s)
#
# The median of the runs is reported, with the ratio kfio/fio. A benchmark, not a
# test: no thresholds, nothing passes or fails on timings.
#
#   image      $BENCH_WORK/engine-<GiB>g.img (default bench/work/), 4 GiB (QUICK=1:
#              1 GiB) of random data written once by fio, reused while its size fits
#   output     Markdown on stdout and in $RESULTS_DIR/engine.md, numbers in
#              $RESULTS_DIR/engine.json, every run's raw JSON in $RESULTS_DIR/engine-raw/
#   env        BUILD, QUICK, RUNS, SECONDS_RAND, BENCH_WORK, RESULTS_DIR, FIO_EXTRA
#              (extra fio options for both workloads, e.g. "--fixedbufs")
#
# Needs root (drop_caches); exits 77 with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
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

# run_fio WORKLOAD ROUND: fio's full JSON goes to $RAW/fio-WORKLOAD-ROUND.json.
run_fio() {
	local workload=$1 round=$2 args
	case $workload in
	seqread) args=(--rw=read --bs=1M --iodepth=16) ;;
	randread) args=(--rw=randread --bs=4k --iodepth=64 --time_based
		--runtime="$SECONDS_RAND") ;;
	esac
	drop_caches
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
	drop_caches
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
			"run_$tool" "$workload" "$round"
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
    fio = [fio_run(w, r) for r in range(1, runs + 1)]
    kfio = [kfio_run(w, r) for r in range(1, runs + 1)]
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
          f"randread in GB/s: fio {rr['fio']['gbps']:.3f}, kfio {rr['kfio']['gbps']:.3f}.",
          ""]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
