// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl status [--state-dir DIR] [-o json] [--check]`: the state of every volume
 * under DIR, on either side, read from the `status` records the daemons keep (so
 * it works while they run). DIR may be a sender's state directory, a receiver's
 * (one subdirectory per volume) or one receiver volume's directory.
 * --check exits 0 when every volume is replicating within its RPO, 1 when one is
 * degraded (initial sync, disconnected, paused, lag over the RPO, writes the
 * tracker missed found by the last full scan), 2 when one is
 * critical (error, split brain, its daemon not running: a stale record) or no
 * volume is found.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "out.h"
#include "status.h"

#define STATUS_DIR_DEFAULT "/var/lib/pvrepl"
#define STATUS_VOLUMES_MAX 256u

enum check_level {
	CHECK_OK = 0,
	CHECK_DEGRADED = 1,
	CHECK_CRITICAL = 2,
};

static void status_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl status [--state-dir DIR] [-o text|json] [--check] [--rpo DURATION]\n\n"
		"Shows every volume under DIR (default %s), source or standby side.\n\n"
		"  -s, --state-dir DIR  a sender's state directory, a receiver's, or one of its\n"
		"                       volumes' directories\n"
		"  -o, --output FMT     text (a table, default) or json\n"
		"      --check          exit 0 ok, 1 degraded, 2 critical (for scripts and probes);\n"
		"                       critical too when the daemon that keeps a record has\n"
		"                       stopped (no heartbeat for %ds): its state is unknown\n"
		"      --rpo DURATION   degraded when a volume's consistent point is older (on\n"
		"                       either side; default: the sender's own --rpo)\n"
		"  -h, --help           this help\n",
		STATUS_DIR_DEFAULT, STATUS_STALE_S);
}

/* --rpo: the lag bound for every volume (0: each record's own, the sender's). */
static double g_rpo_seconds;

static double lag_of(const struct status_record *s, int64_t now)
{
	return s->consistent_point_ms ? (double)now - (double)s->consistent_point_ms / 1e3 : -1;
}

/* The state as status shows it: "unknown" once the daemon that wrote it is gone. */
static const char *state_label(const struct status_record *s, int64_t now)
{
	return status_writer_gone(s, now) ? "unknown" : status_state_name(s->state);
}

/* "the receiver is not running (last heard of at T)" into buf. */
static const char *gone_text(const struct status_record *s, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)s->heartbeat_unix;
	char ts[32] = "?";

	if (gmtime_r(&t, &tm))
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(
		buf, len,
		"the %s (pid %u) is not running: its last heartbeat was at %s, when the volume was %s",
		s->role == STATUS_ROLE_PRIMARY ? "sender" : "receiver", s->writer_pid, ts,
		status_state_name(s->state));
	return buf;
}

static enum check_level level_of(const struct status_record *s, int64_t now, const char **why)
{
	double lag = lag_of(s, now), rpo = g_rpo_seconds ? g_rpo_seconds : s->rpo_target_seconds;

	/* A record nobody keeps any more says nothing about now. */
	if (status_writer_gone(s, now)) {
		*why = "NotRunning";
		return CHECK_CRITICAL;
	}
	switch (s->state) {
	case STATUS_ERROR:
		*why = "Error";
		return CHECK_CRITICAL;
	case STATUS_SPLIT_BRAIN:
		*why = "SplitBrain";
		return CHECK_CRITICAL;
	case STATUS_INITIAL_SYNC:
		*why = "InitialSync";
		return CHECK_DEGRADED;
	case STATUS_DISCONNECTED:
		*why = "Disconnected";
		return CHECK_DEGRADED;
	case STATUS_PAUSED:
		*why = "Paused";
		return CHECK_DEGRADED;
	default:
		break;
	}
	if (rpo > 0 && lag > rpo) {
		*why = "RPOExceeded";
		return CHECK_DEGRADED;
	}
	/* The standby was wrong until that full scan repaired it: a writer the
	 * tracker cannot see is at work, and tracked epochs will miss it again. */
	if (s->tracker_missed_blocks) {
		*why = "TrackerMissedWrites";
		return CHECK_DEGRADED;
	}
	*why = "Replicating";
	return CHECK_OK;
}

static void rfc3339(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t) {
		snprintf(buf, len, "-");
		return;
	}
	/* A time from disk may be out of any calendar: said so, never garbage. */
	if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "invalid (%" PRId64 ")", t);
}

static void age(int64_t t, int64_t now, char *buf, size_t len)
{
	/* t is from disk: the difference is taken where it cannot overflow */
	int64_t d = t < now - (INT64_MAX / 2) || t > now + (INT64_MAX / 2) ? -1 : now - t;

	if (!t)
		snprintf(buf, len, "never");
	else if (d < 120)
		snprintf(buf, len, "%" PRId64 "s ago", d < 0 ? 0 : d);
	else if (d < 7200)
		snprintf(buf, len, "%" PRId64 "m ago", d / 60);
	else
		snprintf(buf, len, "%" PRId64 "h ago", d / 3600);
}

