#!/usr/bin/env bash
# suite: fault
# SPDX-License-Identifier: Apache-2.0
# Capture without a freeze: with --capture reflink an epoch is read from a
# clone (FICLONE into an unnamed O_TMPFILE) of the volume's file, or of a loop
# device's backing file; with --capture snapshot from the read-only device a
# --snapshot-cmd prints (released by --snapshot-release-cmd). Either way the
# standby after the epoch is one instant of the source; a live read
# (--capture none) under the same writer can be torn.
#
#   xfs.img (1 GiB sparse, mkfs.xfs -m reflink=1) ─loop─► ─mount─► $XFS
#     $XFS/vol.img  (256 MiB)  the volume filevol: --device $XFS/vol.img (no tracker)
#     $XFS/vol2.img (256 MiB) ─loop (direct I/O)─► $src2: the volume loopvol (bpf tracker)
#     $XFS/snaps/snap-EPOCH.img  snap.sh: cp --reflink=always vol2.img, losetup -r
#   writer: k at volume byte LOW (0), then k at HIGH (192 MiB), a whole map
#           block each, O_DIRECT, each fdatasync'ed: at every instant
#           LOW - HIGH ∈ {0, 1}
#   pvrepl send --capture ... ──► 127.0.0.1 ──► pvrepl receive ─► $dst1, $dst2 (256 MiB sparse)
#   oracle on the standby: LOW and HIGH read with O_DIRECT: low - high ∈ {0, 1}
#   (low < high: HIGH was read after the writer moved on; the copy is torn)
#   $TMP/ext.img (32 MiB, on the host's ext4 or a small ext4 of the test's own)
#
# Checked:
#   1. file volume: the initial sync with --capture reflink is capture reflink,
#      crash-consistent, 2 rounds; the receiver says Consistent True /
#      CrashConsistent. Under the writer, 5 live epochs (--capture none): at
#      least one standby copy is torn; 5 reflink epochs (full scans of the
#      clone, clone_ms printed) and one --capture auto epoch (picks reflink):
#      none torn; the clones leave no file behind; the writer stopped, one more
#      epoch and the standby equals the file;
#   2. loop device volume (tracked; incremental epochs read capped at 1 MB/s,
#      so their two blocks are read tens of ms apart): the initial sync with
#      --capture reflink; under the writer 5 live epochs, at least one torn;
#      5 reflink epochs, each tracked, crash-consistent, 2 rounds, none torn;
#      --capture auto picks reflink; so does replicate --capture reflink (2
#      epochs, the last not torn); the writer stopped, one more epoch and
#      the standby equals the source (blocks written while a clone was taken
#      are carried into the next epoch);
#   3. snapshot: under the writer 5 epochs with --capture snapshot: none torn,
#      the command saw PVREPL_VOLUME/DEVICE/EPOCH, the release command ran for
#      each with PVREPL_SNAPSHOT, no snapshot loop device or image remains. A
#      command that fails ("no space for snapshot"), prints nothing, or prints
#      a device of another size (64 MiB) fails the epoch naming the volume and
#      the command (its stderr's last line, the size); the standby keeps its
#      epoch; the release command ran for the wrong-sized device; then a good
#      epoch is ok; the writer stopped, a snapshot command that writes a marker
#      block to the source after it made the snapshot: that epoch lacks the
#      marker, the next holds it (the second harvest is carried), and the
#      standby equals the source (fails with the carry removed: checked);
#   4. refusals on ext4 (no clone): --capture reflink fails on a file and on
#      a loop device of it, naming the volume, the file and reflink/clone;
#      --capture auto replicates live (capture none) and says why.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
XFS="$TMP/xfs"
SNAPDIR="$XFS/snaps"
INNER=() # loop devices whose backing files live in $XFS (or the test's own ext4)
WPID=
# snap_loops: the loop devices whose backing file is under $SNAPDIR (the
# snapshot command attaches them; the path is this test's own).
snap_loops() {
	losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v d="$SNAPDIR/" 'index($2, d) == 1 { print $1 }'
}
inner_busy() { # a loop device still has its backing file in $XFS or $TMP/ext4
	losetup -l -n -O BACK-FILE 2>/dev/null | grep -qF -e "$XFS/" -e "$TMP/ext4/"
}
forget() { # forget ARRAY VALUE: drops VALUE from a cleanup list once undone
	local -n _arr=$1
	local _v _keep=()
	for _v in "${_arr[@]}"; do [ "$_v" = "$2" ] || _keep+=("$_v"); done
	_arr=("${_keep[@]}")
}
cleanup() {
	set +e
	local d i
	# The writer holds a volume open, and a loop device whose backing file is on
	# the xfs keeps it busy: stop the writer, detach those loops (snapshots
	# first), and only then does cleanup_common unmount the xfs.
	if [ -n "$WPID" ]; then
		kill "$WPID" 2>/dev/null
		for ((i = 0; i < 50; i++)); do pid_alive "$WPID" || break; sleep 0.1; done
		kill -KILL "$WPID" 2>/dev/null
		wait "$WPID" 2>/dev/null
		pid_forget "$WPID"
	fi
	for d in $(snap_loops); do losetup -d "$d"; done
	for d in "${INNER[@]}"; do
		losetup -d "$d" && forget LOOPS "$d"
	done
	# A detach waits for the device's last close: bounded.
	for ((i = 0; i < 50; i++)); do inner_busy || break; sleep 0.1; done
	cleanup_common
}
trap cleanup EXIT
if [ -n "${KEEP:-}" ]; then fail() { cp -a "$TMP" "$KEEP" 2>/dev/null; echo "FAIL: $*" >&2; exit 1; }; fi
[ -d /sys/kernel/btf ] || skip "no BTF in this kernel (/sys/kernel/btf): tp_btf programs cannot load"
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs missing (xfsprogs)"

