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
# Each scenario's output is also kept in $RESULTS_DIR/<name>.log. Plots: the
# functions of bench/plot.sh (sourced by scenarios/common.sh) draw <name>-*.png.
#
# report.md starts with a summary table (each scenario's status and wall seconds,
# and the total), then each scenario's Markdown in run order. results.json joins
# the run: commit, dirty (uncommitted changes), date, quick, machine,
# wall_seconds, and "scenarios", an object keyed by scenario name: {status:
# measured|skipped|failed, exit, wall_seconds, reason (skipped: the last line it
# printed), results: the content of <name>.json, or null}.
#
# env: BUILD (build), QUICK (0), RESULTS_DIR (bench/results/<UTC timestamp>/),
#      BENCH_WORK (bench/work/), SCENARIOS="a b,c" runs only the scenarios whose
#      name contains one of the space- or comma-separated words ("engine 22-mapmem",
#      "20-,21-"); a word that matches no scenario is an error (exit 2).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
export BUILD=${BUILD:-build}
export QUICK=${QUICK:-0}

all=(bench/engine.sh)
for s in bench/scenarios/[0-9][0-9]-*.sh; do
	[ -e "$s" ] && all+=("$s")
done

# SCENARIOS: names or parts of names, separated by spaces or commas.
SCENARIOS=${SCENARIOS:-}
read -r -a wanted <<<"${SCENARIOS//,/ }"
scenarios=()
for s in "${all[@]}"; do
	name=$(basename "$s" .sh)
	pick=$((${#wanted[@]} == 0))
	for w in "${wanted[@]}"; do
		[[ $name == *"$w"* ]] && pick=1
	done
	[ "$pick" = 1 ] && scenarios+=("$s")
done
for w in "${wanted[@]}"; do
	hit=0
	for s in "${scenarios[@]}"; do
		[[ $(basename "$s" .sh) == *"$w"* ]] && hit=1
	done
	if [ "$hit" = 0 ]; then
		names_all=$(for s in "${all[@]}"; do basename "$s" .sh; done | tr '\n' ' ')
		echo "bench: SCENARIOS: '$w' matches no scenario (there are: ${names_all% })" >&2
		exit 2
	fi
done

RESULTS_DIR=${RESULTS_DIR:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
BENCH_WORK=${BENCH_WORK:-bench/work}
mkdir -p "$RESULTS_DIR" "$BENCH_WORK" || exit 1
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
BENCH_WORK=$(cd "$BENCH_WORK" && pwd)
export RESULTS_DIR BENCH_WORK

report=$RESULTS_DIR/report.md
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
dirty=0
if [ "$commit" != uncommitted ] && ! git diff --quiet HEAD -- 2>/dev/null; then
	dirty=1
fi
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
header="# pvrepl benchmark report

$date, commit $commit$([ "$dirty" = 1 ] && echo " with uncommitted changes")$(
	[ "$QUICK" = 1 ] && echo ", QUICK=1 (reduced sizes)")."
# Each section goes to report.md as soon as its scenario ends (a run cut short
# keeps what it measured); at the end the summary is put in front of them.
body=$RESULTS_DIR/.report-body.$$
trap 'rm -f "$body" "$report.tmp.$$"' EXIT
printf '%s\n\n' "$header" >"$report"
: >"$body"

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)
failed=()
runs=() # "name status exit seconds" per scenario run, for the summary and results.json
for s in "${scenarios[@]}"; do
	name=$(basename "$s" .sh)
	log=$RESULTS_DIR/$name.log
	echo "bench: $name" >&2
	t0=$(now)
	bash "$s" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	secs=$(since "$t0")
	case $rc in
	0)
		status=measured
		if [ -f "$RESULTS_DIR/$name.md" ]; then
			section=$(cat "$RESULTS_DIR/$name.md")
		else
			section=$(printf '## %s\n\nno %s.md written (see %s.log)' "$name" "$name" "$name")
		fi
		;;
	77)
		status=skipped
		section=$(printf '## %s\n\nskipped: %s' "$name" "$(tail -n 1 "$log")")
		;;
	*)
		status=failed
		failed+=("$name")
		section=$(printf '## %s\n\nfailed (exit %d), see %s.log' "$name" "$rc" "$name")
		;;
	esac
	printf '%s\n\n' "$section" | tee -a "$body" >>"$report"
	echo "bench: $name: $status, $secs s" >&2
	runs+=("$name $status $rc $secs")
done
total=$(since "$t_start")

# report.md: the header, the summary, the sections.
{
	printf '%s\n\n' "$header"
	echo "| scenario | status | wall s |"
	echo "|---|---|---:|"
	for r in "${runs[@]}"; do
		read -r n st _ sec <<<"$r"
		echo "| $n | $st | $sec |"
	done
	echo "| **total** | ${#runs[@]} run, ${#failed[@]} failed | **$total** |"
	echo
	cat "$body"
} >"$report.tmp.$$" && mv "$report.tmp.$$" "$report"

# results.json: the run, and every scenario's <name>.json under its name.
if command -v python3 >/dev/null; then
	mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	fs=$(findmnt -n -o FSTYPE,SOURCE -T "$BENCH_WORK" 2>/dev/null | tr -s ' ')
	python3 - "$RESULTS_DIR" "$commit" "$dirty" "$date" "$QUICK" "$total" \
		"$(nproc)" "$mem_kib" "$cpu" "$(uname -r)" "$fs" "$(cut -d' ' -f1-3 /proc/loadavg)" \
		"${runs[@]}" <<'EOF' || echo "bench: could not write results.json" >&2
import json, os, sys

rd, commit, dirty, date, quick, total, nproc, mem_kib, cpu, kernel, fs, load = sys.argv[1:13]
scenarios = {}
for run in sys.argv[13:]:
    name, status, rc, secs = run.split()
    entry = {"status": status, "exit": int(rc), "wall_seconds": float(secs), "results": None}
    if status == "skipped":
        with open(os.path.join(rd, f"{name}.log"), errors="replace") as f:
            entry["reason"] = (f.read().rstrip("\n").split("\n") or [""])[-1]
    path = os.path.join(rd, f"{name}.json")
    if status == "measured" and os.path.exists(path):
        try:
            with open(path) as f:
                entry["results"] = json.load(f)
        except ValueError as e:
            entry["results_error"] = f"{name}.json: {e}"
    scenarios[name] = entry
result = {
    "commit": commit,
    "dirty": dirty == "1",
    "date": date,
    "quick": quick == "1",
    "machine": {"nproc": int(nproc), "mem_gib": round(int(mem_kib) / 1048576, 1), "cpu": cpu,
                "kernel": kernel, "filesystem": fs, "loadavg_at_end": load},
    "wall_seconds": float(total),
    "scenarios": scenarios,
}
tmp = os.path.join(rd, f"results.json.tmp.{os.getpid()}")
with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(rd, "results.json"))
EOF
else
	echo "bench: python3 is not installed; no results.json" >&2
fi

echo "bench: report in ${report#"$REPO"/}, ${total} s"
if [ ${#failed[@]} -ne 0 ]; then
	echo "bench: failed: ${failed[*]}" >&2
	exit 1
fi
