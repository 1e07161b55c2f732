// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl send` (one epoch, then exit) and `pvrepl replicate` (epochs every
 * --interval until stopped). Both parse the same options into a sender_config;
 * the epoch itself is sender.c's. A failed epoch in `replicate` is retried with
 * exponential backoff; the next epoch always covers everything changed since the
 * last confirmed one, so there is no backlog to queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "metrics.h"
#include "netwatch.h"
#include "out.h"
#include "proto.h"
#include "sender.h"
#include "tls.h"

#define REPLICATE_BACKOFF_MS_MIN 500u
#define REPLICATE_BACKOFF_MS_MAX 30000u

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void send_usage(FILE *f, bool replicate)
{
	fprintf(f,
		"Usage: pvrepl %s --volume NAME --device DEV --state-dir DIR --peer HOST:PORT\n"
		"       %*s --tls-dir DIR [options]%s\n\n"
		"%s\n\n"
		"  -n, --volume NAME        the volume's name (the receiver maps it to a device)\n"
		"  -d, --device DEV         source block device or image file (only read)\n"
		"  -s, --state-dir DIR      the volume's map (the epoch the receiver confirmed)\n"
		"  -p, --peer HOST:PORT     the receiver\n"
		"  -t, --tls-dir DIR        tls.crt, tls.key and ca.crt (as Kubernetes mounts them)\n"
		"      --server-name NAME   name the receiver's certificate must carry\n"
		"                           (default: the host part of --peer)\n"
		"      --insecure-plaintext no TLS at all (tests only; the receiver must agree)\n"
		"  -b, --block-size N       block size for a new map (default %uk)\n"
		"      --timeout DURATION   network timeout (default %us)\n"
		"      --max-rate RATE      cap the replication traffic, bytes/s (e.g. 50M; kernel\n"
		"                           TCP pacing, TLS included)\n"
		"      --max-read-rate RATE cap the reads on the source device, bytes/s (e.g. 200M)\n"
		"      --progress MODE      auto, tty, log or none (default auto)\n"
		"  -o, --output FMT         text (default) or json%s\n"
		"  -h, --help               this help\n",
		replicate ? "replicate" : "send", replicate ? 9 : 4, "",
		replicate ? " --interval DURATION" : "",
		replicate
			? "Replicates the volume continuously: one epoch every --interval."
			: "Replicates one epoch: scans the device, streams the changed blocks, and\n"
			  "records the epoch once the receiver acknowledged it as durable.",
		SCAN_BLOCK_BYTES_DEFAULT / 1024, SENDER_TIMEOUT_MS_DEFAULT / 1000,
		replicate
			? "\n  -i, --interval DURATION  time between epoch starts (e.g. 30s, 5m)\n"
			  "      --rpo DURATION       report when the lag exceeds this target\n"
			  "      --max-epochs N       stop after N successful epochs (0: never)\n"
			  "      --metrics-addr HOST:PORT  serve Prometheus /metrics, /livez and\n"
			  "                           /readyz on this address (e.g. :9500)\n"
			  "      --no-netwatch        do not watch the route to the peer (by default a\n"
			  "                           lost route or link pauses at once, and its return\n"
			  "                           resumes without waiting for a backoff)\n"
			  "      --log-format FMT     text (default) or json log lines on stderr\n"
			  "  -v, --verbosity N        0 errors, 1 warnings, 2 info (default), 3 debug\n"
			  "      --termination-log F  write the reason of a fatal stop to F"
			: "");
}

struct send_opts {
	struct sender_config cfg;
	enum out_format fmt;
	uint64_t interval_ms;
	uint64_t rpo_ms;
	uint64_t max_epochs;
	bool no_netwatch;
	enum log_format log_format;
	int verbosity;
	const char *termination_log;
	const char *metrics_addr;
	char server_name[256];
};