certs_make "$TMP"
truncate -s 1G "$TMP/xfs.img"
mkfs.xfs -q -m reflink=1 "$TMP/xfs.img" || skip "mkfs.xfs cannot make a file system with reflink"
loop_attach xdev "$TMP/xfs.img"
mkdir "$XFS"
mount -t xfs "$xdev" "$XFS" || skip "cannot mount the xfs on $xdev (no xfs in this kernel?)"
MOUNTS+=("$XFS")
mkdir "$SNAPDIR"

# The volumes: written in full (no holes, no unwritten extents), 8 MiB of
# random bytes at 32 MiB; LOW and HIGH hold k = 0 over 1 MiB (any map block).
LOW=0
HIGH=$((192 << 20))
cat >"$TMP/pat.py" <<'EOF'
PAT = (b"pvrepl capture oracle " * 47663)[: 1 << 20]  # 1 MiB
EOF
python3 - "$TMP" "$XFS/vol.img" "$XFS/vol2.img" "$LOW" "$HIGH" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
from pat import PAT
for path in sys.argv[2:4]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    zero = bytes(4 << 20)
    for i in range(64):
        os.write(fd, zero)
    os.pwrite(fd, os.urandom(8 << 20), 32 << 20)
    for off in map(int, sys.argv[4:6]):
        os.pwrite(fd, (0).to_bytes(8, "little") + PAT[: (1 << 20) - 8], off)
    os.fsync(fd)
    os.close(fd)
EOF
# The ext4 for the refusals: the host's, else one of the test's own.
if [ "$(stat -f -c %T "$TMP")" = ext2/ext3 ]; then
	EXTDIR=$TMP
else
	EXTDIR="$TMP/ext4"
	command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 missing (e2fsprogs)"
	truncate -s 128M "$TMP/ext4.img"
	mkfs.ext4 -q -F "$TMP/ext4.img"
	loop_attach edev "$TMP/ext4.img"
	mkdir "$EXTDIR"
	mount -t ext4 "$edev" "$EXTDIR" || skip "cannot mount the ext4 on $edev"
	MOUNTS+=("$EXTDIR")
fi
head -c 32M /dev/urandom >"$EXTDIR/ext.img"

