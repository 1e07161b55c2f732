#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The `make bench` entry point: runs every benchmark scenario into one results
# directory and joins their Markdown into report.md. A benchmark, not a test:
# timings never pass or fail; a scenario fails only when it could not measure.
#
# Scenarios run in this order: bench/engine.sh, then bench/scenarios/NN-*.sh
# sorted by name. Adding one is dropping a script there. The contract:
#   in     env RESULTS_DIR (absolute, exists), BUILD, QUICK (1 = smaller, faster),
#          BENCH_WORK (absolute; scratch files a scenario may keep for reuse)
#   out    $RESULTS_DIR/<name>.md (joined into report.md), optionally <name>.json
#          and anything else under $RESULTS_DIR/<name>-*; <name> is the script's
#          base name without .sh
#   exit   0 measured, 77 skipped (the last line printed says why), else failed
# Each scenario's output is also kept in $RESULTS_DIR/<name>.log.
#
# env: BUILD (build), QUICK (0), RESULTS_DIR (bench/results/<UTC timestamp>/),
#      BENCH_WORK (bench/work/), SCENARIOS="pattern" runs only names containing it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
export BUILD=${BUILD:-build}
export QUICK=${QUICK:-0}
RESULTS_DIR=${RESULTS_DIR:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
BENCH_WORK=${BENCH_WORK:-bench/work}
mkdir -p "$RESULTS_DIR" "$BENCH_WORK" || exit 1
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
BENCH_WORK=$(cd "$BENCH_WORK" && pwd)
export RESULTS_DIR BENCH_WORK

scenarios=(bench/engine.sh)
for s in bench/scenarios/[0-9][0-9]-*.sh; do
	[ -e "$s" ] && scenarios+=("$s")
done

report=$RESULTS_DIR/report.md
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
{
	echo "# pvrepl benchmark report"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit$( [ "$QUICK" = 1 ] && echo ", QUICK=1 (reduced sizes)")."
	echo
} >"$report"

failed=()
for s in "${scenarios[@]}"; do
	name=$(basename "$s" .sh)
	if [ -n "${SCENARIOS:-}" ] && [[ $name != *"$SCENARIOS"* ]]; then
		continue
	fi
	log=$RESULTS_DIR/$name.log
	echo "bench: $name" >&2
	bash "$s" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	case $rc in
	0)
		if [ -f "$RESULTS_DIR/$name.md" ]; then
			cat "$RESULTS_DIR/$name.md" >>"$report"
		else
			printf '## %s\n\nno %s.md written (see %s.log)\n' "$name" "$name" "$name" >>"$report"
		fi
		;;
	77) printf '## %s\n\nskipped: %s\n' "$name" "$(tail -n 1 "$log")" >>"$report" ;;
	*)
		failed+=("$name")
		printf '## %s\n\nfailed (exit %d), see %s.log\n' "$name" "$rc" "$name" >>"$report"
		;;
	esac
	echo >>"$report"
done

echo "bench: report in ${report#"$REPO"/}"
if [ ${#failed[@]} -ne 0 ]; then
	echo "bench: failed: ${failed[*]}" >&2
	exit 1
fi
