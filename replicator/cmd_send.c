// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl send` (one epoch, then exit) and `pvrepl replicate` (epochs every
 * --interval until stopped). Both parse the same options into a sender_config;
 * the epoch itself is sender.c's. A failed epoch in `replicate` is retried with
 * exponential backoff; the next epoch always covers everything changed since the
 * last confirmed one, so there is no backlog to queue.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "out.h"
#include "proto.h"
#include "sender.h"

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
			  "      --max-epochs N       stop after N successful epochs (0: never)"
			: "");
}

struct send_opts {
	struct sender_config cfg;
	enum out_format fmt;
	uint64_t interval_ms;
	uint64_t rpo_ms;
	uint64_t max_epochs;
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
		OPT_MAX_READ_RATE
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
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "n:d:s:p:t:b:o:i:h", opts, NULL)) != -1) {
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
			if (cli_parse_size(optarg, &v) || v < SCAN_BLOCK_BYTES_MIN ||
			    v > SCAN_BLOCK_BYTES_MAX || (v & (v - 1))) {
				cli_err("--block-size %s: expected a power of two from 4k to 1M",
					optarg);
				return -EINVAL;
			}
			o->cfg.block_bytes = (uint32_t)v;
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
			if (progress_parse_mode(optarg, &o->cfg.progress)) {
				cli_err("--progress %s: use auto, tty, log or none", optarg);
				return -EINVAL;
			}
			break;
		case 'o':
			if (out_parse_format(optarg, &o->fmt)) {
				cli_err("--output %s: use text or json", optarg);
				return -EINVAL;
			}
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

static void sleep_ms(uint64_t ms)
{
	while (ms && !stop_requested) {
		uint64_t step = ms < 200 ? ms : 200;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

		nanosleep(&ts, NULL);
		ms -= step;
	}
}

int cmd_replicate(int argc, char **argv)
{
	struct send_opts o;
	struct sender_result r;
	uint64_t done = 0, backoff_ms = REPLICATE_BACKOFF_MS_MIN;
	double last_ok = 0;
	int last_rc = CLI_EXIT_OK;

	init_opts(&o);
	if (parse_send_opts(argc, argv, &o, true)) {
		fputs("Run 'pvrepl replicate --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	if (o.cfg.progress == PROGRESS_AUTO)
		o.cfg.progress = PROGRESS_LOG;
	while (!stop_requested) {
		double start = cli_now_s();

		sender_run_epoch(&o.cfg, &r);
		if (r.outcome == SENDER_OK)
			last_ok = start;
		/* The standby holds the source as of the start of the last good epoch. */
		double lag = last_ok ? cli_now_s() - last_ok : cli_now_s() - start;

		print_result(&r, o.cfg.volume, o.fmt, lag);
		if (r.outcome == SENDER_OK) {
			done++;
			backoff_ms = REPLICATE_BACKOFF_MS_MIN;
			last_rc = CLI_EXIT_OK;
			if (o.rpo_ms && lag * 1e3 > (double)o.rpo_ms)
				cli_err("volume %s: lag %.1f s exceeds the RPO target of %.1f s",
					o.cfg.volume, lag, (double)o.rpo_ms / 1e3);
			if (o.max_epochs && done >= o.max_epochs)
				break;
			double took_ms = (cli_now_s() - start) * 1e3;

			/* An epoch longer than the interval is followed at once by the next,
			 * which covers everything changed since: no backlog queue. */
			if (took_ms < (double)o.interval_ms)
				sleep_ms(o.interval_ms - (uint64_t)took_ms);
			continue;
		}
		cli_err("%s; retrying in %.1f s", r.message, (double)backoff_ms / 1e3);
		last_rc = exit_for(&r);
		if (r.outcome == SENDER_REFUSED && r.refuse_reason != PROTO_REFUSE_BUSY) {
			cli_err("volume %s: refused by the receiver; fix the cause and restart",
				o.cfg.volume);
			return last_rc;
		}
		sleep_ms(backoff_ms);
		backoff_ms = backoff_ms * 2 > REPLICATE_BACKOFF_MS_MAX ? REPLICATE_BACKOFF_MS_MAX
								       : backoff_ms * 2;
	}
	return last_rc;
}
