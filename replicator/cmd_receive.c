// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl receive`: the standby daemon. Builds a receiver_config from the
 * configuration file (--config), the PVREPL_* environment and the flags, in that
 * order (flags win), and runs receiver.c until SIGTERM or SIGINT. SIGHUP builds it
 * again the same way and hands it to the running receiver; a configuration with
 * problems is refused and the running one kept.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "receiver.h"

extern char **environ;

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else
		stop_requested = 1;
}

static void receive_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl receive --listen HOST:PORT --tls-dir DIR --state-dir DIR\n"
		"                      --volume NAME=DEVICE [--volume ...] [--allow NAME=CERT_NAME ...]\n"
		"       pvrepl receive --config FILE [options]\n\n"
		"Serves standby volumes: verifies, journals and applies the epochs senders send.\n"
		"Settings come from the flags, then PVREPL_* variables, then --config FILE's\n"
		"[receiver] and [volume NAME] sections (docs/CONFIG.md). SIGHUP reloads them:\n"
		"allow lists and added or removed volumes apply at once; a file with problems is\n"
		"refused and the running configuration kept. SIGTERM stops: epochs not yet\n"
		"committed are aborted (a sync keeps its cursor), committed ones finish applying.\n\n"
		"  -c, --config FILE          INI file (check it with 'pvrepl config validate')\n"
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

struct receive_args {
	int argc;
	char **argv;
	const char *config_path;
};

/* The options receive_build() also returns besides the receiver's configuration. */
struct receive_extra {
	const char *metrics_addr;
	enum log_format log_format;
	int verbosity;
	const char *termination_log;
};

static void put_allow(struct receiver_volume_cfg *vc, const char *cert)
{
	snprintf(vc->allow[vc->allow_count++], sizeof(vc->allow[0]), "%s", cert);
}

static struct receiver_volume_cfg *volume_named(struct receiver_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->vol_count; i++)
		if (!strcmp(cfg->vols[i].name, name))
			return &cfg->vols[i];
	return NULL;
}

/*
 * Builds cfg from the file, the environment and the flags (file < env < flags),
 * storing the file's strings in conf (which must outlive cfg). Returns 0, or an
 * exit code with every problem in err.
 */
