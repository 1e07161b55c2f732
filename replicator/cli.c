// SPDX-License-Identifier: Apache-2.0
/*
 * cli — dispatches `pvrepl <command>` through one table, prints the top-level help
 * and version, and maps an -errno to the documented exit code. It owns no
 * replication logic (each command is in its own cmd_*.c) and no option syntax
 * (the parsers commands and the config file share are in cli_opt.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "pvrepl_assert.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cli_cmd commands[] = {
	{ "demo", cmd_demo, "run the built-in demo on two temporary image files" },
	{ "send", cmd_send, "replicate one epoch of a volume to a receiver" },
	{ "replicate", cmd_replicate,
	  "replicate volumes continuously, one epoch per interval (--config: several)" },
	{ "receive", cmd_receive, "serve standby volumes for senders (the receiver daemon)" },
	{ "track", cmd_track, "list or remove the eBPF write trackers pinned on this node" },
	{ "status", cmd_status, "show the replication state of the volumes (either side)" },
	{ "scan", cmd_scan, "find the blocks of a device that changed since the recorded map" },
	{ "bench", cmd_bench, "measure a device's scan and lz4 rates; project sync time and RPO" },
	{ "probe", cmd_probe, "show a device's size, block sizes and I/O capabilities" },
	{ "config", cmd_config, "check a configuration file: pvrepl config validate FILE" },
	{ "certs", cmd_certs, "create a CA and node certificates for tests and the demo" },
	{ "version", cmd_version, "print the version" },
	{ "help", cmd_help, "show this help" },
};

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

double cli_now_s(void)
{
	return clock_mono_s();
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
