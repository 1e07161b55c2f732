#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every unit test binary and every numbered integration script.
# Exit 0 = pass, 77 = skipped (the test printed why), anything else = fail.
# Ends with the line CI reads: "N passed, N failed, N skipped".
# TESTS="pattern" runs only the tests whose name contains pattern.
# SUITE=fault runs the unit tests and only the integration scripts marked
# "# suite: fault" (crashes, refusals, bad input: the paths a sanitizer should
# see); make check runs that suite under ASan + UBSan, make test runs all once.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export PVREPL="$PWD/$BUILD/pvrepl" TEST_TOOL="$PWD/$BUILD/test-tool" BUILD_DIR="$PWD/$BUILD"
logdir="$BUILD/test-logs"
mkdir -p "$logdir"

pass=0 fail=0 skip=0 failed=()
run_one() {
	local name=$1; shift
	if [ -n "${TESTS:-}" ] && [[ $name != *"$TESTS"* ]]; then return; fi
	local log="$logdir/$name.log" start rc
	mkdir -p "$(dirname "$log")"
	start=$(date +%s.%N)
	timeout --kill-after=10 "${TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1
	rc=$?
	local secs
	secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS  %-40s %6ss\n' "$name" "$secs" ;;
	77) skip=$((skip + 1)); printf 'SKIP  %-40s %s\n' "$name" "$(tail -n 1 "$log")" ;;
	*) fail=$((fail + 1)); failed+=("$name")
	   printf 'FAIL  %-40s %6ss (exit %d)\n' "$name" "$secs" "$rc"
	   sed 's/^/      | /' "$log" | tail -n 40 ;;
	esac
}

for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	case $t in *.o|*.d) continue ;; esac
	run_one "unit/$(basename "$t")" "$t"
done
for t in tests/integ/[0-9][0-9][0-9]-*.sh; do
	[ -e "$t" ] || continue
	if [ "${SUITE:-all}" = fault ] && ! grep -q '^# suite: fault' "$t"; then continue; fi
	run_one "integ/$(basename "$t" .sh)" bash "$t"
done

[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]} (logs in $logdir/)"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
