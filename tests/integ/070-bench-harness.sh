#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The benchmark harness works end to end, far enough: bench/run.sh with QUICK=1,
# RUNS=1 and three cheap scenarios (engine, 21-blocksize, 22-mapmem: bars, lines
# and a plain table), chosen with the list form of SCENARIOS, into a scratch
# RESULTS_DIR and BENCH_WORK, with this build's binaries (build/ or build-asan/).
# Checks: exit 0; report.md has the summary and each scenario's section; results.json
# parses and has exactly those scenarios, measured; the plots are PNGs (when gnuplot
# is installed). Also: an unknown SCENARIOS word is refused before anything runs,
# and a plot without gnuplot is a note, not a failure. Timings are not checked.
set -euo pipefail
# shellcheck source=tests/integ/lib.sh
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT
REPO=$(cd "$(dirname "$0")/../.." && pwd)
need_root
command -v fio >/dev/null || skip "fio is not installed (make deps)"
command -v python3 >/dev/null || skip "python3 is not installed"
: "${BUILD_DIR:?run through tests/run.sh}"
[ -x "$BUILD_DIR/kfio-bench" ] || fail "$BUILD_DIR/kfio-bench not built"
want=(engine 21-blocksize 22-mapmem)

bench() { # bench RESULTS_SUBDIR SCENARIOS: bench/run.sh, its exit code in BENCH_RC
	BENCH_RC=0
	env QUICK=1 RUNS=1 SECONDS_RAND=1 RESULTS_DIR="$TMP/$1" BENCH_WORK="$TMP/work" \
		SCENARIOS="$2" BUILD="${BUILD_DIR#"$REPO"/}" KFIO_BENCH="$BUILD_DIR/kfio-bench" \
		PVREPL="$PVREPL" TEST_TOOL="$TEST_TOOL" \
		timeout --kill-after=10 85 bash "$REPO/bench/run.sh" >"$TMP/$1.out" 2>&1 ||
		BENCH_RC=$?
}

# An unknown word in SCENARIOS: exit 2, nothing run.
bench typo "engine,no-such-scenario"
[ "$BENCH_RC" -eq 2 ] || { cat "$TMP/typo.out"; fail "SCENARIOS typo: exit $BENCH_RC, want 2"; }
grep -q "no-such-scenario" "$TMP/typo.out" || fail "the typo is not named"
[ ! -e "$TMP/typo/engine.log" ] || fail "a scenario ran despite the typo"

# The run: space- and comma-separated, a full name and parts of names.
start=$EPOCHREALTIME
bench results "engine 21-block,22-mapmem"
secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "bench/run.sh: exit $BENCH_RC in $secs s"
if [ "$BENCH_RC" -ne 0 ]; then
	tail -n 40 "$TMP/results.out"
	fail "bench/run.sh exited $BENCH_RC"
fi
R=$TMP/results
report=$R/report.md
[ -s "$report" ] || fail "no report.md"
for s in "${want[@]}"; do
	[ -s "$R/$s.md" ] || fail "no $s.md"
	grep -qxF "$(head -n 1 "$R/$s.md")" "$report" || fail "report.md lacks the $s section"
	grep -qE "^\| $s \| measured \| [0-9.]+ \|$" "$report" || fail "report.md summary lacks $s"
done
grep -qE '^\| \*\*total\*\* \|' "$report" || fail "report.md has no total wall time"
for s in 20-scan 30-replication; do
	[ ! -e "$R/$s.log" ] || fail "$s ran, SCENARIOS did not select it"
done

python3 - "$R/results.json" "${want[@]}" <<'EOF' || fail "results.json: see above"
import json, sys
r = json.load(open(sys.argv[1]))
want = sys.argv[2:]
assert r["quick"] is True, r["quick"]
assert r["commit"] and r["date"] and r["machine"]["nproc"] >= 1, r
assert r["wall_seconds"] > 0, r["wall_seconds"]
got = r["scenarios"]
assert sorted(got) == sorted(want), f"scenarios {sorted(got)}, want {sorted(want)}"
for name in want:
    s = got[name]
    assert s["status"] == "measured" and s["exit"] == 0, (name, s["status"], s["exit"])
    assert s["wall_seconds"] > 0, (name, s["wall_seconds"])
    assert isinstance(s["results"], dict) and s["results"], f"{name}: no results"
assert got["engine"]["results"]["config"]["runs"] == 1
assert "seqread" in got["engine"]["results"]["workloads"]
print("results.json: ok")
EOF

pngs=(engine-seqread engine-randread 21-blocksize-sent 21-blocksize-map)
for p in "${pngs[@]}"; do
	if [ ! -s "$R/$p.dat" ] || [ ! -s "$R/$p.gp" ]; then fail "$p.dat or $p.gp missing"; fi
done
if command -v gnuplot >/dev/null; then
	for p in "${pngs[@]}"; do
		[ "$(head -c 8 "$R/$p.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
			fail "$p.png is missing or not a PNG"
		grep -qF "($p.png)" "$report" || fail "report.md does not show $p.png"
	done
	echo "plots: ${#pngs[@]} PNGs"
else
	echo "plots: gnuplot is not installed; PNGs not checked"
fi

# Without gnuplot a plot is a note on stderr and a line in the report, never a failure.
mkdir -p "$TMP/nognu/bin" "$TMP/nognu/out"
for t in awk cat cut mv rm timeout tr; do ln -s "$(command -v "$t")" "$TMP/nognu/bin/$t"; done
out=$(
	set -euo pipefail
	RESULTS_DIR=$TMP/nognu/out
	. "$REPO/bench/plot.sh"
	PATH=$TMP/nognu/bin
	bench_plot_bars t "t" "y" "$R/engine-seqread.dat" 2>"$TMP/nognu/err"
	bench_plot_lines l "t" "x" "y" "$R/21-blocksize-sent.dat" 2>>"$TMP/nognu/err"
	bench_plot_md t "t"
)
grep -q 'gnuplot is not installed' "$TMP/nognu/err" || fail "no note without gnuplot"
if [ -e "$TMP/nognu/out/t.png" ] || [ ! -s "$TMP/nognu/out/t.dat" ] ||
	[ ! -s "$TMP/nognu/out/l.gp" ]; then
	fail "without gnuplot: want .dat and .gp, no .png"
fi
[[ $out == *"not drawn"* ]] || fail "bench_plot_md without a PNG: '$out'"
echo "ok"
