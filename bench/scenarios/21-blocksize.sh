#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The block-size sweep behind the default: for each map block size, what a scan
# would send after a workload of small random writes, how that compares with the
# bytes written, what the map costs per TiB, and how fast a no-change rescan runs.
# A benchmark, not a test: no thresholds; the Markdown ends with a paragraph that
# picks a default from the numbers measured.
#
#   image     $BENCH_WORK/mixed-v1-1024m.img (QUICK=1: 256m), shared with 20-scan
#   workload  WRITES_PER_GIB (2000) writes of 4 KiB and as many of 16 KiB per GiB
#             of image, at random aligned offsets (seed SEED=2, half random, half
#             text), applied once to a copy of the image: the same bytes for every
#             block size, so the copy stands for a fresh copy per block size
#   per size  record the map of the pristine image (--update); RUNS (3) no-change
#             rescans, interleaved across sizes (order reversed every other round);
#             one scan of the changed copy against the recorded map (bytes only)
#   sizes     4k 8k 16k 32k 64k 128k 256k 512k 1M (QUICK=1: 4k 16k 64k 256k 1M),
#             or SIZES="..."
#
# The page cache is dropped before every timed run; medians are reported.
#   output  $RESULTS_DIR/21-blocksize.md, 21-blocksize.json, raw JSON in 21-blocksize-raw/
# Needs root (drop_caches); exits 77 with the reason otherwise.
set -euo pipefail
NAME=21-blocksize
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	IMAGE_MIB=256
	SIZES=${SIZES:-"4k 16k 64k 256k 1M"}
else
	IMAGE_MIB=1024
	SIZES=${SIZES:-"4k 8k 16k 32k 64k 128k 256k 512k 1M"}
fi
SEED=${SEED:-2}
WRITES_PER_GIB=${WRITES_PER_GIB:-2000}
need_root
need_tools
IMAGE=$(mixed_image "$IMAGE_MIB")
read -r -a sizes <<<"$SIZES"
writes=$((WRITES_PER_GIB * IMAGE_MIB / 1024))

say "applying the workload to a copy of $IMAGE"
cp --reflink=auto "$IMAGE" "$WORK/changed.img"
python3 "$MIXED_DATA" write "$WORK/changed.img" --seed "$SEED" \
	--writes "4096:$writes,16384:$writes" --offsets "$WORK/offsets" >"$RAW/writes.json"

