#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Write tracking end to end: an epoch reads only what the eBPF tracker marked,
# and falls back to a full scan, saying why, whenever it cannot trust it.
#
#   src.img (96 MiB) ─loop─► $src ──pvrepl send/replicate──► 127.0.0.1 ──pvrepl receive──► $dst
#                             ▲ tp_btf block_rq_complete marks 4 KiB pages
#                             └─ pins under $PVREPL_TRACK_PIN_DIR (bpffs), one dir per volume
#
# Checked, each against the bytes of the standby:
#   1. the initial sync is a full scan ("initial sync") with the tracker on;
#   2. a no-change epoch is tracked and reads nothing from the source;
#   3. scattered 4 KiB and 512 B writes, a discard and a zero-out: the epoch is
#      tracked, reads at most the 16 KiB blocks that hold them, sends partly
#      written blocks as their 4 KiB pages (PAGES), and the standby is identical; a rewrite of the same bytes is read and sends nothing;
#   4. survival: replicate killed with SIGKILL while a writer runs, more writes,
#      a restart: every epoch after it is tracked and the standby is identical;
#   5. `pvrepl track list` shows the tracker attached and settled; a "reboot"
#      (`pvrepl track remove`): the next epoch is a full scan that says
#      the tracker was replaced, and the one after it is tracked again;
#   6. the safety net: a write to the loop's backing file (behind the block
#      layer) is missed by tracked epochs (the standby differs: the failure the
#      net guards against), then `send --full-scan` counts it in
#      tracker_missed_blocks and repairs the standby;
#      A tracked write to another page of such a block is sent as PAGES: the
#      standby, completing the block from its own pages, finds the block hash
#      wrong and refuses the epoch with nothing applied; the next attempt sends
#      whole blocks, which repairs it, and the one after may send pages again;
#   7. without CAP_SYS_ADMIN the pinned tracker is still used; without
#      CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN (setpriv): --track auto
#      replicates with full scans and says why; --track bpf refuses, naming the
#      capabilities; nothing is left pinned.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT
if [ -n "${KEEP:-}" ]; then fail() { cp -a "$TMP" "$KEEP" 2>/dev/null; echo "FAIL: $*" >&2; exit 1; }; fi
[ -d /sys/kernel/btf ] || skip "no BTF in this kernel (/sys/kernel/btf): tp_btf programs cannot load"

certs_make "$TMP"
python3 - "$TMP/src.img" <<'EOF'
import os, sys
# 96 MiB: 48 MiB random, 16 MiB text, 32 MiB zeros.
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(48 << 20))
    f.write((b"pvrepl tracks writes " * 52429)[: 16 << 20].ljust(16 << 20, b"."))
    f.truncate(96 << 20)
EOF
truncate -s 96M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" --allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

BLOCK=16384
N=0
AS=() # a command that send runs pvrepl under (setpriv, below)
send() { # send [OPTIONS...]: one epoch, JSON in $TMP/e$N.json
	N=$((N + 1))
	"${AS[@]}" "$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
		--tls-dir "$TMP/primary" --server-name standby --progress none -o json "$@" \
		>"$TMP/e$N.json" 2>"$TMP/e$N.err" || true
	E="$TMP/e$N.json"
}
get() { json_get "$1" <"$E"; }
expect() { # expect FIELD VALUE WHAT
	local v
	v=$(get "$1")
	[ "$v" = "$2" ] || { cat "$E" "$TMP/e$N.err" >&2; fail "$3: $1 is '$v', expected '$2'"; }
}
applied_and_equal() {
	expect result ok "epoch $N"
	wait_applied "$TMP/rstate/vol" "$(get epoch)"
	dev_cmp "$src" "$dst" || fail "$1: the standby differs from the source"
}
wr() { # wr SEED OFFSET BYTES: O_DIRECT write of random bytes through the device
	dd if=/dev/urandom of="$src" bs="$3" seek="$2" count=1 oflag=direct,seek_bytes \
		conv=notrunc status=none
}