truncate -s 256M "$TMP/dst1.img" "$TMP/dst2.img"
truncate -s 32M "$TMP/dst3.img" "$TMP/dst4.img"
for i in 1 2 3 4; do loop_attach "dst$i" "$TMP/dst$i.img"; done
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" \
	--volume "filevol=$dst1" --volume "loopvol=$dst2" --volume "extfile=$dst3" --volume "extloop=$dst4" \
	--allow filevol=primary --allow loopvol=primary --allow extfile=primary --allow extloop=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

. "$(dirname "$0")/lib-send.sh"
# Each part's volume: send's --volume and --state-dir given again in V (the
# last of an option wins), the device in $src.
use() { # use VOLUME DEVICE
	VOL=$1 src=$2
	V=(--volume "$1" --state-dir "$TMP/sstate-$1")
}
rstatus() { # rstatus FIELD|Consistent: the receiver's record of $VOL
	"$PVREPL" status --state-dir "$TMP/rstate" -o json | python3 -S -c '
import json, sys
v = [v for v in json.load(sys.stdin)["volumes"] if v["volume"] == sys.argv[1]][0]
if sys.argv[2] == "Consistent":
    c = [c for c in v["conditions"] if c["type"] == "Consistent"][0]
    print(c["status"], c["reason"])
else:
    print(v[sys.argv[2]])' "$VOL" "$1"
}
expect_consistent() { # expect_consistent "STATUS REASON" WHAT
	local c
	c=$(rstatus Consistent)
	[ "$c" = "$1" ] || fail "$2: the standby's Consistent condition is '$c', expected '$1'"
}
applied() { wait_applied "$TMP/rstate/$VOL" "$(get epoch)"; }
has() { # has TEXT WHAT: the last epoch's message contains TEXT
	get message | grep -qF -- "$1" || { cat "$E" >&2; fail "$2: the message does not name '$1': $(get message)"; }
}
clone_ms() { # clone_ms WHAT: the last epoch's clone_ms, checked to be a number
	[[ $(get clone_ms) =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
		{ cat "$E" >&2; fail "$1: clone_ms is '$(get clone_ms)'"; }
	printf '%.2f' "$(get clone_ms)"
}

# oracle WHAT: LOW and HIGH of the standby of $VOL read with O_DIRECT. Sets
# LH="low high" and TORN (1: low < high); fails when the pages are not the
# writer's or low > high + 1 (which no read order explains).
cat >"$TMP/oracle.py" <<'EOF'
import mmap, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pat import PAT
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
v = []
for off in (int(sys.argv[2]), int(sys.argv[3])):
    if os.preadv(fd, [buf], off) != 4096 or buf[8:] != PAT[:4088]:
        print("the page at %d is not the writer's" % off)
        sys.exit(1)
    v.append(int.from_bytes(buf[:8], "little"))
print(v[0], v[1])
sys.exit(0 if v[0] - v[1] in (0, 1) else 3 if v[0] < v[1] else 1)
EOF
declare -A DST=([filevol]=$dst1 [loopvol]=$dst2)
oracle() {
	local rc=0
	LH=$(python3 -S "$TMP/oracle.py" "${DST[$VOL]}" "$LOW" "$HIGH") || rc=$?
	case $rc in
	0) TORN=0 ;;
	3) TORN=1 ;;
	*) fail "$1: the oracle on the standby: $LH" ;;
	esac
}

# The writer: k = k0+1, k0+2, ... (k0: LOW's value) at LOW, then at HIGH, a
# whole map block each (no partial block), O_DIRECT, each fdatasync'ed; no
# pause. Bounded: ends on $TMP/stop or after 60 s. $TMP/wready after the first.
cat >"$TMP/writer.py" <<'EOF'
import mmap, os, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pat import PAT
path, low, high, block, stop, ready = sys.argv[1:7]
low, high, block = int(low), int(high), int(block)
t0 = time.monotonic()
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, block)
os.preadv(fd, [buf], low)
k0 = k = int.from_bytes(buf[:8], "little")
buf[8:] = PAT[: block - 8]
while time.monotonic() < t0 + 60 and not os.path.exists(stop):
    k += 1
    buf[:8] = k.to_bytes(8, "little")
    for off in (low, high):
        if os.pwritev(fd, [buf], off) != block:
            sys.exit("a short write at %d" % off)
        os.fdatasync(fd)
    if k == k0 + 1:
        open(ready, "w").close()