static void condition(struct out *v, const char *type, bool status, const char *reason,
		      const char *message, int64_t since)
{
	struct out *c = out_new();
	char ts[32];

	if (!c)
		return;
	rfc3339(since, ts, sizeof(ts));
	out_str(c, "type", "Type", type);
	out_str(c, "status", "Status", status ? "True" : "False");
	out_str(c, "reason", "Reason", reason);
	out_str(c, "message", "Message", message);
	out_str(c, "lastTransitionTime", "Since", since ? ts : NULL);
	out_append(v, "conditions", c);
}

/* Collects the status records of DIR: itself, or its subdirectories. */
static unsigned collect(const char *dir, struct status_record *recs, unsigned max, int *bad)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	if (status_load(&recs[0], dir) == 0)
		return 1;
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		char sub[4200];
		int rc;

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		rc = status_load(&recs[n], sub);
		if (rc == 0)
			n++;
		else if (rc == -EBADMSG)
			(*bad)++;
	}
	closedir(d);
	return n;
}

static int cmp_rec(const void *a, const void *b)
{
	const struct status_record *x = a, *y = b;

	return strcmp(x->volume, y->volume);
}

static void print_table(const struct status_record *recs, unsigned n, int64_t now)
{
	char lag[32], last[32], oos[32];

	printf("%-20s %-9s %-12s %6s %8s %-10s %11s  %s\n", "VOLUME", "ROLE", "STATE", "EPOCH",
	       "LAG", "LAST SYNC", "OUT OF SYNC", "PEER");
	for (unsigned i = 0; i < n; i++) {
		const struct status_record *s = &recs[i];
		double l = lag_of(s, now);

		if (l < 0)
			snprintf(lag, sizeof(lag), "-");
		else
			snprintf(lag, sizeof(lag), "%.0fs", l);
		age(s->last_success_unix, now, last, sizeof(last));
		out_human_bytes(s->out_of_sync_bytes, oos, sizeof(oos));
		printf("%-20s %-9s %-12s %6" PRIu64 " %8s %-10s %11s  %s\n", s->volume,
		       status_role_name(s->role), state_label(s, now), s->epoch, lag, last, oos,
		       s->peer[0] ? s->peer : "-");
		if (status_writer_gone(s, now)) {
			char gone[200];

			printf("  %s\n", gone_text(s, gone, sizeof(gone)));
		}
		if (s->last_error[0] && s->state != STATUS_REPLICATING)
			printf("  last error: %s\n", s->last_error);
		if (s->tracking == STATUS_TRACKING_OFF)
			printf("  write tracking off: %s\n", s->scan_note);
		else if (s->tracking == STATUS_TRACKING_BPF && !s->last_scan_tracked)
			printf("  last epoch was a full scan: %s\n", s->scan_note);
		if (s->tracker_missed_blocks)
			printf("  the last full scan found %" PRIu64
			       " changed blocks the write tracker missed\n",
			       s->tracker_missed_blocks);
	}
}

