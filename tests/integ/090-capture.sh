#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Capture: with --capture freeze an incremental epoch is one instant of the
# file system on the source (rounds of live reads, then FIFREEZE, the last
# set, FITHAW); with --capture none it is a live read that can be torn. The
# watchdog that bounds the freeze thaws on --freeze-timeout and when the
# sender dies, and the epoch is then aborted.
#
#   src.img (256 MiB ext4) ─loop─► $src ─mount─► $MNT/oracle (80 MiB, extents fixed)
#        ▲ writer: k at file offset 0 (LOW), then k at 64 MiB (HIGH), each fdatasync'ed;
#        │         filler: whole blocks at 4..60 MiB of the file, between them (buffered)
#   $src ──pvrepl send --capture ...──► 127.0.0.1 ──pvrepl receive──► $dst (256 MiB sparse)
#   oracle on $dst: LOW and HIGH read at their physical offsets: low - high ∈ {0, 1}
#   (low < high: HIGH was read after the writer moved on; the copy is torn)
#
# Checked:
#   1. the initial sync with --capture freeze ends in rounds: freeze,
#      crash-consistent, status Consistent True / CrashConsistent;
#   2. live epochs (--capture none) under the writer: at least one standby copy
#      is torn (the oracle can fail); status says LiveRead;
#   3. frozen epochs (--capture freeze) under the writer: each is ok, freeze,
#      crash-consistent, in >= 2 rounds, and no copy is torn; status Consistent
#      True / CrashConsistent; replicate --capture freeze likewise;
#   4. the watchdog on --freeze-timeout: the sender stopped (SIGSTOP) while
#      frozen; the watchdog (a child in its own process group) thaws, the file
#      system takes writes, the sender fails the epoch naming --freeze-timeout
#      and the watchdog, the standby keeps its epoch; the next epoch is ok;
#   5. the sender killed (SIGKILL) while frozen: the watchdog thaws at once,
#      long before its timeout, and is gone; the next epoch is ok;
#   7. (run before 6) a page written behind the tracker under a partial block
#      of a captured epoch: EPOCH_END's Merkle check fails it (PAGES, nothing
#      applied), the next attempt sends whole blocks and repairs the block;
#   8. (run before 6) without CAP_SYS_ADMIN: --capture freeze refuses naming
#      it, --capture auto replicates live saying why;
#   6. --freeze-path on another file system fails naming both; with nothing
#      mounted from the device --capture freeze fails naming it, and --capture
#      auto replicates live saying why; the standby equals the source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
MNT="$TMP/mnt"
cleanup() {
	set +e
	# A stopped sender cannot die of SIGTERM, and a writer blocked on a frozen
	# file system cannot die at all: let them run and thaw first.
	for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done
	mountpoint -q "$MNT" && fsfreeze -u "$MNT" 2>/dev/null
	cleanup_common
}
trap cleanup EXIT
if [ -n "${KEEP:-}" ]; then fail() { cp -a "$TMP" "$KEEP" 2>/dev/null; echo "FAIL: $*" >&2; exit 1; }; fi
[ -d /sys/kernel/btf ] || skip "no BTF in this kernel (/sys/kernel/btf): tp_btf programs cannot load"
for t in mkfs.ext4 filefrag fsfreeze mountpoint; do
	command -v "$t" >/dev/null || skip "$t missing (e2fsprogs / util-linux)"
done

certs_make "$TMP"
truncate -s 256M "$TMP/src.img" "$TMP/dst.img"
# 4 KiB blocks (mkfs picks 1 KiB for so small a file system); no lazy init:
# no kernel thread writing inode tables behind the test's back.
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$TMP/src.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
mkdir "$MNT"
mount -t ext4 "$src" "$MNT" || skip "cannot mount the ext4 on $src"
MOUNTS+=("$MNT")
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" --allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

