// SPDX-License-Identifier: Apache-2.0
/*
 * cli — dispatches `pvrepl <command>` through one table, prints the top-level help
 * and version, and holds the parsing helpers subcommands share. It owns no
 * replication logic; each command is in its own cmd_*.c.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "pvrepl_assert.h"
#include "scan.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cli_cmd commands[] = {
	{ "demo", cmd_demo, "run the built-in demo on two temporary image files" },
	{ "send", cmd_send, "replicate one epoch of a volume to a receiver" },
	{ "replicate", cmd_replicate,
	  "replicate volumes continuously, one epoch per interval (--config: several)" },
	{ "receive", cmd_receive, "serve standby volumes for senders (the receiver daemon)" },
	{ "status", cmd_status, "show the replication state of the volumes (either side)" },
	{ "scan", cmd_scan, "find the blocks of a device that changed since the recorded map" },
	{ "bench", cmd_bench, "measure a device's scan and lz4 rates; project sync time and RPO" },
	{ "probe", cmd_probe, "show a device's size, block sizes and I/O capabilities" },
	{ "config", cmd_config, "check a configuration file: pvrepl config validate FILE" },
	{ "certs", cmd_certs, "create a CA and node certificates for tests and the demo" },
	{ "version", cmd_version, "print the version" },
	{ "help", cmd_help, "show this help" },
};

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("pvrepl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_exit_for(int err)
{
	switch (-err) {
	case 0:
		return CLI_EXIT_OK;
	case ENOENT:
	case ENODEV:
	case ENXIO:
		return CLI_EXIT_NOINPUT;
	case EACCES:
	case EPERM:
	case EROFS:
		return CLI_EXIT_NOPERM;
	case EBADMSG:
		return CLI_EXIT_DATAERR;
	case EIO:
	case ENOSPC:
	case EDQUOT:
		return CLI_EXIT_IOERR;
	case EINVAL:
	case ERANGE:
	case ENOTBLK:
		return CLI_EXIT_CONFIG;
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ETIMEDOUT:
		return CLI_EXIT_UNAVAILABLE;
	default:
		return CLI_EXIT_FAIL;
	}
}

int cli_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k':
		mult = 1ull << 10;
		end++;
		break;
	case 'm':
		mult = 1ull << 20;
		end++;
		break;
	case 'g':
		mult = 1ull << 30;
		end++;
		break;
	case 't':
		mult = 1ull << 40;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (mult > 1 && (!strcasecmp(end, "ib") || !strcasecmp(end, "b")))
		end += strlen(end);
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*bytes = v * mult;
	return 0;
}

int cli_parse_duration(const char *s, uint64_t *ms)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || v < 0 || end == s)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		*ms = (uint64_t)v;
	else if (!strcmp(end, "s") || !*end)
		*ms = (uint64_t)(v * 1e3);
	else if (!strcmp(end, "m"))
		*ms = (uint64_t)(v * 60e3);
	else if (!strcmp(end, "h"))
		*ms = (uint64_t)(v * 3600e3);
	else
		return -EINVAL;
	return 0;
}

double cli_now_s(void)
{
	return clock_mono_s();
}

int cli_opt_output(const char *arg, enum out_format *format)
{
	if (out_parse_format(arg, format)) {
		cli_err("--output %s: use text or json", arg);
		return -EINVAL;
	}
	return 0;
}

int cli_opt_progress(const char *arg, enum progress_mode *mode)
{
	if (progress_parse_mode(arg, mode)) {
		cli_err("--progress %s: use auto, tty, log or none", arg);
		return -EINVAL;
	}
	return 0;
}

int cli_opt_timeout(const char *arg, unsigned *ms)
{
	uint64_t v;

	if (cli_parse_duration(arg, &v) || v < 100 || v > 3600000) {
		cli_err("--timeout %s: expected a duration from 100ms to 1h", arg);
		return -EINVAL;
	}
	*ms = (unsigned)v;
	return 0;
}

int cli_opt_rate(const char *opt, const char *arg, uint64_t *bytes_per_s)
{
	uint64_t v;

	if (cli_parse_size(arg, &v) || v < 4096) {
		cli_err("--%s %s: expected bytes per second, at least 4k (e.g. 50M)", opt, arg);
		return -EINVAL;
	}
	*bytes_per_s = v;
	return 0;
}

int cli_opt_verbosity(const char *arg, int *level)
{
	uint64_t v;

	if (cli_parse_size(arg, &v) || v > LOG_DEBUG) {
		cli_err("-v %s: expected 0 (errors) to 3 (debug)", arg);
		return -EINVAL;
	}
	*level = (int)v;
	return 0;
}

int cli_opt_log_format(const char *arg, enum log_format *format)
{
	if (log_parse_format(arg, format)) {
		cli_err("--log-format %s: use text or json", arg);
		return -EINVAL;
	}
	return 0;
}

int cli_opt_block_size(const char *arg, uint32_t *bytes)
{
	uint64_t v;

	if (cli_parse_size(arg, &v) || v < SCAN_BLOCK_BYTES_MIN || v > SCAN_BLOCK_BYTES_MAX ||
	    (v & (v - 1))) {
		cli_err("--block-size %s: expected a power of two from 4k to 1M", arg);
		return -EINVAL;
	}
	*bytes = (uint32_t)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl <command> [options]\n\n"
		"pvrepl replicates block volumes to a standby, asynchronously, without a kernel module.\n\n"
		"Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n`pvrepl <command> --help` shows a command's options.\n\n"
		   "Exit codes: 0 ok, 1 failed, 2 usage, 65 corrupt data, 66 no such device,\n"
		   "69 peer unavailable, 74 I/O error, 77 permission denied, 78 configuration\n"
		   "error (a config file or PVREPL_* variable, or a volume that does not fit).\n");
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("pvrepl %s\n", PVREPL_VERSION);
	return CLI_EXIT_OK;
}

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return CLI_EXIT_OK;
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_err("unknown command '%s'; run 'pvrepl --help' for the list", argv[1]);
	return CLI_EXIT_USAGE;
}

const char *cli_config_path(int argc, char **argv)
{
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc)
			path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
	}
	return path;
}