static int parse_send_opts(int argc, char **argv, struct send_opts *o, bool replicate)
{
	enum {
		OPT_SERVER_NAME = 256,
		OPT_PLAINTEXT,
		OPT_TIMEOUT,
		OPT_PROGRESS,
		OPT_RPO,
		OPT_MAX_EPOCHS,
		OPT_MAX_RATE,
		OPT_MAX_READ_RATE,
		OPT_NO_NETWATCH,
		OPT_LOG_FORMAT,
		OPT_TERMINATION_LOG,
		OPT_METRICS_ADDR
	};
	static const struct option opts[] = {
		{ "volume", required_argument, NULL, 'n' },
		{ "device", required_argument, NULL, 'd' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "peer", required_argument, NULL, 'p' },
		{ "tls-dir", required_argument, NULL, 't' },
		{ "server-name", required_argument, NULL, OPT_SERVER_NAME },
		{ "insecure-plaintext", no_argument, NULL, OPT_PLAINTEXT },
		{ "block-size", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "output", required_argument, NULL, 'o' },
		{ "interval", required_argument, NULL, 'i' },
		{ "rpo", required_argument, NULL, OPT_RPO },
		{ "max-epochs", required_argument, NULL, OPT_MAX_EPOCHS },
		{ "max-rate", required_argument, NULL, OPT_MAX_RATE },
		{ "max-read-rate", required_argument, NULL, OPT_MAX_READ_RATE },
		{ "no-netwatch", no_argument, NULL, OPT_NO_NETWATCH },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "verbosity", required_argument, NULL, 'v' },
		{ "termination-log", required_argument, NULL, OPT_TERMINATION_LOG },
		{ "metrics-addr", required_argument, NULL, OPT_METRICS_ADDR },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "n:d:s:p:t:b:o:i:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o->cfg.volume = optarg;
			break;
		case 'd':
			o->cfg.device = optarg;
			break;
		case 's':
			o->cfg.state_dir = optarg;
			break;
		case 'p':
			o->cfg.peer = optarg;
			break;
		case 't':
			o->cfg.tls_dir = optarg;
			break;
		case OPT_SERVER_NAME:
			o->cfg.server_name = optarg;
			break;
		case OPT_PLAINTEXT:
			o->cfg.insecure_plaintext = true;
			break;
		case 'b':
			if (cli_opt_block_size(optarg, &o->cfg.block_bytes))
				return -EINVAL;
			break;
		case OPT_TIMEOUT:
			if (cli_parse_duration(optarg, &v) || v < 100 || v > 3600000) {
				cli_err("--timeout %s: expected a duration from 100ms to 1h",
					optarg);
				return -EINVAL;
			}
			o->cfg.timeout_ms = (unsigned)v;
			break;
		case OPT_PROGRESS:
			if (cli_opt_progress(optarg, &o->cfg.progress))
				return -EINVAL;
			break;
		case 'o':
			if (cli_opt_output(optarg, &o->fmt))
				return -EINVAL;
			break;
		case 'i':
		case OPT_RPO:
			if (!replicate) {
				cli_err("--%s is an option of 'pvrepl replicate'",
					c == 'i' ? "interval" : "rpo");
				return -EINVAL;
			}
			if (cli_parse_duration(optarg, &v) || v == 0) {
				cli_err("--%s %s: expected a duration such as 30s or 5m",
					c == 'i' ? "interval" : "rpo", optarg);
				return -EINVAL;
			}
			*(c == 'i' ? &o->interval_ms : &o->rpo_ms) = v;
			if (c == OPT_RPO)
				o->cfg.rpo_target_seconds = (double)v / 1e3;
			break;
		case OPT_MAX_EPOCHS:
			if (!replicate || cli_parse_size(optarg, &o->max_epochs)) {
				cli_err("--max-epochs needs 'pvrepl replicate' and a number");
				return -EINVAL;
			}
			break;
		case OPT_MAX_RATE:
		case OPT_MAX_READ_RATE:
			if (cli_parse_size(optarg, &v) || v < 4096) {
				cli_err("--%s %s: expected bytes per second, at least 4k (e.g. 50M)",
					c == OPT_MAX_RATE ? "max-rate" : "max-read-rate", optarg);
				return -EINVAL;
			}
			if (c == OPT_MAX_RATE)
				o->cfg.max_rate_bytes_per_s = v;
			else
				o->cfg.scan.max_read_bytes_per_s = v;
			break;
		case OPT_METRICS_ADDR:
			if (!replicate) {
				cli_err("--metrics-addr is an option of 'pvrepl replicate'");
				return -EINVAL;
			}
			o->metrics_addr = optarg;
			break;
		case OPT_LOG_FORMAT:
		case 'v':
		case OPT_TERMINATION_LOG:
			if (!replicate) {
				cli_err("--log-format, -v and --termination-log are options of 'pvrepl replicate'");
				return -EINVAL;
			}
			if (c == OPT_LOG_FORMAT && log_parse_format(optarg, &o->log_format)) {
				cli_err("--log-format %s: use text or json", optarg);
				return -EINVAL;
			}
			if (c == 'v' && (cli_parse_size(optarg, &v) || v > LOG_DEBUG)) {
				cli_err("-v %s: expected 0 (errors) to 3 (debug)", optarg);
				return -EINVAL;
			}
			if (c == 'v')
				o->verbosity = (int)v;
			if (c == OPT_TERMINATION_LOG)
				o->termination_log = optarg;
			break;
		case OPT_NO_NETWATCH:
			if (!replicate) {
				cli_err("--no-netwatch is an option of 'pvrepl replicate'");
				return -EINVAL;
			}
			o->no_netwatch = true;
			break;
		case 'h':
			send_usage(stdout, replicate);
			exit(CLI_EXIT_OK);
		default:
			return -EINVAL;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!o->cfg.volume || !o->cfg.device || !o->cfg.state_dir || !o->cfg.peer) {
		cli_err("%s needs --volume, --device, --state-dir and --peer",
			replicate ? "replicate" : "send");
		return -EINVAL;
	}
	if (!o->cfg.tls_dir && !o->cfg.insecure_plaintext) {
		cli_err("--tls-dir DIR is required (or --insecure-plaintext for tests)");
		return -EINVAL;
	}
	if (replicate && !o->interval_ms) {
		cli_err("replicate needs --interval DURATION");
		return -EINVAL;
	}
	if (!o->cfg.server_name) {
		/* The host part of HOST:PORT or [V6]:PORT. */
		const char *p = o->cfg.peer, *end;

		if (*p == '[') {
			p++;
			end = strchr(p, ']');
		} else {
			end = strrchr(p, ':');
		}
		snprintf(o->server_name, sizeof(o->server_name), "%.*s",
			 end ? (int)(end - p) : (int)strlen(p), p);
		o->cfg.server_name = o->server_name;
	}
	return 0;
}

