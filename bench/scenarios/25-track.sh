#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# eBPF write tracking: what a tracked epoch costs against a full-scan epoch of the
# same synced pair, and what the attached tracker costs the writes it watches. A
# benchmark, not a test: the issue's targets are printed next to the numbers, they
# never fail the run.
#
#   images  $BENCH_WORK/mixed-v1-{4096,16384}m.img (QUICK=1: 1024m), the shared
#           mixed images (mixed-data.py). The 16 GiB size is skipped, saying so
#           in the report, below 40 GB free in $BENCH_WORK (as 60-scaling
#           decides), and any size without room for its image (unless cached),
#           the standby and a journal
#   source  the size's image itself, borrowed: renamed into the scratch dir (same
#           filesystem) and attached as a loop device with --direct-io=on (the
#           tracker needs a blk-mq block device). A copy would cost another read
#           and write of 16 GiB, a minute here. Every change first saves the
#           bytes it overwrites; after the size each changed block gets back the
#           bytes saved first for it, they are read back and checked, and only
#           then is the image renamed home. The shared path never holds a changed image: a run that
#           fails gives it back in its teardown, or the scratch dir's removal
#           deletes it and mixed_image writes it anew next time
#   peers   `pvrepl receive --listen 127.0.0.1:0` (one per size, a sparse standby
#           file, mutual TLS, certificates from `pvrepl certs`, --allow
#           vol=source) and `pvrepl send -o json --track auto` from the loop
#           device; the tracker is pinned under a pin dir of this run only,
#           /sys/fs/bpf/pvrepl-bench-PID (PVREPL_TRACK_PIN_DIR), removed at exit
#   per size, on one pair that stays synced throughout:
#     setup   the loop device and the initial sync (a full scan, "initial sync",
#             that attaches the tracker; untimed, its numbers reported)
#     RUNS rounds (3; at 16 GiB RUNS_BIG, 1 by default: a round there costs about
#     70 s here, and three would take the scenario to 8 minutes), tracked and
#     full-scan in an order alternating per round;
#     tracked = plain `pvrepl send`, full = `pvrepl send --full-scan` (reason
#     "requested"; it also counts blocks the tracker missed):
#       a. no-change epoch: seconds (send's own `seconds`, and the wall time of
#          the process) and source_read_bytes
#       b. 1% of the 4 KiB blocks changed, then the epoch: mixed-data.py write
#          (seed SEED*100 + 2*round, +1 for the full-scan run: a second change of
#          the same size) into a sparse file of the volume's size on tmpfs picks
#          the blocks and their bytes (half random, half text); those blocks are
#          copied through the loop device with O_DIRECT, 32 in flight (so the
#          tracker sees them), fdatasync'ed. Measured: wall seconds to the ack
#          and to the receiver's log line saying the epoch is applied; source_read_bytes /
#          the changed bytes; wire_bytes minus the handshake (the median wire
#          bytes of the size's tracked no-change epochs) against `test-tool
#          lz4-blocks` of exactly the changed 4 KiB blocks and of the 16 KiB map
#          blocks that hold them (as they are after the change)
#     every timed epoch starts with the page cache dropped. Checks, reported as
#     anomalies, never fatal: the scan kind and reason of every epoch, no missed
#     blocks, the full-scan no-change epochs find nothing (the tracked epochs
#     left nothing behind), a change's epoch finds exactly its map blocks; the
#     standby is compared with the source (cmp) at 1 GiB only (at 16 GiB that
#     would read 32 GiB)
#   c. tracker overhead, on a separate 1 GiB loop device (QUICK=1: 256 MiB; a file
#      written with zeros first, so no run allocates): fio randwrite bs=4k,
#      ioengine=io_uring, direct=1, iodepth=32, one job, time_based, runtime
#      FIO_RUNTIME s (10; QUICK=1: 5), --randseed per round (the same offsets in
#      both conditions); RUNS rounds, the order alternating: with the tracker
#      and without (its pins removed, which detaches its programs); `sync` and
#      1 s of quiet before every run. The tracker is attached by a `pvrepl send
#      --track bpf` to 127.0.0.1:1, where nothing listens: the sender makes and
#      pins it before it connects, fails to connect and leaves the pins (checked),
#      so no epoch runs and attaching costs the same every round (a real epoch
#      would first send whatever fio wrote, a GiB). IOPS ratio with / without,
#      medians. Trackers of other processes on the machine (a test suite) cannot
#      be controlled: their count is recorded per fio run
#
#   output  $RESULTS_DIR/25-track.md, .json, raw output in 25-track-raw/
#   env     BUILD, QUICK, RUNS, RUNS_BIG (rounds at 16 GiB), BENCH_WORK,
#           RESULTS_DIR, SEED (1), SIZES_MIB (sizes to run, e.g. "4096"),
#           FIO_RUNTIME (seconds)
# Budget: about 6 minutes on 2 cores (QUICK=1: under 2), the images' first write
# aside; most of it is the 16 GiB size (its initial sync alone is over a minute
# here). Needs root, kernel BTF, loop devices, bpffs and fio with io_uring; exits
# 77 with the reason otherwise.
set -euo pipefail
NAME=25-track
# shellcheck source=bench/scenarios/common.sh
. "$(dirname "$0")/common.sh"
if [ "$QUICK" = 1 ]; then
	SIZES_MIB=${SIZES_MIB:-1024} FIO_RUNTIME=${FIO_RUNTIME:-5} OVH_MIB=256
else
	SIZES_MIB=${SIZES_MIB:-"4096 16384"} FIO_RUNTIME=${FIO_RUNTIME:-10} OVH_MIB=1024
