/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli_opt — parsing the values of command-line options, shared by the subcommands
 * (cmd_*.c) and the config file (config.c): sizes, durations, the option values
 * several commands take, and --config before getopt runs. Errors go to stderr
 * through cli_err, which every subcommand uses too.
 *
 * It knows the syntax and limits of values, not the commands: the subcommand
 * table and the exit codes are in cli.h.
 */
#ifndef PVREPL_CLI_OPT_H
#define PVREPL_CLI_OPT_H

#include <stdint.h>

#include "log.h"
#include "out.h"
#include "progress.h"

/* Prints "pvrepl: <msg>" to stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "4k", "64KiB", "1M", "4096" -> bytes. Returns 0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t *bytes);
/* "30s", "5m", "250ms", "1h" -> milliseconds. Returns 0 or -EINVAL. */
int cli_parse_duration(const char *s, uint64_t *ms);
/* A rate in bytes per second: sizes as cli_parse_size ("50M" = 50 MiB/s, "/s"
 * allowed), or bits with decimal multipliers ("400Mbit", "400Mb", "1Gbps"). */
int cli_parse_rate(const char *s, uint64_t *bytes_per_s);
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
/* Where write trackers are pinned: an absolute path (what names it, followed
 * by the value in the error: "--track-pin-dir " or "VAR="). cli_env_pin_dir takes PVREPL_TRACK_PIN_DIR into *dir when
 * it is set (unchanged when not). Both return 0 or -EINVAL with the error said. */
int cli_opt_pin_dir(const char *what, const char *arg, const char **dir);
int cli_env_pin_dir(const char **dir);
/* The FILE of --config FILE, --config=FILE, -c FILE or -cFILE (and of the
 * abbreviations getopt_long accepts, --conf FILE...) in argv, before getopt runs
 * (the file is the bottom layer: flags parsed later override it); NULL if absent. */
const char *cli_config_path(int argc, char **argv);

#endif
