#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The limits: how fast this machine can do each thing replication is made of,
# so the other scenarios' rates can be read against them. A benchmark, not a
# test: no thresholds.
#
#   aes     `openssl speed -aead -evp aes-128-gcm -bytes 16384`, encrypt and
#           decrypt (-decrypt): TLS_AES_128_GCM_SHA256 is the first suite pvrepl
#           offers (replicator/tls.c), 16 KiB is a full TLS record; one core
#   pvrepl  `pvrepl bench -o json` on the mixed image (whole image scanned):
#           xxh3, lz4 compress and decompress on one core over a 256 MiB sample
#           of 16 KiB blocks (zero blocks apart), the lz4 ratio, and the rescan
#           rate of the scan pipeline on every CPU
#   fio     O_DIRECT sequential read of the same image (io_uring, bs 1M, QD 16),
#           when fio is installed: the disk's own limit
#
#   image   $BENCH_WORK/mixed-v1-4096m.img (QUICK=1: 1024m), 1 MiB pieces cycling
#           random / text / zero / random (mixed-data.py), kept for reuse
#   runs    RUNS rounds (3), each running every tool once; medians reported.
#           O_DIRECT throughout, so no page cache to drop and no root needed.
#   output  $RESULTS_DIR/10-limits.md, 10-limits.json, raw output in 10-limits-raw/,
#           the bar chart 10-limits-rates.png when bench/plot.sh can draw it
#   env     BUILD, QUICK, RUNS, BENCH_WORK, RESULTS_DIR, AES_SECONDS (3; QUICK 1)
# About 45 s (QUICK=1: about 15 s) once the image exists. Needs openssl.
set -euo pipefail
NAME=10-limits
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	IMAGE_MIB=1024 AES_SECONDS=${AES_SECONDS:-1}
else
	IMAGE_MIB=4096 AES_SECONDS=${AES_SECONDS:-3}
fi
SAMPLE=256M
command -v openssl >/dev/null || skip "openssl is not installed (make deps)"
need_tools
IMAGE=$(mixed_image "$IMAGE_MIB")
HAVE_FIO=0
command -v fio >/dev/null && HAVE_FIO=1

run_aes() { # ROUND enc|dec
	local opt=()
	[ "$2" = dec ] && opt=(-decrypt)
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		openssl speed "${opt[@]}" -aead -evp aes-128-gcm -bytes 16384 \
		-seconds "$AES_SECONDS" -mr >"$RAW/aes-$2-$1.txt" 2>&1 ||
		die "openssl speed failed (output in $RAW/aes-$2-$1.txt)"
}
run_pvrepl() {
	# --duration well past the image's scan time: the rescan rate covers it all.
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		"$PVREPL" bench --device "$IMAGE" --sample "$SAMPLE" --duration 5m \
		--progress none -o json >"$RAW/pvrepl-$1.json" ||
		die "pvrepl bench failed (see the message above)"
}
run_fio() {
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		fio --name=seqread --filename="$IMAGE" --ioengine=io_uring --direct=1 \
		--bs=1M --iodepth=16 --rw=read --output-format=json >"$RAW/fio-$1.json" ||
		die "fio failed (output in $RAW/fio-$1.json)"
}

for round in $(seq 1 "$RUNS"); do
	say "round $round/$RUNS: openssl aes-128-gcm encrypt, decrypt"
	run_aes "$round" enc
	run_aes "$round" dec
	say "round $round/$RUNS: pvrepl bench"
	run_pvrepl "$round"
	if [ "$HAVE_FIO" = 1 ]; then
		say "round $round/$RUNS: fio sequential read"
		run_fio "$round"
	fi
done

machine_env
export S_RAW=$RAW S_RUNS=$RUNS S_IMAGE=$IMAGE S_QUICK=$QUICK S_FIO=$HAVE_FIO \
	S_AES_SECONDS=$AES_SECONDS S_SAMPLE=$SAMPLE
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" "$RESULTS_DIR/$NAME-rates.txt" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs, have_fio = env["S_RAW"], int(env["S_RUNS"]), env["S_FIO"] == "1"
GIB = 1 << 30


def load(path):
    text = open(path).read()  # fio may print warnings before its JSON
    return json.loads(text[text.find("{"):])


def aes(kind, r):
    # -mr: "+F:<n>:AES-128-GCM:<bytes per second>" for the one size asked
    for line in open(f"{raw}/aes-{kind}-{r}.txt"):
        f = line.strip().split(":")
        if f[0] == "+F" and len(f) == 4:
            return float(f[3])
    sys.exit(f"10-limits: no +F line in {raw}/aes-{kind}-{r}.txt")


rounds = range(1, runs + 1)
enc = [aes("enc", r) for r in rounds]
dec = [aes("dec", r) for r in rounds]
pv = [load(f"{raw}/pvrepl-{r}.json") for r in rounds]
for j in pv:
    if not j["scan_complete"]:
        sys.exit("10-limits: pvrepl bench did not scan the whole image")
