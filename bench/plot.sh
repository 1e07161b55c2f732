# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Plots for the benchmark reports: bash functions, sourced (bench/scenarios/common.sh
# and bench/engine.sh source this file; any scenario may). Each function draws one
# PNG with gnuplot into $RESULTS_DIR and keeps what it took next to it, so a reader
# can re-plot or restyle it:
#
#   $RESULTS_DIR/NAME.png   the chart, about 900x500 (pngcairo, else png)
#   $RESULTS_DIR/NAME.dat   the data as plotted: DATAFILE without comments and blank
#                           lines (itself a DATAFILE)
#   $RESULTS_DIR/NAME.gp    the gnuplot script: `cd $RESULTS_DIR && gnuplot NAME.gp`
#
# NAME is a file name without extension; per the run.sh contract a scenario names
# its plots <scenario>-<what> (e.g. 20-scan-rescan).
#
#   bench_plot_bars NAME TITLE YLABEL DATAFILE
#       a clustered bar chart: one cluster per row, one bar per value column, the
#       legend from the headers, the value printed over each bar (when they fit).
#   bench_plot_lines NAME TITLE XLABEL YLABEL DATAFILE
#       one line (with points) per y column against the numeric x column.
#       PLOT_LOGX / PLOT_LOGY (env, e.g. `PLOT_LOGX=2 bench_plot_lines ...`): a log
#       scale of that base on the axis (1 means 10); for block sizes, sweeps.
#   bench_plot_md NAME TITLE
#       prints the Markdown line for the report: `![TITLE](NAME.png)` when the PNG
#       exists, else a one-line note saying why it does not and where the data is.
#
# DATAFILE format (text, one record a line):
#   - the first line that is neither blank nor a `#` comment holds the column
#     headers, whitespace-separated: one per column, the label (bars) or x (lines)
#     column's included ("workload fio kfio"); headers for the value columns only
#     ("fio kfio") are accepted too. Headers become the legend.
#   - then one row per line: bars `LABEL V1 V2 ...`, lines `X Y1 Y2 ...`. A label
#     or header with spaces is written in double quotes ("seq read"); values are
#     numbers (1.5, 2e9), and `-` or NaN marks a missing value (no bar, no point).
#   - blank lines and lines starting with `#` are ignored.
#   Example: printf 'tool seqread randread\nfio 2.27 0.39\nkfio 2.53 0.35\n' >d.dat
#
# A benchmark never fails because of a plot: every function returns 0. When gnuplot
# is missing (make deps installs gnuplot-nox) or fails, it prints one line to
# stderr, writes the .dat and .gp anyway and draws nothing.

# _bench_plot_split LINE: the fields of LINE, one per line of output; a field in
# double quotes may hold spaces (the quotes are dropped).
_bench_plot_split() {
	local rest=$1 re='^[[:space:]]*("([^"]*)"|([^[:space:]]+))(.*)$'
	while [[ $rest =~ $re ]]; do
		if [ -n "${BASH_REMATCH[2]}" ] || [ "${BASH_REMATCH[1]:0:1}" = '"' ]; then
			printf '%s\n' "${BASH_REMATCH[2]}"
		else
			printf '%s\n' "${BASH_REMATCH[3]}"
		fi
		rest=${BASH_REMATCH[4]}
	done
}

# _bench_plot_q STRING: STRING as a gnuplot single-quoted string (no escapes
# inside single quotes; a quote is doubled).
_bench_plot_q() {
	printf "'%s'" "${1//\'/\'\'}"
}

# _bench_plot_join CLAUSE...: the plot command, one clause a line.
_bench_plot_join() {
	local i
	printf 'plot %s' "$1"
	for ((i = 2; i <= $#; i++)); do printf ', \\\n     %s' "${!i}"; done
	printf '\n'
}

# _bench_plot_hdr FIELD...: the header line as written in NAME.dat.
_bench_plot_hdr() {
	local f out=''
	for f in "$@"; do
		case $f in *[[:space:]]* | '') out+=" \"$f\"" ;; *) out+=" $f" ;; esac
	done
	printf '%s\n' "${out# }"
}

_bench_plot_note() {
	echo "plot: $*" >&2
}