. "$(dirname "$0")/lib-send.sh"
rstatus() { # rstatus FIELD|Consistent: the receiver's record of the volume
	"$PVREPL" status --state-dir "$TMP/rstate" -o json | python3 -S -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
if sys.argv[1] == "Consistent":
    c = [c for c in v["conditions"] if c["type"] == "Consistent"][0]
    print(c["status"], c["reason"])
else:
    print(v[sys.argv[1]])' "$1"
}
expect_consistent() { # expect_consistent "STATUS REASON" WHAT
	local c
	c=$(rstatus Consistent)
	[ "$c" = "$1" ] || fail "$2: the standby's Consistent condition is '$c', expected '$1'"
}

# The oracle file: written in full once and fsync'ed, so its extents are
# fixed and later writes land on the same device blocks; LOW and HIGH hold 0.
HIGH_FILE=$((64 << 20))
python3 - "$MNT/oracle" "$HIGH_FILE" <<'EOF'
import os, sys
PAT = (b"pvrepl capture oracle " * 200)[:4088]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
for i in range(80):
    os.write(fd, os.urandom(1 << 20))
for off in (0, int(sys.argv[2])):
    os.pwrite(fd, (0).to_bytes(8, "little") + PAT, off)
os.fsync(fd)
os.close(fd)
EOF

# 1. The initial sync with --capture freeze ends with rounds like any epoch
# (only a resumed sync is read live), so the standby is one instant as soon
# as it completes.
send_ok "initial sync" --capture freeze
expect kind "full sync" "initial sync"
expect capture freeze "initial sync"
expect crash_consistent True "initial sync"
[ "$(get rounds)" -ge 2 ] || fail "the initial sync was read in $(get rounds) rounds"
BLOCK=$(get block_size)
wait_applied "$TMP/rstate/vol" "$(get epoch)"
expect_consistent "True CrashConsistent" "after the initial sync"
printf 'initial sync: capture %s, rounds %s, freeze_ms %.1f\n' "$(get capture)" "$(get rounds)" "$(get freeze_ms)"

# LOW and HIGH on the device (filefrag), and the file offsets of the blocks
# (of the map's $BLOCK bytes) that lie wholly in the file between 4 and 60 MiB:
# the filler rewrites whole blocks, so none is ever partly marked at a harvest
# and changed elsewhere before its read (the refusal above).
filefrag -v "$MNT/oracle" >"$TMP/filefrag.txt"
read -r LOW HIGH < <(python3 - "$TMP/filefrag.txt" "$HIGH_FILE" "$BLOCK" "$TMP/filler-offsets" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
high, block = int(sys.argv[2]), int(sys.argv[3])
bs = int(re.search(r"blocks of (\d+) bytes", text).group(1))
ext = []
for m in re.finditer(r"^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*\d+:.*$", text, re.M):
    if re.search(r"unwritten|unknown|delalloc", m.group(0)):
        sys.exit("an extent is not fixed: " + m.group(0))
    ext.append((int(m.group(1)) * bs, (int(m.group(2)) + 1) * bs, int(m.group(3)) * bs))
def phys(off):
    for lo, hi, p in ext:
        if lo <= off < hi:
            return p + off - lo
    sys.exit("no extent holds file offset %d" % off)
with open(sys.argv[4], "w") as f:
    for lo, hi, p in ext:
        start = max(lo + (-p) % block, 4 << 20)  # device-aligned, from 4 MiB
        start += (p - lo + start) % block and block - (p - lo + start) % block
        for off in range(start, min(hi, 60 << 20) - block + 1, block):
            f.write("%d\n" % off)
print(phys(0), phys(high))
EOF
)
nfill=$(wc -l <"$TMP/filler-offsets")
[ -n "${HIGH:-}" ] && [ "$HIGH" -gt $((LOW + (32 << 20))) ] && [ "$nfill" -gt 1000 ] ||
	{ cat "$TMP/filefrag.txt" >&2; fail "the oracle file's layout: LOW ${LOW:-?}, HIGH ${HIGH:-?}, $nfill filler blocks"; }
