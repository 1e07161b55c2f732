/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli — the subcommand table ({name, fn, help}, as wireguard's wg.c), exit codes,
 * and the small helpers every subcommand shares (parsing sizes and durations,
 * mapping an -errno to the documented exit code). Subcommands live in cmd_*.c.
 */
#ifndef PVREPL_CLI_H
#define PVREPL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "out.h"
#include "progress.h"

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
/* Prints "pvrepl: <msg>" to stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Maps a negative errno from a library call to an exit code. */
int cli_exit_for(int err);
/* "4k", "64KiB", "1M", "4096" -> bytes. Returns 0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t *bytes);
/* "30s", "5m", "250ms", "1h" -> milliseconds. Returns 0 or -EINVAL. */
int cli_parse_duration(const char *s, uint64_t *ms);
double cli_now_s(void);
/* Option values shared by several commands; each prints its own error naming the
 * option and the accepted values, and returns 0 or -EINVAL. */
int cli_opt_output(const char *arg, enum out_format *format);
int cli_opt_progress(const char *arg, enum progress_mode *mode);
int cli_opt_block_size(const char *arg, uint32_t *bytes); /* power of two, 4k..1M */
int cli_opt_timeout(const char *arg, unsigned *ms);	  /* --timeout: 100ms..1h */
/* A cap in bytes per second, at least 4k; opt names it ("max-rate"). */
int cli_opt_rate(const char *opt, const char *arg, uint64_t *bytes_per_s);
int cli_opt_verbosity(const char *arg, int *level);		  /* -v 0..3 */
int cli_opt_log_format(const char *arg, enum log_format *format); /* text or json */
/* The FILE of --config FILE, --config=FILE or -c FILE in argv, before getopt runs (the
 * file is the bottom layer: flags parsed later override it); NULL if absent. */
const char *cli_config_path(int argc, char **argv);

int cmd_probe(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_replicate(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_config(int argc, char **argv);

#endif
