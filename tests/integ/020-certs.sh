#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl certs`: a CA and two node certificates made by the CLI are accepted by
# `openssl verify` for TLS server and client use, carry the requested names, keys
# are 0600 and directories 0700, nothing is overwritten without --force, and bad
# input is refused with a clear message. No network: files only.
#
#   $TMP/ca        ca.crt ca.key            (pvrepl certs ca)
#   $TMP/receiver  tls.crt tls.key ca.crt   (pvrepl certs issue --name receiver)
#   $TMP/sender    tls.crt tls.key ca.crt   (pvrepl certs issue --name 10.0.0.7)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT
command -v openssl >/dev/null || skip "needs the openssl command"

expect() { # expect CODE PATTERN -- cmd...
	local code=$1 pat=$2 rc=0
	shift 3
	"$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" = "$code" ] || { cat "$TMP/err"; fail "'$*' exit $rc, expected $code"; }
	grep -q -- "$pat" "$TMP/err" || { cat "$TMP/err"; fail "'$*' message lacks '$pat'"; }
}
mode() { stat -c %a "$1"; }

"$PVREPL" certs ca --out "$TMP/ca"
"$PVREPL" certs issue --ca "$TMP/ca" --name receiver --out "$TMP/receiver"
"$PVREPL" certs issue --ca "$TMP/ca" --name 10.0.0.7 --out "$TMP/sender" --days 30

for d in receiver sender; do
	openssl verify -CAfile "$TMP/ca/ca.crt" -purpose sslserver "$TMP/$d/tls.crt" >/dev/null ||
		fail "openssl verify refused $d as a TLS server"
	openssl verify -CAfile "$TMP/ca/ca.crt" -purpose sslclient "$TMP/$d/tls.crt" >/dev/null ||
		fail "openssl verify refused $d as a TLS client"
	cmp -s "$TMP/ca/ca.crt" "$TMP/$d/ca.crt" || fail "$d/ca.crt is not a copy of the CA"
	[ "$(mode "$TMP/$d/tls.key")" = 600 ] || fail "$d/tls.key is $(mode "$TMP/$d/tls.key")"
	[ "$(mode "$TMP/$d")" = 700 ] || fail "$d/ is $(mode "$TMP/$d")"
	# The key belongs to the certificate.
	[ "$(openssl x509 -in "$TMP/$d/tls.crt" -noout -pubkey)" = \
		"$(openssl pkey -in "$TMP/$d/tls.key" -pubout)" ] || fail "$d key/cert mismatch"
done
[ "$(mode "$TMP/ca/ca.key")" = 600 ] || fail "ca.key is $(mode "$TMP/ca/ca.key")"
openssl x509 -in "$TMP/ca/ca.crt" -noout -text >"$TMP/ca.txt"
grep -q "CA:TRUE" "$TMP/ca.txt" || fail "the CA lacks CA:TRUE"
grep -q "Certificate Sign, CRL Sign" "$TMP/ca.txt" || fail "the CA lacks keyCertSign,cRLSign"
grep -q "prime256v1\|P-256" "$TMP/ca.txt" || fail "the CA key is not P-256"
openssl x509 -in "$TMP/receiver/tls.crt" -noout -ext subjectAltName | grep -q "DNS:receiver" ||
	fail "receiver lacks DNS:receiver"
openssl x509 -in "$TMP/sender/tls.crt" -noout -ext subjectAltName >"$TMP/san"
grep -q "DNS:10.0.0.7" "$TMP/san" && grep -q "IP Address:10.0.0.7" "$TMP/san" ||
	fail "sender lacks DNS: and IP: 10.0.0.7: $(cat "$TMP/san")"
openssl x509 -in "$TMP/sender/tls.crt" -noout -subject | grep -q "CN *= *10.0.0.7" ||
	fail "sender CN is not 10.0.0.7"
# Two issues give two different serials.
[ "$(openssl x509 -in "$TMP/receiver/tls.crt" -noout -serial)" != \
	"$(openssl x509 -in "$TMP/sender/tls.crt" -noout -serial)" ] || fail "serials repeat"

# No overwrite without --force; the files stay as they were.
sum=$(sha256sum "$TMP/receiver/tls.crt" "$TMP/ca/ca.key")
expect 1 "already exists; refusing to overwrite" -- "$PVREPL" certs ca --out "$TMP/ca"
expect 1 "$TMP/receiver/tls.crt already exists" -- \
	"$PVREPL" certs issue --ca "$TMP/ca" --name receiver --out "$TMP/receiver"
[ "$(sha256sum "$TMP/receiver/tls.crt" "$TMP/ca/ca.key")" = "$sum" ] || fail "a refusal changed files"
"$PVREPL" certs issue --ca "$TMP/ca" --name receiver --out "$TMP/receiver" --force >/dev/null
[ "$(sha256sum "$TMP/receiver/tls.crt" | cut -d' ' -f1)" != "$(echo "$sum" | head -1 | cut -d' ' -f1)" ] ||
	fail "--force did not replace tls.crt"
[ "$(mode "$TMP/receiver/tls.key")" = 600 ] || fail "--force left tls.key $(mode "$TMP/receiver/tls.key")"
openssl verify -CAfile "$TMP/ca/ca.crt" "$TMP/receiver/tls.crt" >/dev/null || fail "reissued cert refused"

# Bad input: clear messages, documented exit codes.
expect 66 "$TMP/nope/ca.crt does not exist" -- \
	"$PVREPL" certs issue --ca "$TMP/nope" --name x --out "$TMP/x"
expect 66 "$TMP/receiver/ca.key does not exist" -- \
	"$PVREPL" certs issue --ca "$TMP/receiver" --name x --out "$TMP/x"
expect 78 "must be 1..64 characters" -- \
	"$PVREPL" certs issue --ca "$TMP/ca" --name 'a,DNS:evil' --out "$TMP/x"
expect 2 "--days must be" -- "$PVREPL" certs issue --ca "$TMP/ca" --name x --out "$TMP/x" --days 0
expect 2 "needs --ca DIR and --name NAME" -- "$PVREPL" certs issue --out "$TMP/x"
expect 2 "needs a subcommand" -- "$PVREPL" certs
[ ! -e "$TMP/x" ] || fail "a refused issue created $TMP/x"

# --help is true: every option it lists is accepted.
"$PVREPL" certs --help >"$TMP/help"
for opt in $(grep -o -- '--[a-z-]*' "$TMP/help" | sort -u); do
	grep -q -- "\"${opt#--}\"" "$(dirname "$0")/../../replicator/cmd_certs.c" ||
		fail "--help lists $opt but the parser does not know it"
done
echo "ok: CA and node certificates verified by openssl; keys 0600; no overwrite without --force"