static int receive_build(const struct receive_args *a, struct config *conf,
			 struct receiver_config *cfg, struct receive_extra *x, char *err,
			 size_t err_len)
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
		{ "config", required_argument, NULL, 'c' },
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
	char name[RECEIVER_NAME_MAX], val[KFIO_PATH_MAX];
	/* Flags' allow lists replace the file's for the volumes they name. */
	bool flag_allow[RECEIVER_VOLUMES_MAX] = { false };
	struct {
		char name[RECEIVER_NAME_MAX];
		char cert[256];
	} allows[RECEIVER_VOLUMES_MAX * RECEIVER_ALLOW_MAX];
	unsigned nallow = 0;
	int c, rc;

	err[0] = '\0';
	memset(cfg, 0, sizeof(*cfg));
	memset(x, 0, sizeof(*x));
	x->verbosity = LOG_INFO;
	cfg->timeout_ms = 30000;
	cfg->journal_bytes = RECEIVER_JOURNAL_BYTES_DEFAULT;
	rc = config_gather(conf, a->config_path, environ, err, err_len);
	if (rc)
		return rc == -EINVAL ? CLI_EXIT_CONFIG : cli_exit_for(rc);
	if (conf->receiver.listen[0])
		cfg->listen = conf->receiver.listen;
	if (conf->receiver.tls_dir[0])
		cfg->tls_dir = conf->receiver.tls_dir;
	if (conf->receiver.state_dir[0])
		cfg->state_dir = conf->receiver.state_dir;
	if (conf->receiver.metrics_addr[0])
		x->metrics_addr = conf->receiver.metrics_addr;
	cfg->timeout_ms = (unsigned)conf->receiver.timeout_ms;
	cfg->journal_bytes = conf->receiver.journal_bytes;
	for (unsigned i = 0; i < conf->volume_count; i++) {
		const struct config_volume *cv = &conf->volumes[i];
		struct receiver_volume_cfg *vc = &cfg->vols[cfg->vol_count++];

		snprintf(vc->name, sizeof(vc->name), "%s", cv->name);
		snprintf(vc->device, sizeof(vc->device), "%s", cv->device);
		for (unsigned j = 0; j < cv->allow_count; j++)
			put_allow(vc, cv->allow[j]);
	}

	optind = 0; /* GNU getopt: a full re-initialisation, argv may be parsed again */
	while ((c = getopt_long(a->argc, a->argv, "c:l:t:s:v:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			break; /* read first, by cli_config_path() */
		case 'l':
			cfg->listen = optarg;
			break;
		case 't':
			cfg->tls_dir = optarg;
			break;
		case 's':
			cfg->state_dir = optarg;
			break;
		case 'v':
			if (cli_opt_verbosity(optarg, &x->verbosity))
				return CLI_EXIT_USAGE; /* said; err stays empty */
			break;
		case OPT_LOG_FORMAT:
			if (cli_opt_log_format(optarg, &x->log_format))
				return CLI_EXIT_USAGE;
			break;
		case OPT_TERMINATION_LOG:
			x->termination_log = optarg;
			break;
		case OPT_VOLUME: {
			struct receiver_volume_cfg *vc;

			if (split_eq(optarg, name, sizeof(name), val, sizeof(val))) {
				snprintf(err, err_len, "--volume %s: expected NAME=DEVICE", optarg);
				return CLI_EXIT_USAGE;
			}
			vc = volume_named(cfg, name);
			if (vc && vc - cfg->vols >= (ptrdiff_t)conf->volume_count) {
				snprintf(err, err_len, "--volume %s is given twice", name);
				return CLI_EXIT_USAGE;
			}
			if (!vc) {
				if (cfg->vol_count >= RECEIVER_VOLUMES_MAX) {
					snprintf(err, err_len, "--volume %s: at most %u volumes",
						 optarg, RECEIVER_VOLUMES_MAX);
					return CLI_EXIT_USAGE;
				}
				vc = &cfg->vols[cfg->vol_count++];
				snprintf(vc->name, sizeof(vc->name), "%s", name);
			}
			/* A flag for a volume of the file replaces its device. */
			snprintf(vc->device, sizeof(vc->device), "%s", val);
			break;
		}
		case 'a':
			if (nallow >= sizeof(allows) / sizeof(allows[0]) ||
			    split_eq(optarg, allows[nallow].name, sizeof(allows[nallow].name),
				     allows[nallow].cert, sizeof(allows[nallow].cert))) {
				snprintf(err, err_len, "--allow %s: expected NAME=CERT_NAME",
					 optarg);
				return CLI_EXIT_USAGE;
			}
			nallow++;
			break;
		case OPT_JOURNAL:
			if (cli_parse_size(optarg, &cfg->journal_bytes) ||
			    cfg->journal_bytes < (16u << 20)) {
				snprintf(err, err_len,
					 "--journal-size %s: expected a size of at least 16M",
					 optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_TIMEOUT:
			if (cli_opt_timeout(optarg, &cfg->timeout_ms))
				return CLI_EXIT_USAGE;
			break;
		case OPT_PLAINTEXT:
			cfg->insecure_plaintext = true;
			break;
		case OPT_READY:
			cfg->ready_file = optarg;
			break;
		case OPT_METRICS_ADDR:
			x->metrics_addr = optarg;
			break;
		case 'h':
			receive_usage(stdout);
			exit(CLI_EXIT_OK);
		default:
			snprintf(err, err_len, "Run 'pvrepl receive --help' for the options.");
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != a->argc) {
		snprintf(err, err_len, "unexpected argument '%s'", a->argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!cfg->listen || !cfg->state_dir || !cfg->vol_count ||
	    (!cfg->tls_dir && !cfg->insecure_plaintext)) {
		snprintf(
			err, err_len,
			"receive needs a listen address, a state directory, a TLS directory and at least one volume: --listen, --state-dir, --tls-dir and --volume (or the [receiver] and [volume NAME] sections of --config FILE)");
		return a->config_path ? CLI_EXIT_CONFIG : CLI_EXIT_USAGE;
	}
	for (unsigned i = 0; i < nallow; i++) {
		struct receiver_volume_cfg *vc = volume_named(cfg, allows[i].name);

		if (!vc) {
			snprintf(err, err_len, "--allow %s=%s names no volume", allows[i].name,
				 allows[i].cert);
			return CLI_EXIT_USAGE;
		}
		if (!flag_allow[vc - cfg->vols]) {
			flag_allow[vc - cfg->vols] = true;
			vc->allow_count = 0;
		}
		if (vc->allow_count >= RECEIVER_ALLOW_MAX) {
			snprintf(err, err_len, "volume %s: at most %u --allow entries", vc->name,
				 RECEIVER_ALLOW_MAX);
			return CLI_EXIT_USAGE;
		}
		put_allow(vc, allows[i].cert);
	}
	return 0;
}

/* SIGHUP: the same layers again, into storage the receiver drops at its next call. */
static int receive_reload(void *ctx, const struct receiver_config **next, char *err, size_t err_len)
{
	static struct config conf;
	static struct receiver_config cfg;
	struct receive_extra x;
	int rc;

	log_msg(LOG_INFO, NULL, NULL, 0, "SIGHUP: reloading the configuration");
	rc = receive_build(ctx, &conf, &cfg, &x, err, err_len);
	if (rc) {
		unsigned n = 0;

		/* One log line per problem, each with its file and line. */
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"), n++)
			log_msg(LOG_ERROR, NULL, NULL, 0, "reload: %s", line);
		snprintf(err, err_len, "%u problem(s) in the configuration, each logged above", n);
		return -EINVAL;
	}
	*next = &cfg;
	return 0;
}

int cmd_receive(int argc, char **argv)
{
	static struct config conf; /* large: keep them off the stack */
	static struct receiver_config cfg;
	static struct metrics metrics;
	static struct receive_args args;
	static char err[16384];
	struct receive_extra x;
	struct sigaction sa;
	int rc;

	args = (struct receive_args){ .argc = argc,
				      .argv = argv,
				      .config_path = cli_config_path(argc, argv) };
	err[0] = '\0';
	rc = receive_build(&args, &conf, &cfg, &x, err, sizeof(err));
	if (rc) {
		if (err[0]) /* else the option's own message was printed */
			cli_err("%s", err);
		return rc;
	}
	cfg.reload_requested = &reload_requested;
	cfg.reload = receive_reload;
	cfg.reload_ctx = &args;
	log_init("receive", x.log_format, x.verbosity, x.termination_log);
	for (unsigned j = 0; j < cfg.vol_count; j++)
		if (!cfg.vols[j].allow_count && !cfg.insecure_plaintext)
			log_msg(LOG_WARN, cfg.vols[j].name, NULL, 0,
				"no --allow: any certificate signed by the CA may replicate it");
	if (x.metrics_addr) {
		rc = metrics_init(&metrics, PVREPL_VERSION);
		if (rc) {
			cli_err("metrics: %s", strerror(-rc));
			return cli_exit_for(rc);
		}
		rc = metrics_serve(&metrics, x.metrics_addr, err, sizeof(err));
		if (rc) {
			cli_err("--metrics-addr %s: %s", x.metrics_addr,
				err[0] ? err : strerror(-rc));
			metrics_release(&metrics);
			return cli_exit_for(-EINVAL);
		}
		/* Ready only once receiver_run() has recovered the volumes and listens. */
		cfg.metrics = &metrics;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	rc = receiver_run(&cfg, &stop_requested, err, sizeof(err));
	if (cfg.metrics)
		metrics_release(cfg.metrics);
	if (rc) {
		log_fatal(NULL, "%s", err);
		return cli_exit_for(rc);
	}
	return CLI_EXIT_OK;
}