/* lag_s < 0: not reported (send). */
static void print_result(const struct sender_result *r, const char *volume, enum out_format fmt,
			 double lag_s)
{
	struct out *o = out_new();

	if (!o)
		return;
	out_str(o, "volume", "Volume", volume);
	out_u64(o, "epoch", "Epoch", r->epoch, OUT_UNIT_NONE);
	out_str(o, "kind", "Kind",
		r->initial_sync ? (r->resumed ? "full sync (resumed)" : "full sync")
				: "incremental");
	out_u64(o, "block_size", "Block size", r->block_bytes, OUT_UNIT_BYTES);
	out_u64(o, "blocks_scanned", "Blocks scanned", r->blocks_scanned, OUT_UNIT_NONE);
	out_u64(o, "blocks_changed", "Blocks changed", r->blocks_changed, OUT_UNIT_NONE);
	out_u64(o, "blocks_zero", "Zero blocks (markers)", r->blocks_zero, OUT_UNIT_NONE);
	out_u64(o, "blocks_sent", "Blocks sent", r->blocks_sent, OUT_UNIT_NONE);
	out_u64(o, "payload_bytes", "Payload (before compression)", r->payload_bytes,
		OUT_UNIT_BYTES);
	out_u64(o, "data_bytes", "Payload after compression", r->data_bytes, OUT_UNIT_BYTES);
	out_u64(o, "wire_bytes", "Sent on the wire (TLS included)", r->wire_bytes, OUT_UNIT_BYTES);
	out_f64(o, "seconds", "Time", r->seconds, OUT_UNIT_SECONDS);
	out_f64(o, "scan_seconds", "Scan and stream time", r->scan_seconds, OUT_UNIT_SECONDS);
	out_f64(o, "cpu_seconds", "CPU time", r->cpu_seconds, OUT_UNIT_SECONDS);
	out_f64(o, "throttled_seconds", "Held back by --max-read-rate", r->throttled_seconds,
		OUT_UNIT_SECONDS);
	if (lag_s >= 0)
		out_f64(o, "lag_seconds", "Lag (age of the standby's data)", lag_s,
			OUT_UNIT_SECONDS);
	out_str(o, "result", "Result",
		r->outcome == SENDER_OK	       ? "ok"
		: r->outcome == SENDER_REFUSED ? "refused"
					       : "failed");
	out_str(o, "message", "Message", r->message);
	out_print(o, fmt, stdout);
	out_free(o);
}