echo "oracle: LOW at device byte $LOW, HIGH at $HIGH, $nfill filler blocks between"

# oracle WHAT: LOW and HIGH read from the standby with O_DIRECT (the receiver
# writes it with O_DIRECT: no stale page cache). Sets LH="low high" and TORN
# (1: low < high, HIGH was read after the writer moved on); fails when the
# pages are not the writer's or low > high + 1 (which no read order explains).
cat >"$TMP/oracle.py" <<'EOF'
import mmap, os, sys
PAT = (b"pvrepl capture oracle " * 200)[:4088]
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
v = []
for off in (int(sys.argv[2]), int(sys.argv[3])):
    if os.preadv(fd, [buf], off) != 4096 or buf[8:] != PAT:
        print("the page at %d is not the writer's" % off)
        sys.exit(1)
    v.append(int.from_bytes(buf[:8], "little"))
print(v[0], v[1])
sys.exit(0 if v[0] - v[1] in (0, 1) else 3 if v[0] < v[1] else 1)
EOF
oracle() {
	local rc=0
	LH=$(python3 -S "$TMP/oracle.py" "$dst" "$LOW" "$HIGH") || rc=$?
	case $rc in
	0) TORN=0 ;;
	3) TORN=1 ;;
	*) fail "$1: the oracle on the standby: $LH" ;;
	esac
}
oracle "initial sync"

# The writer: k at LOW then at HIGH, each fdatasync'ed, so at every instant
# HIGH is k or k-1 when LOW is k; and a filler thread rewriting whole blocks
# of the file, buffered, fdatasync'ed every 100 ms, at the rate (blocks/s) in
# $TMP/filler, read again every 200 ms. Bounded: exits after its duration.
cat >"$TMP/writer.py" <<'EOF'
import os, random, sys, threading, time
PAT = (b"pvrepl capture oracle " * 200)[:4088]
path, high, block, dur, ratefile, offsets = sys.argv[1:7]
high, block, end = int(high), int(block), time.monotonic() + float(dur)
offs = [int(x) for x in open(offsets)]
fd = os.open(path, os.O_RDWR)
k = int.from_bytes(os.pread(fd, 8, 0), "little")

def filler():
    ffd = os.open(path, os.O_RDWR)
    rnd = random.Random()
    rate, t0, n, synced, looked = 0, 0.0, 0, 0.0, 0.0
    while time.monotonic() < end:
        now = time.monotonic()
        if now - looked > 0.2:
            looked = now
            try:
                r = int(open(ratefile).read())
            except (OSError, ValueError):
                r = 0
            if r != rate:
                rate, t0, n = r, now, 0
        if rate <= 0:
            time.sleep(0.05)
            continue
        ahead = t0 + n / rate - now
        if ahead > 0:
            time.sleep(min(ahead, 0.05))
            continue
        os.pwrite(ffd, rnd.randbytes(block), rnd.choice(offs))
        n += 1
        if now - synced > 0.1:
            os.fdatasync(ffd)
            synced = now

threading.Thread(target=filler, daemon=True).start()
while time.monotonic() < end:
    k += 1
    page = k.to_bytes(8, "little") + PAT
    os.pwrite(fd, page, 0)
    os.fdatasync(fd)
    os.pwrite(fd, page, high)
    os.fdatasync(fd)
    time.sleep(0.001)
EOF
filler() { echo "$1" >"$TMP/filler.new" && mv "$TMP/filler.new" "$TMP/filler"; }
filler 0
python3 "$TMP/writer.py" "$MNT/oracle" "$HIGH_FILE" "$BLOCK" 150 "$TMP/filler" "$TMP/filler-offsets" &
WPID=$!
PIDS+=("$WPID")