# _bench_plot_prepare NAME DATAFILE: checks the environment and the data, writes
# $RESULTS_DIR/NAME.dat, and sets _BP_HEADERS (the value columns' titles), _BP_NCOL
# (value columns), _BP_NROW (rows) and _BP_TERM (the gnuplot terminal line, empty
# without gnuplot). Returns 1 (after a note) when there is nothing to plot.
_bench_plot_prepare() {
	local pname=$1 data=$2 line first=1 n hdr=() fields=() rows=()
	_BP_HEADERS=() _BP_NCOL=0 _BP_NROW=0 _BP_TERM=
	if [ -z "${RESULTS_DIR:-}" ] || [ ! -d "$RESULTS_DIR" ]; then
		_bench_plot_note "$pname: RESULTS_DIR is not a directory; nothing plotted"
		return 1
	fi
	case $pname in '' | */* | .*)
		_bench_plot_note "'$pname': want a plain file name; nothing plotted"
		return 1
		;;
	esac
	if [ ! -r "$data" ]; then
		_bench_plot_note "$pname: cannot read the data file '$data'; nothing plotted"
		return 1
	fi
	while IFS= read -r line || [ -n "$line" ]; do
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		if [ "$first" = 1 ]; then
			mapfile -t hdr < <(_bench_plot_split "$line")
			first=0
		else
			rows+=("$line")
		fi
	done <"$data"
	if [ ${#rows[@]} -eq 0 ]; then
		_bench_plot_note "$pname: no data rows in '$data'; nothing plotted"
		return 1
	fi
	mapfile -t fields < <(_bench_plot_split "${rows[0]}")
	n=$((${#fields[@]} - 1))
	if [ "$n" -lt 1 ]; then
		_bench_plot_note "$pname: rows of '$data' have no value column; nothing plotted"
		return 1
	fi
	if [ ${#hdr[@]} -eq "$n" ]; then
		_BP_HEADERS=("${hdr[@]}") # headers for the value columns only
	else
		_BP_HEADERS=("${hdr[@]:1}")
	fi
	# A missing header names the column by its number.
	while [ ${#_BP_HEADERS[@]} -lt "$n" ]; do
		_BP_HEADERS+=("column $((${#_BP_HEADERS[@]} + 2))")
	done
	_BP_NCOL=$n _BP_NROW=${#rows[@]}
	if ! {
		_bench_plot_hdr "${hdr[@]}"
		printf '%s\n' "${rows[@]}"
	} >"$RESULTS_DIR/$pname.dat.tmp.$$" 2>/dev/null ||
		! mv "$RESULTS_DIR/$pname.dat.tmp.$$" "$RESULTS_DIR/$pname.dat"; then
		rm -f "$RESULTS_DIR/$pname.dat.tmp.$$"
		_bench_plot_note "$pname: cannot write $RESULTS_DIR/$pname.dat; nothing plotted"
		return 1
	fi
	if ! command -v gnuplot >/dev/null 2>&1; then
		return 0
	fi
	if [ -z "${_BENCH_PLOT_TERM_CACHE:-}" ]; then
		if gnuplot -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1; then
			_BENCH_PLOT_TERM_CACHE="set terminal pngcairo size 900,500 noenhanced font 'sans,10'"
		else
			_BENCH_PLOT_TERM_CACHE="set terminal png size 900,500 noenhanced"
		fi
	fi
	_BP_TERM=$_BENCH_PLOT_TERM_CACHE
	return 0
}

# _bench_plot_common NAME TITLE: the script's preamble (terminal, output, style).
_bench_plot_common() {
	local pname=$1 title=$2
	cat <<EOF
# $pname: re-plot with \`gnuplot $pname.gp\` in this directory (data in $pname.dat).
${_BP_TERM:-set terminal pngcairo size 900,500 noenhanced font 'sans,10'}
set output '$pname.png'
set termoption noenhanced
set title $(_bench_plot_q "$title")
set datafile missing '-'
set border 3
set tics nomirror
set grid ytics lc rgb '#dddddd' lt 1 lw 1
set key top left horizontal Left reverse noautotitle
set linetype 1 lc rgb '#4c72b0' lw 2 pt 7
set linetype 2 lc rgb '#dd8452' lw 2 pt 5
set linetype 3 lc rgb '#55a868' lw 2 pt 9
set linetype 4 lc rgb '#c44e52' lw 2 pt 11
set linetype 5 lc rgb '#8172b3' lw 2 pt 13
set linetype 6 lc rgb '#937860' lw 2 pt 4
set linetype 7 lc rgb '#da8bc3' lw 2 pt 6
set linetype 8 lc rgb '#8c8c8c' lw 2 pt 8
set linetype cycle 8
EOF
}

# _bench_plot_draw NAME: runs NAME.gp in $RESULTS_DIR; on failure a note and no PNG.
_bench_plot_draw() {
	local pname=$1 err
	if [ -z "$_BP_TERM" ]; then
		_bench_plot_note "$pname: gnuplot is not installed (make deps); $pname.png not drawn," \
			"data and script in $RESULTS_DIR/$pname.{dat,gp}"
		return 0
	fi
	rm -f "$RESULTS_DIR/$pname.png"
	if ! err=$(cd "$RESULTS_DIR" && timeout --kill-after=5 60 gnuplot "$pname.gp" 2>&1 </dev/null) ||
		[ ! -s "$RESULTS_DIR/$pname.png" ]; then
		rm -f "$RESULTS_DIR/$pname.png"
		_bench_plot_note "$pname: gnuplot failed, $pname.png not drawn: $(printf '%s' "$err" | tr '\n' ' ' | cut -c1-300)"
		return 0
	fi
	[ -z "$err" ] || _bench_plot_note "$pname: gnuplot said: $(printf '%s' "$err" | tr '\n' ' ' | cut -c1-300)"
	return 0
}

bench_plot_bars() {
	if [ $# -ne 4 ]; then
		_bench_plot_note "usage: bench_plot_bars NAME TITLE YLABEL DATAFILE; nothing plotted"
		return 0
	fi
	local pname=$1 title=$2 ylabel=$3 data=$4 k n w x plot=() bar_px labels=1 rot=''
	_bench_plot_prepare "$pname" "$data" || return 0
	n=$_BP_NCOL
	# Clusters sit at x = 0, 1, 2 ...; bar k of n at x + (k - (n-1)/2) * w, with one
	# bar's width of gap between clusters. Values over the bars while they fit.
	w=$(awk -v n="$n" 'BEGIN { printf "%.6f", 1 / (n + 1) }')
	bar_px=$((780 / _BP_NROW / (n + 1)))
	if [ "$bar_px" -lt 9 ]; then
		labels=0
	elif [ "$bar_px" -lt 40 ]; then
		rot='rotate by 90 left offset 0,0.3'
	fi
	for ((k = 0; k < n; k++)); do
		x=$(awk -v k="$k" -v n="$n" -v w="$w" 'BEGIN { printf "%.6f", (k - (n - 1) / 2) * w }')
		plot+=("'$pname.dat' skip 1 using (\$0 + $x):$((k + 2)):($w) with boxes lt $((k + 1)) title $(_bench_plot_q "${_BP_HEADERS[k]}")")
		if [ "$labels" = 1 ]; then
			plot+=("'$pname.dat' skip 1 using (\$0 + $x):$((k + 2)):(fmt(column($((k + 2))))) with labels ${rot:-center offset 0,0.6} font ',8' notitle")
		fi
	done
	# The cluster's label, at its centre (invisible points carry the tic).
	plot+=("'$pname.dat' skip 1 using 0:(0):xtic(1) with points pt -1 ps 0 notitle")
	{
		_bench_plot_common "$pname" "$title"
		cat <<EOF
set ylabel $(_bench_plot_q "$ylabel")
set style fill solid 0.9 border lc rgb '#333333'
set xrange [-0.6:$_BP_NROW - 0.4]
set yrange [*<0:*]
set offsets 0, 0, graph 0.12, 0
set xtics scale 0
# Value labels: 3 significant digits, no exponent below a million.
fmt(v) = (v != v) ? '' : (abs(v) >= 1e6 ? sprintf('%.3g', v) : (abs(v) >= 100 ? sprintf('%.0f', v) : (abs(v) >= 10 ? sprintf('%.1f', v) : (abs(v) >= 1 ? sprintf('%.2f', v) : sprintf('%.3g', v)))))
EOF
		_bench_plot_join "${plot[@]}"
	} >"$RESULTS_DIR/$pname.gp"
	_bench_plot_draw "$pname"
	return 0
}

bench_plot_lines() {
	if [ $# -ne 5 ]; then
		_bench_plot_note "usage: bench_plot_lines NAME TITLE XLABEL YLABEL DATAFILE; nothing plotted"
		return 0
	fi
	local pname=$1 title=$2 xlabel=$3 ylabel=$4 data=$5 k plot=() logx=${PLOT_LOGX:-} logy=${PLOT_LOGY:-}
	_bench_plot_prepare "$pname" "$data" || return 0
	[ "$logx" = 1 ] && logx=10
	[ "$logy" = 1 ] && logy=10
	for ((k = 0; k < _BP_NCOL; k++)); do
		plot+=("'$pname.dat' skip 1 using 1:$((k + 2)) with linespoints lt $((k + 1)) title $(_bench_plot_q "${_BP_HEADERS[k]}")")
	done
	{
		_bench_plot_common "$pname" "$title"
		echo "set xlabel $(_bench_plot_q "$xlabel")"
		echo "set ylabel $(_bench_plot_q "$ylabel")"
		echo "set grid xtics lc rgb '#dddddd' lt 1 lw 1"
		echo "set offsets graph 0.02, graph 0.02, graph 0.05, 0"
		if [ -n "$logx" ]; then echo "set logscale x $logx"; fi
		if [ -n "$logy" ]; then echo "set logscale y $logy"; else echo "set yrange [*<0:*]"; fi
		_bench_plot_join "${plot[@]}"
	} >"$RESULTS_DIR/$pname.gp"
	_bench_plot_draw "$pname"
	return 0
}

bench_plot_md() {
	local pname=${1:-} title=${2:-}
	if [ -n "${RESULTS_DIR:-}" ] && [ -s "$RESULTS_DIR/$pname.png" ]; then
		printf '![%s](%s.png)\n' "$title" "$pname"
	else
		# shellcheck disable=SC2016 # the backquotes are Markdown
		printf '_Plot "%s" not drawn (is gnuplot installed? `make deps`); its data: %s.dat._\n' \
			"$title" "$pname"
	fi
	return 0
}