# 1. The initial sync: full, tracked from before its first read.
send
expect scan full "initial sync"
expect tracking bpf "initial sync"
get full_scan_reason | grep -q "initial sync" || fail "the initial sync's reason: $(get full_scan_reason)"
applied_and_equal "initial sync"
trackers() { find "$PVREPL_TRACK_PIN_DIR" -mindepth 1 -maxdepth 1 -type d 2>/dev/null; }
[ "$(trackers | wc -l)" = 1 ] ||
	fail "expected one tracker pinned under $PVREPL_TRACK_PIN_DIR"

# 2. Nothing written: tracked, nothing read, nothing sent.
send
expect scan tracked "no-change epoch"
expect source_read_bytes 0 "no-change epoch"
expect blocks_sent 0 "no-change epoch"
applied_and_equal "no-change epoch"
st() { "$PVREPL" status --state-dir "$TMP/sstate" -o json | python3 -c \
	'import json,sys; print(json.load(sys.stdin)["volumes"][0].get(sys.argv[1]))' "$1"; }
[ "$(st writeTracking)" = bpf ] && [ "$(st lastScan)" = tracked ] ||
	fail "status does not say the epoch was tracked: $(st writeTracking) $(st lastScan)"

# 3. Scattered writes of every kind: only their blocks are read. 150 pages:
# more partial blocks than the receiver reads from the standby at once (32).
declare -A blocks=()
for i in $(seq 0 149); do
	off=$(((i * 2654435761 % 24000) * 4096))
	wr "$i" "$off" 4096
	blocks[$((off / BLOCK))]=1
done
for off in 512 $((70 * 1048576 + 3584)); do # 512 B writes, one in the zero area
	wr x "$off" 512
	blocks[$((off / BLOCK))]=1