static int exit_for(const struct sender_result *r)
{
	if (r->outcome == SENDER_OK)
		return CLI_EXIT_OK;
	if (r->outcome == SENDER_REFUSED)
		return r->refuse_reason == PROTO_REFUSE_CERTIFICATE ? CLI_EXIT_NOPERM
		       : r->refuse_reason == PROTO_REFUSE_BUSY	    ? CLI_EXIT_UNAVAILABLE
								    : CLI_EXIT_CONFIG;
	return cli_exit_for(r->err);
}

static void init_opts(struct send_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cfg.timeout_ms = SENDER_TIMEOUT_MS_DEFAULT;
	o->verbosity = LOG_INFO;
	scan_config_defaults(&o->cfg.scan);
}

int cmd_send(int argc, char **argv)
{
	struct send_opts o;
	struct sender_result r;

	init_opts(&o);
	if (parse_send_opts(argc, argv, &o, false)) {
		fputs("Run 'pvrepl send --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	sender_run_epoch(&o.cfg, &r);
	if (r.outcome != SENDER_OK)
		cli_err("%s", r.message);
	print_result(&r, o.cfg.volume, o.fmt, -1);
	return exit_for(&r);
}

/* m may be NULL (no --metrics-addr); each 200 ms step is a heartbeat. */
/*
 * The network watcher of `replicate`: a thread on netwatch's netlink socket. When
 * the route to the peer disappears or its link goes down it pauses the sender
 * at once (the epoch in flight is cut, not left to time out); when the route is
 * back it wakes the main loop, which reconnects without waiting for a backoff.
 */
struct watch {
	struct netwatch *nw;
	struct sender_abort *abort;
	const char *volume;
	const char *peer;
	pthread_t thread;
	int stop_fds[2];
	int wake; /* atomic: the route came back */
};

static int64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void watch_apply(struct watch *w)
{
	if (!netwatch_reachable(w->nw)) {
		sender_abort_now(w->abort, netwatch_reason(w->nw));
		log_msg(LOG_WARN, w->volume, w->peer, 0, "paused at %" PRId64 " ms (unix): %s",
			realtime_ms(), netwatch_reason(w->nw));
	} else {
		sender_abort_resume(w->abort);
		__atomic_store_n(&w->wake, 1, __ATOMIC_RELEASE);
		log_msg(LOG_INFO, w->volume, w->peer, 0, "resumed at %" PRId64 " ms (unix): %s",
			realtime_ms(), netwatch_reason(w->nw));
	}
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;

	if (!netwatch_reachable(w->nw))
		watch_apply(w);
	for (;;) {
		struct pollfd p[2] = { { .fd = netwatch_fd(w->nw), .events = POLLIN },
				       { .fd = w->stop_fds[0], .events = POLLIN } };
		bool changed = false;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents && netwatch_process(w->nw, &changed) < 0) {
			log_msg(LOG_WARN, w->volume, w->peer, 0,
				"network watch failed; relying on timeouts");
			break;
		}
		if (changed)
			watch_apply(w);
	}
	return NULL;
}

static int watch_start(struct watch *w, const char *peer, const char *volume,
		       struct sender_abort *abort)
{
	char err[256] = "";

	memset(w, 0, sizeof(*w));
	w->abort = abort;
	w->volume = volume;
	w->peer = peer;
	w->stop_fds[0] = w->stop_fds[1] = -1;
	if (netwatch_new(&w->nw, peer, err, sizeof(err))) {
		log_msg(LOG_WARN, volume, peer, 0,
			"cannot watch the route to %s (%s); a cut link is noticed by --timeout only",
			peer, err);
		return -1;
	}
	if (pipe2(w->stop_fds, O_CLOEXEC) || pthread_create(&w->thread, NULL, watch_main, w)) {
		netwatch_free(w->nw);
		w->nw = NULL;
		return -1;
	}
	return 0;
}

static void watch_stop(struct watch *w)
{
	if (!w->nw)
		return;
	if (write(w->stop_fds[1], "x", 1) == 1)
		pthread_join(w->thread, NULL);
	close(w->stop_fds[0]);
	close(w->stop_fds[1]);
	netwatch_free(w->nw);
	w->nw = NULL;
}

static bool woken(struct watch *w)
{
	return w && __atomic_exchange_n(&w->wake, 0, __ATOMIC_ACQ_REL);
}

static void alive_heartbeat(void *ctx)
{
	metrics_heartbeat(ctx);
}

/* Sleeps ms, in steps, until stopped or the watcher says the route is back. */
static void sleep_ms(uint64_t ms, struct metrics *m, struct watch *w)
{
	while (ms && !stop_requested && !woken(w)) {
		uint64_t step = ms < 200 ? ms : 200;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

		nanosleep(&ts, NULL);
		ms -= step;
		if (m)
			metrics_heartbeat(m);
	}
}

static enum metrics_error_kind error_kind(const struct sender_result *r)
{
	if (r->disconnected)
		return METRICS_ERROR_NETWORK;
	if (r->outcome == SENDER_REFUSED)
		return r->refuse_reason == PROTO_REFUSE_CERTIFICATE ? METRICS_ERROR_TLS
								    : METRICS_ERROR_PROTOCOL;
	if (strstr(r->message, "TLS") || strstr(r->message, "certificate"))
		return METRICS_ERROR_TLS;
	switch (-r->err) {
	case EPROTO:
	case EBADMSG:
		return METRICS_ERROR_PROTOCOL;
	case EIO:
	case ENOSPC:
	case ENOENT:
	case ENXIO:
		return METRICS_ERROR_IO;
	default:
		return METRICS_ERROR_OTHER;
	}
}

/* The same mapping as sender.c's record_status() for `pvrepl status`. */
static enum metrics_state epoch_state(const struct sender_result *r)
{
	if (r->outcome == SENDER_OK)
		return METRICS_STATE_REPLICATING;
	if (r->outcome == SENDER_REFUSED && r->refuse_reason == PROTO_REFUSE_SPLIT_BRAIN)
		return METRICS_STATE_SPLIT_BRAIN;
	if (r->disconnected)
		return METRICS_STATE_DISCONNECTED;
	if (r->initial_sync && r->outcome != SENDER_REFUSED)
		return METRICS_STATE_INITIAL_SYNC;
	return METRICS_STATE_ERROR;
}

static void tls_expiry_update(struct metrics_volume *mv, const char *tls_dir)
{
	char path[4096], err[256];
	int64_t not_after;

	if (!tls_dir)
		return;
	snprintf(path, sizeof(path), "%s/tls.crt", tls_dir);
	if (!tls_cert_expiry(path, &not_after, err, sizeof(err)))
		metrics_set(&mv->tls_certificate_expiry_timestamp_seconds, (double)not_after);
}

/* One epoch's outcome into the registry: per epoch, never per block. */
static void epoch_metrics(struct metrics_volume *mv, const struct send_opts *o,
			  const struct sender_result *r, double lag_s)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (r->size_bytes)
		metrics_set(&mv->volume_size_bytes, (double)r->size_bytes);
	metrics_add(&mv->changed_blocks_total, r->blocks_changed);
	metrics_add(&mv->payload_bytes_total, r->payload_bytes);
	metrics_add(&mv->sent_bytes_total, r->wire_bytes);
	metrics_add(&mv->device_read_bytes_total, r->read_bytes);
	metrics_add_f64(&mv->throttled_seconds_total, r->throttled_seconds);
	metrics_observe(&mv->scan_duration_seconds, r->scan_seconds);
	metrics_set(&mv->replication_lag_seconds, lag_s);
	metrics_set(&mv->rpo_target_seconds, o->cfg.rpo_target_seconds);
	metrics_set_state(mv, epoch_state(r));
	tls_expiry_update(mv, o->cfg.tls_dir);
	if (r->outcome == SENDER_OK) {
		metrics_count_sync(mv, METRICS_SYNC_SUCCESS);
		metrics_observe(&mv->sync_duration_seconds, r->seconds);
		metrics_set(&mv->last_sync_success_timestamp_seconds,
			    (double)now.tv_sec + (double)now.tv_nsec / 1e9);
		metrics_set(&mv->out_of_sync_bytes, 0);
		metrics_set(&mv->peer_connected, 1);
		return;
	}
	metrics_count_sync(mv, METRICS_SYNC_FAILURE);
	metrics_count_error(mv, error_kind(r));
	if (r->blocks_changed)
		metrics_set(&mv->out_of_sync_bytes, (double)(r->blocks_changed * r->block_bytes));
	if (r->disconnected)
		metrics_set(&mv->peer_connected, 0);
}

