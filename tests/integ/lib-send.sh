# SPDX-License-Identifier: Apache-2.0
# Epochs of `pvrepl send` as the capture tests (090, 091) run them, sourced
# after lib.sh once $src, $TMP/primary, $TMP/sstate and RX_ADDR exist:
#   send [OPTIONS...]       one epoch; its JSON in $TMP/e$N.json ($E) and J
#   get FIELD, expect FIELD VALUE WHAT
#   send_ok WHAT [OPTIONS...]  an epoch that must succeed; one retry when the
#                           standby refused a partial block a writer raced
# AS: a command to run pvrepl under (setpriv), empty by default.
N=0
AS=() # a command that send runs pvrepl under (setpriv)
declare -A J=()
send() { # send [OPTIONS...]: one epoch; its JSON in $TMP/e$N.json and J
	N=$((N + 1))
	E="$TMP/e$N.json"
	"${AS[@]}" "$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
		--tls-dir "$TMP/primary" --server-name standby --progress none -o json "$@" \
		>"$E" 2>"$TMP/e$N.err" || true
	load "$E"
}
load() { # load FILE: its JSON object's fields into J (one python start, not one a field)
	local k v
	J=()
	while IFS=$'\t' read -r k v; do J[$k]=$v; done < <(python3 -S -c '
import json, sys
for k, v in json.load(open(sys.argv[1])).items():
    print(k, str(v).replace("\t", " ").replace("\n", " "), sep="\t")' "$1" 2>/dev/null)
}
get() { printf '%s' "${J[$1]-}"; }
expect() { # expect FIELD VALUE WHAT
	[ "$(get "$1")" = "$2" ] || { cat "$E" "${E%.json}.err" >&2; fail "$3: $1 is '$(get "$1")', expected '$2'"; }
}
# A partial block (PAGES) the writer changed outside its marked pages between
# the harvest and the read is refused by the standby, and the next attempt
# sends whole blocks (080, documented): a live read under a writer can meet
# it, and so, rarely, can a captured epoch whose later rounds did not send that
# block again (091 met it once in a full run; nothing is applied, the next
# attempt sends whole blocks). Such an epoch is tried once more; anything else
# is a failure.
refusals() {
	grep -c -e "outside the pages its write tracker marked" -e "no later round sent them whole" \
		"$TMP/recv.log" || true
}
REFUSED=0
send_ok() { # send_ok WHAT [OPTIONS...]
	local what=$1 before i
	shift
	before=$(refusals)
	send "$@"
	if [ "$(get result)" = failed ]; then
		for ((i = 0; i < 10 && $(refusals) == before; i++)); do sleep 0.1; done
		if [ "$(refusals)" -gt "$before" ]; then
			echo "$what: the standby refused a partial block the writer raced; again, with whole blocks"
			REFUSED=$((REFUSED + 1))
			send "$@"
		fi
	fi
	expect result ok "$what"
}