for bs in "${sizes[@]}"; do
	say "recording the map at $bs"
	drop_caches
	scan "$RAW/record-$bs.json" --device "$IMAGE" --state-dir "$WORK/bs-$bs" --block-size "$bs" \
		--update
	# The files a map of this volume takes right after its first epoch.
	stat -c '%n %s' "$WORK/bs-$bs"/* | sed "s|$WORK/bs-$bs/||" >"$RAW/files-$bs.txt"
done

for round in $(seq 1 "$RUNS"); do
	order=("${sizes[@]}")
	if [ $((round % 2)) -eq 0 ]; then
		mapfile -t order < <(printf '%s\n' "${sizes[@]}" | tac)
	fi
	for bs in "${order[@]}"; do
		say "round $round/$RUNS rescan at $bs"
		drop_caches
		scan "$RAW/rescan-$bs-$round.json" --device "$IMAGE" --state-dir "$WORK/bs-$bs"
	done
done

for bs in "${sizes[@]}"; do
	say "scanning the changed copy at $bs"
	drop_caches
	scan "$RAW/changed-$bs.json" --device "$WORK/changed.img" --state-dir "$WORK/bs-$bs"
done

machine_env
export S_RAW=$RAW S_RUNS=$RUNS S_IMAGE=$IMAGE S_QUICK=$QUICK S_SEED=$SEED S_SIZES="$SIZES"
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs, sizes = env["S_RAW"], int(env["S_RUNS"]), env["S_SIZES"].split()
GIB, TIB = 1 << 30, 1 << 40
MEM_TARGET_PCT = 0.1


def load(path):
    return json.load(open(path))


writes = load(f"{raw}/writes.json")
written = writes["bytes_written"]
rows = []
for s in sizes:
    rec = load(f"{raw}/record-{s}.json")
    bs, size = rec["block_size"], rec["size_bytes"]
    resc = [load(f"{raw}/rescan-{s}-{r}.json") for r in range(1, runs + 1)]
    for j in resc:
        if j["blocks_changed"]:
            sys.exit(f"21-blocksize: the no-change rescan at {s} found changed blocks")
    ch = load(f"{raw}/changed-{s}.json")
    files = dict(l.split() for l in open(f"{raw}/files-{s}.txt"))
    files = {k: int(v) for k, v in files.items()}
    disk = sum(files.values())
    rows.append({
        "block_size": bs,
        "blocks_changed": ch["blocks_changed"],
        "blocks_zero": ch["blocks_zero"],
        "payload_bytes": ch["payload_bytes"],
        "compressed_bytes": ch["compressed_bytes"],
        "amp_compressed": ch["compressed_bytes"] / written,
        "amp_payload": ch["payload_bytes"] / written,
        "map_bytes_per_tib": 8 * TIB // bs,
        # per block: the hash (8 B), the dirty bit (map.h) and the Merkle tree over
        # the hashes (merkle.h: a leaf per 64 blocks, binary above: ~2 nodes of 8 B
        # per 64 blocks); 22-mapmem measures the resident size
        "map_mem_pct": (8 + 1 / 8 + 16 / 64) / bs * 100,
        "files": files,
        "files_bytes": disk,
        "files_bytes_per_tib": disk * TIB / size,
        "rescan_gbps": [j["scan_bytes_per_second"] / 1e9 for j in resc],
        "rescan_gbps_median": statistics.median(j["scan_bytes_per_second"] / 1e9 for j in resc),
        "rescan_cpu_runs": [j["cpu_seconds"] / (size / GIB) for j in resc],
        "rescan_cpu_s_per_gib": statistics.median(j["cpu_seconds"] / (size / GIB) for j in resc),
        "record_gbps": rec["scan_bytes_per_second"] / 1e9,
    })

result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"image": env["S_IMAGE"], "image_bytes": size, "runs": runs,
               "quick": env["S_QUICK"] == "1", "seed": int(env["S_SEED"])},
    "writes": writes, "sizes": rows,
}


def label(bs):
    return f"{bs >> 20}M" if bs >= 1 << 20 else f"{bs >> 10}k"


def human(b):
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                        ("KiB", 1 << 10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


mc = result["machine"]
mb = lambda b: f"{b / 1e6:,.1f}"
lines = [
    "## Block-size sweep: bytes sent, map size, scan rate",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}; "
    f"image {size / GIB:g} GiB mixed (half random, a quarter text, a quarter zeros) on "
    f"{mc['fs']}. {mc['date']}.  ",
    f"Workload: {writes['writes']:,} writes, half 4 KiB and half 16 KiB, at random aligned "
    f"offsets (seed {result['config']['seed']}, half random, half text data): "
    f"{mb(written)} MB written, {mb(writes['bytes_changed'])} MB distinct. "
    f"Rescan: median of {runs} no-change rescans, interleaved across sizes, page cache "
    "dropped before every run.",
    "",
    "| block | blocks changed | payload MB | sent MB (lz4) | sent / written | "
    "payload / written | map per TiB (8 B/block) | map files here | files per TiB | "
    "memory % of volume (map + Merkle) | rescan GB/s | rescan CPU s/GiB | rescan runs (GB/s) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]
for r in rows:
    lines.append(
        f"| {label(r['block_size'])} | {r['blocks_changed']:,} | {mb(r['payload_bytes'])} | "
        f"{mb(r['compressed_bytes'])} | {r['amp_compressed']:.2f} | {r['amp_payload']:.2f} | "
        f"{human(r['map_bytes_per_tib'])} | {human(r['files_bytes'])} | "
        f"{human(r['files_bytes_per_tib'])} | {r['map_mem_pct']:.4f} | "
        f"{r['rescan_gbps_median']:.3f} | {r['rescan_cpu_s_per_gib']:.3f} | "
        + ", ".join(f"{x:.2f}" for x in r["rescan_gbps"]) + " |")

# Choosing the default, by a stated rule applied to the rows above: the map's
# memory must fit the target; the rescan must not cost clearly more CPU per GiB
# than the cheapest size (CPU, not wall time: per-block work is what the block
# size changes, while the wall-clock rate follows the disk). "Clearly" is 1.25x,
# or more when the runs of one size spread wider than that, so noise excludes
# nothing. Among the sizes left, the one that sends the fewest bytes wins.
cheapest = min(r["rescan_cpu_s_per_gib"] for r in rows)
cpu_noise = max(max(r["rescan_cpu_runs"]) - min(r["rescan_cpu_runs"]) for r in rows)
cpu_limit = max(1.25 * cheapest, cheapest + cpu_noise)
fits = [r for r in rows if r["map_mem_pct"] <= MEM_TARGET_PCT]
fast = [r for r in fits if r["rescan_cpu_s_per_gib"] <= cpu_limit]
pick = min(fast or fits or rows, key=lambda r: (r["compressed_bytes"], r["block_size"]))
result["choice"] = {"rule": f"map memory <= {MEM_TARGET_PCT}% of the volume, rescan CPU "
                    "per GiB <= max(1.25x the cheapest size, cheapest + the widest run "
                    "spread), then fewest bytes sent",
                    "cpu_limit_s_per_gib": cpu_limit, "block_size": pick["block_size"]}
too_big = [label(r["block_size"]) for r in rows if r not in fits]
too_slow = [label(r["block_size"]) for r in fits if r not in fast]
others = [r for r in rows if r["block_size"] in (16 << 10, 64 << 10, 1 << 20)
          and r is not pick]
lo, hi = rows[0], rows[-1]
spread = max((max(r["rescan_gbps"]) - min(r["rescan_gbps"])) / r["rescan_gbps_median"]
             for r in rows)
para = [
    "",
    "### Choosing the default",
    "",
    f"Rule: the map's memory (8 B hash, 1 dirty bit and 0.25 B of Merkle tree per block) "
    f"must stay at or under {MEM_TARGET_PCT}% of the volume; a no-change rescan must not "
    f"cost more than {cpu_limit:.3f} CPU s per GiB (1.25x the cheapest size, {cheapest:.3f} s, "
    f"or that plus the widest spread between runs of one size, if larger), since per-block "
    f"work is what the block size changes; among the sizes that pass, the one that sends "
    f"the fewest bytes for this workload wins. "
    + (f"Over the memory target: {', '.join(too_big)}. " if too_big else "")
    + (f"Too costly to scan: {', '.join(too_slow)}. " if too_slow else "")
    + f"By these numbers the choice is **{label(pick['block_size'])}**: it sends "
    f"{mb(pick['compressed_bytes'])} MB for {mb(written)} MB written "
    f"({pick['amp_compressed']:.2f}x), its map takes {human(pick['map_bytes_per_tib'])} per TiB "
    f"({pick['map_mem_pct']:.3f}% of the volume in memory), and it rescans at "
    f"{pick['rescan_gbps_median']:.2f} GB/s ({pick['rescan_cpu_s_per_gib']:.3f} CPU s per GiB). "
    + " ".join(f"At {label(r['block_size'])}: {r['amp_compressed']:.2f}x sent, "
               f"{human(r['map_bytes_per_tib'])} per TiB, "
               f"{r['rescan_gbps_median']:.2f} GB/s." for r in others)
    + f" From {label(lo['block_size'])} to {label(hi['block_size'])} the bytes sent grow "
    f"{hi['compressed_bytes'] / lo['compressed_bytes']:.1f}x and the map shrinks "
    f"{hi['block_size'] // lo['block_size']}x, while the rescan rate stays between "
    f"{min(r['rescan_gbps_median'] for r in rows):.2f} and "
    f"{max(r['rescan_gbps_median'] for r in rows):.2f} GB/s "
    f"({min(r['rescan_cpu_s_per_gib'] for r in rows):.3f} to "
    f"{max(r['rescan_cpu_s_per_gib'] for r in rows):.3f} CPU s per GiB). The runs of one "
    f"size spread by up to {spread:.0%} of their median here, so rate differences smaller "
    "than that are noise (the disk's), not the block size.",
    "",
]
lines += para
json.dump(result, open(sys.argv[1], "w"), indent=2)
# The plots' data (bench/plot.sh draws them), by block size in KiB.
out = os.path.dirname(sys.argv[1])
with open(os.path.join(out, "21-blocksize-sent.dat"), "w") as f:
    f.write('block_KiB "sent (lz4) / written" "payload / written"\n')
    for r in rows:
        f.write(f"{r['block_size'] / 1024:g} {r['amp_compressed']:.6g} {r['amp_payload']:.6g}\n")
with open(os.path.join(out, "21-blocksize-map.dat"), "w") as f:
    f.write('block_KiB "memory: map + Merkle" "disk: map files" "memory target"\n')
    for r in rows:
        f.write(f"{r['block_size'] / 1024:g} {r['map_mem_pct']:.6g} "
                f"{r['files_bytes_per_tib'] / TIB * 100:.6g} {MEM_TARGET_PCT:g}\n")
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
PLOT_LOGX=2 bench_plot_lines 21-blocksize-sent "Bytes sent per byte written, by map block size" \
	"map block size (KiB)" "bytes / bytes written" "$RESULTS_DIR/21-blocksize-sent.dat"
PLOT_LOGX=2 PLOT_LOGY=10 bench_plot_lines 21-blocksize-map "Map overhead, % of the volume, by map block size" \
	"map block size (KiB)" "% of the volume" "$RESULTS_DIR/21-blocksize-map.dat"
{
	echo
	bench_plot_md 21-blocksize-sent "bytes sent / written vs block size"
	echo
	bench_plot_md 21-blocksize-map "map overhead vs block size"
	echo
} >>"$RESULTS_DIR/$NAME.md"
