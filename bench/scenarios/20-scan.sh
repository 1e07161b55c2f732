#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Change detection on a mixed image: how fast `pvrepl scan` rescans a volume that
# did not change, against fio reading the same file, and what it prepares when 1%
# of the 4 KiB blocks changed. A benchmark, not a test: no thresholds.
#
#   image   $BENCH_WORK/mixed-v1-4096m.img (QUICK=1: 1024m), 1 MiB pieces cycling
#           random / text / zero / random (mixed-data.py), kept for reuse
#   a.      no-change rescan (map recorded first with --update) vs fio O_DIRECT
#           sequential read (io_uring, bs 1M, QD 16): RUNS rounds (3), interleaved,
#           the order alternating per round; GB/s, the ratio scan/fio, CPU s per GiB
#   b.      a copy of the image gets 1% of its 4 KiB blocks rewritten (seed 1, half
#           random, half text; fsync), then RUNS rounds of: a fresh copy of the
#           pre-change map, scan with lz4 (scan + prepare) and, interleaved, with
#           --no-compress (scan only). compressed_bytes is compared with the lz4
#           size of exactly the changed 4 KiB blocks (test-tool lz4-blocks)
#
# The page cache is dropped before every timed run; medians are reported.
#   output  $RESULTS_DIR/20-scan.md, 20-scan.json, raw JSON in 20-scan-raw/
#   env     BUILD, QUICK, RUNS, BENCH_WORK, RESULTS_DIR, BLOCK_SIZE (the map's,
#           default: pvrepl's default), SEED (1)
# Needs root (drop_caches) and fio; exits 77 with the reason otherwise.
set -euo pipefail
NAME=20-scan
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then IMAGE_MIB=1024; else IMAGE_MIB=4096; fi
SEED=${SEED:-1}
BLOCK_SIZE=${BLOCK_SIZE:-}
need_root
command -v fio >/dev/null || skip "fio is not installed (make deps)"
need_tools
IMAGE=$(mixed_image "$IMAGE_MIB")
bs_opt=()
[ -n "$BLOCK_SIZE" ] && bs_opt=(--block-size "$BLOCK_SIZE")

say "recording the map of $IMAGE"
scan "$RAW/record.json" --device "$IMAGE" --state-dir "$WORK/pristine" --update "${bs_opt[@]}"

run_fio() {
	drop_caches
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		fio --name=seqread --filename="$IMAGE" --ioengine=io_uring --direct=1 \
		--bs=1M --iodepth=16 --rw=read --output-format=json >"$RAW/a-fio-$1.json" ||
		die "fio failed (output in $RAW/a-fio-$1.json)"
}
run_rescan() {
	drop_caches
	scan "$RAW/a-scan-$1.json" --device "$IMAGE" --state-dir "$WORK/pristine"
}

for round in $(seq 1 "$RUNS"); do
	if [ $((round % 2)) -eq 1 ]; then order="fio rescan"; else order="rescan fio"; fi
	for what in $order; do
		say "a. round $round/$RUNS $what"
		"run_$what" "$round"
	done
done

# b. The image changes once (a copy: the one in BENCH_WORK stays pristine); the map
# is what each round resets, so every round compares with the same pre-change map.
say "b. copying the image and changing 1% of its 4 KiB blocks"
cp --reflink=auto "$IMAGE" "$WORK/changed.img"
python3 "$MIXED_DATA" write "$WORK/changed.img" --seed "$SEED" --fraction 0.01 \
	--block 4096 --offsets "$WORK/offsets" >"$RAW/b-writes.json"
"$TEST_TOOL" lz4-blocks --file "$WORK/changed.img" --block-size 4096 \
	--offsets "$WORK/offsets" >"$RAW/b-lz4-blocks.txt"

run_changed() { # ROUND lz4|raw
	local opt=()
	[ "$2" = raw ] && opt=(--no-compress)
	rm -rf "$WORK/state"
	cp -a "$WORK/pristine" "$WORK/state"
	drop_caches
	scan "$RAW/b-$2-$1.json" --device "$WORK/changed.img" --state-dir "$WORK/state" "${opt[@]}"
}
for round in $(seq 1 "$RUNS"); do
	if [ $((round % 2)) -eq 1 ]; then order="lz4 raw"; else order="raw lz4"; fi
	for what in $order; do
		say "b. round $round/$RUNS scan $what"
		run_changed "$round" "$what"
	done
done

machine_env
export S_RAW=$RAW S_RUNS=$RUNS S_IMAGE=$IMAGE S_QUICK=$QUICK S_SEED=$SEED
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs = env["S_RAW"], int(env["S_RUNS"])
GIB = 1 << 30


def load(path):
    text = open(path).read()  # fio may print warnings before its JSON
    return json.loads(text[text.find("{"):])


def med(xs):
    return statistics.median(xs)


record = load(f"{raw}/record.json")
size = record["size_bytes"]

