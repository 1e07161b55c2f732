#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The TLS and connection matrix: one running receiver meets ten kinds of bad
# client, one after the other. Each is refused with a message that names the
# problem (the client's output and/or the receiver's log), none crashes or
# wedges the receiver, and none keeps a real sender out: after every case an
# epoch of `pvrepl send` with the good certificates (after a small change of
# the source) succeeds and the standby equals the source.
#
#   pvrepl send / openssl s_client / python ──► 127.0.0.1:PORT ──pvrepl receive──► dst.img
#                                               (--allow vol=primary, CA of `pvrepl certs ca`)
#
#   case                       client                              refused where
#   1  expired client cert     s_client, and pvrepl send           receiver (alert 45) / sender itself
#   2  not yet valid           s_client, and pvrepl send           receiver (alert 42) / sender itself
#   3  another CA              pvrepl send (CA made by openssl)    receiver (alert 48)
#   4  wrong --server-name     pvrepl send                         sender (alert 42 to the receiver)
#   5  no client certificate   s_client without -cert, and         receiver (alert 116) / sender itself
#                              pvrepl send with no tls.crt
#   6  TLS 1.2 only            s_client -tls1_2, good certificate  receiver (alert 70)
#   7  serverAuth-only EKU     s_client, and pvrepl send           receiver (alert 43) / sender itself
#   8  plaintext               pvrepl send --insecure-plaintext    both
#   9  random bytes            python (and a damaged TLS record)   receiver
#   10 handshake never ends    python: half a ClientHello, and     receiver, within ~6 s; a real
#                              a connection that says nothing      sender gets through meanwhile
#
# 020 checks the files `pvrepl certs` makes; 033 the refusals of HELLO and the
# sender's side of 3, 4 and 8 in namespaces; 097 the budget of many idle
# connections. This one adds the odd certificates (made here with the openssl
# command line, signed by the CA key of `pvrepl certs ca`), the receiver's side
# of every refusal, and a real epoch after each one.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT
command -v openssl >/dev/null || skip "needs the openssl command"
command -v python3 >/dev/null || skip "needs python3"

certs_make "$TMP"
odd=$TMP/odd
mkdir -p "$odd"

