// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of cli_opt: cli_config_path finds --config FILE in every spelling
 * getopt_long accepts for it (--config FILE, --config=FILE, -c FILE, -cFILE, and
 * the unambiguous abbreviations --conf FILE / --conf=FILE), because a spelling it
 * misses is accepted by getopt and then silently ignored: the command runs
 * without its config file. cli_parse_duration takes the units it documents and
 * refuses what no uint64_t of milliseconds holds (nan, inf, 1e300s) instead of
 * converting it (undefined behaviour: nan came out as 2^63 ms, inf as 0).
 * Table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli_opt.h"
#include "pvrepl_assert.h"

#define ARGS_MAX 6

struct config_path_case {
	const char *argv[ARGS_MAX]; /* NULL-terminated */
	const char *want;	    /* NULL: no config file */
};

static const struct config_path_case config_path_cases[] = {
	{ { "replicate", "--config", "a.conf" }, "a.conf" },
	{ { "replicate", "--config=a.conf" }, "a.conf" },
	{ { "replicate", "-c", "a.conf" }, "a.conf" },
	{ { "replicate", "-ca.conf" }, "a.conf" },
	{ { "replicate", "--conf", "a.conf" }, "a.conf" },
	{ { "replicate", "--conf=a.conf" }, "a.conf" },
	{ { "replicate", "--c=a.conf" }, "a.conf" },
	/* The last one wins, as with getopt. */
	{ { "replicate", "-c", "a.conf", "--config=b.conf" }, "b.conf" },
	{ { "replicate", "-ca.conf", "-cb.conf" }, "b.conf" },
	/* No config. */
	{ { "replicate" }, NULL },
	{ { "replicate", "--config" }, NULL }, /* no value: getopt's error */
	{ { "replicate", "--", "-c", "a.conf" }, NULL },
	{ { "replicate", "--configs=a.conf" }, NULL }, /* not a prefix of --config */
	{ { "replicate", "--=a.conf" }, NULL },
	{ { "replicate", "-" }, NULL },
};

static void test_config_path(void **state)
{
	unsigned bad = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(config_path_cases); i++) {
		const struct config_path_case *t = &config_path_cases[i];
		char *argv[ARGS_MAX + 1] = { NULL };
		const char *got;
		int argc = 0;

		while (argc < ARGS_MAX && t->argv[argc]) {
			argv[argc] = (char *)t->argv[argc];
			argc++;
		}
		got = cli_config_path(argc, argv);
		if (got && t->want && !strcmp(got, t->want))
			continue;
		if (!got && !t->want)
			continue;
		fprintf(stderr, "case %zu (%s%s): got %s, want %s\n", i,
			t->argv[1] ? t->argv[1] : "", t->argv[1] && t->argv[2] ? " ..." : "",
			got ? got : "none", t->want ? t->want : "none");
		bad++;
	}
	assert_int_equal(bad, 0);
}

struct duration_case {
	const char *arg;
	int rc;
	uint64_t ms;
};

static const struct duration_case duration_cases[] = {
	{ "250ms", 0, 250 },
	{ "30s", 0, 30000 },
	{ "30", 0, 30000 },
	{ ".5s", 0, 500 },
	{ "5m", 0, 300000 },
	{ "1h", 0, 3600000 },
	{ "0", 0, 0 },
	{ "18446744073709549568ms", 0, 18446744073709549568ull }, /* the largest below 2^64 */
	{ "", -EINVAL, 0 },
	{ "s", -EINVAL, 0 },
	{ "-1s", -EINVAL, 0 },
	{ "5d", -EINVAL, 0 },
	{ "nan", -EINVAL, 0 },
	{ "nan(1)s", -EINVAL, 0 },
	{ "inf", -EINVAL, 0 },
	{ "infinity", -EINVAL, 0 },
	{ "1e300s", -EINVAL, 0 },
	{ "1e19s", -EINVAL, 0 },
	{ "18446744073709551616ms", -EINVAL, 0 }, /* 2^64 */
	{ "1e400", -EINVAL, 0 },		  /* ERANGE */
};

static void test_parse_duration(void **state)
{
	unsigned bad = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(duration_cases); i++) {
		const struct duration_case *t = &duration_cases[i];
		uint64_t ms = 12345;
		int rc = cli_parse_duration(t->arg, &ms);

		if (rc == t->rc && (rc || ms == t->ms))
			continue;
		fprintf(stderr, "'%s': got rc %d ms %" PRIu64 ", want rc %d ms %" PRIu64 "\n",
			t->arg, rc, ms, t->rc, t->ms);
		bad++;
	}
	assert_int_equal(bad, 0);
}

/* Rates: bytes as sizes (binary), bits as links are rated (decimal); a
 * lowercase "b" is bits ("1Gb" once read as 1 GiB/s), an uppercase "B" bytes. */
static void test_parse_rate(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t want;
	} cases[] = {
		{ "50M", 0, 50ull << 20 },    { "50MB", 0, 50ull << 20 },
		{ "50MiB", 0, 50ull << 20 },  { "50M/s", 0, 50ull << 20 },
		{ "50MB/s", 0, 50ull << 20 }, { "100Mbit", 0, 12500000 },
		{ "100mbit", 0, 12500000 },   { "100Mb", 0, 12500000 },
		{ "100Mbps", 0, 12500000 },   { "100Mbit/s", 0, 12500000 },
		{ "1Gb", 0, 125000000 },      { "1Gb/s", 0, 125000000 },
		{ "2.5Gbit", 0, 312500000 },  { "1GB", 0, 1ull << 30 },
		{ "4096", 0, 4096 },	      { "800kbit", 0, 100000 },
		{ "fast", -EINVAL, 0 },	      { "10Xbit", -EINVAL, 0 },
		{ "Mbit", -EINVAL, 0 },	      { "-1Mbit", -EINVAL, 0 },
		{ "1e30Gbit", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 0;
		int rc = cli_parse_rate(cases[i].in, &v);

		if (rc != cases[i].rc || (!rc && v != cases[i].want))
			fail_msg("%s: rc %d value %" PRIu64 ", want rc %d value %" PRIu64,
				 cases[i].in, rc, v, cases[i].rc, cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_path),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_rate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
