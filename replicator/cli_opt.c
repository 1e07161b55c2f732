// SPDX-License-Identifier: Apache-2.0
/*
 * cli_opt — the option and value parsers that subcommands and the config file
 * share: sizes, durations, the --output / --progress / --timeout / --max-rate /
 * -v / --log-format / --block-size values, finding --config before getopt runs,
 * and cli_err, through which every parser (and every subcommand) reports. Each
 * parser either fills its output or prints one error naming the option and the
 * accepted values and returns -EINVAL.
 *
 * It knows the value syntax and limits, not the commands: the subcommand table,
 * the exit codes and the help are in cli.c, so config.c can parse values without
 * seeing them.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_opt.h"
#include "kfio.h"
#include "scan.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("pvrepl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
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

/* 2^64, the first double no uint64_t holds: converting it, anything above, inf or
 * nan to an integer is undefined (on x86-64, nan became 2^63 ms and inf 0). */
#define CLI_DURATION_MS_LIMIT 18446744073709551616.0

int cli_parse_duration(const char *s, uint64_t *ms)
{
	char *end;
	double v, unit_ms;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || !(v >= 0) || end == s) /* !(v >= 0) is also true for nan */
		return -EINVAL;
	if (!strcmp(end, "ms"))
		unit_ms = 1;
	else if (!strcmp(end, "s") || !*end)
		unit_ms = 1e3;
	else if (!strcmp(end, "m"))
		unit_ms = 60e3;
	else if (!strcmp(end, "h"))
		unit_ms = 3600e3;
	else
		return -EINVAL;
	v *= unit_ms;
	if (!(v < CLI_DURATION_MS_LIMIT))
		return -EINVAL;
	*ms = (uint64_t)v;
	return 0;
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

/*
 * RATE: bytes per second as cli_parse_size ("100M" = 100 MiB/s, "100MB",
 * "100MiB", optional "/s"), or bits per second with a "bit", "bit/s", "bps" or
 * a lowercase "b" suffix and decimal multipliers ("100Mbit" = "100Mb" =
 * 12.5e6 bytes/s, "2.5Gbit"), as network links are rated. Returns 0 or
 * -EINVAL.
 */
int cli_parse_rate(const char *s, uint64_t *bytes_per_s)
{
	static const char *const bit_suffixes[] = { "bit/s", "bit", "bps", "b/s", "b" };
	char num[64];
	size_t len = strlen(s);
	double v, mult = 1;
	char *end;

	for (size_t i = 0; i < ARRAY_SIZE(bit_suffixes); i++) {
		size_t sl = strlen(bit_suffixes[i]);

		/* "b" and "b/s" are bits in lowercase only ("MB" is bytes). */
		bool exact = bit_suffixes[i][0] == 'b' && bit_suffixes[i][1] != 'i' &&
			     bit_suffixes[i][1] != 'p';

		if (len <= sl || (exact ? strcmp(s + len - sl, bit_suffixes[i])
					: strcasecmp(s + len - sl, bit_suffixes[i])))
			continue;
		if (len - sl >= sizeof(num) || !isdigit((unsigned char)s[0]))
			return -EINVAL;
		memcpy(num, s, len - sl);
		num[len - sl] = '\0';
		errno = 0;
		v = strtod(num, &end);
		if (errno || end == num)
			return -EINVAL;
		switch (tolower((unsigned char)*end)) {
		case '\0':
			break;
		case 'k':
			mult = 1e3;
			end++;
			break;
		case 'm':
			mult = 1e6;
			end++;
			break;
		case 'g':
			mult = 1e9;
			end++;
			break;
		case 't':
			mult = 1e12;
			end++;
			break;
		default:
			return -EINVAL;
		}
		if (*end)
			return -EINVAL;
		v = v * mult / 8;
		if (!isfinite(v) || v < 0 || v >= 1.8e19)
			return -EINVAL;
		*bytes_per_s = (uint64_t)v;
		return 0;
	}
	if (len > 2 && !strcmp(s + len - 2, "/s")) {
		if (len - 2 >= sizeof(num))
			return -EINVAL;
		memcpy(num, s, len - 2);
		num[len - 2] = '\0';
		return cli_parse_size(num, bytes_per_s);
	}
	return cli_parse_size(s, bytes_per_s);
}

int cli_opt_rate(const char *opt, const char *arg, uint64_t *bytes_per_s)
{
	uint64_t v;

	if (cli_parse_rate(arg, &v) || v < 4096) {
		cli_err("--%s %s: expected a rate of at least 4k bytes per second: 50M (MiB/s), 50MB/s, or bits as links are rated: 400Mbit, 400Mb, 1Gbps",
			opt, arg);
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

/*
 * getopt_long takes any unambiguous prefix of a long option ("--conf FILE",
 * "--co=FILE"); "config" is the only long option starting with 'c' in the commands
 * that take it (send/replicate, receive), so every prefix of it means --config.
 */
static bool cli_is_config_long(const char *name, size_t len)
{
	return len >= 1 && len <= strlen("config") && !strncmp(name, "config", len);
}

const char *cli_config_path(int argc, char **argv)
{
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *name, *eq;
		size_t len;

		if (!strcmp(arg, "--"))
			break;
		if (!strcmp(arg, "-c")) {
			if (i + 1 < argc)
				path = argv[++i];
			continue;
		}
		if (!strncmp(arg, "-c", 2)) { /* -cFILE, as getopt reads it */
			path = arg + 2;
			continue;
		}
		if (strncmp(arg, "--", 2))
			continue;
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if (!cli_is_config_long(name, len))
			continue;
		if (eq)
			path = eq + 1;
		else if (i + 1 < argc)
			path = argv[++i];
	}
	return path;
}

int cli_opt_pin_dir(const char *what, const char *arg, const char **dir)
{
	if (arg[0] != '/') {
		cli_err("%s%s: expected an absolute path on bpffs, e.g. %s", what, arg,
			KFIO_TRACK_PIN_ROOT_DEFAULT);
		return -EINVAL;
	}
	*dir = arg;
	return 0;
}

int cli_env_pin_dir(const char **dir)
{
	const char *v = getenv("PVREPL_TRACK_PIN_DIR");

	if (!v || !v[0])
		return 0;
	return cli_opt_pin_dir("PVREPL_TRACK_PIN_DIR=", v, dir);
}