done
blkdiscard -o $((50 * 1048576)) -l 65536 "$src"
for ((b = 50 * 1048576 / BLOCK; b < (50 * 1048576 + 65536) / BLOCK; b++)); do blocks[$b]=1; done
blkdiscard -z -o $((60 * 1048576)) -l 32768 "$src"
for ((b = 60 * 1048576 / BLOCK; b < (60 * 1048576 + 32768) / BLOCK; b++)); do blocks[$b]=1; done
send
expect scan tracked "scattered writes"
read_bytes=$(get source_read_bytes)
[ "$read_bytes" -gt 0 ] && [ "$read_bytes" -le $((${#blocks[@]} * BLOCK)) ] ||
	fail "scattered writes: read $read_bytes bytes for ${#blocks[@]} dirty blocks of $BLOCK"
[ "$(get blocks_changed)" -le "${#blocks[@]}" ] || fail "more blocks changed than written"
applied_and_equal "scattered writes"
# Sent as their 4 KiB pages: 152 pages written, 6 blocks discarded or zeroed.
payload=$(get payload_bytes)
[ "$(get blocks_partial)" -ge 120 ] && [ "$payload" -le $((152 * 4096 + 6 * BLOCK)) ] ||
	fail "scattered writes: $(get blocks_partial) partial blocks, $payload payload bytes for 152 written pages"
echo "scattered: ${#blocks[@]} dirty blocks, read $read_bytes bytes, sent $(get blocks_sent) blocks ($(get blocks_partial) as pages), $payload payload bytes, $(get wire_bytes) on the wire"

# The same bytes written again: read, hashed, nothing sent.
dd if="$src" of="$TMP/chunk" bs=4096 skip=100 count=4 iflag=direct status=none
dd if="$TMP/chunk" of="$src" bs=4096 seek=100 count=4 oflag=direct conv=notrunc status=none
send
expect scan tracked "rewrite"
[ "$(get source_read_bytes)" -ge 16384 ] || fail "the rewritten block was not read"
expect blocks_sent 0 "rewrite of the same bytes"
applied_and_equal "rewrite"

# 4. replicate killed with SIGKILL while a writer runs; more writes; a restart.
writer() { # bounded: 400 writes or 20 s
	local i end=$((SECONDS + 20))
	for ((i = 0; i < 400 && SECONDS < end; i++)); do
		wr w $(((RANDOM * 32768 + RANDOM) % 24576 * 4096)) 4096
		sleep 0.01
	done
}
# Started directly (not through a shell function, whose $! would be a subshell
# that SIGKILL leaves the real process running behind).
REPLICATE=("$PVREPL" replicate --volume vol --device "$src" --state-dir "$TMP/sstate"
	--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none
	-o json --interval 300ms --no-netwatch)
writer &
wpid=$!
PIDS+=("$wpid")
"${REPLICATE[@]}" >"$TMP/rep1.json" 2>"$TMP/rep1.log" &
rep=$!
PIDS+=("$rep")
for ((i = 0; i < 100; i++)); do
	oks=$( (grep -o '"result": *"ok"' "$TMP/rep1.json" 2>/dev/null || true) | wc -l)
	[ "$oks" -ge 3 ] && break
	sleep 0.1
done
[ "$oks" -ge 3 ] || fail "replicate did not run 3 epochs within 10 s"
kill9 "$rep"
pid_alive "$rep" && fail "replicate (pid $rep) survived SIGKILL"
wait_pid "$wpid" 30 wrc
for i in 1 2 3; do wr k $((i * 7 * 1048576)) 4096; done
"${REPLICATE[@]}" --max-epochs 3 >"$TMP/rep2.json" 2>"$TMP/rep2.log" &
rep=$!
PIDS+=("$rep")
wait_pid "$rep" 60 rrc
[ "$rrc" = 0 ] || { cat "$TMP/rep2.log" >&2; fail "replicate after the SIGKILL exited $rrc"; }
python3 - "$TMP/rep2.json" <<'EOF' || fail "an epoch after the restart was not tracked"
import json, sys
text = open(sys.argv[1]).read()
dec, i, n = json.JSONDecoder(), 0, 0
while i < len(text):
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    n += 1
    if o["result"] != "ok" or o["scan"] != "tracked":
        print(json.dumps(o, indent=1))
        sys.exit(1)
sys.exit(0 if n == 3 else 1)
EOF

last=$(python3 -c 'import re,sys; print(re.findall(r"\"epoch\": *(\d+)", open(sys.argv[1]).read())[-1])' "$TMP/rep2.json")
wait_applied "$TMP/rstate/vol" "$last"
dev_cmp "$src" "$dst" || fail "the standby differs after the SIGKILL and restart"

# 5. A "reboot": the pins are gone (pvrepl track remove, after track list
# showed the tracker attached, settled at the last epoch). Full scan, saying
# why; then tracked again.
"$PVREPL" track list -o json >"$TMP/tl.json"
python3 - "$TMP/tl.json" "$last" <<'PY' || fail "track list does not show the tracker: $(cat "$TMP/tl.json")"
import json, sys
t = json.load(open(sys.argv[1]))["trackers"]
assert len(t) == 1 and t[0]["attached"] and t[0]["owed"] == "-", t
assert t[0]["settled_epoch"] == int(sys.argv[2]), t
PY
name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["trackers"][0]["name"])' "$TMP/tl.json")
"$PVREPL" track remove "$name" | grep -q "removed $name" || fail "track remove did not say so"
[ -z "$(trackers)" ] || fail "track remove left the tracker pinned"
rc=0
"$PVREPL" track remove "$name" 2>"$TMP/tr.err" || rc=$?
[ "$rc" != 0 ] && grep -q "no tracker named" "$TMP/tr.err" || fail "removing a missing tracker: exit $rc"
wr r $((3 * 1048576)) 4096
send
expect scan full "after the pins were removed"
get full_scan_reason | grep -qi "attached\|replaced" ||
	fail "the reason does not say the tracker is new: $(get full_scan_reason)"
applied_and_equal "after the pins were removed"
wr r $((5 * 1048576)) 4096
send
expect scan tracked "the epoch after the reboot's full scan"
applied_and_equal "the epoch after the reboot's full scan"

# 6. A write behind the block layer's back: tracked epochs miss it ...
printf 'written behind the tracker %.0s' $(seq 200) |
	dd of="$TMP/src.img" bs=4096 seek=$((9 * 256 + 1)) conv=notrunc,sync oflag=direct status=none
send
expect scan tracked "after a write to the backing file"
expect result ok "after a write to the backing file"
wait_applied "$TMP/rstate/vol" "$(get epoch)"
if dev_cmp "$src" "$dst" >/dev/null 2>&1; then
	fail "the standby matched although the tracker could not see the write: the safety-net check proves nothing"
fi
# ... and the full scan finds, counts and repairs it.
send --full-scan
expect scan full "--full-scan"
expect tracker_missed_blocks 1 "--full-scan"
grep -q "did not mark" "$TMP/e$N.err" || fail "no warning about the missed block on stderr"
applied_and_equal "--full-scan"
[ "$(st trackerMissedBlocks)" = 1 ] || fail "status does not report the missed block"
rc=0
"$PVREPL" status --state-dir "$TMP/sstate" --check >"$TMP/check.out" || rc=$?
[ "$rc" = 1 ] && grep -q "missed" "$TMP/check.out" ||
	{ cat "$TMP/check.out" >&2; fail "status --check did not degrade on a missed write (exit $rc)"; }

# A tracked write to another page of a block written behind the tracker's
# back: the block goes as PAGES, and the standby, completing it from its own
# pages, finds it does not make the source's block. The epoch is refused with
# nothing applied, and the next attempt sends whole blocks, which repairs it
# (a write racing an epoch between its harvest and its read looks the same).
printf 'also behind the tracker %.0s' $(seq 200) |
	dd of="$TMP/src.img" bs=4096 seek=$((20 * 256 + 1)) conv=notrunc,sync oflag=direct status=none
wr p $((20 * 1048576 + 2 * 4096)) 4096
before=$(dev_sha "$dst")
send
expect scan tracked "a partial block over a missed write"
expect result failed "a partial block over a missed write"
grep -q "outside the pages" "$E" || fail "the failure does not say why: $(get message)"
grep -q "next attempt sends whole blocks" "$TMP/e$N.err" || fail "no warning that the next attempt sends whole blocks"
[ "$(dev_sha "$dst")" = "$before" ] || fail "the refused epoch changed the standby"
send
expect scan tracked "the epoch after the standby refused a partial block"
expect blocks_partial 0 "the epoch after the standby refused a partial block"
applied_and_equal "the epoch after the standby refused a partial block"
[ ! -e "$TMP/sstate/track.whole" ] || fail "whole blocks are still forced after a good epoch"
wr p $((20 * 1048576 + 3 * 4096)) 4096
send
expect blocks_partial 1 "the epoch after a whole-block retry"
applied_and_equal "the epoch after a whole-block retry"

# 7. Without the capabilities: auto falls back, bpf refuses, the pins stay.
command -v setpriv >/dev/null || skip "setpriv missing (util-linux)"
# CAP_BPF and CAP_PERFMON are enough: no CAP_SYS_ADMIN needed to pick it up.
wr c $((12 * 1048576)) 4096
AS=(setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin)
send
expect tracking bpf "without CAP_SYS_ADMIN"
expect scan tracked "without CAP_SYS_ADMIN"
applied_and_equal "without CAP_SYS_ADMIN"
AS=(setpriv --inh-caps=-bpf,-perfmon,-sys_admin --bounding-set=-bpf,-perfmon,-sys_admin)
# Without any of them, a tracker already pinned is still read (the pins' file
# modes are the access control) ...
wr c $((13 * 1048576)) 4096
send
expect tracking bpf "without capabilities, pins present"
expect scan tracked "without capabilities, pins present"
applied_and_equal "without capabilities, pins present"
# ... but none can be made: auto falls back and says why, bpf refuses, and
# nothing half-made is left pinned.
trackers | xargs -r rm -rf
wr c $((11 * 1048576)) 4096
send
expect tracking off "without CAP_BPF, --track auto"
expect scan full "without CAP_BPF, --track auto"
get tracking_off_reason | grep -q "CAP_BPF" || fail "the fallback does not say why: $(get tracking_off_reason)"
applied_and_equal "without CAP_BPF, --track auto"
[ "$(st writeTracking)" = off ] && st lastScanReason | grep -q CAP_BPF ||
	fail "status does not say tracking is off and why"
send --track bpf
expect result failed "--track bpf without CAP_BPF"
grep -q "CAP_BPF" "$TMP/e$N.err" || { cat "$TMP/e$N.err" >&2; fail "--track bpf: no word of CAP_BPF"; }
AS=()
[ -z "$(trackers)" ] || fail "an unprivileged run left pins behind"
echo "080-track: all checks passed"