# 2. Live epochs under the writer: the oracle must see a torn copy.
filler 300
sleep 1
torn=0
for i in 1 2 3 4 5; do
	send_ok "live epoch $i" --capture none
	expect scan tracked "live epoch $i"
	expect capture none "live epoch $i"
	expect crash_consistent False "live epoch $i"
	wait_applied "$TMP/rstate/vol" "$(get epoch)"
	oracle "live epoch $i"
	torn=$((torn + TORN))
	echo "live epoch $(get epoch): low high = $LH$([ "$TORN" = 1 ] && echo ' TORN'), read $(get source_read_bytes) bytes"
	sleep 0.3
done
echo "live epochs: $torn of 5 torn"
[ "$torn" -ge 1 ] || fail "no live epoch was torn: the oracle would not see a torn copy"
expect_consistent "False LiveRead" "after live epochs"

# 3. Frozen epochs under the same writer: never torn. The read cap stands in
# for a busy disk: the reads of a round are spread out (16 KiB a millisecond),
# so even the last, small round reads HIGH several writer iterations after
# LOW, and would be torn if it were read live. Half the filler: the rounds
# converge well within the default --freeze-timeout on a loaded machine.
filler 150
for i in 1 2 3 4 5 6; do
	send_ok "frozen epoch $i" --capture freeze --max-read-rate 16M
	expect capture freeze "frozen epoch $i"
	expect crash_consistent True "frozen epoch $i"
	[ "$(get rounds)" -ge 2 ] || fail "frozen epoch $i was read in $(get rounds) rounds"
	wait_applied "$TMP/rstate/vol" "$(get epoch)"
	oracle "frozen epoch $i"
	[ "$TORN" = 0 ] || fail "frozen epoch $(get epoch) is torn: low high = $LH"
	printf 'frozen epoch %s: low high = %s, rounds %s, freeze_ms %.1f, read while frozen %s bytes\n' \
		"$(get epoch)" "$LH" "$(get rounds)" "$(get freeze_ms)" "$(get freeze_read_bytes)"
	sleep 0.3
done
expect_consistent "True CrashConsistent" "after frozen epochs"

# replicate takes the same options.
"$PVREPL" replicate --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
	--tls-dir "$TMP/primary" --server-name standby --progress none -o json --no-netwatch \
	--interval 300ms --max-epochs 2 --capture freeze >"$TMP/rep.json" 2>"$TMP/rep.err" &
rep=$!
PIDS+=("$rep")
wait_pid "$rep" 60 rrc
[ "$rrc" = 0 ] || { cat "$TMP/rep.err" >&2; fail "replicate --capture freeze exited $rrc"; }
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
bad = [o for o in ok if o["capture"] != "freeze" or not o["crash_consistent"]]
if len(ok) != 2 or bad:
    sys.exit("replicate --capture freeze: %s" % json.dumps(seen))
print(ok[-1]["epoch"])
EOF
) || fail "replicate --capture freeze did not replicate 2 frozen epochs"
wait_applied "$TMP/rstate/vol" "$last"
oracle "replicate"
[ "$TORN" = 0 ] || fail "replicate's frozen epoch $last is torn: low high = $LH"
echo "replicate --capture freeze: 2 frozen epochs, the last ($last) low high = $LH"

# watch_freeze PID SIGNAL: polls (every 10 ms, 60 s at most) for a child of
# the sender PID, the watchdog that lives only while the file system is
# frozen, and sends SIGNAL to the sender the moment it appears. Sets WD to
# the watchdog's PID, or empty when the sender ended without freezing.
cat >"$TMP/watch.py" <<'EOF'
import os, signal, sys, time
pid, sig = int(sys.argv[1]), getattr(signal, "SIG" + sys.argv[2])
def stat(p):
    try:
        s = open("/proc/%d/stat" % p).read()
    except OSError:
        return None, None
    f = s[s.rindex(")") + 2:].split()
    return f[0], int(f[1])
end = time.monotonic() + 60
while time.monotonic() < end:
    if stat(pid)[0] in (None, "Z"):
        sys.exit(0)
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != pid and stat(int(d))[1] == pid:
            os.kill(pid, sig)
            print(d)
            sys.exit(0)
    time.sleep(0.01)