print("writer on %s: k %d..%d, %.0f a second" % (path, k0 + 1, k, (k - k0) / (time.monotonic() - t0)))
EOF
writer_start() { # writer_start PATH BLOCK
	rm -f "$TMP/stop" "$TMP/wready"
	python3 -S "$TMP/writer.py" "$1" "$LOW" "$HIGH" "$2" "$TMP/stop" "$TMP/wready" >"$TMP/writer.log" 2>&1 &
	WPID=$!
	PIDS+=("$WPID")
	for ((i = 0; i < 100; i++)); do
		[ -e "$TMP/wready" ] && break
		pid_alive "$WPID" || break
		sleep 0.1
	done
	[ -e "$TMP/wready" ] || { cat "$TMP/writer.log" >&2; fail "the writer on $1 did not write within 10 s"; }
	sleep 0.3
}
writer_stop() {
	local wrc
	touch "$TMP/stop"
	wait_pid "$WPID" 10 wrc
	WPID=
	[ "$wrc" = 0 ] || { cat "$TMP/writer.log" >&2; fail "the writer exited $wrc"; }
	cat "$TMP/writer.log"
}
# reflink_epoch WHAT [OPTIONS...]: an epoch read from a clone: ok, reflink,
# crash-consistent, 2 rounds; applied; not torn. Appends clone_ms to CMS.
CMS=()
reflink_epoch() {
	local what=$1
	shift
	send_ok "$what" "${V[@]}" "$@"
	expect capture reflink "$what"
	expect crash_consistent True "$what"
	expect rounds 2 "$what"
	CMS+=("$(clone_ms "$what")")
	applied
	oracle "$what"
	torn_reflink=$((torn_reflink + TORN))
	[ "$TORN" = 0 ] || fail "$what (epoch $(get epoch)) is torn: low high = $LH"
}
torn_live=0 torn_live2=0 torn_reflink=0 torn_snap=0 n_reflink=0 n_snap=0

# 1. A file volume on the xfs: no tracker, so every epoch scans the clone.
use filevol "$XFS/vol.img"
reflink_epoch "file: initial sync" --capture reflink
expect kind "full sync" "file: initial sync"
BLOCK=$(get block_size)
expect_consistent "True CrashConsistent" "file: after the initial sync"
echo "file: initial sync (epoch $(get epoch), block $BLOCK): low high = $LH, clone_ms ${CMS[-1]}"
writer_start "$XFS/vol.img" "$BLOCK"
for i in 1 2 3 4 5; do
	send_ok "file: live epoch $i" "${V[@]}" --capture none
	expect capture none "file: live epoch $i"
	expect crash_consistent False "file: live epoch $i"
	applied
	oracle "file: live epoch $i"
	torn_live=$((torn_live + TORN))
	echo "file: live epoch $(get epoch): low high = $LH$([ "$TORN" = 1 ] && echo ' TORN')"
done
echo "file: live epochs: $torn_live of 5 torn"
[ "$torn_live" -ge 1 ] || fail "no live epoch was torn: the oracle would not see a torn copy"
expect_consistent "False LiveRead" "file: after live epochs"
CMS=()
for i in 1 2 3 4 5; do
	reflink_epoch "file: reflink epoch $i" --capture reflink
	expect scan full "file: reflink epoch $i"
	n_reflink=$((n_reflink + 1))
	echo "file: reflink epoch $(get epoch): low high = $LH, clone_ms ${CMS[-1]}, read $(get source_read_bytes) bytes"