static int print_json(const struct status_record *recs, unsigned n, int64_t now)
{
	struct out *root = out_new();
	char ts[32], msg[320];
	int rc;

	if (!root)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const struct status_record *s = &recs[i];
		struct out *v = out_new();
		const char *why;
		enum check_level lvl = level_of(s, now, &why);
		double lag = lag_of(s, now);

		if (!v)
			break;
		out_str(v, "volume", "Volume", s->volume);
		out_str(v, "role", "Role", status_role_name(s->role));
		out_str(v, "state", "State", state_label(s, now));
		out_str(v, "lastKnownState", "Last known state", status_state_name(s->state));
		out_u64(v, "epoch", "Epoch", s->epoch, OUT_UNIT_NONE);
		if (lag >= 0)
			out_f64(v, "lagSeconds", "Lag", lag, OUT_UNIT_SECONDS);
		else
			out_str(v, "lagSeconds", "Lag", NULL);
		rfc3339(s->last_success_unix, ts, sizeof(ts));
		out_str(v, "lastSyncTime", "Last sync", s->last_success_unix ? ts : NULL);
		out_f64(v, "lastSyncDuration", "Last sync duration",
			(double)s->last_sync_duration_ms / 1e3, OUT_UNIT_SECONDS);
		out_u64(v, "lastSyncBytes", "Last sync bytes", s->last_sync_bytes, OUT_UNIT_BYTES);
		rfc3339(s->consistent_point_ms / 1000, ts, sizeof(ts));
		out_str(v, "consistentPointTime", "Consistent point",
			s->consistent_point_ms ? ts : NULL);
		out_u64(v, "outOfSyncBytes", "Out of sync", s->out_of_sync_bytes, OUT_UNIT_BYTES);
		out_str(v, "peer", "Peer", s->peer[0] ? s->peer : NULL);
		out_str(v, "lastError", "Last error", s->last_error[0] ? s->last_error : NULL);
		if (s->tracking != STATUS_TRACKING_UNKNOWN) {
			out_str(v, "writeTracking", "Write tracking",
				s->tracking == STATUS_TRACKING_BPF ? "bpf" : "off");
			out_str(v, "lastScan", "Last scan",
				s->last_scan_tracked ? "tracked" : "full");
			out_str(v, "lastScanReason", "Why", s->scan_note[0] ? s->scan_note : NULL);
			out_u64(v, "trackerMissedBlocks", "Blocks the tracker missed",
				s->tracker_missed_blocks, OUT_UNIT_NONE);
		}
		if (s->daemon) {
			rfc3339(s->heartbeat_unix, ts, sizeof(ts));
			out_str(v, "heartbeatTime", "Heartbeat", ts);
			out_u64(v, "writerPid", "Written by pid", s->writer_pid, OUT_UNIT_NONE);
		}
		if (status_writer_gone(s, now))
			gone_text(s, msg, sizeof(msg));
		else
			snprintf(msg, sizeof(msg), "%s: %s", status_state_name(s->state),
				 s->last_error[0] && lvl != CHECK_OK ? s->last_error : "ok");
		condition(v, "Ready", lvl == CHECK_OK, why, msg, s->state_since_unix);
		/* True only for one instant of the source: an epoch read live is
		 * complete but may be torn (a database on it may not open). */
		if (s->consistent)
			out_str(v, "capture", "Captured by", status_capture_name(s->capture));
		else
			out_str(v, "capture", "Captured by", NULL);
		snprintf(msg, sizeof(msg),
			 "the standby holds one instant of the source (an epoch captured by %s)",
			 status_capture_name(s->capture));
		condition(
			v, "Consistent", s->consistent && s->crash_consistent,
			s->consistent ? (s->crash_consistent ? "CrashConsistent" : "LiveRead")
				      : "NoCompleteEpoch",
			s->consistent
				? (s->crash_consistent
					   ? msg
					   : "the standby holds a complete epoch read live, not one instant of the source: a database on it may be torn (--capture none, or nothing could capture the source: see the sender's capture_note)")
				: "no complete epoch yet",
			s->consistent_point_ms / 1000);
		out_append(root, "volumes", v);
	}
	if (n == 0)
		out_str(root, "message", "Message", "no volumes found");
	rc = out_print(root, OUT_JSON, stdout);
	out_free(root);
	return rc;
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "check", no_argument, NULL, 'c' },
		{ "rpo", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct status_record recs[STATUS_VOLUMES_MAX];
	const char *dir = STATUS_DIR_DEFAULT;
	enum out_format fmt = OUT_TEXT;
	bool check = false;
	int64_t now = time(NULL);
	unsigned n;
	int bad = 0, c, worst = CHECK_OK;

	while ((c = getopt_long(argc, argv, "s:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			dir = optarg;
			break;
		case 'o':
			if (cli_opt_output(optarg, &fmt))
				return CLI_EXIT_USAGE;
			break;
		case 'c':
			check = true;
			break;
		case 'r': {
			uint64_t ms;

			if (cli_parse_duration(optarg, &ms) || ms < 1000) {
				cli_err("--rpo %s: expected a duration of at least 1s, e.g. 5m",
					optarg);
				return CLI_EXIT_USAGE;
			}
			g_rpo_seconds = (double)ms / 1e3;
			break;
		}
		case 'h':
			status_usage(stdout);
			return CLI_EXIT_OK;
		default:
			status_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	n = collect(dir, recs, STATUS_VOLUMES_MAX, &bad);
	qsort(recs, n, sizeof(recs[0]), cmp_rec);
	if (bad)
		cli_err("%d damaged status record(s) under %s were skipped", bad, dir);
	if (n == 0 && fmt == OUT_TEXT)
		cli_err("no volume status under %s (is a pvrepl sender or receiver using it?)",
			dir);
	if (fmt == OUT_JSON)
		print_json(recs, n, now);
	else if (n)
		print_table(recs, n, now);
	for (unsigned i = 0; i < n; i++) {
		const char *why;
		int l = level_of(&recs[i], now, &why);

		if (l > worst)
			worst = l;
	}
	if (!check)
		return n ? CLI_EXIT_OK : CLI_EXIT_NOINPUT;
	return n ? worst : CHECK_CRITICAL;
}
