// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl receive`: the standby daemon. Parses the volume map and allow lists
 * into a receiver_config and runs receiver.c until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "metrics.h"
#include "receiver.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void receive_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl receive --listen HOST:PORT --tls-dir DIR --state-dir DIR\n"
		"                      --volume NAME=DEVICE [--volume ...] [--allow NAME=CERT_NAME ...]\n\n"
		"Serves standby volumes: verifies, journals and applies the epochs senders send.\n\n"
		"  -l, --listen HOST:PORT     address to listen on\n"
		"  -t, --tls-dir DIR          tls.crt, tls.key and ca.crt (re-read for new connections\n"
		"                             when they change)\n"
		"  -s, --state-dir DIR        one subdirectory per volume: map, journal, state\n"
		"      --volume NAME=DEVICE   serve volume NAME on standby DEVICE (repeatable)\n"
		"  -a, --allow NAME=CERT      only the client certificate named CERT may replicate\n"
		"                             NAME (repeatable; without any, every certificate\n"
		"                             signed by the CA may)\n"
		"      --journal-size N       journal file per volume (default 1G): the largest\n"
		"                             incremental epoch it can take\n"
		"      --timeout DURATION     network timeout (default 30s)\n"
		"      --insecure-plaintext   no TLS at all (tests only)\n"
		"      --ready-file FILE      write the bound address here once listening\n"
		"      --log-format FMT       text (default) or json log lines on stderr\n"
		"  -v, --verbosity N          0 errors, 1 warnings, 2 info (default), 3 debug\n"
		"      --termination-log F    write the reason of a fatal stop to F\n"
		"      --metrics-addr HOST:PORT  serve Prometheus /metrics, /livez and /readyz\n"
		"                             on this address (e.g. :9500)\n"
		"  -h, --help                 this help\n");
}

static int split_eq(const char *arg, char *name, size_t name_len, char *val, size_t val_len)
{
	const char *eq = strchr(arg, '=');

	if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) >= name_len ||
	    strlen(eq + 1) >= val_len)
		return -EINVAL;
	snprintf(name, name_len, "%.*s", (int)(eq - arg), arg);
	snprintf(val, val_len, "%s", eq + 1);
	return 0;
}