done
reflink_epoch "file: --capture auto" --capture auto
n_reflink=$((n_reflink + 1))
echo "file: --capture auto epoch $(get epoch): capture $(get capture), low high = $LH, clone_ms ${CMS[-1]}"
expect_consistent "True CrashConsistent" "file: after reflink epochs"
echo "file: clone_ms ${CMS[*]}"
writer_stop
reflink_epoch "file: after the writer" --capture reflink
dev_cmp "$XFS/vol.img" "$dst1" || fail "file: the standby differs from $XFS/vol.img"
left=$(LC_ALL=C ls -A "$XFS" | tr '\n' ' ')
[ "$left" = "snaps vol.img vol2.img " ] || fail "file: the clones left files behind in $XFS: $left"
echo "file: the standby equals the file; $XFS holds: $left"

# 2. A loop device of a file on the xfs (direct I/O): tracked epochs, each
# read from a clone of the backing file.
loop_attach src2 "$XFS/vol2.img"
INNER+=("$src2")
echo "loop: $src2 on $XFS/vol2.img, direct I/O $(losetup -n -O DIO "$src2" | tr -d ' ')"
use loopvol "$src2"
CMS=()
reflink_epoch "loop: initial sync" --capture reflink
expect kind "full sync" "loop: initial sync"
expect tracking bpf "loop: initial sync"
BLOCK2=$(get block_size)
expect_consistent "True CrashConsistent" "loop: after the initial sync"
# A tracked epoch reads two blocks here: the read cap (1 MB/s) spreads them
# over tens of ms, many writer iterations, so a live read tears.
SLOW=(--max-read-rate 1M)
writer_start "$src2" "$BLOCK2"
for i in 1 2 3 4 5; do
	send_ok "loop: live epoch $i" "${V[@]}" --capture none "${SLOW[@]}"
	expect scan tracked "loop: live epoch $i"
	expect capture none "loop: live epoch $i"
	applied
	oracle "loop: live epoch $i"
	torn_live2=$((torn_live2 + TORN))
	echo "loop: live epoch $(get epoch): low high = $LH$([ "$TORN" = 1 ] && echo ' TORN'), read $(get source_read_bytes) bytes"
done
echo "loop: live epochs: $torn_live2 of 5 torn"
[ "$torn_live2" -ge 1 ] || fail "no live epoch of the loop device was torn: the oracle would not see a torn copy"
for i in 1 2 3 4 5; do
	reflink_epoch "loop: reflink epoch $i" --capture reflink "${SLOW[@]}"
	expect scan tracked "loop: reflink epoch $i"
	n_reflink=$((n_reflink + 1))
	echo "loop: reflink epoch $(get epoch): low high = $LH, clone_ms ${CMS[-1]}, read $(get source_read_bytes) bytes"
done
reflink_epoch "loop: --capture auto" --capture auto "${SLOW[@]}"
n_reflink=$((n_reflink + 1))
echo "loop: --capture auto epoch $(get epoch): capture $(get capture), low high = $LH"
expect_consistent "True CrashConsistent" "loop: after reflink epochs"
# replicate takes the same options.
"$PVREPL" replicate "${V[@]}" --device "$src2" --peer "$RX_ADDR" \
	--tls-dir "$TMP/primary" --server-name standby --progress none -o json --no-netwatch \
	--interval 300ms --max-epochs 2 --capture reflink "${SLOW[@]}" >"$TMP/rep.json" 2>"$TMP/rep.err" &