fio = []
for r in range(1, runs + 1):
    job = load(f"{raw}/a-fio-{r}.json")["jobs"][0]
    rd, secs = job["read"], job["read"]["runtime"] / 1000.0
    if rd["io_bytes"] != size:
        sys.exit(f"20-scan: fio read {rd['io_bytes']} of {size} bytes")
    fio.append({"seconds": secs, "gbps": rd["io_bytes"] / secs / 1e9,
                "cpu_seconds": (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * secs})


def scans(prefix):
    out = []
    for r in range(1, runs + 1):
        j = load(f"{raw}/{prefix}-{r}.json")
        j["gbps"] = j["scan_bytes_per_second"] / 1e9
        out.append(j)
    return out


rescan, b_lz4, b_raw = scans("a-scan"), scans("b-lz4"), scans("b-raw")
for j in rescan:
    if j["blocks_changed"]:
        sys.exit("20-scan: the no-change rescan found changed blocks")
writes = load(f"{raw}/b-writes.json")
lz4b = open(f"{raw}/b-lz4-blocks.txt").read().split()
lz4b = dict(zip(lz4b[0::2], map(int, lz4b[1::2])))


def summary(rs):
    return {k: med(r[k] for r in rs) for k in ("seconds", "gbps", "cpu_seconds")}


m_fio, m_rescan = summary(fio), summary(rescan)
m_lz4, m_raw = summary(b_lz4), summary(b_raw)
sent = b_lz4[0]
result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"image": env["S_IMAGE"], "image_bytes": size, "runs": runs,
               "block_size": record["block_size"], "workers": record["workers"],
               "quick": env["S_QUICK"] == "1", "seed": int(env["S_SEED"])},
    "rescan": {"fio": fio, "scan": rescan, "median": {"fio": m_fio, "scan": m_rescan},
               "ratio_scan_over_fio": m_rescan["gbps"] / m_fio["gbps"]},
    "changed": {"writes": writes, "lz4_blocks": lz4b, "scan_lz4": b_lz4,
                "scan_raw": b_raw, "median": {"lz4": m_lz4, "raw": m_raw},
                "compressed_over_lz4_blocks": sent["compressed_bytes"] / lz4b["codec_bytes"]},
}
json.dump(result, open(sys.argv[1], "w"), indent=2)
# The plot's data (bench/plot.sh draws it): the medians, then every run.
with open(os.path.join(os.path.dirname(sys.argv[1]), "20-scan-rescan.dat"), "w") as f:
    f.write('run "fio read" "pvrepl scan"\n')
    f.write(f"median {m_fio['gbps']:.6g} {m_rescan['gbps']:.6g}\n")
    for i in range(runs if runs > 1 else 0):
        f.write(f"run-{i + 1} {fio[i]['gbps']:.6g} {rescan[i]['gbps']:.6g}\n")

mc, c = result["machine"], result["config"]
runs_of = lambda rs: ", ".join(f"{r['gbps']:.2f}" for r in rs)
per_gib = lambda m: m["cpu_seconds"] / (size / GIB)
mb = lambda b: f"{b / 1e6:,.1f} MB"
lines = [
    "## Change detection: scan rate and prepared bytes",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}; "
    f"image {size / GIB:g} GiB mixed (1 MiB pieces: half random, a quarter text, a quarter "
    f"zeros) on {mc['fs']}; map block size {c['block_size'] // 1024} KiB, "
    f"{c['workers']} workers.  ",
    f"Median of {runs} runs each, interleaved (order alternating per round), page cache "
    f"dropped before every run. {mc['date']}.",
    "",
    "### No-change rescan vs fio sequential read",
    "",
    "| reader | GB/s | seconds | CPU s per GiB | runs (GB/s) |",
    "|---|---:|---:|---:|---|",
    f"| fio read, O_DIRECT io_uring, bs 1M, QD 16 | {m_fio['gbps']:.3f} | "
    f"{m_fio['seconds']:.2f} | {per_gib(m_fio):.3f} | {runs_of(fio)} |",
    f"| pvrepl scan, nothing changed | {m_rescan['gbps']:.3f} | {m_rescan['seconds']:.2f} | "
    f"{per_gib(m_rescan):.3f} | {runs_of(rescan)} |",
    "",
    f"Rescan / fio: **{result['rescan']['ratio_scan_over_fio']:.3f}** (target >= 0.90).",
    "",
    "### 1% of the 4 KiB blocks changed",
    "",
    f"{writes['writes']:,} distinct 4 KiB blocks rewritten ({mb(writes['bytes_written'])}; "
    f"seed {c['seed']}, half random, half text), fsynced. Each run starts from a copy of "
    "the pre-change map.",
    "",
    "| scan | GB/s | seconds | CPU s per GiB | blocks changed | zero | payload | "
    "prepared (compressed_bytes) | runs (GB/s) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
]
for label, m, rs in (("scan + prepare (lz4)", m_lz4, b_lz4),
                     ("scan only (--no-compress)", m_raw, b_raw)):
    j = rs[0]
    lines.append(f"| {label} | {m['gbps']:.3f} | {m['seconds']:.2f} | {per_gib(m):.3f} | "
                 f"{j['blocks_changed']:,} | {j['blocks_zero']:,} | {mb(j['payload_bytes'])} | "
                 f"{mb(j['compressed_bytes'])} | {runs_of(rs)} |")
lines += [
    "",
    f"Prepared {mb(sent['compressed_bytes'])} against {mb(lz4b['codec_bytes'])} for lz4 of "
    f"exactly the changed 4 KiB blocks ({mb(lz4b['raw_bytes'])} raw): "
    f"**{result['changed']['compressed_over_lz4_blocks']:.2f}x**, the cost of "
    f"{c['block_size'] // 1024} KiB map blocks for scattered 4 KiB writes. "
    f"lz4 minus --no-compress, medians: {m_lz4['seconds'] - m_raw['seconds']:+.2f} s, "
    f"{(m_lz4['cpu_seconds'] - m_raw['cpu_seconds']):+.2f} CPU s.",
    "",
]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
bench_plot_bars 20-scan-rescan "No-change rescan vs fio sequential read (median, then each run)" \
	"GB/s" "$RESULTS_DIR/20-scan-rescan.dat"
{
	echo
	bench_plot_md 20-scan-rescan "no-change rescan GB/s, fio vs pvrepl scan"
	echo
} >>"$RESULTS_DIR/$NAME.md"