sys.exit(1)
EOF
watch_freeze() {
	WD=$(python3 -S "$TMP/watch.py" "$1" "$2") || fail "sender $1 neither froze nor ended within 60 s"
	[ -z "$WD" ] || PIDS+=("$WD")
}
# fs_writable SECONDS: a write + fsync to a file in $MNT ends within SECONDS.
# Polled, not waited for: a write to a frozen file system cannot be killed
# (the cleanup thaws before it kills).
fs_writable() {
	local p i rc=0
	timeout "$1" dd if=/dev/zero of="$MNT/probe" bs=4096 count=1 conv=fsync status=none &
	p=$!
	PIDS+=("$p")
	for ((i = 0; i < $1 * 20; i++)); do pid_alive "$p" || break; sleep 0.05; done
	pid_alive "$p" && return 1
	wait "$p" || rc=$?
	pid_forget "$p"
	return "$rc"
}
gone_within() { # gone_within PID SECONDS
	local i
	for ((i = 0; i < $2 * 20; i++)); do pid_alive "$1" || return 0; sleep 0.05; done
	return 1
}
# Reads capped at 1 MB/s under a filler of ~0.65 MB/s: each round reads what
# was written during the one before, so the rounds shrink, and the last set
# (a few hundred KiB) is read frozen for a few hundred ms: long enough to see.
SLOW=(--capture freeze --max-read-rate 1M)
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
bg_send() { # bg_send [OPTIONS...]: an epoch in the background, PID in SPID, start in TB
	TB=$EPOCHREALTIME
	N=$((N + 1))
	E="$TMP/e$N.json"
	"$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
		--tls-dir "$TMP/primary" --server-name standby --progress none -o json "$@" \
		>"$E" 2>"$TMP/e$N.err" &
	SPID=$!
	PIDS+=("$SPID")
}

# 4. The watchdog on --freeze-timeout: the sender stopped while frozen.
filler 40
send_ok "before the watchdog test" --capture freeze
wait_applied "$TMP/rstate/vol" "$(get epoch)"
committed=$(get epoch)
for attempt in 1 2 3; do
	sleep 2 # a backlog for the first round
	bg_send "${SLOW[@]}" --freeze-timeout 3s
	watch_freeze "$SPID" STOP
	if [ -z "$WD" ]; then
		wait_pid "$SPID" 5 xrc
		load "$E"
		expect result ok "attempt $attempt"
		echo "attempt $attempt: the sender ended before the watchdog was seen (rounds $(get rounds), freeze_ms $(get freeze_ms)); again"
		wait_applied "$TMP/rstate/vol" "$(get epoch)"
		committed=$(get epoch)
		continue
	fi
	echo "attempt $attempt: watchdog $WD seen $(since "$TB") s into the epoch; sender $SPID stopped"
	t0=$EPOCHREALTIME
	st=$(sed 's/^.*) //' "/proc/$WD/stat" | cut -d' ' -f2,3)
	[ "$st" = "$SPID $WD" ] ||
		fail "the watchdog $WD: parent and process group '$st', expected '$SPID $WD' (a child in its own group)"
	gone_within "$WD" 6 || fail "the watchdog $WD still runs 6 s after the sender stopped (--freeze-timeout 3s)"
	pid_forget "$WD" # not a child of this shell: its PID may be reused
	fs_writable 5 || fail "the file system takes no write after the watchdog ended"
	echo "the watchdog gone and the file system writable $(since "$t0") s after the stop"
	kill -CONT "$SPID"
	wait_pid "$SPID" 30 xrc
	load "$E"
	if [ "$(get result)" = ok ]; then # thawed between the poll and the stop
		echo "attempt $attempt: the freeze ended before the sender stopped (freeze_ms $(get freeze_ms)); again"
		wait_applied "$TMP/rstate/vol" "$(get epoch)"
		committed=$(get epoch)
		continue
	fi
	break
