#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Seeded bugs: applies, one at a time, a small mutation to a check that keeps a
# standby correct, builds that tree, runs the tests that should catch it, and
# prints a table: each mutation must be caught (a test fails). Run by hand, as
# root, from the repository (not in CI: it builds the tree once per mutation):
#
#   tools/seeded-bugs.sh            # every mutation
#   tools/seeded-bugs.sh hash ack   # some
#
# Each mutation is an exact text replacement in one file; a mutation whose text
# is not found is reported as "stale" (the code moved: update it here).
# `flush` alone is not a bug: the superblock write flushes what it follows
# (flush-super removes that one).
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/pvrepl-seeded-XXXXXX")
trap 'git -C "$ROOT" worktree remove --force "$WORK/tree" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

# name | file | text | replacement | tests (unit binaries and/or integ names for TESTS=)
MUTATIONS=(
	"flush|replicator/journal.c|	rc = jrn_put_emit(j);
	if (rc == 0)
		rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
	if (rc != 0)
		goto drop;|	rc = jrn_put_emit(j);
	if (rc != 0)
		goto drop;|unit/test_journal"
	"flush-super|replicator/journal.c|	if (j->sb_unflushed) {
		rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
		if (rc != 0)
			return rc;
	}|	if (0) {
		rc = 0;
	}|unit/test_journal"
	"hash|replicator/journal.c|		if (got != hashes[i]) {|		if (0 \&\& got != hashes[i]) {|unit/test_journal integ/030"
	"ack|replicator/recv_epoch.c|			if (!r \&\& k->durable)
				r = k->durable(x);|			(void)0;|integ/031 integ/034 integ/030"
	"generation|replicator/recv_check.c|	if (v->have_map \&\& v->map.generation > h->generation)|	if (0 \&\& v->have_map \&\& v->map.generation > h->generation)|unit/test_recv_check integ/033"
	"uncommitted|replicator/journal.c|	case JOURNAL_OPEN:
		/* Never committed|	case JOURNAL_OPEN:
		rc = jrn_apply(j, on_block, ctx, \&out->replayed_blocks);
		if (rc != 0)
			return rc;
		out->replayed_epoch = j->sb.epoch;
		break;
		/* Never committed|unit/test_journal"
)

want=("$@")
git -C "$ROOT" worktree add --detach "$WORK/tree" HEAD >/dev/null 2>&1
printf '%-12s %-26s %-8s %s\n' MUTATION FILE RESULT "CAUGHT BY"
for m in "${MUTATIONS[@]}"; do
	IFS='|' read -r name file text repl tests <<<"$(printf '%s' "$m" | tr '\n' '\001')"
	text=$(printf '%s' "$text" | tr '\001' '\n' | sed 's/\\&/\&/g')
	repl=$(printf '%s' "$repl" | tr '\001' '\n' | sed 's/\\&/\&/g')
	tests=$(printf '%s' "$tests" | tr '\001' ' ')
	if [ ${#want[@]} -gt 0 ] && [[ " ${want[*]} " != *" $name "* ]]; then continue; fi
	git -C "$WORK/tree" checkout -q -- .
	if ! python3 - "$WORK/tree/$file" "$text" "$repl" <<'PY'; then
import sys
p, old, new = sys.argv[1:4]
s = open(p).read()
if s.count(old) != 1:
    sys.exit(1)
open(p, "w").write(s.replace(old, new))
PY
		printf '%-12s %-26s %-8s %s\n' "$name" "$file" stale "-"
		continue
	fi
	if ! make -C "$WORK/tree" BUILD=build-seed -j"$(nproc)" all \
		$(for t in $tests; do [[ $t == unit/* ]] && echo "build-seed/tests/${t}"; done) \
		>"$WORK/$name.build" 2>&1; then
		printf '%-12s %-26s %-8s %s\n' "$name" "$file" "no-build" "(see $WORK/$name.build)"
		continue
	fi
	caught=()
	for t in $tests; do
		if [[ $t == unit/* ]]; then
			"$WORK/tree/build-seed/tests/$t" >"$WORK/$name.${t#unit/}.log" 2>&1 || caught+=("$t")
		else
			(cd "$WORK/tree" && BUILD=build-seed TESTS="${t#integ/}" bash tests/run.sh) \
				>"$WORK/$name.${t#integ/}.log" 2>&1 || caught+=("$t")
		fi
	done
	if [ ${#caught[@]} -gt 0 ]; then
		printf '%-12s %-26s %-8s %s\n' "$name" "$file" caught "${caught[*]}"
	else
		printf '%-12s %-26s %-8s %s\n' "$name" "$file" MISSED "ran: $tests"
	fi
done