rep=$!
PIDS+=("$rep")
wait_pid "$rep" 60 rrc
[ "$rrc" = 0 ] || { cat "$TMP/rep.err" >&2; fail "replicate --capture reflink exited $rrc"; }
last=$(python3 - "$TMP/rep.json" <<'EOF'
import json, sys
text, dec, i, seen = open(sys.argv[1]).read(), json.JSONDecoder(), 0, []
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    seen.append(o)
ok = [o for o in seen if o["result"] == "ok"]
bad = [o for o in ok if o["capture"] != "reflink" or not o["crash_consistent"] or o["rounds"] != 2]
if len(ok) != 2 or bad:
    sys.exit("replicate --capture reflink: %s" % json.dumps(seen))
print(ok[-1]["epoch"])
EOF
) || fail "replicate --capture reflink did not replicate 2 epochs from clones"
wait_applied "$TMP/rstate/$VOL" "$last"
oracle "replicate"
torn_reflink=$((torn_reflink + TORN))
n_reflink=$((n_reflink + 1))
[ "$TORN" = 0 ] || fail "replicate's epoch $last is torn: low high = $LH"
echo "loop: replicate --capture reflink: 2 epochs, the last ($last) low high = $LH"
writer_stop
reflink_epoch "loop: after the writer" --capture reflink
dev_cmp "$src2" "$dst2" || fail "loop: the standby differs from $src2"
echo "loop: clone_ms ${CMS[*]}; the standby equals the source"

# 3. --capture snapshot: the snapshot command clones the loop's backing file
# and attaches the clone read-only; the release command detaches and removes it.
export BACKING="$XFS/vol2.img" SNAPDIR SNAPLOG="$TMP/snap.log" RELLOG="$TMP/release.log"
: >"$SNAPLOG"
: >"$RELLOG"
cat >"$TMP/snap.sh" <<'EOF'
#!/bin/sh
set -eu
img="$SNAPDIR/snap-$PVREPL_EPOCH.img"
cp --reflink=always "$BACKING" "$img"
dev=$(losetup -r -f --show "$img") || { rm -f "$img"; exit 1; }
echo "$PVREPL_VOLUME $PVREPL_DEVICE $PVREPL_EPOCH $dev" >>"$SNAPLOG"
echo "$dev"
EOF
cat >"$TMP/release.sh" <<'EOF'
#!/bin/sh
set -eu
echo "$PVREPL_VOLUME $PVREPL_DEVICE $PVREPL_EPOCH $PVREPL_SNAPSHOT" >>"$RELLOG"
losetup -d "$PVREPL_SNAPSHOT"
rm -f "$SNAPDIR/snap-$PVREPL_EPOCH.img"
EOF
cat >"$TMP/snap-fail.sh" <<'EOF'
#!/bin/sh
echo "looking for space" >&2
echo "no space for snapshot" >&2
exit 1
EOF
cat >"$TMP/snap-none.sh" <<'EOF'
#!/bin/sh
exit 0
EOF
cat >"$TMP/snap-small.sh" <<'EOF'
#!/bin/sh
set -eu
img="$SNAPDIR/snap-$PVREPL_EPOCH.img"
truncate -s 64M "$img"
dev=$(losetup -r -f --show "$img") || { rm -f "$img"; exit 1; }
echo "$PVREPL_VOLUME $PVREPL_DEVICE $PVREPL_EPOCH $dev" >>"$SNAPLOG"
echo "$dev"
EOF
chmod +x "$TMP"/snap*.sh "$TMP/release.sh"
SNAP=(--capture snapshot --snapshot-release-cmd "$TMP/release.sh" "${SLOW[@]}")
# no_snapshots WHAT: no loop device on a snapshot image, no image (bounded:
# a detach of a device still open ends at its last close).
no_snapshots() {
	local i
	for ((i = 0; i < 30; i++)); do [ -z "$(snap_loops)" ] && break; sleep 0.1; done
	[ -z "$(snap_loops)" ] || fail "$1: snapshot loop devices remain: $(snap_loops | tr '\n' ' ')"
	[ -z "$(ls -A "$SNAPDIR")" ] || fail "$1: snapshot images remain: $(ls -A "$SNAPDIR" | tr '\n' ' ')"
}
CMS=()
writer_start "$src2" "$BLOCK2"
for i in 1 2 3 4 5; do
	what="snapshot epoch $i"
	send_ok "$what" "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap.sh"
	expect capture snapshot "$what"
	expect crash_consistent True "$what"
	expect rounds 2 "$what"
	CMS+=("$(clone_ms "$what")")
	ep=$(get epoch)
	grep -qx "loopvol $src2 $ep /dev/loop[0-9]*" "$SNAPLOG" ||
		{ cat "$SNAPLOG" >&2; fail "$what: the snapshot command did not see volume loopvol, device $src2, epoch $ep"; }
	dev=$(awk -v e="$ep" '$3 == e { d = $4 } END { print d }' "$SNAPLOG")
	grep -qx "loopvol $src2 $ep $dev" "$RELLOG" ||
		{ cat "$RELLOG" >&2; fail "$what: the release command did not run with PVREPL_SNAPSHOT=$dev"; }
	applied
	oracle "$what"
	torn_snap=$((torn_snap + TORN))
	n_snap=$((n_snap + 1))
	[ "$TORN" = 0 ] || fail "$what (epoch $ep) is torn: low high = $LH"
	echo "snapshot epoch $ep ($dev): low high = $LH, clone_ms ${CMS[-1]}"