done
[ -n "$WD" ] && [ "$(get result)" = failed ] ||
	fail "no attempt stopped the sender while frozen (the last round too short to see)"
[ "$xrc" != 0 ] || fail "the sender whose freeze the watchdog ended exited 0"
get message | grep -q -- "--freeze-timeout" && get message | grep -q "watchdog" ||
	{ cat "$E" >&2; fail "the failure does not name --freeze-timeout and the watchdog: $(get message)"; }
echo "the stopped sender (rounds $(get rounds)) exited $xrc: $(get message)"
[ "$(rstatus epoch)" = "$committed" ] || fail "the standby's epoch moved from $committed to $(rstatus epoch)"
oracle "after the watchdog ended a freeze"
[ "$TORN" = 0 ] || fail "the standby is torn after the aborted epoch: low high = $LH"
send_ok "after the watchdog ended a freeze" --capture freeze
expect crash_consistent True "after the watchdog ended a freeze"
wait_applied "$TMP/rstate/vol" "$(get epoch)"
oracle "after the watchdog ended a freeze"
[ "$TORN" = 0 ] || fail "epoch $(get epoch) is torn: low high = $LH"

# 5. The sender killed while frozen: the watchdog thaws at once, long before
# its --freeze-timeout of 10 s.
for attempt in 1 2 3; do
	sleep 2
	bg_send "${SLOW[@]}" --freeze-timeout 10s
	watch_freeze "$SPID" KILL
	t0=$EPOCHREALTIME
	wait_pid "$SPID" 5 xrc
	if [ -n "$WD" ]; then
		echo "attempt $attempt: watchdog $WD seen $(since "$TB") s into the epoch; sender $SPID killed"
		break
	fi
	load "$E"
	expect result ok "attempt $attempt"
	echo "attempt $attempt: the sender ended before the watchdog was seen (rounds $(get rounds), freeze_ms $(get freeze_ms)); again"
done
[ -n "$WD" ] || fail "no attempt saw the sender freeze"
[ "$xrc" = 137 ] || fail "the sender killed while frozen exited $xrc"
gone_within "$WD" 2 || fail "the watchdog $WD still runs 2 s after its sender was killed"
pid_forget "$WD"
fs_writable 2 || fail "the file system takes no write 2 s after the frozen sender was killed"
echo "the watchdog gone and the file system writable $(since "$t0") s after the kill"
send_ok "after the sender was killed while frozen" --capture freeze
expect crash_consistent True "after the sender was killed while frozen"
wait_applied "$TMP/rstate/vol" "$(get epoch)"
oracle "after the sender was killed while frozen"
[ "$TORN" = 0 ] || fail "epoch $(get epoch) is torn: low high = $LH"

# 7. A partial block that does not make the source's block in a captured
# epoch. The standby completes it from its own pages; a page written behind
# the tracker (to the loop's backing file) differs there, and no later round
# sends the block whole, so EPOCH_END's Merkle check fails the epoch (PAGES:
# nothing applied) and the next attempt sends whole blocks, which repairs it.
# (A page written while round 1 read it is the same mismatch, which a later
# round does repair: that race is not provoked here.)
filler 0
python3 - "$MNT/behind" <<'EOF2'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, os.urandom(32 << 10))
os.fsync(fd)
os.close(fd)
EOF2
send_ok "a new file" --capture freeze
filefrag -v "$MNT/behind" >"$TMP/behind.txt"
# Two pages of the file in one map block: A (written behind) and B (through
# the file system). Prints A's device offset, B's file offset, the block's.
read -r PA FB MB < <(python3 - "$TMP/behind.txt" "$BLOCK" <<'EOF2'
import re, sys
text, block = open(sys.argv[1]).read(), int(sys.argv[2])
bs = int(re.search(r"blocks of (\d+) bytes", text).group(1))
pages = []
for m in re.finditer(r"^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*\d+:", text, re.M):
    lo, hi, p = int(m.group(1)) * bs, (int(m.group(2)) + 1) * bs, int(m.group(3)) * bs
    pages += [(off, p + off - lo) for off in range(lo, hi, 4096)]
for (fa, pa), (fb, pb) in zip(pages, pages[1:]):
    if pb == pa + 4096 and pa // block == pb // block:
        print(pa, fb, pa // block * block)
        break
else:
    sys.exit("no two pages of the file share a map block")
EOF2
)
[ -n "${MB:-}" ] || { cat "$TMP/behind.txt" >&2; fail "the file 'behind': no two pages in one map block"; }
dd if=/dev/urandom of="$TMP/src.img" bs=4096 seek=$((PA / 4096)) count=1 conv=notrunc \
	oflag=direct status=none
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, os.urandom(4096), int(sys.argv[2]))
os.fdatasync(fd)' "$MNT/behind" "$FB"
send --capture freeze
expect result failed "a partial block with a page written behind the tracker"
get message | grep -qF "no later round sent them whole" ||
	fail "a page behind the tracker: the refusal does not say why: $(get message)"