# --- The odd certificates, all for the allowed name 'primary', with its key.
openssl req -new -key "$TMP/primary/tls.key" -subj /CN=primary -out "$odd/primary.csr" 2>/dev/null
cat >"$odd/ca.cnf" <<EOF
[ ca ]
default_ca = odd
[ odd ]
database = $odd/index.txt
serial = $odd/serial
new_certs_dir = $odd
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
[ client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:primary
[ serveronly ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:primary
EOF
: >"$odd/index.txt"
echo 1001 >"$odd/serial"
# odd_cert NAME ARGS...: DIR $odd/NAME (tls.crt signed by our CA with `openssl ca
# ARGS`, primary's tls.key and ca.crt).
odd_cert() {
	local n=$1
	shift
	mkdir -p "$odd/$n"
	openssl ca -config "$odd/ca.cnf" -batch -notext -cert "$TMP/ca/ca.crt" -keyfile "$TMP/ca/ca.key" \
		-in "$odd/primary.csr" -out "$odd/$n/tls.crt" "$@" >"$odd/$n.log" 2>&1 ||
		{ cat "$odd/$n.log"; fail "openssl ca could not make the $n certificate"; }
	cp "$TMP/primary/tls.key" "$TMP/primary/ca.crt" "$odd/$n/"
}
odd_cert expired -extensions client -startdate 20200101000000Z -enddate 20210101000000Z
odd_cert future -extensions client -startdate 20400101000000Z -enddate 20410101000000Z
odd_cert serveronly -extensions serveronly -days 30
# Another CA, made by openssl alone; its bundle also holds our CA, so that only
# the receiver's check can refuse it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other-ca -days 30 \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	-keyout "$odd/ca2.key" -out "$odd/ca2.crt" 2>/dev/null
printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
	extendedKeyUsage=clientAuth,serverAuth subjectAltName=DNS:primary >"$odd/leaf.ext"
mkdir -p "$odd/otherca"
openssl x509 -req -in "$odd/primary.csr" -CA "$odd/ca2.crt" -CAkey "$odd/ca2.key" -set_serial 2001 \
	-days 30 -extfile "$odd/leaf.ext" -out "$odd/otherca/tls.crt" 2>/dev/null
cp "$TMP/primary/tls.key" "$odd/otherca/"
cat "$TMP/ca/ca.crt" "$odd/ca2.crt" >"$odd/otherca/ca.crt"
# A credentials directory without tls.crt.
mkdir -p "$odd/nocert"
cp "$TMP/primary/tls.key" "$TMP/primary/ca.crt" "$odd/nocert/"
# The certificates are what the cases say (so a refusal is for that reason).
openssl x509 -in "$odd/expired/tls.crt" -noout -checkend 0 >/dev/null && fail "the expired cert is valid"
openssl verify -CAfile "$TMP/ca/ca.crt" -purpose sslclient "$odd/serveronly/tls.crt" >/dev/null 2>&1 &&
	fail "openssl accepts the serverAuth-only certificate for a client"
openssl verify -CAfile "$TMP/ca/ca.crt" -purpose sslserver "$odd/serveronly/tls.crt" >/dev/null ||
	fail "openssl refuses the serverAuth-only certificate for a server"

# --- One receiver for everything.
head -c 4M /dev/urandom >"$TMP/src.img"
truncate -s 4M "$TMP/dst.img"
rxlog=$TMP/recv.log
receiver_spawn rx - "$rxlog" "$TMP/ready" --listen 127.0.0.1:0 --tls-dir "$TMP/standby" \
	--state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" --allow vol=primary
receiver_wait "$rx" "$TMP/ready" "$rxlog"
PORT=${RX_ADDR##*:}

# send_as NAME TLSDIR [ARGS...]: one epoch of pvrepl send; JSON in $TMP/NAME.json,
# stderr in $TMP/NAME.err, exit code in SEND_RC.
send_as() {
	local n=$1 dir=$2
	shift 2
	SEND_RC=0
	timeout 30 "$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" ${dir:+--tls-dir "$dir"} --progress none -o json "$@" \
		>"$TMP/$n.json" 2>"$TMP/$n.err" || SEND_RC=$?
}
EPOCH=0
# good_send WHAT: 4 KiB of the source change, a real sender replicates it, the
# standby equals the source, the receiver still runs.
good_send() {
	local t0 t
	head -c 4096 /dev/urandom |
		dd of="$TMP/src.img" bs=4096 seek=$((RANDOM % 1024)) conv=notrunc status=none
	t0=$(date +%s%3N)
	send_as good "$TMP/primary" --server-name standby
	t=$(($(date +%s%3N) - t0))
	[ "$SEND_RC" = 0 ] || { cat "$TMP/good.err" "$TMP/good.json"; fail "$1: the real sender was kept out (exit $SEND_RC)"; }
	EPOCH=$((EPOCH + 1))
	[ "$(json_get epoch <"$TMP/good.json")" = "$EPOCH" ] || fail "$1: the real sender's epoch is not $EPOCH"
	wait_applied "$TMP/rstate/vol" "$EPOCH" || fail "$1: epoch $EPOCH was not applied"
	dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "$1: the standby differs from the source"
	pid_alive "$rx" || { tail -n 20 "$rxlog"; fail "$1: the receiver died"; }
	GOOD_MS=$t
}

late=()	  # message mismatches, reported at the end so that every case runs
SAID=""	  # the line that matched, for the report
# said NAME FILE RE: FILE (a client's output) says RE; SAID is that line.
said() {
	SAID=$(grep -hE -- "$3" "$2" | head -n 1 | cut -c1-400) || true
	[ -n "$SAID" ] || {
		sed 's/^/    | /' "$2" | tail -n 5
		late+=("$1: /$3/ not in $(basename "$2")")
		SAID="(no match)"
	}
}
# rx_said NAME LINES RE: the receiver logged RE after line LINES (5 s at most);
# RX_SAID is that line, without its time stamp.
rx_said() {
	local i
	for ((i = 0; i < 50; i++)); do
		tail -n +$(($2 + 1)) "$rxlog" | grep -qE -- "$3" && break
		sleep 0.1
	done
	RX_SAID=$(tail -n +$(($2 + 1)) "$rxlog" | grep -E -- "$3" | head -n 1 | cut -d' ' -f2- | cut -c1-400) || true
	[ -n "$RX_SAID" ] || {
		tail -n +$(($2 + 1)) "$rxlog" | sed 's/^/    | /'
		late+=("$1: the receiver's log lacks /$3/")
		RX_SAID="(no match)"
	}
}
# refused_send NAME: the pvrepl send of case NAME failed and said so in its JSON.
refused_send() {
	[ "$SEND_RC" != 0 ] || fail "$1: pvrepl send succeeded"
	[ "$(json_get result <"$TMP/$1.json")" = failed ] || late+=("$1: JSON result is not 'failed'")
}
# sclient NAME ARGS...: openssl s_client to the receiver as 'standby' would be
# reached, bounded; -ign_eof waits for the receiver's verdict (its alert, or
# its close). Output in $TMP/NAME.ssl.
sclient() {
	local n=$1
	shift
	timeout 10 openssl s_client -connect "$RX_ADDR" -servername standby -CAfile "$TMP/ca/ca.crt" \
		-verify_return_error -ign_eof -brief "$@" </dev/null >"$TMP/$n.ssl" 2>&1 || true
}
lines() { wc -l <"$rxlog"; }
# alert_of NAME: the alert an s_client got, from $TMP/NAME.ssl.
alert_of() {
	sed -n 's/.*:\([^:]*alert [^:]*\):.*SSL alert number \([0-9]*\).*/"\1" (alert \2)/p' "$TMP/$1.ssl" |
		head -n 1
}
# report CASE TEXT: one line of the run's summary ($TMP shortened, the log's
# "warn receive peer=127.0.0.1 " dropped).
report() {
	local t=${2//"$TMP"/\$TMP}
	printf 'case %-3s %s\n' "$1" "${t//warn receive peer=127.0.0.1 /}"
}

good_send "initial sync"
echo "initial sync: epoch 1 in $GOOD_MS ms"

# 1. An expired client certificate: the receiver refuses it in the handshake
# (alert 45); pvrepl send refuses to use it at all.
l=$(lines)
sclient expired -cert "$odd/expired/tls.crt" -key "$odd/expired/tls.key"
said expired "$TMP/expired.ssl" "alert certificate expired"
rx_said expired "$l" "TLS handshake failed.*\('primary'\) was refused: certificate has expired"
report 1 "expired (s_client): client: $(alert_of expired); receiver: $RX_SAID"
send_as expired-send "$odd/expired" --server-name standby
refused_send expired-send
said expired-send "$TMP/expired-send.err" "tls.crt expired on 2021-01-01 00:00:00 UTC"
report 1 "expired (pvrepl send, exit $SEND_RC): $SAID"
good_send "case 1"

# 2. A client certificate not valid before 2040.
l=$(lines)
sclient future -cert "$odd/future/tls.crt" -key "$odd/future/tls.key"
said future "$TMP/future.ssl" "alert bad certificate"
rx_said future "$l" "TLS handshake failed.*\('primary'\) was refused: certificate is not yet valid"
report 2 "not yet valid (s_client): client: $(alert_of future); receiver: $RX_SAID"
send_as future-send "$odd/future" --server-name standby
refused_send future-send
said future-send "$TMP/future-send.err" "tls.crt is not valid before 2040-01-01 00:00:00 UTC"
report 2 "not yet valid (pvrepl send, exit $SEND_RC): $SAID"
good_send "case 2"

# 3. Signed by another CA (one made by openssl, not pvrepl), the allowed name.
l=$(lines)
send_as otherca "$odd/otherca" --server-name standby
refused_send otherca
said otherca "$TMP/otherca.err" "the peer refused our certificate \(tlsv1 alert unknown ca\)"
rx_said otherca "$l" "TLS handshake failed.*\('primary'\) is not issued by a CA in .*standby/ca.crt"
report 3 "another CA (pvrepl send, exit $SEND_RC): client: ${SAID#pvrepl: }; receiver: $RX_SAID"
good_send "case 3"

# 4. The receiver's certificate is for 'standby', the sender expects another name.
l=$(lines)
send_as servername "$TMP/primary" --server-name wrong.example
refused_send servername
said servername "$TMP/servername.err" "certificate is for 'standby', not 'wrong.example' \(--server-name\)"
rx_said servername "$l" "TLS handshake failed.*peer refused our certificate \(sslv3 alert bad certificate\)"
report 4 "server name (pvrepl send, exit $SEND_RC): client: ${SAID#pvrepl: }; receiver: $RX_SAID"
good_send "case 4"

# 5. No client certificate: s_client without -cert (pvrepl send cannot even
# start without its tls.crt, and says so).
l=$(lines)
sclient nocert
said nocert "$TMP/nocert.ssl" "alert certificate required"
rx_said nocert "$l" "TLS handshake failed.*peer sent no certificate; pvrepl requires mutual TLS"
report 5 "no certificate (s_client): client: $(alert_of nocert); receiver: $RX_SAID"
send_as nocert-send "$odd/nocert" --server-name standby
refused_send nocert-send
said nocert-send "$TMP/nocert-send.err" "nocert/tls.crt does not exist"
report 5 "no certificate (pvrepl send, exit $SEND_RC): $SAID"
good_send "case 5"

# 6. A client that speaks TLS 1.2 at most, with the good certificate.
l=$(lines)
sclient tls12 -tls1_2 -cert "$TMP/primary/tls.crt" -key "$TMP/primary/tls.key"
said tls12 "$TMP/tls12.ssl" "alert protocol version"
rx_said tls12 "$l" "TLS handshake failed.*does not speak TLS 1.3, which pvrepl requires"
report 6 "TLS 1.2 (s_client): client: $(alert_of tls12); receiver: $RX_SAID"
good_send "case 6"

# 7. A certificate of our CA whose extendedKeyUsage is serverAuth only, used as
# a client's.
l=$(lines)
sclient serveronly -cert "$odd/serveronly/tls.crt" -key "$odd/serveronly/tls.key"
said serveronly "$TMP/serveronly.ssl" "alert unsupported certificate"
rx_said serveronly "$l" "TLS handshake failed.*\('primary'\) may not be used for this side of TLS.*clientAuth"
report 7 "serverAuth-only EKU (s_client): client: $(alert_of serveronly); receiver: $RX_SAID"
send_as serveronly-send "$odd/serveronly" --server-name standby
refused_send serveronly-send
said serveronly-send "$TMP/serveronly-send.err" "may not be used for TLS client authentication \(its extendedKeyUsage lacks clientAuth\)"
report 7 "serverAuth-only EKU (pvrepl send, exit $SEND_RC): $SAID"
good_send "case 7"

# 8. A plaintext sender against the TLS receiver.
l=$(lines)
send_as plaintext "" --insecure-plaintext
refused_send plaintext
said plaintext "$TMP/plaintext.err" "if it requires TLS, drop --insecure-plaintext"
rx_said plaintext "$l" "TLS handshake failed.*not speaking TLS; is it running with --insecure-plaintext"
report 8 "plaintext (pvrepl send, exit $SEND_RC): client: ${SAID#pvrepl: }; receiver: $RX_SAID"
good_send "case 8"

# 9. Random bytes (seeded; the first one is not a TLS handshake record's), then
# a TLS record header followed by garbage. Each connection must be closed.
l=$(lines)
timeout 20 python3 - "$PORT" >"$TMP/random.out" 2>&1 <<'PY' || { cat "$TMP/random.out"; fail "case 9: the python client failed"; }
import random, socket, sys, time
port = int(sys.argv[1])
rnd = random.Random(101)
junk = bytes(rnd.getrandbits(8) for _ in range(4096))
assert junk[0] != 0x16, "seed gives a TLS handshake byte first"
for name, data in (("random", junk), ("tls-header+garbage", b"\x16\x03\x01" + junk[:2000])):
    s = socket.create_connection(("127.0.0.1", port), timeout=8)
    t0 = time.monotonic()
    try:
        s.sendall(data)
        while s.recv(4096):
            pass
        how = "closed"
    except socket.timeout:
        how = "still open"
    except OSError as e:  # a reset: closed too
        how = "closed (%s)" % e.strerror
    print("%s: %d bytes sent, %s after %d ms" % (name, len(data), how, 1000 * (time.monotonic() - t0)))
    s.close()
PY
grep -q "still open" "$TMP/random.out" && { cat "$TMP/random.out"; fail "case 9: the receiver kept a garbage connection open"; }
rx_said random "$l" "TLS handshake failed.*the peer is not speaking TLS"
report 9 "random bytes (python): client: $(head -n 1 "$TMP/random.out"); receiver: $RX_SAID"
# The second connection's line: a TLS record header and garbage is named as
# not TLS too (two such lines in all).
for ((i = 0; i < 50; i++)); do
	[ "$(tail -n +$((l + 1)) "$rxlog" | grep -c "TLS handshake failed.*not speaking TLS")" -ge 2 ] && break
	sleep 0.1
done
RX_SAID=$(tail -n +$((l + 1)) "$rxlog" | grep "TLS handshake failed.*not speaking TLS" | sed -n 2p |
	cut -d' ' -f2- | cut -c1-400) || true
[ -n "$RX_SAID" ] || late+=("tls-garbage: the receiver did not say the peer is not speaking TLS")
report 9 "TLS header + garbage (python): client: $(sed -n 2p "$TMP/random.out"); receiver: $RX_SAID"
good_send "case 9"

# 10. Handshakes that never complete: half a real ClientHello, and nothing at
# all. A real sender gets through while they are held; the receiver closes
# each within ~6 s (5 s for an unauthorised connection).
l=$(lines)
timeout 20 python3 - "$PORT" "$TMP/stall.go" "$TMP/stall.closed" >"$TMP/stall.out" 2>&1 <<'PY' &
import select, socket, ssl, sys, time
port, go, closed = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="standby")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
conns = []
for name, data in (("half a ClientHello", hello[: len(hello) // 2]), ("nothing", b"")):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    conns.append([name, s, time.monotonic(), None, len(data)])
open(go, "w").close()
deadline = time.monotonic() + 12
while any(c[3] is None for c in conns) and time.monotonic() < deadline:
    r, _, _ = select.select([c[1] for c in conns if c[3] is None], [], [], 0.2)
    for c in conns:
        if c[1] in r:
            try:
                d = c[1].recv(4096)
            except OSError:
                d = b""
            if not d:
                c[3] = time.monotonic()
                with open(closed, "a") as f:
                    f.write(c[0] + "\n")
for name, s, t0, t1, n in conns:
    print("%s (%d bytes): %s" % (name, n, "open after 12 s" if t1 is None else "closed after %d ms" % (1000 * (t1 - t0))))
PY
stall=$!
PIDS+=("$stall")
for ((i = 0; i < 100; i++)); do [ -e "$TMP/stall.go" ] && break; sleep 0.1; done
[ -e "$TMP/stall.go" ] || fail "case 10: the stalled connections were not made"
good_send "case 10, stalled handshakes held"
echo "case 10  a real epoch while the stalled handshakes are held: $GOOD_MS ms"
((GOOD_MS < 4000)) || fail "case 10: the real epoch took $GOOD_MS ms with stalled handshakes held"
[ ! -e "$TMP/stall.closed" ] || fail "case 10: $(paste -sd, "$TMP/stall.closed") closed before the real epoch ended"
wait_pid "$stall" 20 rc
[ "$rc" = 0 ] || { cat "$TMP/stall.out"; fail "case 10: the python client failed"; }
while read -r line; do
	ms=$(sed -n 's/.*closed after \([0-9]*\) ms/\1/p' <<<"$line")
	[ -n "$ms" ] || fail "case 10: $line"
	((ms < 7000)) || fail "case 10: $line (more than 7 s)"
done <"$TMP/stall.out"
rx_said stall "$l" "TLS handshake.*timed out waiting for the peer"
n=$(tail -n +$((l + 1)) "$rxlog" | grep -c "TLS handshake.*timed out waiting for the peer" || true)
[ "$n" -ge 2 ] || late+=("stall: $n of 2 stalled handshakes logged as timed out")
report 10 "stalled handshakes (python): client: $(paste -sd';' "$TMP/stall.out"); receiver ($n lines): $RX_SAID"
good_send "case 10, after"

pid_alive "$rx" || fail "the receiver died"
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "the standby differs from the source"
[ ${#late[@]} -eq 0 ] || fail "$(printf '%s; ' "${late[@]}")"
echo "ok: 10 cases refused and named; $EPOCH real epochs, one after each; standby equals source"