fio = []
if have_fio:
    for r in rounds:
        job = load(f"{raw}/fio-{r}.json")["jobs"][0]["read"]
        fio.append(job["io_bytes"] / (job["runtime"] / 1000.0))


def col(key):
    return [j[key] for j in pv]


med = statistics.median
limits = [  # key, label, short label (plot), rates (bytes/s), what
    ("aes_128_gcm_encrypt", "AES-128-GCM encrypt", "aes-gcm enc", enc,
     "openssl speed -aead, 16 KiB records, 1 core"),
    ("aes_128_gcm_decrypt", "AES-128-GCM decrypt", "aes-gcm dec", dec,
     "openssl speed -aead -decrypt, 16 KiB records, 1 core"),
    ("xxh3", "xxh3", "xxh3", col("hash_bytes_per_second"),
     "pvrepl bench, non-zero 16 KiB blocks, 1 core"),
    ("lz4_compress", "lz4 compress", "lz4 comp", col("compress_bytes_per_second"),
     "pvrepl bench, per 16 KiB block, input bytes, 1 core"),
    ("lz4_decompress", "lz4 decompress", "lz4 decomp", col("decompress_bytes_per_second"),
     "pvrepl bench, blocks lz4 kept, output bytes, 1 core"),
]
if fio:
    limits.append(("fio_seqread", "fio sequential read", "fio read", fio,
                   "O_DIRECT io_uring, bs 1M, QD 16, the image"))
limits.append(("pvrepl_rescan", "pvrepl rescan", "pvrepl scan", col("scan_bytes_per_second"),
               f"pvrepl bench: scan pipeline, read + xxh3, {pv[0]['workers']} CPUs"))

zero, ratio = med(col("zero_fraction")), med(col("compression_ratio"))
m = {k: med(v) for k, _, _, v, _ in limits}
# One core's cost to send one GiB of this image: hash and compress the non-zero
# blocks, encrypt what lz4 left.
data = 1.0 - zero
cost = {"xxh3": data * GIB / m["xxh3"], "lz4": data * GIB / m["lz4_compress"],
        "aes": data / ratio * GIB / m["aes_128_gcm_encrypt"]}
cost["total"] = sum(cost.values())
result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"image": env["S_IMAGE"], "image_bytes": pv[0]["size_bytes"], "runs": runs,
               "block_size": pv[0]["block_size"], "sample": env["S_SAMPLE"],
               "aes_seconds": int(env["S_AES_SECONDS"]), "quick": env["S_QUICK"] == "1"},
    "runs": {k: v for k, _, _, v, _ in limits},
    "median_bytes_per_second": m,
    "zero_fraction": zero,
    "compression_ratio": ratio,
    "cpu_seconds_per_gib_sent_one_core": cost,
    "pvrepl_bench": pv,
}
json.dump(result, open(sys.argv[1], "w"), indent=2)

with open(sys.argv[3], "w") as f:  # the plot's data: label GB/s
    f.write("limit GB/s\n")
    for k, _, short, _, _ in limits:
        f.write(f'"{short}" {m[k] / 1e9:.3f}\n')

mc, c = result["machine"], result["config"]
lines = [
    "## Limits: cipher, hash, compression and disk on this machine",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}; "
    f"image {c['image_bytes'] / GIB:g} GiB mixed on {mc['fs']} (zero fraction {zero:.2f}, "
    f"lz4 ratio {ratio:.2f} on the other blocks). Median of {runs} runs. {mc['date']}.",
    "",
    "| limit | GB/s | runs (GB/s) | measured with |",
    "|---|---:|---|---|",
]
for k, label, _, rates, what in limits:
    lines.append(f"| {label} | {m[k] / 1e9:.2f} | "
                 f"{', '.join(f'{x / 1e9:.2f}' for x in rates)} | {what} |")
lines += [
    "",
    f"One core's cost to send 1 GiB of this image (xxh3 and lz4 on the non-zero "
    f"blocks, AES-128-GCM on what lz4 leaves): {cost['xxh3']:.3f} + {cost['lz4']:.3f} + "
    f"{cost['aes']:.3f} = **{cost['total']:.3f} CPU s**, so about "
    f"{GIB / cost['total'] / 1e9:.2f} GB/s per core before reads and the network stack.",
    "",
]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF

if type bench_plot_bars >/dev/null 2>&1; then
	bench_plot_bars "$NAME-rates" "Limits on this machine (median of $RUNS runs)" "GB/s" \
		"$RESULTS_DIR/$NAME-rates.txt"
	type bench_plot_md >/dev/null 2>&1 &&
		{ echo; bench_plot_md "$NAME-rates" "Limits, GB/s"; echo; } >>"$RESULTS_DIR/$NAME.md"
fi
exit 0
