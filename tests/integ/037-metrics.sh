#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# --metrics-addr on both daemons: /metrics parses as Prometheus text (every sample
# `name{labels} value`, every family with HELP and TYPE) and counts the epochs on
# both sides; /livez and /readyz answer 200, and the sender stays ready when its
# peer goes away (readiness never follows the peer). A bad address is refused.
#
#   src.img ──pvrepl replicate──► 127.0.0.1 ──pvrepl receive──► dst.img
#     └─ http://127.0.0.1:$SPORT/metrics        └─ http://127.0.0.1:$RPORT/metrics
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

free_port() {
	python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# prom URL NAME [LABEL=VALUE ...]: checks the whole exposition at URL and prints
# the sum of the samples of NAME whose labels include every LABEL=VALUE (nothing
# when none matches). Fails on any malformed line or family without HELP/TYPE.
prom() {
	python3 - "$@" <<'PY'
import re, sys, urllib.request
url, name, want = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
text = urllib.request.urlopen(url, timeout=5).read().decode()
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
helps, types, total, found = set(), {}, 0.0, False
for line in text.splitlines():
    if line.startswith("# HELP "):
        helps.add(line.split()[2])
    elif line.startswith("# TYPE "):
        types[line.split()[2]] = line.split()[3]
    elif line.startswith("#") or not line:
        continue
    else:
        m = sample.match(line)
        assert m, f"malformed sample line: {line!r}"
        fam = m.group(1)
        if fam not in types:
            fam = re.sub(r'_(bucket|sum|count)$', '', fam)
        assert fam in types and fam in helps, f"no HELP/TYPE for {m.group(1)}"
        labels = dict(label.findall(m.group(3) or ""))
        value = float(m.group(4))
        if m.group(1) == name and all(labels.get(k) == v for k, v in want.items()):
            total, found = total + value, True
if found:
    print(total)
PY
}

# http_code URL: the HTTP status of a GET.
http_code() {
	python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}

# prom_wait URL NAME MIN [LABEL=VALUE ...]: until NAME's sum is >= MIN (15 s at most).
prom_wait() {
	local _url=$1 _name=$2 _min=$3 _v _i
	shift 3
	for ((_i = 0; _i < 150; _i++)); do
		_v=$(prom "$_url" "$_name" "$@")
		[ -n "$_v" ] && python3 -c "import sys; sys.exit(not float('$_v') >= float('$_min'))" &&
			return 0
		sleep 0.1
	done
	fail "$_url: $_name{$*} = '${_v}', expected >= $_min within 15 s"
}

certs_make "$TMP"
head -c 8M /dev/urandom >"$TMP/src.img"
truncate -s 8M "$TMP/dst.img"
RPORT=$(free_port)
SPORT=$(free_port)
RURL=http://127.0.0.1:$RPORT
SURL=http://127.0.0.1:$SPORT

# A bad address is a clear configuration error (exit 78), not a silent no-op.
rc=0
"$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/bad" \
	--volume "vol=$TMP/dst.img" --metrics-addr nonsense >"$TMP/bad.log" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "receive --metrics-addr nonsense: exit $rc, expected 78"
grep -q -- "--metrics-addr nonsense" "$TMP/bad.log" || fail "no message naming the bad address"

receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
	--allow vol=primary --metrics-addr "127.0.0.1:$RPORT"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
[ "$(http_code "$RURL/readyz")" = 200 ] || fail "receiver /readyz not 200 once listening"

T0=$(date +%s.%N)
"$PVREPL" replicate --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
	--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --timeout 2s \
	--interval 1s --progress none --metrics-addr "127.0.0.1:$SPORT" >"$TMP/rep.log" 2>&1 &
spid=$!
PIDS+=("$spid")

prom_wait "$SURL/metrics" pvrepl_syncs_total 2 role=primary result=success volume=vol
prom_wait "$RURL/metrics" pvrepl_syncs_total 1 role=secondary result=success volume=vol
wait_applied "$TMP/rstate/vol" 1
prom_wait "$SURL/metrics" pvrepl_sent_bytes_total $((8 << 20)) role=primary
prom_wait "$SURL/metrics" pvrepl_peer_connected 1 role=primary
prom_wait "$RURL/metrics" pvrepl_received_bytes_total $((8 << 20)) role=secondary
prom_wait "$RURL/metrics" pvrepl_consistent_point_timestamp_seconds 1 role=secondary
# The consistent point is the source time the epoch's reads began (ms), so it
# lies between the start of replicate and now.
cp=$(prom "$RURL/metrics" pvrepl_consistent_point_timestamp_seconds role=secondary)
python3 -c "import sys,time; t0,cp=float(sys.argv[1]),float(sys.argv[2]); sys.exit(not t0-0.002 <= cp <= time.time())" \
	"$T0" "$cp" || fail "consistent point $cp not between the start of replicate ($T0) and now"
for url in "$SURL" "$RURL"; do
	exp=$(prom "$url/metrics" pvrepl_tls_certificate_expiry_timestamp_seconds)
	python3 -c "import sys,time; sys.exit(not float(sys.argv[1] or 0) > time.time())" "$exp" ||
		fail "$url: tls_certificate_expiry_timestamp_seconds '$exp' is not a future time"
done
[ "$(prom "$SURL/metrics" pvrepl_volume_size_bytes role=primary)" = 8388608.0 ] ||
	fail "sender volume_size_bytes not 8M"
for url in "$SURL" "$RURL"; do
	[ "$(http_code "$url/livez")" = 200 ] || fail "$url/livez not 200"
	[ "$(http_code "$url/readyz")" = 200 ] || fail "$url/readyz not 200"
	[ "$(http_code "$url/nothing")" = 404 ] || fail "$url/nothing not 404"
done
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "standby differs from the source"

# The receiver goes away: the sender counts the failure and the lost peer but
# stays live and ready.
kill "$rpid"
wait_pid "$rpid" 10 rx_rc
prom_wait "$SURL/metrics" pvrepl_syncs_total 1 role=primary result=failure
prom_wait "$SURL/metrics" pvrepl_errors_total 1 role=primary kind=network
[ "$(prom "$SURL/metrics" pvrepl_peer_connected role=primary)" = 0.0 ] ||
	fail "peer_connected not 0 after the receiver went away"
[ "$(http_code "$SURL/readyz")" = 200 ] || fail "sender /readyz not 200 without its peer"
[ "$(http_code "$SURL/livez")" = 200 ] || fail "sender /livez not 200 without its peer"

kill "$spid"
wait_pid "$spid" 10 rep_rc
echo "ok: metrics, livez and readyz on both daemons"