echo "a page behind the tracker: $(get message)"
send_ok "the epoch after the refusal" --capture freeze
expect crash_consistent True "the epoch after the refusal"
wait_applied "$TMP/rstate/vol" "$(get epoch)"
cmp <(dd if="$src" bs="$BLOCK" skip=$((MB / BLOCK)) count=1 iflag=direct status=none) \
	<(dd if="$dst" bs="$BLOCK" skip=$((MB / BLOCK)) count=1 iflag=direct status=none) ||
	fail "the block with the page written behind the tracker was not repaired"

# 8. Without CAP_SYS_ADMIN (setpriv; the pinned tracker needs none): --capture
# freeze refuses, naming the capability; auto replicates live, saying why.
if command -v setpriv >/dev/null; then
	AS=(setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin)
	send --capture freeze
	expect result failed "--capture freeze without CAP_SYS_ADMIN"
	get message | grep -qF CAP_SYS_ADMIN ||
		fail "--capture freeze without CAP_SYS_ADMIN: the error does not name it: $(get message)"
	send_ok "--capture auto without CAP_SYS_ADMIN" --capture auto
	expect crash_consistent False "--capture auto without CAP_SYS_ADMIN"
	get capture_note | grep -qF CAP_SYS_ADMIN ||
		fail "--capture auto without CAP_SYS_ADMIN: the note does not say why: $(get capture_note)"
	echo "without CAP_SYS_ADMIN: $(get capture_note)"
	AS=()
fi

# 6. What cannot be frozen. A --freeze-path on another file system ...
filler 0
send --capture freeze --freeze-path "$TMP"
expect result failed "--freeze-path on another file system"
get message | grep -qF "$TMP" && get message | grep -qF "$src" ||
	fail "--freeze-path on another file system: the error does not name $TMP and $src: $(get message)"
echo "--freeze-path $TMP: $(get message)"
# ... and a device with no file system mounted from it.
kill "$WPID"
wait "$WPID" 2>/dev/null || true
pid_forget "$WPID"
umount "$MNT"
send --capture freeze
expect result failed "--capture freeze with nothing mounted"
get message | grep -qF "$src" || fail "--capture freeze with nothing mounted: the error does not name $src: $(get message)"
echo "--capture freeze, nothing mounted: $(get message)"
send_ok "--capture auto with nothing mounted" --capture auto
expect capture none "--capture auto with nothing mounted"
expect crash_consistent False "--capture auto with nothing mounted"
get capture_note | grep -qF "no file system is mounted from $src" ||
	fail "--capture auto with nothing mounted: the note does not say why: $(get capture_note)"
echo "--capture auto, nothing mounted: $(get capture_note)"
wait_applied "$TMP/rstate/vol" "$(get epoch)"
expect_consistent "False LiveRead" "after a live epoch"
dev_cmp "$src" "$dst" || fail "the standby differs from the source"
echo "partial-block refusals retried: $REFUSED"
echo "090-capture: all checks passed"