fi
SEED=${SEED:-1}
RUNS_BIG=${RUNS_BIG:-1}
NEED_BIG_GB=40
CMP_MAX_MIB=1024
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, the eBPF tracker, drop_caches)"
[ -r /sys/kernel/btf/vmlinux ] ||
	skip "no kernel BTF (/sys/kernel/btf/vmlinux): the tracker's tp_btf programs cannot load"
command -v losetup >/dev/null || skip "losetup is not installed"
command -v fio >/dev/null || skip "fio is not installed (make deps)"
fio --enghelp=io_uring >/dev/null 2>&1 || skip "this fio has no io_uring engine"
case $FIO_RUNTIME in '' | *[!0-9]* | 0) die "FIO_RUNTIME='$FIO_RUNTIME': want whole seconds" ;; esac
case $RUNS_BIG in '' | *[!0-9]* | 0) die "RUNS_BIG='$RUNS_BIG': want a positive number" ;; esac
need_root
# The pin dir of this run only (bpffs refuses dots in names), set before
# need_tools so that common.sh mounts no bpffs of its own.
PIN_DIR=/sys/fs/bpf/pvrepl-bench-$$
export PVREPL_TRACK_PIN_DIR=$PIN_DIR
need_tools
T_SCENARIO=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

FIO_PID=
SOURCE= # the borrowed image while it is away from home
IMAGE=  # its home
SCRATCH=

# loop_detach FILE: detaches every loop device backed by FILE (this run's own
# files only), whether or not its name reached a variable.
loop_detach() {
	local d
	[ -e "$1" ] || return 0
	for d in $(losetup -n -O NAME -j "$1" 2>/dev/null); do
		losetup -d "$d" 2>/dev/null || say "could not detach $d"
	done
}

# give_back: the borrowed image ($SOURCE, its loop device detached) gets back
# the bytes the changes overwrote (blocks.py restore: for each block the bytes
# saved first, read back and compared), then is renamed home ($IMAGE). Returns
# non-zero, leaving it where it is, if it could not.
give_back() {
	[ -n "$SOURCE" ] && [ -e "$SOURCE" ] || return 0
	say "giving the image back: restoring the changed blocks of $SOURCE"
	python3 "$WORK/bin/blocks.py" restore "$SOURCE" "$WORK/undo" || return 1
	mv "$SOURCE" "$IMAGE"
	rm -f "$WORK"/undo-*
	SOURCE=''
	UNDO_N=0
}