/* Starts the metrics server; 0, or an exit code after a clear message. */
static int replicate_metrics_start(struct metrics *m, struct metrics_volume **mv,
				   const struct send_opts *o)
{
	char err[256] = "";
	int rc;

	rc = metrics_init(m, PVREPL_VERSION);
	if (rc) {
		cli_err("metrics: %s", strerror(-rc));
		return cli_exit_for(rc);
	}
	*mv = metrics_volume(m, o->cfg.volume, "primary", o->cfg.peer);
	if (!*mv) {
		cli_err("metrics: volume name or --peer too long for a label");
		metrics_release(m);
		return CLI_EXIT_CONFIG;
	}
	metrics_set(&(*mv)->rpo_target_seconds, o->cfg.rpo_target_seconds);
	tls_expiry_update(*mv, o->cfg.tls_dir);
	rc = metrics_serve(m, o->metrics_addr, err, sizeof(err));
	if (rc) {
		cli_err("--metrics-addr %s: %s", o->metrics_addr, err[0] ? err : strerror(-rc));
		metrics_release(m);
		return cli_exit_for(-EINVAL);
	}
	/* Started and the options loaded; never tied to the peer being there. */
	metrics_set_ready(m, true);
	return 0;
}

int cmd_replicate(int argc, char **argv)
{
	static struct metrics metrics; /* large: keep it off the stack */
	struct metrics *m = NULL;
	struct metrics_volume *mv = NULL;
	struct send_opts o;
	struct sender_result r;
	uint64_t done = 0, backoff_ms = REPLICATE_BACKOFF_MS_MIN;
	double last_ok = 0;
	bool retry = false;
	struct sender_abort abort;
	struct watch watch = { .nw = NULL };
	int last_rc = CLI_EXIT_OK;

	init_opts(&o);
	if (parse_send_opts(argc, argv, &o, true)) {
		fputs("Run 'pvrepl replicate --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (o.metrics_addr) {
		int rc = replicate_metrics_start(&metrics, &mv, &o);

		if (rc)
			return rc;
		m = &metrics;
		/* A long epoch (an initial sync) keeps /livez fresh through the scan's
		 * progress updates. */
		o.cfg.alive = alive_heartbeat;
		o.cfg.alive_ctx = m;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	if (o.cfg.progress == PROGRESS_AUTO)
		o.cfg.progress = PROGRESS_LOG;
	log_init("replicate", o.log_format, o.verbosity, o.termination_log);
	sender_abort_init(&abort);
	o.cfg.abort = &abort;
	if (!o.no_netwatch)
		watch_start(&watch, o.cfg.peer, o.cfg.volume, &abort);
	while (!stop_requested) {
		/* Paused by the watcher: no epoch until the route is back, then at once. */
		if (sender_abort_paused(&abort)) {
			if (m)
				metrics_set_state(mv, METRICS_STATE_PAUSED);
			while (sender_abort_paused(&abort) && !stop_requested)
				sleep_ms(50, m, NULL);
			woken(&watch);
			backoff_ms = REPLICATE_BACKOFF_MS_MIN;
			continue;
		}
		double start = cli_now_s();

		if (m && retry)
			metrics_add(&mv->reconnects_total, 1);
		sender_run_epoch(&o.cfg, &r);
		if (r.outcome == SENDER_OK)
			last_ok = start;
		/* The standby holds the source as of the start of the last good epoch. */
		double lag = last_ok ? cli_now_s() - last_ok : cli_now_s() - start;

		if (m) {
			epoch_metrics(mv, &o, &r, lag);
			metrics_heartbeat(m);
		}
		retry = r.outcome != SENDER_OK;
		print_result(&r, o.cfg.volume, o.fmt, lag);
		if (r.outcome == SENDER_OK) {
			done++;
			backoff_ms = REPLICATE_BACKOFF_MS_MIN;
			last_rc = CLI_EXIT_OK;
			if (o.rpo_ms && lag * 1e3 > (double)o.rpo_ms)
				log_msg(LOG_WARN, o.cfg.volume, o.cfg.peer, r.epoch,
					"lag %.1f s exceeds the RPO target of %.1f s", lag,
					(double)o.rpo_ms / 1e3);
			if (o.max_epochs && done >= o.max_epochs)
				break;
			double took_ms = (cli_now_s() - start) * 1e3;

			/* An epoch longer than the interval is followed at once by the next,
			 * which covers everything changed since: no backlog queue. */
			if (took_ms < (double)o.interval_ms)
				sleep_ms(o.interval_ms - (uint64_t)took_ms, m, NULL);
			continue;
		}
		if (r.paused)
			continue; /* the watcher said why; wait for the route at the top */
		log_msg(LOG_WARN, o.cfg.volume, o.cfg.peer, r.epoch, "%s; retrying in %.1f s",
			r.message, (double)backoff_ms / 1e3);
		last_rc = exit_for(&r);
		if (r.outcome == SENDER_REFUSED && r.refuse_reason != PROTO_REFUSE_BUSY) {
			log_fatal(o.cfg.volume,
				  "%s; refused by the receiver: fix the cause and restart",
				  r.message);
			break;
		}
		sleep_ms(backoff_ms, m, &watch);
		backoff_ms = backoff_ms * 2 > REPLICATE_BACKOFF_MS_MAX ? REPLICATE_BACKOFF_MS_MAX
								       : backoff_ms * 2;
	}
	watch_stop(&watch);
	if (m)
		metrics_release(m);
	return last_rc;
}
