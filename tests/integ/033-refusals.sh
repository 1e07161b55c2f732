#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Everything the receiver must refuse is refused before anything is written, with a
# clear message on both sides: the sender's stderr / JSON (and exit code) and the
# receiver's log. After each case the standby and the receiver's state files are
# byte for byte what they were. Cases: a source of another size, another volume id,
# another block size (real sender: the id check fires first, as documented; a
# lying sender with the same id: the block size check), a certificate not in
# --allow, a certificate from another CA, a wrong --server-name, a plaintext
# sender, a volume the receiver does not serve, and a DATA block whose hash does
# not match (test-tool bad-sender).
#
#   namespace pvr-a-$$ (senders)                    namespace pvr-b-$$ (standby)
#   ┌──────────────────────────────────┐           ┌──────────────────────────────────┐
#   │ pvrepl send: certs primary,      │           │ pvrepl receive (CA 1)            │
#   │   intruder, other-CA 'primary'   │   veth    │   --allow vol=primary            │
#   │ test-tool bad-sender             │           │   --allow empty=primary          │
#   │ vethA 10.231.33.1/30 ────────────┼───────────┼── vethB 10.231.33.2/30:PORT      │
#   └─────────────┬────────────────────┘           └──────────────┬───────────────────┘
#     loopS  ($TMP/src.img, 32 MiB)                  vol=loopD   ($TMP/dst.img, 32 MiB, synced)
#     loopS2 ($TMP/big.img, 48 MiB)                  empty=loopE ($TMP/empty.img, 32 MiB, EMPTY)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

netns_pair 33
certs_make "$TMP/certs"
certs="$TMP/certs"
"$PVREPL" certs issue --ca "$certs/ca" --name intruder --out "$certs/intruder" >/dev/null
# Another CA's certificate with the allowed name; its bundle also holds our CA so
# that it can verify the receiver: only the receiver's check can refuse it.
"$PVREPL" certs ca --out "$certs/ca2" >/dev/null
"$PVREPL" certs issue --ca "$certs/ca2" --name primary --out "$certs/other-ca" >/dev/null
cat "$certs/ca/ca.crt" "$certs/ca2/ca.crt" >"$certs/other-ca/ca.crt"

head -c 32M /dev/urandom >"$TMP/src.img"
head -c 48M /dev/urandom >"$TMP/big.img"
truncate -s 32M "$TMP/dst.img"
truncate -s 32M "$TMP/empty.img"
loop_attach src "$TMP/src.img"
loop_attach src2 "$TMP/big.img"
loop_attach dst "$TMP/dst.img"
loop_attach empty "$TMP/empty.img"

rxlog=$TMP/receiver.log
receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" --listen "$ADDR_B:0" \
	--tls-dir "$certs/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" \
	--volume "empty=$empty" --allow vol=primary --allow empty=primary --journal-size 32M
receiver_wait "$rx" "$TMP/ready" "$rxlog"

send() { # send ARGS...: pvrepl send from namespace A (volume, device, state dir in ARGS)
	timeout 60 ip netns exec "$NS_A" "$PVREPL" send --peer "$RX_ADDR" -o json --progress none "$@"
}
good=(--volume vol --device "$src" --state-dir "$TMP/sstate" --tls-dir "$certs/primary"
	--server-name standby)

# The standby holds epoch 1 of the source.
send "${good[@]}" >"$TMP/sync.json"
[ "$(json_get result <"$TMP/sync.json")" = ok ] || fail "the initial sync failed"
wait_applied "$TMP/rstate/vol" 1
dev_cmp "$src" "$dst" || fail "the initial sync did not converge"

