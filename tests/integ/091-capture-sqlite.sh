#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Capture, seen by an application: with --capture freeze every epoch (the
# initial sync too) is one instant of the source's ext4, so a copy of the
# standby opens as two SQLite databases that a writer was committing to,
# each intact and holding a gapless prefix of its commits. With --capture
# none the same checks only report: a live read may or may not tear here
# (090's oracle is the one that proves tearing).
#
#   src.img (256 MiB ext4) ─loop─► $src ─mount─► $MNT/{delete,wal}.db
#        ▲ writer: one thread a database, commits k = 1, 2, 3, ... (one row each,
#        │         a few KiB of pad led by its sha256), synchronous=FULL;
#        │         delete.db: journal_mode=DELETE, wal.db: journal_mode=WAL
#   $src ──pvrepl send --capture ...──► 127.0.0.1 ──pvrepl receive──► $dst (256 MiB sparse)
#   after each epoch, between epochs: dst.img ─cp─► copy.img ─loop─► $copy ─mount─► $CMNT
#        python sqlite3 opens each database (rolls back a hot journal, replays
#        the WAL: the copy is writable; the standby itself is never mounted)
#
# Checked:
#   1. the initial sync and 6 incremental epochs with --capture freeze under
#      the writer: each ok, capture freeze, crash-consistent; on each copy
#      both databases pass PRAGMA integrity_check, hold exactly rows 1..n with
#      n > 0, every pad matches its digest, and n never decreases from one
#      epoch to the next (rounds, freeze_ms and whether the copy's ext4 needed
#      journal recovery are printed, not checked);
#   2. 6 epochs with --capture none under the same writer: the same checks,
#      only counted ("live epochs: X of 6 copies malformed or gapped").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
MNT="$TMP/mnt"
CMNT="$TMP/cmnt"
EPOCHS=6 # incremental epochs of each kind
# A read cap like 090's stands in for a busy disk: the reads of an incremental
# epoch are spread out, so a last round read live instead of frozen overlaps
# commits and tears (a build without the freeze fails here within a few
# epochs); the initial sync (256 MiB) is read at full speed.
SLOW=(--max-read-rate 32M)
cleanup() {
	set +e
	# A writer blocked on a frozen file system cannot die: thaw first. (The
	# sender's watchdog thaws when the sender dies; this covers the rest.)
	mountpoint -q "$MNT" && fsfreeze -u "$MNT" 2>/dev/null
	cleanup_common
}
trap cleanup EXIT
if [ -n "${KEEP:-}" ]; then fail() { cp -a "$TMP" "$KEEP" 2>/dev/null; echo "FAIL: $*" >&2; exit 1; }; fi
[ -d /sys/kernel/btf ] || skip "no BTF in this kernel (/sys/kernel/btf): tp_btf programs cannot load"
for t in mkfs.ext4 dumpe2fs fsfreeze mountpoint timeout; do
	command -v "$t" >/dev/null || skip "$t missing (e2fsprogs / util-linux / coreutils)"
done
python3 -c 'import sqlite3' 2>/dev/null || skip "python3 has no sqlite3 module"

certs_make "$TMP"
truncate -s 256M "$TMP/src.img" "$TMP/dst.img"
# 4 KiB blocks; no lazy init: no kernel thread writes behind the test's back.
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$TMP/src.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
mkdir "$MNT" "$CMNT"
mount -t ext4 "$src" "$MNT" || skip "cannot mount the ext4 on $src"
MOUNTS+=("$MNT")
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" --allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

. "$(dirname "$0")/lib-send.sh"
forget() { # forget ARRAY VALUE: drops VALUE from a cleanup list once undone
	local -n _arr=$1
	local _v _keep=()
	for _v in "${_arr[@]}"; do [ "$_v" = "$2" ] || _keep+=("$_v"); done
	_arr=("${_keep[@]}")
}

# The writer: a thread a database, each committing k = 1, 2, 3, ... one row a
# transaction, so at every instant each database holds exactly rows 1..n.
# pad = sha256(body) + body, body 2..6 KiB of random bytes (overflow pages):
# a page from another instant shows as a pad that does not match. Writes
# $TMP/ready.NAME after its first commit; any error ends the process (exit 1);
# bounded: ends after its duration.
cat >"$TMP/writer.py" <<'EOF'
import hashlib, os, random, sqlite3, sys, threading, time
mnt, tmp, end = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])

def run(name, mode):
    try:
        db = sqlite3.connect(os.path.join(mnt, name + ".db"), isolation_level=None)
        got = db.execute("PRAGMA journal_mode=" + mode).fetchone()[0]
        if got.lower() != mode.lower():
            raise RuntimeError("journal_mode %s, asked for %s" % (got, mode))
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, pad BLOB)")
        rnd, k = random.Random(), 0
        while time.monotonic() < end:
            k += 1
            body = rnd.randbytes(rnd.randint(2048, 6144))
            db.execute("BEGIN")
            db.execute("INSERT INTO t VALUES(?, ?)", (k, hashlib.sha256(body).digest() + body))
            db.execute("COMMIT")
            if k == 1:
                open(os.path.join(tmp, "ready." + name), "w").close()
            time.sleep(0.005) # ~150 commits/s a database: the rounds converge
    except Exception as e:
        print("writer %s: %s" % (name, e), file=sys.stderr, flush=True)
        os._exit(1)

ts = [threading.Thread(target=run, args=a) for a in (("delete", "DELETE"), ("wal", "WAL"))]
for t in ts:
    t.start()
for t in ts:
    t.join()
EOF

