// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl send` (one epoch, then exit) and `pvrepl replicate` (epochs every
 * --interval until stopped): the options, the --help text and the printed
 * results. Both parse the same options into a replicate_opts; the epoch itself
 * is sender.c's, the `replicate` daemon (jobs, backoff, network watch, reloads,
 * signals, metrics) replicate.c's, which calls back here to build the options
 * again on SIGHUP and to print each epoch's result.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "out.h"
#include "proto.h"
#include "replicate.h"
#include "sender.h"

extern char **environ;

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
		"      --max-rate RATE      cap the replication traffic (kernel TCP pacing, TLS\n"
		"                           included): 50M or 50MB/s is 50 MiB/s; 400Mbit,\n"
		"                           400Mb or 400Mbps is 400e6 bits/s\n"
		"      --max-read-rate RATE cap the reads on the source device (e.g. 200M)\n"
		"  -w, --workers N          hashing/compression threads (default: all CPUs)\n"
		"      --track MODE         auto (default): an eBPF write tracker makes an epoch\n"
		"                           read only what was written, where it can run (else\n"
		"                           full scans, reason logged); bpf: the tracker or an\n"
		"                           error; off: every epoch reads the whole device\n"
		"      --full-scan-interval DURATION  the safety net: a full scan at least this\n"
		"                           often even while tracking (default 24h); it counts\n"
		"                           blocks the tracker missed\n"
		"      --track-pin-dir DIR  where the tracker is pinned (bpffs; default\n"
		"                           $PVREPL_TRACK_PIN_DIR or %s)\n"
		"      --capture MODE       how each epoch becomes one instant of the source:\n"
		"                           freeze: the file system mounted from the device,\n"
		"                           briefly, at the end of the epoch; reflink: read a\n"
		"                           clone of the volume's file (or of a loop device's\n"
		"                           backing file) on xfs or btrfs; snapshot: read the\n"
		"                           device --snapshot-cmd makes; none: live reads (not\n"
		"                           one instant, said so in status); auto (default):\n"
		"                           freeze, else reflink where it can, else none\n"
		"      --freeze-path DIR    a directory of the file system to freeze (default:\n"
		"                           its mount point, found from the device)\n"
		"      --freeze-timeout DURATION  the longest freeze (default 2s): a watchdog\n"
		"                           thaws then, or when pvrepl dies, and the epoch is\n"
		"                           aborted\n"
		"      --snapshot-cmd CMD   run by /bin/sh for each epoch with PVREPL_VOLUME,\n"
		"                           PVREPL_DEVICE and PVREPL_EPOCH set; prints the path\n"
		"                           of a read-only point-in-time device of the volume\n"
		"      --snapshot-release-cmd CMD  run after the epoch, also when it failed,\n"
		"                           with PVREPL_SNAPSHOT set to that path\n"
		"%s"
		"      --progress MODE      auto, tty, log or none (default auto)\n"
		"  -o, --output FMT         text (default) or json%s\n"
		"  -h, --help               this help\n",
		replicate ? "replicate" : "send", replicate ? 9 : 4, "",
		replicate ? " --interval DURATION\n"
			    "       pvrepl replicate --config FILE [--volume NAME] [options]"
			  : "",
		replicate
			? "Replicates the volume continuously: one epoch every --interval. With\n"
			  "--config, every [volume] of the file (or the one --volume names), each in\n"
			  "its own thread, with the [sender] settings; flags win over PVREPL_*\n"
			  "variables, which win over the file."
			: "Replicates one epoch: scans the device, streams the changed blocks, and\n"
			  "records the epoch once the receiver acknowledged it as durable.",
		SCAN_BLOCK_BYTES_DEFAULT / 1024, SENDER_TIMEOUT_MS_DEFAULT / 1000,
		KFIO_TRACK_PIN_ROOT_DEFAULT,
		replicate
			? ""
			: "      --full-scan          read the whole device this epoch (and count\n"
			  "                           what the tracker missed)\n",
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
			  "      --termination-log F  write the reason of a fatal stop to F\n"
			  "  -c, --config FILE        INI file with a [sender] section and one\n"
			  "                           [volume NAME] per volume: all are replicated, each\n"
			  "                           in its own thread (--volume NAME picks one);\n"
			  "                           flags > PVREPL_* variables > file (docs/CONFIG.md)\n"
			  "      --stop-timeout DURATION  on SIGTERM, let the epoch in flight finish\n"
			  "                           for this long, then abort it cleanly (default 10s)\n\n"
			  "SIGHUP reloads the file: interval, RPO, rates, peer and TLS apply from the\n"
			  "next epoch, added volumes start, removed ones stop after their epoch in\n"
			  "flight; a file with problems is refused and the running settings kept."
			: "");
}

