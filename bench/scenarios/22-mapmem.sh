#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# What a volume's map costs in memory, per TiB of volume, at the block sizes of
# interest: `test-tool map-mem` creates a map of the geometry (map_create), sets
# every block (map_set) so every page of it is resident, builds the Merkle tree
# over it, and reads VmRSS from /proc/self/status before and after. The baseline
# is the arithmetic (8 B per block, 1 dirty bit per block). The target the
# block-size choice uses is at most 0.1% of the volume. A benchmark, not a test.
#
#   volume  VOLUME (1T; QUICK=1: 64G), scaled to per TiB in the report
#   sizes   SIZES (4k 8k 16k 64k 1M; QUICK=1: 16k 64k), RUNS (3) runs each, median
#   output  $RESULTS_DIR/22-mapmem.md, 22-mapmem.json, raw output in 22-mapmem-raw/
# Nothing is timed and no page cache is involved, so it needs no root.
set -euo pipefail
NAME=22-mapmem
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	VOLUME=${VOLUME:-64G}
	SIZES=${SIZES:-"16k 64k"}
else
	VOLUME=${VOLUME:-1T}
	SIZES=${SIZES:-"4k 8k 16k 64k 1M"}
fi
need_tools

for round in $(seq 1 "$RUNS"); do
	for bs in $SIZES; do
		say "round $round/$RUNS map of $VOLUME at $bs"
		"$TEST_TOOL" map-mem --size "$VOLUME" --block-size "$bs" >"$RAW/$bs-$round.txt" ||
			die "test-tool map-mem --size $VOLUME --block-size $bs failed"
	done
done

machine_env
export S_RAW=$RAW S_RUNS=$RUNS S_SIZES="$SIZES" S_VOLUME=$VOLUME S_QUICK=$QUICK
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, os, re, statistics, sys

env = os.environ
raw, runs, sizes = env["S_RAW"], int(env["S_RUNS"]), env["S_SIZES"].split()
TIB = 1 << 40
MEM_TARGET_PCT = 0.1


def parse_size(s):
    m = re.fullmatch(r"(\d+)([kKmMgGtT]?)", s)
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]


def human(b):
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                        ("KiB", 1 << 10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


volume = parse_size(env["S_VOLUME"])
rows = []
for s in sizes:
    bs = parse_size(s)
    rs = []
    for r in range(1, runs + 1):
        f = open(f"{raw}/{s}-{r}.txt").read().split()
        rs.append(dict(zip(f[0::2], map(int, f[1::2]))))
    blocks = rs[0]["blocks"]
    map_b = statistics.median(x["rss_after_bytes"] - x["rss_before_bytes"] for x in rs)
    all_b = statistics.median(x["rss_merkle_bytes"] - x["rss_before_bytes"] for x in rs)
    computed = blocks * 8 + (blocks + 63) // 64 * 8
    rows.append({
        "block_size": bs, "blocks": blocks, "runs": rs,
        "map_resident_bytes": map_b, "map_merkle_resident_bytes": all_b,
        "computed_bytes": computed,
        "map_per_tib": map_b * TIB / volume, "map_merkle_per_tib": all_b * TIB / volume,
        "map_pct": map_b / volume * 100, "map_merkle_pct": all_b / volume * 100,
        "resident_over_computed": map_b / computed,
    })

mc = {k: env[f"MACHINE_{k.upper()}"] for k in ("nproc", "mem_gib", "cpu", "kernel", "date")}
result = {"machine": mc, "config": {"volume_bytes": volume, "runs": runs,
                                    "quick": env["S_QUICK"] == "1"}, "sizes": rows}
json.dump(result, open(sys.argv[1], "w"), indent=2)


def label(bs):
    return f"{bs >> 20}M" if bs >= 1 << 20 else f"{bs >> 10}k"


lines = [
    "## Map memory per TiB",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}. "
    f"{mc['date']}.  ",
    f"A map of a {human(volume)} volume per block size, every block set so all of it is "
    f"resident, then the Merkle tree built over it; VmRSS growth, median of {runs} runs, "
    f"scaled to per TiB. Computed: 8 B hash + 1 dirty bit per block. Target: map memory "
    f"<= {MEM_TARGET_PCT}% of the volume.",
    "",
    "| block | blocks | computed map | resident map | resident / computed | map per TiB | "
    "map % of volume | map + Merkle per TiB | map + Merkle % of volume | map + Merkle within 0.1% |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]
for r in rows:
    lines.append(
        f"| {label(r['block_size'])} | {r['blocks']:,} | {human(r['computed_bytes'])} | "
        f"{human(r['map_resident_bytes'])} | {r['resident_over_computed']:.3f} | "
        f"{human(r['map_per_tib'])} | {r['map_pct']:.4f}% | {human(r['map_merkle_per_tib'])} | "
        f"{r['map_merkle_pct']:.4f}% | "
        f"{'yes' if r['map_merkle_pct'] <= MEM_TARGET_PCT else 'no'} |")
lines.append("")
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