int cmd_receive(int argc, char **argv)
{
	enum {
		OPT_JOURNAL = 256,
		OPT_TIMEOUT,
		OPT_PLAINTEXT,
		OPT_READY,
		OPT_METRICS_ADDR,
		OPT_LOG_FORMAT,
		OPT_TERMINATION_LOG,
		OPT_VOLUME,
	};
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "tls-dir", required_argument, NULL, 't' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "volume", required_argument, NULL, OPT_VOLUME },
		{ "verbosity", required_argument, NULL, 'v' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "termination-log", required_argument, NULL, OPT_TERMINATION_LOG },
		{ "allow", required_argument, NULL, 'a' },
		{ "journal-size", required_argument, NULL, OPT_JOURNAL },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "insecure-plaintext", no_argument, NULL, OPT_PLAINTEXT },
		{ "ready-file", required_argument, NULL, OPT_READY },
		{ "metrics-addr", required_argument, NULL, OPT_METRICS_ADDR },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct receiver_config cfg; /* large: keep it off the stack */
	static struct metrics metrics;	   /* likewise */
	const char *metrics_addr = NULL;
	char name[RECEIVER_NAME_MAX], val[KFIO_PATH_MAX], err[512] = "";
	struct {
		char name[RECEIVER_NAME_MAX];
		char cert[256];
	} allows[RECEIVER_VOLUMES_MAX * RECEIVER_ALLOW_MAX];
	unsigned nallow = 0;
	uint64_t v;
	enum log_format log_format = LOG_FORMAT_TEXT;
	int verbosity = LOG_INFO;
	const char *termination_log = NULL;
	int c, rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.timeout_ms = 30000;
	cfg.journal_bytes = RECEIVER_JOURNAL_BYTES_DEFAULT;
	while ((c = getopt_long(argc, argv, "l:t:s:v:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			cfg.listen = optarg;
			break;
		case 't':
			cfg.tls_dir = optarg;
			break;
		case 's':
			cfg.state_dir = optarg;
			break;
		case 'v':
			if (cli_parse_size(optarg, &v) || v > LOG_DEBUG) {
				cli_err("-v %s: expected 0 (errors) to 3 (debug)", optarg);
				return CLI_EXIT_USAGE;
			}
			verbosity = (int)v;
			break;
		case OPT_LOG_FORMAT:
			if (log_parse_format(optarg, &log_format)) {
				cli_err("--log-format %s: use text or json", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_TERMINATION_LOG:
			termination_log = optarg;
			break;
		case OPT_VOLUME:
			if (cfg.vol_count >= RECEIVER_VOLUMES_MAX ||
			    split_eq(optarg, name, sizeof(name), val, sizeof(val))) {
				cli_err("--volume %s: expected NAME=DEVICE (at most %u volumes)",
					optarg, RECEIVER_VOLUMES_MAX);
				return CLI_EXIT_USAGE;
			}
			for (unsigned i = 0; i < cfg.vol_count; i++)
				if (!strcmp(cfg.vols[i].name, name)) {
					cli_err("--volume %s is given twice", name);
					return CLI_EXIT_USAGE;
				}
			snprintf(cfg.vols[cfg.vol_count].name, RECEIVER_NAME_MAX, "%s", name);
			snprintf(cfg.vols[cfg.vol_count].device, KFIO_PATH_MAX, "%s", val);
			cfg.vol_count++;
			break;
		case 'a':
			if (nallow >= sizeof(allows) / sizeof(allows[0]) ||
			    split_eq(optarg, allows[nallow].name, sizeof(allows[nallow].name),
				     allows[nallow].cert, sizeof(allows[nallow].cert))) {
				cli_err("--allow %s: expected NAME=CERT_NAME", optarg);
				return CLI_EXIT_USAGE;
			}
			nallow++;
			break;
		case OPT_JOURNAL:
			if (cli_parse_size(optarg, &cfg.journal_bytes) ||
			    cfg.journal_bytes < (16u << 20)) {
				cli_err("--journal-size %s: expected a size of at least 16M",
					optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_TIMEOUT:
			if (cli_parse_duration(optarg, &v) || v < 100 || v > 3600000) {
				cli_err("--timeout %s: expected a duration from 100ms to 1h",
					optarg);
				return CLI_EXIT_USAGE;
			}
			cfg.timeout_ms = (unsigned)v;
			break;
		case OPT_PLAINTEXT:
			cfg.insecure_plaintext = true;
			break;
		case OPT_READY:
			cfg.ready_file = optarg;
			break;
		case OPT_METRICS_ADDR:
			metrics_addr = optarg;
			break;
		case 'h':
			receive_usage(stdout);
			return CLI_EXIT_OK;
		default:
			fputs("Run 'pvrepl receive --help' for the options.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc || !cfg.listen || !cfg.state_dir || !cfg.vol_count ||
	    (!cfg.tls_dir && !cfg.insecure_plaintext)) {
		cli_err("receive needs --listen, --state-dir, --tls-dir and at least one --volume");
		return CLI_EXIT_USAGE;
	}
	for (unsigned i = 0; i < nallow; i++) {
		struct receiver_volume_cfg *vc = NULL;

		for (unsigned j = 0; j < cfg.vol_count; j++)
			if (!strcmp(cfg.vols[j].name, allows[i].name))
				vc = &cfg.vols[j];
		if (!vc) {
			cli_err("--allow %s=%s names no --volume", allows[i].name, allows[i].cert);
			return CLI_EXIT_USAGE;
		}
		if (vc->allow_count >= RECEIVER_ALLOW_MAX) {
			cli_err("volume %s: at most %u --allow entries", vc->name,
				RECEIVER_ALLOW_MAX);
			return CLI_EXIT_USAGE;
		}
		snprintf(vc->allow[vc->allow_count++], 256, "%s", allows[i].cert);
	}
	log_init("receive", log_format, verbosity, termination_log);
	for (unsigned j = 0; j < cfg.vol_count; j++)
		if (!cfg.vols[j].allow_count && !cfg.insecure_plaintext)
			log_msg(LOG_WARN, cfg.vols[j].name, NULL, 0,
				"no --allow: any certificate signed by the CA may replicate it");
	if (metrics_addr) {
		rc = metrics_init(&metrics, PVREPL_VERSION);
		if (rc) {
			cli_err("metrics: %s", strerror(-rc));
			return cli_exit_for(rc);
		}
		rc = metrics_serve(&metrics, metrics_addr, err, sizeof(err));
		if (rc) {
			cli_err("--metrics-addr %s: %s", metrics_addr,
				err[0] ? err : strerror(-rc));
			metrics_release(&metrics);
			return cli_exit_for(-EINVAL);
		}
		/* Ready only once receiver_run() has recovered the volumes and listens. */
		cfg.metrics = &metrics;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	rc = receiver_run(&cfg, &stop_requested, err, sizeof(err));
	if (cfg.metrics)
		metrics_release(cfg.metrics);
	if (rc) {
		log_fatal(NULL, "%s", err);
		return cli_exit_for(rc);
	}
	return CLI_EXIT_OK;
}