static int parse_send_opts(int argc, char **argv, struct replicate_opts *o, bool replicate)
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
		OPT_METRICS_ADDR,
		OPT_STOP_TIMEOUT,
		OPT_TRACK,
		OPT_FULL_SCAN_INTERVAL,
		OPT_TRACK_PIN_DIR,
		OPT_FULL_SCAN,
		OPT_CAPTURE,
		OPT_FREEZE_PATH,
		OPT_SNAPSHOT_CMD,
		OPT_SNAPSHOT_RELEASE_CMD,
		OPT_FREEZE_TIMEOUT,
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
		{ "config", required_argument, NULL, 'c' },
		{ "stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT },
		{ "workers", required_argument, NULL, 'w' },
		{ "track", required_argument, NULL, OPT_TRACK },
		{ "full-scan-interval", required_argument, NULL, OPT_FULL_SCAN_INTERVAL },
		{ "track-pin-dir", required_argument, NULL, OPT_TRACK_PIN_DIR },
		{ "full-scan", no_argument, NULL, OPT_FULL_SCAN },
		{ "capture", required_argument, NULL, OPT_CAPTURE },
		{ "freeze-path", required_argument, NULL, OPT_FREEZE_PATH },
		{ "snapshot-cmd", required_argument, NULL, OPT_SNAPSHOT_CMD },
		{ "snapshot-release-cmd", required_argument, NULL, OPT_SNAPSHOT_RELEASE_CMD },
		{ "freeze-timeout", required_argument, NULL, OPT_FREEZE_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c;

	optind = 0; /* GNU getopt: a full re-initialisation (replicate parses per volume) */
	while ((c = getopt_long(argc, argv, "c:n:d:s:p:t:b:o:i:v:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!replicate) {
				cli_err("--config is an option of 'pvrepl replicate'");
				return -EINVAL;
			}
			break; /* read first, by cli_config_path() */
		case 'w':
			if (cli_parse_size(optarg, &v) || v < 1 || v > SCAN_WORKERS_MAX) {
				cli_err("--workers %s: expected 1 to %u threads", optarg,
					SCAN_WORKERS_MAX);
				return -EINVAL;
			}
			o->cfg.scan.workers = (uint32_t)v;
			break;
		case OPT_TRACK:
			if (tracking_mode_parse(optarg, &o->cfg.tracking.mode)) {
				cli_err("--track %s: expected auto, bpf or off", optarg);
				return -EINVAL;
			}
			break;
		case OPT_FULL_SCAN_INTERVAL:
			if (cli_parse_duration(optarg, &v) || v < 1000) {
				cli_err("--full-scan-interval %s: expected a duration of at least 1s, e.g. 24h",
					optarg);
				return -EINVAL;
			}
			o->cfg.tracking.full_scan_interval_ms = v;
			break;
		case OPT_TRACK_PIN_DIR:
			if (cli_opt_pin_dir("--track-pin-dir ", optarg, &o->cfg.tracking.pin_root))
				return -EINVAL;
			break;
		case OPT_CAPTURE:
			if (capture_mode_parse(optarg, &o->cfg.capture.mode)) {
				cli_err("--capture %s: expected auto, none, freeze, reflink or snapshot",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_FREEZE_PATH:
			if (!*optarg) {
				cli_err("--freeze-path: expected a directory of the file system to freeze");
				return -EINVAL;
			}
			o->cfg.capture.freeze_path = optarg;
			break;
		case OPT_SNAPSHOT_CMD:
		case OPT_SNAPSHOT_RELEASE_CMD:
			if (!*optarg) {
				cli_err("--snapshot%s-cmd: expected a shell command",
					c == OPT_SNAPSHOT_CMD ? "" : "-release");
				return -EINVAL;
			}
			if (c == OPT_SNAPSHOT_CMD)
				o->cfg.capture.snapshot_cmd = optarg;
			else
				o->cfg.capture.snapshot_release_cmd = optarg;
			break;
		case OPT_FREEZE_TIMEOUT:
			if (cli_parse_duration(optarg, &v) || v < CAPTURE_FREEZE_TIMEOUT_MS_MIN ||
			    v > CAPTURE_FREEZE_TIMEOUT_MS_MAX) {
				cli_err("--freeze-timeout %s: expected a duration from 10ms to 60s, e.g. 2s",
					optarg);
				return -EINVAL;
			}
			o->cfg.capture.freeze_timeout_ms = (uint32_t)v;
			break;
		case OPT_FULL_SCAN:
			if (replicate) {
				cli_err("--full-scan is an option of 'pvrepl send' (replicate has --full-scan-interval)");
				return -EINVAL;
			}
			o->cfg.tracking.force_full = true;
			break;
		case OPT_STOP_TIMEOUT:
			if (!replicate || cli_parse_duration(optarg, &v) || v > 3600000) {
				cli_err("--stop-timeout needs 'pvrepl replicate' and a duration up to 1h");
				return -EINVAL;
			}
			o->stop_timeout_ms = v;
			break;
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
			if (cli_opt_timeout(optarg, &o->cfg.timeout_ms))
				return -EINVAL;
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
			if (cli_opt_rate("max-rate", optarg, &o->cfg.max_rate_bytes_per_s))
				return -EINVAL;
			break;
		case OPT_MAX_READ_RATE:
			if (cli_opt_rate("max-read-rate", optarg,
					 &o->cfg.scan.max_read_bytes_per_s))
				return -EINVAL;
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
			if (c == OPT_LOG_FORMAT && cli_opt_log_format(optarg, &o->log_format))
				return -EINVAL;
			if (c == 'v' && cli_opt_verbosity(optarg, &o->verbosity))
				return -EINVAL;
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
	out_str(o, "scan", "Scan", tracking_scan_name(r->scan));
	out_str(o, "full_scan_reason", "Why a full scan",
		r->scan == TRACKING_SCAN_FULL ? r->scan_reason : "");
	out_str(o, "tracking", "Write tracking", r->tracking ? "bpf" : "off");
	if (!r->tracking)
		out_str(o, "tracking_off_reason", "Why no tracking", r->tracking_off);
	out_u64(o, "tracked_bytes", "Marked by the tracker", r->tracked_bytes, OUT_UNIT_BYTES);
	out_u64(o, "source_read_bytes", "Read from the source", r->read_bytes, OUT_UNIT_BYTES);
	out_u64(o, "tracker_missed_blocks", "Changed blocks the tracker missed",
		r->tracker_missed_blocks, OUT_UNIT_NONE);
	out_str(o, "capture", "Capture", capture_mode_name(r->capture));
	out_str(o, "capture_note", "Why not one instant",
		r->crash_consistent ? "" : r->capture_note);
	out_bool(o, "crash_consistent", "One instant of the source", r->crash_consistent);
	out_u64(o, "rounds", "Rounds of reads", r->rounds, OUT_UNIT_NONE);
	out_f64(o, "freeze_ms", "Frozen for (ms)", r->freeze_ms, OUT_UNIT_NONE);
	out_u64(o, "freeze_read_bytes", "Read while frozen", r->freeze_read_bytes, OUT_UNIT_BYTES);
	out_f64(o, "clone_ms", "Image made in (ms)", r->clone_ms, OUT_UNIT_NONE);
	out_u64(o, "blocks_scanned", "Blocks scanned", r->blocks_scanned, OUT_UNIT_NONE);
	out_u64(o, "blocks_changed", "Blocks changed", r->blocks_changed, OUT_UNIT_NONE);
	out_u64(o, "blocks_zero", "Zero blocks (markers)", r->blocks_zero, OUT_UNIT_NONE);
	out_u64(o, "blocks_sent", "Blocks sent", r->blocks_sent, OUT_UNIT_NONE);
	out_u64(o, "blocks_partial", "Of them, as their changed 4 KiB pages", r->blocks_partial,
		OUT_UNIT_NONE);
	out_u64(o, "payload_bytes", "Payload (before compression)", r->payload_bytes,
		OUT_UNIT_BYTES);
	out_u64(o, "data_bytes", "Payload after compression", r->data_bytes, OUT_UNIT_BYTES);
	out_u64(o, "wire_bytes", "Sent on the wire (TLS included)", r->wire_bytes, OUT_UNIT_BYTES);
	out_f64(o, "seconds", "Time", r->seconds, OUT_UNIT_SECONDS);
	out_f64(o, "scan_seconds", "Scan and stream time", r->scan_seconds, OUT_UNIT_SECONDS);
	out_f64(o, "cpu_seconds", "CPU time", r->cpu_seconds, OUT_UNIT_SECONDS);
	out_f64(o, "throttled_seconds", "Held back by --max-read-rate and --max-rate",
		r->throttled_seconds, OUT_UNIT_SECONDS);
	if (lag_s >= 0)
		out_f64(o, "lag_seconds", "Lag (age of the standby's data)", lag_s,
			OUT_UNIT_SECONDS);
	out_str(o, "result", "Result",
		r->outcome == SENDER_OK	       ? "ok"
		: r->outcome == SENDER_REFUSED ? "refused"
					       : "failed");
	out_str(o, "message", "Message", r->message);
	if (r->warning[0])
		out_str(o, "warning", "Warning", r->warning);
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

static void init_opts(struct replicate_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cfg.timeout_ms = SENDER_TIMEOUT_MS_DEFAULT;
	o->verbosity = LOG_INFO;
	o->stop_timeout_ms = REPLICATE_STOP_TIMEOUT_MS_DEFAULT;
	scan_config_defaults(&o->cfg.scan);
}

int cmd_send(int argc, char **argv)
{
	struct replicate_opts o;
	struct sender_result r;

	init_opts(&o);
	/* As for `replicate` (config.c), the variable sets the default pin root. */
	if (cli_env_pin_dir(&o.cfg.tracking.pin_root) || parse_send_opts(argc, argv, &o, false)) {
		fputs("Run 'pvrepl send --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	sender_run_epoch(&o.cfg, &r);
	if (r.outcome != SENDER_OK)
		cli_err("%s", r.message);
	if (r.warning[0])
		fprintf(stderr, "pvrepl: warning: %s\n", r.warning);
	print_result(&r, o.cfg.volume, o.fmt, -1);
	return exit_for(&r);
}

/* What send_build parses again on every SIGHUP. */
struct send_build_args {
	int argc;
	char **argv;
	const char *config_path;
};

/*
 * The volumes to replicate and their options: the file, then the environment,
 * then the flags (per volume). Fills specs[0..*count) with strings pointing into
 * conf, argv or the spec (replicate.c copies them). Returns 0 or an exit code,
 * with every problem in err. The build hook of struct replicate_ops.
 */
static int send_build(void *ctx, struct config *conf, struct replicate_opts *specs, unsigned *count,
		      char *err, size_t err_len)
{
	const struct send_build_args *a = ctx;
	unsigned n = 0, vols;
	const char *picked = NULL;
	int rc;

	*count = 0;
	rc = config_gather(conf, a->config_path, environ, err, err_len);
	if (rc)
		return rc == -EINVAL ? CLI_EXIT_CONFIG : cli_exit_for(rc);
	vols = conf->volume_count ? conf->volume_count : 1;
	for (unsigned i = 0; i < vols; i++) {
		const struct config_sender *cs = &conf->sender;
		const struct config_volume *cv = conf->volume_count ? &conf->volumes[i] : NULL;
		struct replicate_opts *o = &specs[n];

		init_opts(o);
		if (cs->tls_dir[0])
			o->cfg.tls_dir = cs->tls_dir;
		if (cs->peer[0])
			o->cfg.peer = cs->peer;
		if (cs->server_name[0])
			o->cfg.server_name = cs->server_name;
		if (cs->metrics_addr[0])
			o->metrics_addr = cs->metrics_addr;
		o->interval_ms = cs->interval_ms;
		o->rpo_ms = cs->rpo_ms;
		o->cfg.rpo_target_seconds = (double)cs->rpo_ms / 1e3;
		if (cs->timeout_ms)
			o->cfg.timeout_ms = (unsigned)cs->timeout_ms;
		o->cfg.max_rate_bytes_per_s = cs->max_rate_bytes_per_s;
		o->cfg.scan.max_read_bytes_per_s = cs->max_read_bytes_per_s;
		o->cfg.block_bytes = (uint32_t)cs->block_bytes;
		if (cs->track[0])
			tracking_mode_parse(cs->track,
					    &o->cfg.tracking.mode); /* checked by config */
		o->cfg.tracking.full_scan_interval_ms = cs->full_scan_interval_ms;
		if (cs->track_pin_dir[0])
			o->cfg.tracking.pin_root = cs->track_pin_dir;
		if (cs->capture[0]) /* checked by config */
			capture_mode_parse(cs->capture, &o->cfg.capture.mode);
		o->cfg.capture.freeze_timeout_ms = (uint32_t)cs->freeze_timeout_ms;
		if (cv) {
			o->cfg.volume = cv->name;
			if (cv->device[0])
				o->cfg.device = cv->device;
			if (cv->state_dir[0])
				o->cfg.state_dir = cv->state_dir;
			if (cv->capture[0])
				capture_mode_parse(cv->capture, &o->cfg.capture.mode);
			if (cv->freeze_path[0])
				o->cfg.capture.freeze_path = cv->freeze_path;
			if (cv->snapshot_cmd[0])
				o->cfg.capture.snapshot_cmd = cv->snapshot_cmd;
			if (cv->snapshot_release_cmd[0])
				o->cfg.capture.snapshot_release_cmd = cv->snapshot_release_cmd;
		}
		if (parse_send_opts(a->argc, a->argv, o, true)) {
			snprintf(err, err_len, "Run 'pvrepl replicate --help' for the options.");
			return CLI_EXIT_USAGE;
		}
		if (cv && a->config_path) {
			/* --volume NAME picks a volume of the file (never renames one, which
			 * would replicate its device as another volume); --device and
			 * --state-dir are about one volume only. */
			if (o->cfg.volume != cv->name) {
				picked = o->cfg.volume;
				if (strcmp(picked, cv->name))
					continue;
				o->cfg.volume = cv->name;
			} else if (conf->volume_count > 1 && (o->cfg.device != cv->device ||
							      o->cfg.state_dir != cv->state_dir)) {
				snprintf(
					err, err_len,
					"--device and --state-dir are about one volume, but %s has %u: add --volume NAME to pick one",
					a->config_path ? a->config_path : "the configuration",
					conf->volume_count);
				return CLI_EXIT_USAGE;
			}
		}
		n++;
	}
	if (!n) {
		snprintf(err, err_len, "--volume %s: %s has no [volume %s] section", picked,
			 a->config_path ? a->config_path : "the configuration", picked);
		return CLI_EXIT_CONFIG;
	}
	*count = n;
	return 0;
}

/* The print hook of struct replicate_ops: one epoch's result, flushed at once. */
static void send_print(const struct sender_result *r, const struct replicate_opts *o, double lag_s)
{
	print_result(r, o->cfg.volume, o->fmt, lag_s);
	fflush(stdout);
}

int cmd_replicate(int argc, char **argv)
{
	struct send_build_args args = { .argc = argc,
					.argv = argv,
					.config_path = cli_config_path(argc, argv) };
	const struct replicate_ops ops = {
		.build = send_build,
		.print = send_print,
		.exit_code = exit_for,
		.error = cli_err,
		.ctx = &args,
	};

	return replicate_run(&ops);
}
