#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the fuzz targets named as arguments (make fuzz passes those of
# tests/fuzz/fuzz_*.c; none: every one built), built under $BUILD/tests/fuzz,
# for FUZZ_SECONDS each, one after the other (one core each), from
# the seeds corpus-gen writes into $BUILD/tests/fuzz/corpus/<target>/, which
# also keeps what the fuzzer found interesting for the next run. A crash, a leak,
# a timeout or a sanitizer report leaves the input in
# $BUILD/tests/fuzz/artifacts/ and makes this script exit 1; replay it with
#   $BUILD/tests/fuzz/<target> <artifact>
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
dir="$BUILD/tests/fuzz"
mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/logs"
"$dir/corpus-gen" "$dir/corpus" || exit 1

[ $# -gt 0 ] || set -- $(cd "$dir" && for f in fuzz_*; do [ -x "$f" ] && [ "${f%.[od]}" = "$f" ] && echo "$f"; done)
failed=()
for name in "$@"; do
	bin="$dir/$name"
	[ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz)" >&2; exit 1; }
	log="$dir/logs/$name.log"
	mkdir -p "$dir/corpus/$name"
	start=$(date +%s)
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: the decoders
	# allocate little, so 1 GiB is a leak or an unbounded allocation.
	"$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=1024 \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-" \
		"$dir/corpus/$name" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if [ "$rc" -eq 0 ]; then
		printf 'PASS  %-14s %6s runs in %ss, corpus %s inputs\n' "$name" "${runs:-?}" "$secs" \
			"$(find "$dir/corpus/$name" -type f | wc -l)"
	else
		failed+=("$name")
		printf 'FAIL  %-14s exit %d after %ss (log %s)\n' "$name" "$rc" "$secs" "$log"
		grep -E 'ERROR|SUMMARY|Test unit written|assertion' "$log" | sed 's/^/      | /' | head -n 20
	fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in ${failed[*]} (inputs in $dir/artifacts/)"; exit 1; }
echo "fuzz: no crash in $FUZZ_SECONDS s per target"