# The check of one database on a copy: prints "NAME ok N" or "NAME bad WHY".
cat >"$TMP/check.py" <<'EOF'
import hashlib, os, sqlite3, sys
for name in ("delete", "wal"):
    path = os.path.join(sys.argv[1], name + ".db")
    try:
        # mode=rw: a missing file is an error, not a new database.
        db = sqlite3.connect("file:%s?mode=rw" % path, uri=True, isolation_level=None)
        ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
        if ic != ["ok"]:
            raise ValueError(("integrity_check: " + " ".join(ic).replace("\n", " "))[:200])
        n = 0
        for k, pad in db.execute("SELECT k, pad FROM t ORDER BY k"):
            if k != n + 1:
                raise ValueError("row %d follows row %d (a gap)" % (k, n))
            if not isinstance(pad, bytes) or hashlib.sha256(pad[32:]).digest() != pad[:32]:
                raise ValueError("row %d: the pad does not match its digest" % k)
            n = k
        if n == 0:
            raise ValueError("no rows")
        db.close()
        print(name, "ok", n)
    except (sqlite3.Error, OSError, ValueError) as e:
        print(name, "bad", str(e).replace("\n", " "))
EOF

# copy_check WHAT: copies the standby (no epoch runs), mounts the copy and
# checks both databases. Sets RECOVERY (yes/no: the copy's ext4 needed journal
# recovery), N_delete / N_wal (0 when bad), CBAD (0 or 1) and CWHY.
copy_check() {
	local copy name st rest
	CBAD=0 CWHY="" N_delete=0 N_wal=0
	cp --sparse=always "$TMP/dst.img" "$TMP/copy.img"
	loop_attach copy "$TMP/copy.img"
	if dumpe2fs -h "$copy" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery'; then
		RECOVERY=yes
	else
		RECOVERY=no
	fi
	if mount -t ext4 "$copy" "$CMNT" 2>"$TMP/cmount.err"; then
		MOUNTS+=("$CMNT")
		while read -r name st rest; do
			if [ "$st" = ok ]; then
				printf -v "N_$name" '%s' "$rest"
			else
				CBAD=1 CWHY+="$name: $rest; "
			fi
		done < <(timeout 60 python3 "$TMP/check.py" "$CMNT" ||
			echo "check bad the check exited $? (timeout 60 s)")
		umount "$CMNT" || fail "$1: cannot unmount the copy from $CMNT"
		forget MOUNTS "$CMNT"
	else
		CBAD=1 CWHY="the copy does not mount: $(tr '\n' ' ' <"$TMP/cmount.err")"
	fi
	losetup -d "$copy" || fail "$1: cannot detach $copy"
	forget LOOPS "$copy"
	rm -f "$TMP/copy.img"
}

python3 "$TMP/writer.py" "$MNT" "$TMP" 150 2>"$TMP/writer.err" &
WPID=$!
PIDS+=("$WPID")
for ((i = 0; i < 100; i++)); do
	[ -e "$TMP/ready.delete" ] && [ -e "$TMP/ready.wal" ] && break
	pid_alive "$WPID" || break
	sleep 0.1
done
[ -e "$TMP/ready.delete" ] && [ -e "$TMP/ready.wal" ] ||
	{ cat "$TMP/writer.err" >&2; fail "the writer did not commit to both databases within 10 s"; }
sleep 0.5

# 1. Frozen epochs, the initial sync first, under the writer.
LAST_delete=0 LAST_wal=0
for ((i = 0; i <= EPOCHS; i++)); do
	what="frozen epoch $i"
	[ "$i" = 0 ] && what="initial sync"
	opts=()
	[ "$i" -gt 0 ] && opts=("${SLOW[@]}")
	send_ok "$what" --capture freeze "${opts[@]}"
	expect capture freeze "$what"
	expect crash_consistent True "$what"
	[ "$i" = 0 ] && expect kind "full sync" "$what"
	ep=$(get epoch)
	wait_applied "$TMP/rstate/vol" "$ep"
	copy_check "$what"
	printf '%s (epoch %s): rounds %s, freeze_ms %.1f, copy needed ext4 recovery: %s, delete n=%s, wal n=%s\n' \
		"$what" "$ep" "$(get rounds)" "$(get freeze_ms)" "$RECOVERY" "$N_delete" "$N_wal"
	[ "$CBAD" = 0 ] || fail "$what (epoch $ep): the copy of the standby: $CWHY"
	[ "$N_delete" -ge "$LAST_delete" ] && [ "$N_wal" -ge "$LAST_wal" ] ||
		fail "$what (epoch $ep): rows went back: delete $LAST_delete -> $N_delete, wal $LAST_wal -> $N_wal"
	LAST_delete=$N_delete LAST_wal=$N_wal
	pid_alive "$WPID" || { cat "$TMP/writer.err" >&2; fail "the writer ended during $what"; }
done
echo "frozen epochs: $((EPOCHS + 1)) of $((EPOCHS + 1)) copies intact and gapless (integrity_check ok)"

# 2. Live epochs under the same writer: counted, not checked.
bad=0
for ((i = 1; i <= EPOCHS; i++)); do
	what="live epoch $i"
	send_ok "$what" --capture none "${SLOW[@]}"
	expect capture none "$what"
	expect crash_consistent False "$what"
	ep=$(get epoch)
	wait_applied "$TMP/rstate/vol" "$ep"
	copy_check "$what"
	bad=$((bad + CBAD))
	printf '%s (epoch %s): copy needed ext4 recovery: %s, delete n=%s, wal n=%s%s\n' \
		"$what" "$ep" "$RECOVERY" "$N_delete" "$N_wal" "${CWHY:+, BAD: $CWHY}"
	pid_alive "$WPID" || { cat "$TMP/writer.err" >&2; fail "the writer ended during $what"; }
done
echo "live epochs: $bad of $EPOCHS copies malformed or gapped"
echo "partial-block refusals retried: $REFUSED"
echo "091-capture-sqlite: all checks passed"
