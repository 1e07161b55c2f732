/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log — the daemons' log lines, on stderr: text (`2026-11-27T20:12:41.123Z info
 * receive volume=vol peer=10.0.0.1 epoch=3 committed and applied`) or one JSON
 * object per line (`--log-format=json`, for log collectors), each carrying the
 * volume, peer and epoch where they apply. `-v N` sets how much is said. A fatal
 * reason is also written to a termination-log file when one is given (Kubernetes
 * shows it as the container's termination message).
 */
#ifndef PVREPL_LOG_H
#define PVREPL_LOG_H

#include <stdint.h>

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
};

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2, /* the default verbosity (-v 2) */
	LOG_DEBUG = 3,
};

/* component: "receive", "replicate"... Strings are borrowed for the process's life. */
void log_init(const char *component, enum log_format format, int verbosity,
	      const char *termination_log);
/* volume and peer may be NULL, epoch 0: left out of the line. */
void log_msg(enum log_level level, const char *volume, const char *peer, uint64_t epoch,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* An error that ends the process: logged, and written to the termination log. */
void log_fatal(const char *volume, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_parse_format(const char *s, enum log_format *format);

#endif