teardown() {
	set +e
	stop_pid "$FIO_PID"
	stop_receiver
	local f
	for f in "$SOURCE" "$WORK/ovh.img"; do [ -n "$f" ] && loop_detach "$f"; done
	give_back || say "could not restore $SOURCE: it is deleted with $WORK (mixed_image writes it anew)"
	[ -n "$SCRATCH" ] && rm -rf "$SCRATCH"
	# The pins go after the devices: nothing of this run stays attached.
	[ -d "$PIN_DIR" ] && rm -rf "$PIN_DIR"
	cleanup
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Scratch for the changes' new bytes: tmpfs when there is one.
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
	SCRATCH=/dev/shm/pvrepl-bench-$NAME-$$
else
	SCRATCH=$WORK/scratch
fi
mkdir -p "$SCRATCH"

# blocks.py: the block copies, 32 requests in flight (os.preadv and os.pwritev
# release the GIL, so threads overlap their I/O; O_DIRECT wants page-aligned
# buffers: mmap gives them, and 4 KiB slices of them stay aligned).
cat >"$WORK/bin/blocks.py" <<'EOF'
import mmap, os, sys, threading
from concurrent.futures import ThreadPoolExecutor

PAGE, THREADS = 4096, 32
local = threading.local()


def buf(n):
    b = getattr(local, "buf", None)
    if b is None or len(b) != n:
        b = local.buf = mmap.mmap(-1, n)
    return b


def run(fn, items):
    """fn(item) for every item, THREADS threads each taking every THREADS-th
    one (a future per item would cost more CPU than the I/O it waits for)."""
    items = list(items)

    def part(k):
        for item in items[k::THREADS]:
            fn(item)

    with ThreadPoolExecutor(THREADS) as ex:
        for _ in ex.map(part, range(THREADS)):
            pass


def apply(scratch, dev, offsets, undo, map_img, map_offsets, map_bs):
    """Copies the 4 KiB blocks at OFFSETS from SCRATCH to DEV; first appends
    what they replace to UNDO (records: 8-byte offset, 4 KiB), and writes each
    map block holding one, as it is after the change, to MAP_IMG (its offset to
    MAP_OFFSETS)."""
    map_bs = int(map_bs)
    groups = {}
    for line in open(offsets):
        off = int(line)
        groups.setdefault(off - off % map_bs, []).append(off)
    src = os.open(scratch, os.O_RDONLY)
    d = os.open(dev, os.O_RDWR | os.O_DIRECT)
    u = os.open(undo, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    m = os.open(map_img, os.O_WRONLY | os.O_CREAT, 0o600)
    lock = threading.Lock()

    def one(base):
        b = buf(map_bs)
        if os.preadv(d, [b], base) != map_bs:
            raise OSError(f"short read at {base}")
        for off in groups[base]:  # saved before anything is written
            rec = off.to_bytes(8, "little") + b[off - base:off - base + PAGE]
            with lock:
                if os.write(u, rec) != len(rec):
                    raise OSError("short write to the undo log")
        for off in groups[base]:
            page = memoryview(b)[off - base:off - base + PAGE]
            if os.preadv(src, [page], off) != PAGE or os.pwritev(d, [page], off) != PAGE:
                raise OSError(f"short copy at {off}")
        os.pwrite(m, b, base)

    run(one, sorted(groups))
    os.fdatasync(d)
    with open(map_offsets, "w") as f:
        f.writelines(f"{base}\n" for base in sorted(groups))


def restore(path, prefix):
    """Gives PATH back the bytes saved first for every block in the undo logs
    PREFIX-1.bin, PREFIX-2.bin, ... (so the state before the first change),
    O_DIRECT, then reads each back and compares."""
    REC = 8 + PAGE
    n = 1
    first = {}  # offset -> (log, record position): the oldest bytes saved for it
    logs = {}
    while os.path.exists(f"{prefix}-{n}.bin"):
        logs[n] = os.open(f"{prefix}-{n}.bin", os.O_RDONLY)
        size = os.fstat(logs[n]).st_size
        for pos in range(0, size - size % REC, REC):  # a torn last record is ignored
            first.setdefault(int.from_bytes(os.pread(logs[n], 8, pos), "little"), (n, pos + 8))
        n += 1
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)

    def put(item):
        off, (k, at) = item
        b = buf(PAGE)
        if os.preadv(logs[k], [b], at) != PAGE or os.pwritev(fd, [b], off) != PAGE:
            raise OSError(f"short restore at {off}")

    bad = []

    def check(item):
        off, (k, at) = item
        b = buf(PAGE)
        if os.preadv(fd, [b], off) != PAGE or bytes(b) != os.pread(logs[k], PAGE, at):
            bad.append(off)

    run(put, first.items())
    os.fsync(fd)
    run(check, first.items())
    if bad:
        sys.exit(f"blocks.py: {len(bad)} of {len(first)} restored blocks differ from what was saved")
    print(f"blocks.py: restored {len(first)} blocks from {n - 1} change(s)", file=sys.stderr)


if __name__ == "__main__":
    {"apply": apply, "restore": restore}[sys.argv[1]](*sys.argv[2:])
EOF

# The disk check comes first (the 60-scaling rule for 16 GiB, then room for the
# image unless cached, the standby and a journal).
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
	need=$(((mib >> 10) + 2))
	if [ ! -f "$BENCH_WORK/mixed-v1-${mib}m.img" ]; then need=$((need + (mib >> 10))); fi
	if [ "$AVAIL_GB" -lt "$need" ]; then
		SKIPPED+="${SKIPPED:+, }$mib MiB"
		say "skipping $mib MiB: $AVAIL_GB GB free in $BENCH_WORK, needs $need"
		continue
	fi
	sizes+=("$mib")
done
[ ${#sizes[@]} -gt 0 ] || skip "no size fits in the $AVAIL_GB GB free in $BENCH_WORK"

bench_certs
declare -A IMAGES
for mib in "${sizes[@]}"; do IMAGES[$mib]=$(mixed_image "$mib"); done
T_MEASURE=$EPOCHREALTIME # the images' first write is not in the budget

# jget FILE KEY: one field of a JSON object.
jget() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# loop_attach FILE: LOOP becomes a new loop device over FILE (O_DIRECT to the
# file). Not in a $(...): a skip there would print its reason into the capture.
loop_attach() {
	LOOP=$(losetup --find --show --direct-io=on "$1") || {
		LOOP=
		loop_detach "$1"
		skip "losetup failed on $1 (no free loop devices?)"
	}
}

# epoch TAG DEV STATE [SEND OPTIONS...]: one timed `pvrepl send` from DEV to the
# running receiver, page cache dropped first. The sender's JSON in TAG.json (its
# stderr in TAG.err), wall seconds to the ack and to the receiver's log line
# saying the epoch is applied in TAG-outer.json.
epoch() {
	local tag=$1 dev=$2 state=$3 t0 t1 t2 e
	shift 3
	drop_caches
	t0=$(now)
	timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PVREPL" send --volume vol --device "$dev" \
		--state-dir "$state" --peer "$PEER" --tls-dir "$WORK/tls/tx" --server-name standby \
		--track auto -o json --progress none "$@" >"$RAW/$tag.json" 2>"$RAW/$tag.err" ||
		die "pvrepl send failed in $tag: $(tail -n 3 "$RAW/$tag.err") (receiver log: $RX_LOG)"
	t1=$(now)
	e=$(jget "$RAW/$tag.json" epoch)
	wait_rx_applied "$e"
	t2=$(now)
	printf '{"wall_seconds": %s, "applied_seconds": %s}\n' \
		"$(elapsed "$t0" "$t1")" "$(elapsed "$t0" "$t2")" >"$RAW/$tag-outer.json"
}

# change TAG SEED: 1% of the 4 KiB blocks of $LOOP rewritten, seeded. mixed-data.py
# picks the blocks and writes their new bytes into a sparse file of the volume's
# size in SCRATCH (it sizes a regular file, not a device; tmpfs, so neither its
# fsync nor its removal touches the disk); blocks.py apply copies them through
# the loop device, O_DIRECT, 32 in flight, fdatasync'ed: the block layer, and so
# the tracker, sees every one. It saves the bytes each write replaces first
# (undo-N.bin, for give_back) and writes the map blocks as they are
# after the change to a second scratch file, for their lz4 size. Into RAW:
# TAG-writes.json (mixed-data.py's), TAG-change.json (the seconds the writes
# took), TAG-lz4-4k.txt and TAG-lz4-map.txt.
UNDO_N=0
change() {
	local tag=$1 seed=$2 t0
	rm -f "$SCRATCH/change.img" "$SCRATCH/map.img"
	truncate -s "$SIZE" "$SCRATCH/change.img"
	python3 "$MIXED_DATA" write "$SCRATCH/change.img" --seed "$seed" --fraction 0.01 \
		--block 4096 --offsets "$SCRATCH/offsets" >"$RAW/$tag-writes.json"
	UNDO_N=$((UNDO_N + 1))
	t0=$(now)
	python3 "$WORK/bin/blocks.py" apply "$SCRATCH/change.img" "$LOOP" "$SCRATCH/offsets" \
		"$WORK/undo-$UNDO_N.bin" "$SCRATCH/map.img" "$SCRATCH/offsets-map" "$MAP_BS" ||
		die "writing the change $tag through $LOOP failed"
	printf '{"write_seconds": %s}\n' "$(elapsed "$t0" "$(now)")" >"$RAW/$tag-change.json"
	"$TEST_TOOL" lz4-blocks --file "$SCRATCH/change.img" --block-size 4096 \
		--offsets "$SCRATCH/offsets" >"$RAW/$tag-lz4-4k.txt"
	"$TEST_TOOL" lz4-blocks --file "$SCRATCH/map.img" --block-size "$MAP_BS" \
		--offsets "$SCRATCH/offsets-map" >"$RAW/$tag-lz4-map.txt"
	rm -f "$SCRATCH/change.img" "$SCRATCH/map.img"
}

# one_kind SIZE_MIB KIND ROUND: the no-change epoch, then the 1% change and its
# epoch, tracked (KIND=tracked) or with --full-scan (KIND=full).
one_kind() {
	local mib=$1 kind=$2 round=$3 opts=() seed
	if [ "$kind" = full ]; then
		opts=(--full-scan)
		seed=$((SEED * 100 + 2 * round + 1))
	else
		seed=$((SEED * 100 + 2 * round))
	fi
	say "$((mib >> 10)) GiB round $round/$ROUNDS: $kind no-change epoch"
	epoch "$mib-nochange-$kind-$round" "$LOOP" "$WORK/tx-state" "${opts[@]}"
	say "$((mib >> 10)) GiB round $round/$ROUNDS: 1% change (seed $seed), $kind epoch"
	change "$mib-change-$kind-$round" "$seed"
	epoch "$mib-change-$kind-$round" "$LOOP" "$WORK/tx-state" "${opts[@]}"
}

# a. and b., per size.
for mib in "${sizes[@]}"; do
	t_size=$(now)
	IMAGE=${IMAGES[$mib]}
	SIZE=$(stat -c %s "$IMAGE")
	STANDBY=$WORK/standby.img
	say "$((mib >> 10)) GiB: borrowing the image and attaching it as a loop device"
	SOURCE=$WORK/source-$mib.img
	mv "$IMAGE" "$SOURCE"
	loop_attach "$SOURCE"
	rm -rf "$WORK/rx-state" "$WORK/tx-state" "$STANDBY"
	truncate -s "$SIZE" "$STANDBY"
	start_receiver "$RAW/$mib-receiver.log"
	say "$((mib >> 10)) GiB: initial sync of $LOOP (attaches the tracker)"
	epoch "$mib-initial" "$LOOP" "$WORK/tx-state"
	if [ "$(jget "$RAW/$mib-initial.json" tracking)" != bpf ]; then
		skip "the write tracker cannot run here: $(jget "$RAW/$mib-initial.json" tracking_off_reason)"
	fi
	MAP_BS=$(jget "$RAW/$mib-initial.json" block_size)
	t_setup=$(elapsed "$t_size" "$(now)")
	ROUNDS=$RUNS
	if [ "$mib" -ge 16384 ]; then ROUNDS=$RUNS_BIG; fi
	for round in $(seq 1 "$ROUNDS"); do
		if [ $((round % 2)) -eq 1 ]; then order="tracked full"; else order="full tracked"; fi
		for kind in $order; do one_kind "$mib" "$kind" "$round"; done
	done
	cmp_result=skipped
	if [ "$mib" -le "$CMP_MAX_MIB" ]; then
		say "$((mib >> 10)) GiB: comparing the standby with the source"
		if cmp "$SOURCE" "$STANDBY" >"$RAW/$mib-cmp.txt" 2>&1; then cmp_result=equal; else cmp_result=differs; fi
	fi
	stop_receiver
	losetup -d "$LOOP" || say "could not detach $LOOP"
	loop_detach "$SOURCE"
	t_rounds=$(now)
	give_back || die "the changed blocks of $SOURCE could not be restored"
	t_back=$(now)
	rm -rf "${PIN_DIR:?}"/* "$WORK/rx-state" "$WORK/tx-state" "$STANDBY"
	{
		printf '{"rounds": %s, "setup_seconds": %s, "size_seconds": %s, ' \
			"$ROUNDS" "$t_setup" "$(elapsed "$t_size" "$(now)")"
		printf '"give_back_seconds": %s, "remove_seconds": %s, "standby_vs_source": "%s"}\n' \
			"$(elapsed "$t_rounds" "$t_back")" "$(elapsed "$t_back" "$(now)")" "$cmp_result"
	} >"$RAW/$mib-setup.json"
done

# c. Tracker overhead on its own loop device.
t_ovh=$(now)
say "c. a ${OVH_MIB} MiB loop device for fio"
OVH_IMG=$WORK/ovh.img
dd if=/dev/zero of="$OVH_IMG" bs=4M count=$((OVH_MIB / 4)) oflag=direct status=none
loop_attach "$OVH_IMG"
FIO_VERSION=$(fio --version)

# trackers_loaded: the tracker programs loaded on the whole machine now (ours
# and any other process's), "-" when bpftool is missing.
trackers_loaded() {
	if command -v bpftool >/dev/null; then
		bpftool prog show 2>/dev/null | grep -c 'name track_complete' || true
	else
		echo -
	fi
}
pins() { find "$PIN_DIR" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# attach TAG: the device's tracker made and pinned by a `pvrepl send --track bpf`
# pointed at 127.0.0.1:1, where nothing listens: the sender opens its tracker
# before it connects, so it fails to connect (exit 69) and leaves the pins. No
# epoch runs, so attaching costs the same every round (a real epoch would first
# send what fio wrote). The pins are checked.
attach() {
	local tag=$1 rc=0
	timeout --kill-after=10 60 "$PVREPL" send --volume ovh --device "$LOOP" \
		--state-dir "$WORK/ovh-state" --peer 127.0.0.1:1 --tls-dir "$WORK/tls/tx" \
		--server-name standby --timeout 5s --track bpf -o json --progress none \
		>"$RAW/$tag-attach.json" 2>"$RAW/$tag-attach.err" || rc=$?
	if [ "$(pins)" -eq 0 ] || [ "$(jget "$RAW/$tag-attach.json" tracking)" != bpf ]; then
		die "the tracker was not attached to $LOOP (exit $rc; $RAW/$tag-attach.err)"
	fi
}
# ovh_run COND ROUND: one fio run; COND=with attaches the tracker first unless
# its pins are there, COND=without removes them (which detaches its programs).
ovh_run() {
	local cond=$1 round=$2 tag=ovh-$1-$2 before
	before=$(pins)
	if [ "$cond" = with ]; then
		[ "$before" -gt 0 ] || attach "$tag"
	else
		rm -rf "${PIN_DIR:?}"/*
	fi
	sync
	sleep 1
	echo "{\"trackers_loaded\": \"$(trackers_loaded)\", \"pins_before\": $before, \"pins\": $(pins)}" \
		>"$RAW/$tag-env.json"
	say "c. round $round/$RUNS: fio randwrite 4k QD32 io_uring for $FIO_RUNTIME s, $cond the tracker"
	fio --name="randwrite-4k" --filename="$LOOP" --rw=randwrite --bs=4k --ioengine=io_uring \
		--direct=1 --iodepth=32 --numjobs=1 --time_based --runtime="$FIO_RUNTIME" \
		--randseed=$((SEED * 1000 + round)) --output-format=json \
		>"$RAW/$tag-fio.json" 2>"$RAW/$tag-fio.err" &
	FIO_PID=$!
	wait "$FIO_PID" || die "fio failed in $tag (see $RAW/$tag-fio.err)"
	FIO_PID=
}
for round in $(seq 1 "$RUNS"); do
	if [ $((round % 2)) -eq 1 ]; then order="with without"; else order="without with"; fi
	for cond in $order; do ovh_run "$cond" "$round"; done
done
losetup -d "$LOOP" || say "could not detach $LOOP"
rm -rf "${PIN_DIR:?}"/*
printf '{"seconds": %s}\n' "$(elapsed "$t_ovh" "$(now)")" >"$RAW/ovh-outer.json"
T_END=$EPOCHREALTIME

machine_env
S_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
export S_LOAD_START=$LOAD_START S_LOAD_END
export S_RAW=$RAW S_RUNS=$RUNS S_RUNS_BIG=$RUNS_BIG S_QUICK=$QUICK S_SIZES="${sizes[*]}" S_SKIPPED=$SKIPPED
export S_AVAIL_GB=$AVAIL_GB S_NEED_BIG_GB=$NEED_BIG_GB S_SEED=$SEED S_OVH_MIB=$OVH_MIB
export S_FIO_RUNTIME=$FIO_RUNTIME S_FIO_VERSION=$FIO_VERSION S_CMP_MAX_MIB=$CMP_MAX_MIB
S_SECONDS=$(elapsed "$T_SCENARIO" "$T_END")
S_MEASURE_SECONDS=$(elapsed "$T_MEASURE" "$T_END")
export S_SECONDS S_MEASURE_SECONDS
python3 - "$RESULTS_DIR/$NAME.json" "$RESULTS_DIR/$NAME.md" <<'EOF'
import json, os, statistics, sys

env = os.environ
raw, runs = env["S_RAW"], int(env["S_RUNS"])
sizes = [int(x) for x in env["S_SIZES"].split()]
GIB, MIB = 1 << 30, 1 << 20
med = statistics.median
odd = []  # what pvrepl did that it should not have


def load(path):
    text = open(path).read()  # fio may print warnings before its JSON
    return json.loads(text[text.find("{"):])


def kv(path):
    f = open(path).read().split()
    return dict(zip(f[0::2], map(int, f[1::2])))


def epoch(tag, expect_scan, expect_reason=None):
    j = load(f"{raw}/{tag}.json")
    j.update(load(f"{raw}/{tag}-outer.json"))
    j["tag"] = tag
    if j["result"] != "ok":
        sys.exit(f"25-track: {tag}: result {j['result']}: {j.get('message')}")
    if j["scan"] != expect_scan:
        odd.append(f"`{tag}`: scan was {j['scan']}, expected {expect_scan}"
                   + (f"; full_scan_reason: \"{j['full_scan_reason']}\"" if j["full_scan_reason"] else ""))
    elif expect_reason and expect_reason not in j["full_scan_reason"]:
        odd.append(f"`{tag}`: full_scan_reason \"{j['full_scan_reason']}\", expected \"{expect_reason}\"")
    if j["tracking"] != "bpf":
        odd.append(f"`{tag}`: tracking {j['tracking']}: {j.get('tracking_off_reason')}")
    if j["tracker_missed_blocks"]:
        odd.append(f"`{tag}`: tracker_missed_blocks = {j['tracker_missed_blocks']}")
    if j.get("warning"):
        odd.append(f"`{tag}`: warning: {j['warning']}")
    return j


by_size = {}
for mib in sizes:
    setup = load(f"{raw}/{mib}-setup.json")
    rounds = setup["rounds"]
    init = epoch(f"{mib}-initial", "full", "initial sync")
    size = init["blocks_scanned"] * init["block_size"]
    bs = init["block_size"]
    noch = {k: [epoch(f"{mib}-nochange-{k}-{r}", k, "requested" if k == "full" else None)
                for r in range(1, rounds + 1)] for k in ("tracked", "full")}
    for k, rs in noch.items():
        for j in rs:
            if j["blocks_changed"]:
                odd.append(f"`{j['tag']}`: a no-change epoch found {j['blocks_changed']} changed blocks")
    handshake = med(j["wire_bytes"] for j in noch["tracked"])
    chg = {}
    for k in ("tracked", "full"):
        chg[k] = []
        for r in range(1, rounds + 1):
            tag = f"{mib}-change-{k}-{r}"
            j = epoch(tag, k, "requested" if k == "full" else None)
            w = load(f"{raw}/{tag}-writes.json")
            w.update(load(f"{raw}/{tag}-change.json"))
            l4, lm = kv(f"{raw}/{tag}-lz4-4k.txt"), kv(f"{raw}/{tag}-lz4-map.txt")
            if j["blocks_changed"] != lm["blocks"]:
                odd.append(f"`{tag}`: the change falls in {lm['blocks']} map blocks, the epoch "
                           f"found {j['blocks_changed']} changed")
            j.update(writes=w, lz4_4k=l4, lz4_map=lm,
                     read_over_changed=j["source_read_bytes"] / w["bytes_changed"],
                     wire_over_lz4_4k=(j["wire_bytes"] - handshake) / l4["codec_bytes"],
                     wire_raw_over_lz4_4k=j["wire_bytes"] / l4["codec_bytes"],
                     wire_over_lz4_map=(j["wire_bytes"] - handshake) / lm["codec_bytes"])
            chg[k].append(j)

    def m(rs, key):
        return med(j[key] for j in rs)

    KEYS = ("seconds", "wall_seconds", "applied_seconds", "source_read_bytes", "tracked_bytes",
            "wire_bytes", "cpu_seconds", "blocks_changed", "scan_seconds")
    CK = KEYS + ("read_over_changed", "wire_over_lz4_4k", "wire_raw_over_lz4_4k", "wire_over_lz4_map")
    medians = {"no_change": {k: {x: m(rs, x) for x in KEYS} for k, rs in noch.items()},
               "change": {k: {x: m(rs, x) for x in CK} for k, rs in chg.items()}}
    for k in ("tracked", "full"):
        c = medians["change"][k]
        c["changed_bytes"] = med(j["writes"]["bytes_changed"] for j in chg[k])
        c["lz4_4k_bytes"] = med(j["lz4_4k"]["codec_bytes"] for j in chg[k])
        c["lz4_map_bytes"] = med(j["lz4_map"]["codec_bytes"] for j in chg[k])
        c["map_blocks"] = med(j["lz4_map"]["blocks"] for j in chg[k])
    if setup["standby_vs_source"] == "differs":
        odd.append(f"{mib // 1024} GiB: the standby differs from the source after the rounds")
    by_size[mib] = {"rounds": rounds, "size_bytes": size, "block_size": bs, "setup": setup, "initial": init,
                    "handshake_wire_bytes": handshake, "no_change": noch, "change": chg,
                    "median": medians}

# c. overhead
ovh = {"with": [], "without": []}
for r in range(1, runs + 1):
    for cond in ("with", "without"):
        tag = f"ovh-{cond}-{r}"
        f = load(f"{raw}/{tag}-fio.json")["jobs"][0]["write"]
        e = load(f"{raw}/{tag}-env.json")
        rec = {"round": r, "iops": f["iops"], "bw_bytes": f["bw_bytes"],
               "clat_mean_us": f["clat_ns"]["mean"] / 1000,
               "clat_p99_us": f["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000,
               "pins": e["pins"], "trackers_loaded": e["trackers_loaded"]}
        if cond == "with" and e["pins_before"] == 0:
            a = load(f"{raw}/{tag}-attach.json")
            rec["attach"] = {k: a.get(k) for k in ("tracking", "seconds", "result", "message")}
        if e["pins"] != (cond == "with"):
            odd.append(f"`{tag}`: {e['pins']} tracker(s) pinned for a run {cond} the tracker")
        ovh[cond].append(rec)
iops_w = med(x["iops"] for x in ovh["with"])
iops_wo = med(x["iops"] for x in ovh["without"])
pair_ratios = [w["iops"] / wo["iops"] for w, wo in zip(ovh["with"], ovh["without"])]
overhead = {"runs": ovh, "iops_with": iops_w, "iops_without": iops_wo,
            "ratio": iops_w / iops_wo, "round_ratios": pair_ratios,
            "seconds": load(f"{raw}/ovh-outer.json")["seconds"]}

result = {
    "machine": {k: env[f"MACHINE_{k.upper()}"] for k in
                ("nproc", "mem_gib", "cpu", "kernel", "fs", "date")},
    "config": {"sizes_mib": sizes, "skipped": env["S_SKIPPED"], "avail_gb": int(env["S_AVAIL_GB"]),
               "runs": runs, "runs_16gib": int(env["S_RUNS_BIG"]), "quick": env["S_QUICK"] == "1",
               "seed": int(env["S_SEED"]),
               "fio": env["S_FIO_VERSION"], "fio_runtime_seconds": int(env["S_FIO_RUNTIME"]),
               "overhead_device_mib": int(env["S_OVH_MIB"]),
               "loadavg_start": env["S_LOAD_START"], "loadavg_end": env["S_LOAD_END"],
               "scenario_seconds": float(env["S_SECONDS"]),
               "measure_seconds": float(env["S_MEASURE_SECONDS"])},
    "sizes": by_size, "overhead": overhead, "anomalies": odd,
}

# The targets, per size where they are per size.
T = []
ok = lambda b: "yes" if b else "**no**"
for mib in sizes:
    s = by_size[mib]["median"]
    g = f"{mib / 1024:g} GiB"
    nt, ct = s["no_change"]["tracked"], s["change"]["tracked"]
    T += [
        ("no-change epoch, tracked, <= 30 ms (send's `seconds`)", g,
         f"{nt['seconds'] * 1000:.1f} ms (process wall {nt['wall_seconds'] * 1000:.0f} ms)",
         nt["seconds"] <= 0.030),
        ("no-change epoch, tracked, reads <= 1 MiB", g, f"{nt['source_read_bytes']:,} B",
         nt["source_read_bytes"] <= MIB),
        ("1% change, tracked: source read <= 4.1x the changed bytes", g,
         f"{ct['read_over_changed']:.3f}x", ct["read_over_changed"] <= 4.1),
        ("1% change, tracked: wire - handshake <= 1.05x lz4 of the changed 4 KiB blocks", g,
         f"{ct['wire_over_lz4_4k']:.3f}x", ct["wire_over_lz4_4k"] <= 1.05),
    ]
T.append(("fio 4 KiB randwrite IOPS with / without the tracker >= 0.97",
          f"{int(env['S_OVH_MIB']) / 1024:g} GiB device",
          f"{iops_w:,.0f} / {iops_wo:,.0f} = {overhead['ratio']:.3f}", overhead["ratio"] >= 0.97))
result["targets"] = [{"target": t, "where": w, "measured": v, "met": bool(b)} for t, w, v, b in T]
json.dump(result, open(sys.argv[1], "w"), indent=1)

mc, c = result["machine"], result["config"]
mb = lambda b: f"{b / 1e6:,.2f} MB"
ms = lambda s: f"{s * 1000:,.1f}"
lines = [
    "## Write tracking: tracked epochs against full scans, and the tracker's cost",
    "",
    f"Machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['mem_gib']} GiB, kernel {mc['kernel']}, "
    f"{c['fio']}; sources: the mixed images (1 MiB pieces: half random, a quarter "
    f"text, a quarter zeros; borrowed, their changed blocks restored after) on {mc['fs']} as "
    "loop devices (--direct-io=on); standby a sparse "
    "file; sender and receiver on this machine, TLS 1.3 mutual over 127.0.0.1; map block "
    f"size {by_size[sizes[0]]['block_size'] // 1024} KiB; the eBPF tracker pinned under a "
    "pin dir of this run.  ",
    "Method: per size one synced pair; rounds: " + ", ".join(
        f"{m / 1024:g} GiB {by_size[m]['rounds']}" for m in sizes) + " (16 GiB: RUNS_BIG, 1 "
    "by default, to keep the scenario near 6 minutes here), tracked (`pvrepl send`) and full "
    "scan (`pvrepl send --full-scan`, same pair) in an order alternating per round, each a "
    "no-change epoch, then 1% of the 4 KiB blocks rewritten through the loop device "
    "(O_DIRECT; a new seed for every change, so the full-scan run gets a second change of "
    "the same size) and its epoch. Page cache dropped before every timed epoch; medians. "
    "`seconds` is send's own (open, connect, TLS, scan, stream, ack); wall adds the "
    "process start; applied = until the receiver logged the epoch applied. "
    f"{mc['date']}; load average {c['loadavg_start']} at the start, {c['loadavg_end']} at "
    f"the end (the machine may be shared); measured in {c['measure_seconds']:.0f} s"
    + (f" ({c['scenario_seconds']:.0f} s with the images' first write)."
       if c["scenario_seconds"] - c["measure_seconds"] >= 1 else " (the images were cached)."),
    "",
]
if c["skipped"]:
    lines += [f"**Skipped:** {c['skipped']}: {c['avail_gb']} GB free in BENCH_WORK, the 16 GiB "
              f"size needs {env['S_NEED_BIG_GB']} GB.", ""]
lines += [
    "### Tracked vs full-scan epochs",
    "",
    "| size | epoch | scan | seconds (send) | wall s | to applied s | source read | read / changed | "
    "wire bytes | wire − handshake / lz4 changed 4 KiB | / lz4 changed map blocks | sender CPU s |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for mib in sizes:
    s = by_size[mib]["median"]
    g = f"{mib / 1024:g} GiB"
    for k in ("tracked", "full"):
        n = s["no_change"][k]
        lines.append(f"| {g} | no change | {k} | {n['seconds']:.3f} | {n['wall_seconds']:.3f} | "
                     f"{n['applied_seconds']:.3f} | {mb(n['source_read_bytes'])} | — | "
                     f"{n['wire_bytes']:,} | — | — | {n['cpu_seconds']:.3f} |")
    for k in ("tracked", "full"):
        x = s["change"][k]
        lines.append(f"| {g} | 1% of 4 KiB blocks | {k} | {x['seconds']:.3f} | {x['wall_seconds']:.3f} | "
                     f"{x['applied_seconds']:.3f} | {mb(x['source_read_bytes'])} | "
                     f"{x['read_over_changed']:.3f}x | {x['wire_bytes']:,} | "
                     f"{x['wire_over_lz4_4k']:.3f}x | {x['wire_over_lz4_map']:.3f}x | "
                     f"{x['cpu_seconds']:.3f} |")
lines += [""]
for mib in sizes:
    b = by_size[mib]
    s = b["median"]
    t, f = s["change"]["tracked"], s["change"]["full"]
    nt, nf = s["no_change"]["tracked"], s["no_change"]["full"]
    i = b["initial"]
    runs_s = lambda rs, key: ", ".join(f"{j[key]:.3f}" for j in rs)
    lines += [
        f"**{mib / 1024:g} GiB**: tracked / full-scan, medians: no change "
        f"{nt['seconds'] * 1000:.1f} ms / {nf['seconds']:.2f} s "
        f"({nf['seconds'] / nt['seconds']:.0f}x faster), 1% change to applied "
        f"{t['applied_seconds']:.2f} s / {f['applied_seconds']:.2f} s "
        f"({f['applied_seconds'] / t['applied_seconds']:.1f}x faster), source read "
        f"{mb(t['source_read_bytes'])} / {mb(f['source_read_bytes'])}. A change: "
        f"{t['changed_bytes'] / 4096:,.0f} 4 KiB blocks ({mb(t['changed_bytes'])}) in "
        f"{t['map_blocks']:,.0f} map blocks; lz4 of exactly the changed 4 KiB blocks "
        f"{mb(t['lz4_4k_bytes'])}, of their map blocks {mb(t['lz4_map_bytes'])}; tracker marked "
        f"{mb(t['tracked_bytes'])}; handshake (a tracked no-change epoch's wire bytes) "
        f"{b['handshake_wire_bytes']:,} B; wire / lz4 of the 4 KiB blocks without subtracting it "
        f"{t['wire_raw_over_lz4_4k']:.3f}x. Initial sync: {i['wall_seconds']:.2f} s, "
        f"{i['wire_bytes'] / 1e9:.2f} GB on the wire. Standby vs source after the rounds: "
        f"{b['setup']['standby_vs_source']}. Runs (send seconds): no change tracked "
        f"{runs_s(b['no_change']['tracked'], 'seconds')}, full {runs_s(b['no_change']['full'], 'seconds')}; "
        f"1% to applied tracked {runs_s(b['change']['tracked'], 'applied_seconds')}, full "
        f"{runs_s(b['change']['full'], 'applied_seconds')}. The size took "
        f"{b['setup']['size_seconds']:.0f} s (loop device and initial sync "
        f"{b['setup']['setup_seconds']:.0f} s, restoring the image "
        f"{b['setup']['give_back_seconds']:.0f} s, removing the standby "
        f"{b['setup']['remove_seconds']:.0f} s); writing a change through the loop device "
        f"(with the saving of the bytes it replaces) took a median "
        f"{med(j['writes']['write_seconds'] for j in b['change']['tracked'] + b['change']['full']):.1f} s.",
        "",
    ]
tracked_chg = [j for mib in sizes for j in by_size[mib]["change"]["tracked"]]
partial = sum(j.get("blocks_partial", 0) for j in tracked_chg)
sent = sum(j["blocks_sent"] for j in tracked_chg)
if "blocks_partial" not in tracked_chg[0]:
    partial_note = ("This build sends whole 16 KiB map blocks: a scattered 4 KiB write costs its "
                    "map block on the wire, so the wire target cannot be met (compare the column "
                    "against the lz4 of the changed map blocks).")
else:
    partial_note = (f"This build sends partial map blocks on tracked epochs: {partial:,} of the "
                    f"{sent:,} blocks the tracked 1% epochs sent went as partial blocks "
                    "(`blocks_partial`), only their marked 4 KiB pages; full-scan epochs sent "
                    "whole map blocks (they know no pages).")
o = overhead
lines += [
    f"### Tracker overhead ({int(env['S_OVH_MIB']) / 1024:g} GiB loop device)",
    "",
    f"{runs} rounds, {o['seconds']:.0f} s in all. "
    f"fio randwrite bs=4k, io_uring, direct=1, iodepth=32, one job, {c['fio_runtime_seconds']} s "
    "time_based, the same --randseed in both conditions of a round, `sync` and 1 s of quiet "
    "before each; with = the device's tracker pinned, without = its pins removed. "
    "Trackers loaded = tracker programs loaded on the whole machine at the start of the run "
    "(other processes' included: they run on every request completion and are filtered out "
    "by device, so they cost both conditions the same).",
    "",
    "| round | with: IOPS | clat mean / p99 µs | trackers loaded | without: IOPS | clat mean / p99 µs | trackers loaded | with / without |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for w, wo, r in zip(o["runs"]["with"], o["runs"]["without"], o["round_ratios"]):
    lines.append(f"| {w['round']} | {w['iops']:,.0f} | {w['clat_mean_us']:.0f} / {w['clat_p99_us']:.0f} | "
                 f"{w['trackers_loaded']} | {wo['iops']:,.0f} | {wo['clat_mean_us']:.0f} / "
                 f"{wo['clat_p99_us']:.0f} | {wo['trackers_loaded']} | {r:.3f} |")
lines += [
    f"| **median** | **{o['iops_with']:,.0f}** | | | **{o['iops_without']:,.0f}** | | | "
    f"**{o['ratio']:.3f}** |",
    "",
    "Attached (a `pvrepl send --track bpf` to 127.0.0.1:1, where nothing listens: the "
    "sender makes and pins the tracker before it connects, then fails to connect, so no "
    "epoch runs): " + "; ".join(
        f"round {w['round']}: tracking {w['attach']['tracking']}, {w['attach']['seconds']:.2f} s"
        for w in o["runs"]["with"] if "attach" in w) + "; the other runs with the tracker "
    "found its pins from the run before.",
    "",
    "### The issue's targets",
    "",
    "| target | where | measured | met |",
    "|---|---|---|---|",
] + [f"| {t} | {w} | {v} | {ok(b)} |" for t, w, v, b in T] + [
    "",
    partial_note,
    "",
    "### Anomalies",
    "",
]
lines += [f"- {x}" for x in odd] if odd else ["None: every epoch scanned as expected (tracked, "
                                             "or full for the stated reason), no missed blocks."]
lines += [""]
md = "\n".join(lines)
open(sys.argv[2], "w").write(md)
print(md)
EOF
