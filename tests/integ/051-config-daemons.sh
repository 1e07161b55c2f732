#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The daemons run from a configuration file: `pvrepl receive --config` serves the
# file's volumes with their allow lists, `pvrepl replicate --config` replicates
# every volume of the file (one thread each), flags > PVREPL_* > file, and SIGHUP
# reloads: allow lists and added or removed volumes apply at once, a file with
# problems is refused (each problem logged with its line) and the running
# configuration kept. SIGTERM stops replicate cleanly.
#
#   a.img, b.img, c.img ──replicate --config tx.ini──► receive --config rx.ini
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
for v in a b c; do
	head -c 4M /dev/urandom >"$TMP/$v.img"
	truncate -s 4M "$TMP/$v-dst.img"
done

# wait_log FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN.
wait_log() {
	local _i _n=$((${3:-15} * 10))
	for ((_i = 0; _i < _n; _i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	tail -n 20 "$1" >&2
	fail "$1: no line matching '$2' within ${3:-15} s"
}

# send_one VOLUME: one epoch of VOLUME to the receiver; prints the exit code.
send_one() {
	local rc=0
	"$PVREPL" send --volume "$1" --device "$TMP/$1.img" --state-dir "$TMP/send-$1" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby \
		--progress none >"$TMP/send-$1.out" 2>"$TMP/send-$1.err" || rc=$?
	echo "$rc"
}

# --- receive --config: the file's volumes and allow lists ---------------------
cat >"$TMP/rx.ini" <<EOF
[receiver]
listen = 127.0.0.1:1
tls_dir = $TMP/standby
state_dir = $TMP/rstate
timeout = 5s

[volume a]
device = $TMP/a-dst.img
allow = primary

[volume b]
device = $TMP/b-dst.img
allow = somebody-else
EOF
# The environment beats the file (listen), the flags beat both (not used here).
PVREPL_LISTEN=127.0.0.1:0 receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" \
	--config "$TMP/rx.ini"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
case $RX_ADDR in 127.0.0.1:1) fail "PVREPL_LISTEN did not override the file's listen" ;; esac

[ "$(send_one a)" = 0 ] || fail "volume a (allowed by the file) was not replicated: $(cat "$TMP/send-a.err")"
wait_applied "$TMP/rstate/a" 1
dev_cmp "$TMP/a.img" "$TMP/a-dst.img" || fail "standby a differs from its source"
rc=$(send_one b)
[ "$rc" = 77 ] || fail "volume b (allow = somebody-else): exit $rc, expected 77 (not allowed)"
grep -q "not allowed to replicate volume b" "$TMP/send-b.err" || fail "no message naming the refused certificate"

# --- SIGHUP: allow b, add c, remove a -------------------------------------------
cat >"$TMP/rx.ini" <<EOF
[receiver]
listen = 127.0.0.1:1
tls_dir = $TMP/standby
state_dir = $TMP/rstate
timeout = 5s

[volume b]
device = $TMP/b-dst.img
allow = primary

[volume c]
device = $TMP/c-dst.img
allow = primary
EOF
kill -HUP "$rpid"
wait_log "$TMP/recv.log" "reloaded the configuration: 1 volume(s) added, 1 removed, 1 allow list"
pid_alive "$rpid" || fail "the receiver died on SIGHUP"
[ "$(send_one b)" = 0 ] || fail "volume b not replicated after its allow list was reloaded: $(cat "$TMP/send-b.err")"
[ "$(send_one c)" = 0 ] || fail "volume c not replicated after it was added: $(cat "$TMP/send-c.err")"
rc=$(send_one a)
[ "$rc" != 0 ] || fail "volume a was replicated after it was removed from the file"
grep -q "removed from this receiver's configuration" "$TMP/send-a.err" ||
	fail "no message saying volume a was removed: $(cat "$TMP/send-a.err")"
wait_applied "$TMP/rstate/b" 1
wait_applied "$TMP/rstate/c" 1
dev_cmp "$TMP/b.img" "$TMP/b-dst.img" || fail "standby b differs from its source"
dev_cmp "$TMP/c.img" "$TMP/c-dst.img" || fail "standby c differs from its source"

# --- SIGHUP with a broken file: every problem logged, nothing applied -----------
cp "$TMP/rx.ini" "$TMP/rx.good"
cat >>"$TMP/rx.ini" <<EOF

[volume d]
device = relative/path
colour = blue
EOF
kill -HUP "$rpid"
wait_log "$TMP/recv.log" "reload refused"
grep -q "reload: $TMP/rx.ini:1[5-7]: " "$TMP/recv.log" || fail "the reload's problems do not name the file and line"
[ "$(grep -c "reload: $TMP/rx.ini:" "$TMP/recv.log")" -ge 2 ] || fail "not every problem of the file was logged"
pid_alive "$rpid" || fail "the receiver died on a bad reload"
[ "$(send_one c)" = 0 ] || fail "volume c stopped being served after a refused reload"
cp "$TMP/rx.good" "$TMP/rx.ini"

# A valid file naming a device that does not exist: that volume is not added
# (logged with its name and device), the others keep being served; a second
# volume on a device already served is refused rather than opened twice.
cat >>"$TMP/rx.ini" <<EOF

[volume e]
device = $TMP/missing.img

[volume c2]
device = $TMP/c-dst.img
EOF
kill -HUP "$rpid"
wait_log "$TMP/recv.log" "volume=e .*reload: not added: .*missing.img"
wait_log "$TMP/recv.log" "volume=c2 .*reload: not added: volumes c and c2 share storage: $TMP/c-dst.img and $TMP/c-dst.img"
pid_alive "$rpid" || fail "the receiver died on a reload with a missing device"
[ "$(send_one c)" = 0 ] || fail "volume c stopped being served after a partly failed reload"
cp "$TMP/rx.good" "$TMP/rx.ini"
kill -HUP "$rpid"
wait_log "$TMP/recv.log" "reloaded the configuration: 0 volume(s) added, 0 removed, 0 allow"

# A bad environment variable is a configuration error naming it (exit 78).
rc=0
PVREPL_TIMEOUT=soon "$PVREPL" receive --config "$TMP/rx.ini" >"$TMP/env.log" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "PVREPL_TIMEOUT=soon: exit $rc, expected 78"
grep -q "environment: PVREPL_TIMEOUT=soon" "$TMP/env.log" || fail "no message naming PVREPL_TIMEOUT"
# Two volumes over one storage are refused at start, before anything opens
# (exit 78), however the paths differ: here a symlink to the other's file.
# Once two such volumes wrote one standby from two sources and status said
# both were in sync.
ln -s b-dst.img "$TMP/b-alias.img"
rc=0
"$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate2" \
	--volume "x=$TMP/b-dst.img" --volume "y=$TMP/b-alias.img" >"$TMP/twice.log" 2>&1 || rc=$?
[ "$rc" = 78 ] || { cat "$TMP/twice.log"; fail "receive with two volumes over one file: exit $rc, expected 78"; }
grep -q "volumes x and y share storage: $TMP/b-dst.img and $TMP/b-alias.img are both file $TMP/b-dst.img" "$TMP/twice.log" ||
	{ cat "$TMP/twice.log"; fail "receive with two volumes over one file: no message naming both"; }
[ ! -e "$TMP/rstate2/x" ] && [ ! -e "$TMP/rstate2/y" ] || fail "the refused receiver created volume state"
# A missing file is EX_NOINPUT, naming the path.
rc=0
"$PVREPL" receive --config "$TMP/nothing.ini" >"$TMP/nofile.log" 2>&1 || rc=$?
[ "$rc" = 66 ] || fail "--config of a missing file: exit $rc, expected 66"
grep -q "$TMP/nothing.ini" "$TMP/nofile.log" || fail "no message naming the missing file"

# --- replicate --config: every volume of the file, one thread each -------------
for v in a b c; do head -c 64K /dev/urandom | dd of="$TMP/$v.img" bs=64K seek=3 conv=notrunc status=none; done
cat >"$TMP/tx.ini" <<EOF
[sender]
tls_dir = $TMP/primary
peer = $RX_ADDR
server_name = standby
interval = 1s
timeout = 5s

[volume b]
device = $TMP/b.img
state_dir = $TMP/send-b

[volume c]
device = $TMP/c.img
state_dir = $TMP/send-c
EOF
# The sender refuses two volumes over one source as well (exit 78), naming both.
sed "s|^device = $TMP/c.img|device = $TMP/b.img|" "$TMP/tx.ini" >"$TMP/tx-twice.ini"
rc=0
"$PVREPL" replicate --config "$TMP/tx-twice.ini" --progress none --no-netwatch >"$TMP/twice.out" \
	2>"$TMP/twice.log" || rc=$?
[ "$rc" = 78 ] || { cat "$TMP/twice.log"; fail "replicate with two volumes over one file: exit $rc, expected 78"; }
grep -q "volumes b and c share storage" "$TMP/twice.log" ||
	{ cat "$TMP/twice.log"; fail "replicate with two volumes over one file: no message naming both"; }
"$PVREPL" replicate --config "$TMP/tx.ini" --progress none -o json --no-netwatch \
	--metrics-addr 127.0.0.1:0 >"$TMP/rep.out" 2>"$TMP/rep.log" &
spid=$!
PIDS+=("$spid")
wait_log "$TMP/rep.out" '"volume":"b"'
wait_log "$TMP/rep.out" '"volume":"c"'
# SIGHUP: add volume a back on both sides; the receiver takes it first.
cat >>"$TMP/rx.ini" <<EOF

[volume a]
device = $TMP/a-dst.img
allow = primary
EOF
kill -HUP "$rpid"
wait_log "$TMP/recv.log" "reloaded the configuration: 1 volume(s) added, 0 removed"
cat >>"$TMP/tx.ini" <<EOF

[volume a]
device = $TMP/a.img
state_dir = $TMP/send-a
EOF
kill -HUP "$spid"
wait_log "$TMP/rep.log" "reloaded the configuration: 3 volume(s), 1 added, 0 removed"
wait_log "$TMP/rep.out" '"volume":"a"'
# A reload that changes a volume's device keeps the running one (it needs a
# restart: the map belongs to the old device) and says so; b keeps replicating.
sed -i "s|device = $TMP/b.img|device = $TMP/elsewhere.img|" "$TMP/tx.ini"
kill -HUP "$spid"
wait_log "$TMP/rep.log" "needs a restart; kept $TMP/b.img"
sleep 2.5
grep -q "elsewhere.img" "$TMP/rep.out" "$TMP/rep.log" &&
	fail "a reload switched volume b to the new device: $(grep elsewhere "$TMP/rep.log" | tail -n 1)"
sed -i "s|device = $TMP/elsewhere.img|device = $TMP/b.img|" "$TMP/tx.ini"
# Signals never kill it, even with the metrics server's thread running: a burst
# of SIGHUPs is a burst of reloads.
for ((k = 0; k < 30; k++)); do kill -HUP "$spid"; done
sleep 1
pid_alive "$spid" || fail "replicate died under a burst of SIGHUPs"
# Flags beat the file: --volume picks one volume of a multi-volume file.
rc=0
"$PVREPL" replicate --config "$TMP/tx.ini" --volume zzz --max-epochs 1 >"$TMP/pick.log" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "--volume zzz with a file without it: exit $rc, expected 78"
grep -q "has no \[volume zzz\] section" "$TMP/pick.log" || fail "no message naming the missing volume"
printf '[sender]\ntls_dir = %s\npeer = %s\ninterval = 1s\n\n[volume a]\ndevice = %s\nstate_dir = %s\n' \
	"$TMP/primary" "$RX_ADDR" "$TMP/a.img" "$TMP/send-a" >"$TMP/one.ini"
rc=0
"$PVREPL" replicate --config "$TMP/one.ini" --volume b --max-epochs 1 >"$TMP/pick1.log" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "--volume b with a one-volume file of a: exit $rc, expected 78 (never a rename)"
rc=0
"$PVREPL" replicate --config "$TMP/tx.ini" --device /dev/null --max-epochs 1 >"$TMP/dev.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--device with a 3-volume file: exit $rc, expected 2"

# SIGTERM: replicate stops cleanly within its stop timeout, exit 0.
kill -TERM "$spid"
wait_pid "$spid" 20 rep_rc
[ "$rep_rc" = 0 ] || fail "replicate exited $rep_rc on SIGTERM, expected 0"
grep -q "SIGTERM: stopping" "$TMP/rep.log" || fail "replicate did not log its stop"
# Every standby holds its source once the receiver applied what it acknowledged.
for v in a b c; do
	e=$(python3 -c 'import json,sys; print(max(j["epoch"] for j in map(json.loads, open(sys.argv[1])) if j["volume"] == sys.argv[2] and j["result"] == "ok"))' "$TMP/rep.out" "$v")
	wait_applied "$TMP/rstate/$v" "$e"
	dev_cmp "$TMP/$v.img" "$TMP/$v-dst.img" || fail "standby $v differs from its source after replicate --config"
done

# SIGTERM mid-epoch: --volume picks b from the file; its epoch is held back by
# --max-read-rate, so SIGTERM finds it in flight. After --stop-timeout it is
# aborted cleanly: replicate exits 0 within seconds and the standby keeps the
# last committed epoch, untouched.
cp "$TMP/b.img" "$TMP/b.before"
head -c 4M /dev/urandom >"$TMP/b.img"
"$PVREPL" replicate --config "$TMP/tx.ini" --volume b --max-read-rate 256k --stop-timeout 1s \
	--progress none --no-netwatch >"$TMP/rep2.out" 2>"$TMP/rep2.log" &
spid=$!
PIDS+=("$spid")
sleep 2
t0=$(date +%s.%N)
kill -TERM "$spid"
wait_pid "$spid" 15 rep_rc
took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ "$rep_rc" = 0 ] || fail "replicate exited $rep_rc on SIGTERM mid-epoch, expected 0"
grep -q "aborted cleanly" "$TMP/rep2.log" || fail "replicate did not say the epoch in flight was aborted: $(tail -n 3 "$TMP/rep2.log")"
python3 -c "import sys; sys.exit(not float(sys.argv[1]) < 8)" "$took" ||
	fail "replicate took $took s to stop with --stop-timeout 1s (the epoch needs 16 s)"
kill -TERM "$rpid"
wait_pid "$rpid" 20 rx_rc
dev_cmp "$TMP/b.before" "$TMP/b-dst.img" || fail "standby b changed after an aborted epoch"
echo "ok: receive and replicate from --config, env over file, SIGHUP reloads and refusals, SIGTERM"
