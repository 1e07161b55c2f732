/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli — the subcommand table ({name, fn, help}, as wireguard's wg.c), exit codes,
 * and the small helpers every subcommand shares (mapping an -errno to the
 * documented exit code, a monotonic clock). Subcommands live in cmd_*.c; the
 * parsers of option values (and cli_err) are in cli_opt.h, included here.
 */
#ifndef PVREPL_CLI_H
#define PVREPL_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* The option parsers and cli_err, which every subcommand uses. */
#include "cli_opt.h"

#define PVREPL_VERSION "0.1.0"

/* Exit codes (documented in the README and `pvrepl --help`). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,	   /* the operation failed; the message says why */
	CLI_EXIT_USAGE = 2,	   /* bad command line */
	CLI_EXIT_DATAERR = 65,	   /* EX_DATAERR: corrupt state or data on disk */
	CLI_EXIT_NOINPUT = 66,	   /* EX_NOINPUT: a device or file does not exist */
	CLI_EXIT_UNAVAILABLE = 69, /* EX_UNAVAILABLE: peer or service unavailable */
	CLI_EXIT_IOERR = 74,	   /* EX_IOERR: an I/O error on a device or file */
	CLI_EXIT_NOPERM = 77,	   /* EX_NOPERM: permission denied */
	CLI_EXIT_CONFIG = 78,	   /* EX_CONFIG: configuration does not fit the volume */
};

struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help; /* one line for the command list */
};

int cli_main(int argc, char **argv);
/* Maps a negative errno from a library call to an exit code. */
int cli_exit_for(int err);
double cli_now_s(void);

int cmd_probe(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_replicate(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_track(int argc, char **argv);
int cmd_config(int argc, char **argv);

#endif