done
no_snapshots "after 5 snapshot epochs"
expect_consistent "True CrashConsistent" "after snapshot epochs"
echo "snapshot: clone_ms ${CMS[*]}; no snapshot device or image left"

committed=$(rstatus epoch)
send "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap-fail.sh"
expect result failed "a failing snapshot command"
has "$TMP/snap-fail.sh" "a failing snapshot command"
has "no space for snapshot" "a failing snapshot command"
has loopvol "a failing snapshot command"
echo "a failing snapshot command: $(get message)"
send "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap-none.sh"
expect result failed "a snapshot command that prints nothing"
has "$TMP/snap-none.sh" "a snapshot command that prints nothing"
has loopvol "a snapshot command that prints nothing"
echo "a snapshot command that prints nothing: $(get message)"
nrel=$(wc -l <"$RELLOG")
send "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap-small.sh"
expect result failed "a snapshot of another size"
has "$TMP/snap-small.sh" "a snapshot of another size"
has loopvol "a snapshot of another size"
get message | grep -qE '67108864|64 ?MiB|64M' ||
	{ cat "$E" >&2; fail "a snapshot of another size: the message does not name its size: $(get message)"; }
echo "a snapshot of another size: $(get message)"
small=$(tail -n 1 "$SNAPLOG")
[ "$(wc -l <"$RELLOG")" -gt "$nrel" ] && grep -qx "$small" "$RELLOG" ||
	{ cat "$SNAPLOG" "$RELLOG" >&2; fail "the release command did not run for the snapshot of another size ($small)"; }
no_snapshots "after the snapshot of another size"
# A command that prints the volume itself (its device, or the file behind it):
# refused, and the release command never runs on the source.
nrel=$(wc -l <"$RELLOG")
for self in '$PVREPL_DEVICE' "$BACKING"; do
	send "${V[@]}" "${SNAP[@]}" --snapshot-cmd "echo $self"
	expect result failed "a snapshot command that prints the volume itself ($self)"
	has "the volume's own storage" "a snapshot command that prints the volume itself ($self)"
	echo "a snapshot command that prints the volume itself: $(get message)"
done
[ "$(wc -l <"$RELLOG")" = "$nrel" ] ||
	{ tail -n 2 "$RELLOG" >&2; fail "the release command ran on the volume's own storage"; }
sleep 1 # an epoch wrongly applied would be by now
[ "$(rstatus epoch)" = "$committed" ] ||
	fail "the standby's epoch moved from $committed to $(rstatus epoch) after failed snapshot epochs"