snapshot() { # what must never change: both standbys and the receiver's state files
	local f
	for f in "$dst" "$empty"; do dev_sha "$f"; done
	for f in "$TMP"/rstate/*/map "$TMP"/rstate/*/map.log "$TMP"/rstate/*/state; do
		[ -e "$f" ] && echo "$f $(sha256sum <"$f")"
	done
	return 0
}
snapshot >"$TMP/snap.before"

late=() # failures reported at the end, so that every case runs
# refused NAME RC SENDER_RE RX_RE -- CMD...: CMD must exit RC, say SENDER_RE on its
# stderr/stdout, the receiver must log RX_RE, and nothing may change.
refused() {
	local name=$1 want=$2 sre=$3 rre=$4 lines rc=0 i
	shift 5
	lines=$(wc -l <"$rxlog")
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
	if [ "$rc" != "$want" ]; then
		late+=("$name: exit $rc, expected $want")
		[ "$rc" != 0 ] || fail "$name: the receiver accepted it"
	fi
	grep -qE -- "$sre" "$TMP/$name.err" "$TMP/$name.out" || {
		cat "$TMP/$name.err" "$TMP/$name.out"
		late+=("$name: the sender's message does not match /$sre/")
	}
	for ((i = 0; i < 50; i++)); do
		tail -n +$((lines + 1)) "$rxlog" | grep -qE -- "$rre" && break
		sleep 0.1
	done
	tail -n +$((lines + 1)) "$rxlog" | grep -qE -- "$rre" || {
		tail -n +$((lines + 1)) "$rxlog"
		late+=("$name: the receiver's log does not match /$rre/")
	}
	snapshot >"$TMP/snap.after"
	diff -u "$TMP/snap.before" "$TMP/snap.after" || fail "$name: the standby or the receiver's state changed"
	echo "$name: exit $rc; sender: $(cat "$TMP/$name.err" "$TMP/$name.out" | head -n 1 | cut -c1-300)"
	echo "$name: receiver: $(tail -n +$((lines + 1)) "$rxlog" | grep -E -- "$rre" | head -n 1 | cut -d' ' -f4-)"
}
json_result() { # json_result NAME RESULT: the send's JSON says RESULT
	[ "$(json_get result <"$TMP/$1.out")" = "$2" ] || late+=("$1: JSON result is not '$2'")
}

# A source of another size, against the volume the receiver holds EMPTY (a fresh
# state dir has a new id: against 'vol' the id check would fire first).
refused size 78 "refused \(SIZE\).*50331648.*33554432" "refused \(SIZE\).*50331648" -- \
	send --volume empty --device "$src2" --state-dir "$TMP/s-size" --tls-dir "$certs/primary" --server-name standby
json_result size refused
[ ! -e "$TMP/rstate/empty/map" ] || fail "size: the empty volume got a map"

# Another volume id: a second state dir for the same name.
refused volume-id 78 "refused \(VOLUME_ID\).*has id [0-9a-f]{32} but the sender's has id [0-9a-f]{32}" \
	"refused \(VOLUME_ID\)" -- \
	send --volume vol --device "$src" --state-dir "$TMP/s-other" --tls-dir "$certs/primary" --server-name standby
json_result volume-id refused

# Another block size. A real sender with a new map also has a new id, and
# PROTOCOL.md "Refusals" checks the id first: that is what must fire.
refused block-size-new-map 78 "refused \(VOLUME_ID\)" "refused \(VOLUME_ID\)" -- \
	send --volume vol --device "$src" --state-dir "$TMP/s-64k" --block-size 64k --tls-dir "$certs/primary" --server-name standby
# The same id and size with 64 KiB blocks announced (a lying sender): BLOCK_SIZE.
refused block-size 0 "^REFUSE BLOCK_SIZE: .*65536-byte blocks.*16384-byte blocks" "refused \(BLOCK_SIZE\)" -- \
	timeout 60 ip netns exec "$NS_A" "$TEST_TOOL" bad-sender --peer "$RX_ADDR" --tls-dir "$certs/primary" \
	--server-name standby --volume vol --device "$src" --state-dir "$TMP/sstate" --hello-block-size 64k

# A certificate of our CA that --allow does not name: permission (77).
refused not-allowed 77 "refused \(CERTIFICATE\).*'intruder' is not allowed.*--allow vol=intruder" \
	"cert=intruder refused \(CERTIFICATE\)" -- \
	send --volume vol --device "$src" --state-dir "$TMP/sstate" --tls-dir "$certs/intruder" --server-name standby
json_result not-allowed refused

# A certificate from another CA, with the allowed name: refused in the TLS
# handshake. A refused certificate is a permission error (77).
refused other-ca 77 "refused our certificate.*unknown ca" \
	"TLS handshake failed.*not issued by a CA in .*standby/ca.crt" -- \
	send --volume vol --device "$src" --state-dir "$TMP/sstate" --tls-dir "$certs/other-ca" --server-name standby
json_result other-ca failed

# The receiver's certificate does not carry the name the sender expects.
refused server-name 1 "certificate is for 'standby', not 'wrong.example'" "TLS handshake failed" -- \
	send --volume vol --device "$src" --state-dir "$TMP/sstate" --tls-dir "$certs/primary" --server-name wrong.example
json_result server-name failed

# A plaintext sender against a TLS receiver: both sides must say it is a mode
# mismatch (tls.h: "detected from the first bytes and reported as such").
refused plaintext 1 "insecure-plaintext|TLS" "not speaking TLS.*--insecure-plaintext" -- \
	send --volume vol --device "$src" --state-dir "$TMP/sstate" --insecure-plaintext
json_result plaintext failed

# A volume the receiver does not serve.
refused unknown-volume 78 "refused \(VOLUME_ID\).*no volume named 'nosuch'" "serves no volume named 'nosuch'" -- \
	send --volume nosuch --device "$src" --state-dir "$TMP/s-nosuch" --tls-dir "$certs/primary" --server-name standby
json_result unknown-volume refused

# A block whose hash does not match its plaintext: ERROR VERIFY, nothing applied.
refused corrupt-block 0 "^ERROR VERIFY: .*block 0 does not match" "VERIFY: volume vol: block 0 does not match" -- \
	timeout 60 ip netns exec "$NS_A" "$TEST_TOOL" bad-sender --peer "$RX_ADDR" --tls-dir "$certs/primary" \
	--server-name standby --volume vol --device "$src" --state-dir "$TMP/sstate"

# None of it moved the receiver: the real sender is still in step (an incremental
# epoch 2 with nothing to send), and the standby equals the source.
send "${good[@]}" >"$TMP/after.json" || fail "the real sender was refused after the bad ones"
[ "$(json_get kind <"$TMP/after.json")" = incremental ] || fail "after the refusals the sender had to resync"
[ "$(json_get epoch <"$TMP/after.json")" = 2 ] || fail "after the refusals the epoch is not 2"
[ "$(json_get blocks_sent <"$TMP/after.json")" = 0 ] || fail "after the refusals blocks had to be sent"
wait_applied "$TMP/rstate/vol" 2
dev_cmp "$src" "$dst" || fail "the standby differs from the source"
pid_alive "$rx" || fail "the receiver died"
[ ${#late[@]} -eq 0 ] || fail "$(printf '%s; ' "${late[@]}")"
echo "ok: 10 refusals, each explained on both sides; standby and state untouched"
