// SPDX-License-Identifier: Apache-2.0
/*
 * log — structured log lines for the daemons (see log.h). JSON goes through the
 * out module (jansson), so every string is escaped by a library, not by hand.
 * Lines are written whole under the stdio lock, so threads never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "out.h"

#define LOG_LINE_MAX 1024

static const char *log_component = "pvrepl";
static enum log_format log_format_cur = LOG_FORMAT_TEXT;
static int log_verbosity = LOG_INFO;
static const char *log_termination_path;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_init(const char *component, enum log_format format, int verbosity,
	      const char *termination_log)
{
	log_component = component;
	log_format_cur = format;
	log_verbosity = verbosity;
	log_termination_path = termination_log;
}

int log_parse_format(const char *s, enum log_format *format)
{
	if (!strcmp(s, "text"))
		*format = LOG_FORMAT_TEXT;
	else if (!strcmp(s, "json"))
		*format = LOG_FORMAT_JSON;
	else
		return -EINVAL;
	return 0;
}

static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%.20s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void emit(enum log_level level, const char *volume, const char *peer, uint64_t epoch,
		 const char *msg)
{
	char ts[40];

	timestamp(ts, sizeof(ts));
	if (log_format_cur == LOG_FORMAT_JSON) {
		struct out *o = out_new();

		if (!o)
			return;
		out_str(o, "ts", "ts", ts);
		out_str(o, "level", "level", level_names[level]);
		out_str(o, "component", "component", log_component);
		if (volume)
			out_str(o, "volume", "volume", volume);
		if (peer)
			out_str(o, "peer", "peer", peer);
		if (epoch)
			out_u64(o, "epoch", "epoch", epoch, OUT_UNIT_NONE);
		out_str(o, "msg", "msg", msg);
		flockfile(stderr);
		out_print(o, OUT_JSON, stderr);
		funlockfile(stderr);
		out_free(o);
		return;
	}
	flockfile(stderr);
	fprintf(stderr, "%s %s %s", ts, level_names[level], log_component);
	if (volume)
		fprintf(stderr, " volume=%s", volume);
	if (peer)
		fprintf(stderr, " peer=%s", peer);
	if (epoch)
		fprintf(stderr, " epoch=%llu", (unsigned long long)epoch);
	fprintf(stderr, " %s\n", msg);
	fflush(stderr);
	funlockfile(stderr);
}

void log_msg(enum log_level level, const char *volume, const char *peer, uint64_t epoch,
	     const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;

	if ((int)level > log_verbosity)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(level, volume, peer, epoch, msg);
}

void log_fatal(const char *volume, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(LOG_ERROR, volume, NULL, 0, msg);
	if (!log_termination_path)
		return;
	fd = open(log_termination_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, msg, strlen(msg)) < 0 || write(fd, "\n", 1) < 0)
		emit(LOG_WARN, NULL, NULL, 0, "cannot write the termination log");
	close(fd);
}