send_ok "snapshot epoch after the failures" "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap.sh"
expect capture snapshot "snapshot epoch after the failures"
expect crash_consistent True "snapshot epoch after the failures"
CMS+=("$(clone_ms "snapshot epoch after the failures")")
applied
oracle "snapshot epoch after the failures"
torn_snap=$((torn_snap + TORN))
n_snap=$((n_snap + 1))
[ "$TORN" = 0 ] || fail "the snapshot epoch after the failures is torn: low high = $LH"
echo "snapshot epoch $(get epoch) after the failures: low high = $LH, clone_ms ${CMS[-1]}"
writer_stop
# A write that completes after the snapshot and before the second harvest is
# not in the image but is harvested: it must be carried into the next epoch.
# The snapshot command makes it (a marker block at 100 MiB, O_DIRECT) once the
# snapshot exists, so the race is certain, not left to the writer.
cat >"$TMP/snap-then-write.sh" <<'EOF'
#!/bin/sh
set -eu
dev=$("$TMP/snap.sh")
printf 'pvrepl carry marker %s' "$PVREPL_EPOCH" | dd of="$PVREPL_DEVICE" bs=4096 seek=25600 \
	conv=sync,notrunc oflag=direct status=none
echo "$dev"
EOF
chmod +x "$TMP/snap-then-write.sh"
marker() { dd if="$1" bs=4096 skip=25600 count=1 iflag=direct status=none | tr -d '\0'; }
send_ok "snapshot epoch with a write after the snapshot" "${V[@]}" "${SNAP[@]}" \
	--snapshot-cmd "TMP=$TMP $TMP/snap-then-write.sh"
applied
ep=$(get epoch)
[ "$(marker "$src2")" = "pvrepl carry marker $ep" ] || fail "the marker was not written to $src2"
[ "$(marker "$dst2")" != "pvrepl carry marker $ep" ] ||
	fail "epoch $ep holds a write made after its snapshot: the epoch was not read from the image"
send_ok "snapshot epoch after the writer" "${V[@]}" "${SNAP[@]}" --snapshot-cmd "$TMP/snap.sh"
expect capture snapshot "snapshot epoch after the writer"
expect scan tracked "snapshot epoch after the writer"
applied
[ "$(marker "$dst2")" = "pvrepl carry marker $ep" ] ||
	fail "the write made between the snapshot and the second harvest of epoch $ep was not carried into epoch $(get epoch): the standby lacks it"
echo "snapshot: a write made after the snapshot of epoch $ep reached the standby in epoch $(get epoch)"
dev_cmp "$src2" "$dst2" || fail "snapshot: the standby differs from $src2"
no_snapshots "at the end"
echo "snapshot: the standby equals the source"

# 4. No clone on ext4: reflink refuses, auto reads live and says why.
use extfile "$EXTDIR/ext.img"
send "${V[@]}" --capture reflink
expect result failed "--capture reflink on ext4"
has "$EXTDIR/ext.img" "--capture reflink on ext4"
has extfile "--capture reflink on ext4"
get message | grep -qiE 'reflink|clone' ||
	fail "--capture reflink on ext4: the message says nothing of reflink or clone: $(get message)"
echo "--capture reflink on ext4: $(get message)"
loop_attach eloop "$EXTDIR/ext.img"
INNER+=("$eloop")
use extloop "$eloop"
send "${V[@]}" --capture reflink
expect result failed "--capture reflink on a loop device over ext4"
has "$EXTDIR/ext.img" "--capture reflink on a loop device over ext4"
has extloop "--capture reflink on a loop device over ext4"
get message | grep -qiE 'reflink|clone' ||
	fail "--capture reflink on a loop device over ext4: the message says nothing of reflink or clone: $(get message)"
echo "--capture reflink on $eloop over ext4: $(get message)"
use extfile "$EXTDIR/ext.img"
send_ok "--capture auto on ext4" "${V[@]}" --capture auto
expect capture none "--capture auto on ext4"
expect crash_consistent False "--capture auto on ext4"
[ -n "$(get capture_note)" ] || { cat "$E" >&2; fail "--capture auto on ext4: no capture_note"; }
echo "--capture auto on ext4: capture none: $(get capture_note)"
wait_applied "$TMP/rstate/extfile" "$(get epoch)"
dev_cmp "$EXTDIR/ext.img" "$dst3" || fail "extfile: the standby differs from the file"

echo "torn copies: live $torn_live of 5 (file) and $torn_live2 of 5 (loop), reflink $torn_reflink of $n_reflink, snapshot $torn_snap of $n_snap"
echo "092-capture-reflink: all checks passed"
