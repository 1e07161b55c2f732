// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of config: a valid file with two volumes parses to the right values;
 * a file with four different problems reports all four at the right lines (and a
 * table of single mistakes, each at its line); PVREPL_* variables override the
 * file and bad ones are refused by name; 64 volumes fit and the 65th is refused at
 * its header; a missing file gives -ENOENT and a problem naming it. Files are
 * written to a temp dir removed at exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "pvrepl_assert.h"
#include "testutil.h"

static struct config cfg; /* large: off the stack */
static struct config_problem problems[CONFIG_PROBLEMS_MAX];
static char dir[512];

static const char *write_file(const char *name, const char *text)
{
	static char path[600];
	FILE *f;

	if (!dir[0])
		assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void dump(unsigned n)
{
	for (unsigned i = 0; i < n && i < CONFIG_PROBLEMS_MAX; i++)
		fprintf(stderr, "  problem %u: line %u: %s\n", i, problems[i].line,
			problems[i].message);
}

static const char good[] = "; two volumes, both sides\n"
			   "[receiver]\n"
			   "listen = 0.0.0.0:7400\n"
			   "tls_dir = /etc/pvrepl/tls\n"
			   "state_dir = /var/lib/pvrepl\n"
			   "journal_size = 2G\n"
			   "metrics_addr = :9500\n"
			   "\n"
			   "[sender]\n"
			   "tls_dir = /etc/pvrepl/tls\n"
			   "peer = [fd00::1]:7400\n"
			   "server_name = standby\n"
			   "interval = 30s\n"
			   "rpo = 5m\n"
			   "timeout = 10s\n"
			   "max_rate = 50M\n"
			   "max_read_rate = 200M\n"
			   "block_size = 64k\n"
			   "\n"
			   "[volume data]\n"
			   "device = /dev/vg0/data\n"
			   "state_dir = /var/lib/pvrepl/data\n"
			   "allow = primary-a, primary-b\n"
			   "allow = primary-c\n"
			   "\n"
			   "[volume logs]\n"
			   "device = /dev/vg0/logs\n"
			   "state_dir = /var/lib/pvrepl/logs\n";

static void test_valid_two_volumes(void **state)
{
	unsigned n = 99;

	(void)state;
	assert_int_equal(
		config_load(&cfg, write_file("good.ini", good), problems, CONFIG_PROBLEMS_MAX, &n),
		0);
	assert_int_equal(n, 0);
	assert_true(cfg.receiver.present);
	assert_int_equal(cfg.receiver.line, 2);
	assert_string_equal(cfg.receiver.listen, "0.0.0.0:7400");
	assert_string_equal(cfg.receiver.state_dir, "/var/lib/pvrepl");
	assert_int_equal(cfg.receiver.journal_bytes, 2ull << 30);
	assert_int_equal(cfg.receiver.timeout_ms, 30000); /* the default */
	assert_string_equal(cfg.receiver.metrics_addr, ":9500");
	assert_true(cfg.sender.present);
	assert_string_equal(cfg.sender.peer, "[fd00::1]:7400");
	assert_string_equal(cfg.sender.server_name, "standby");
	assert_int_equal(cfg.sender.interval_ms, 30000);
	assert_int_equal(cfg.sender.rpo_ms, 300000);
	assert_int_equal(cfg.sender.timeout_ms, 10000);
	assert_int_equal(cfg.sender.max_rate_bytes_per_s, 50ull << 20);
	assert_int_equal(cfg.sender.max_read_bytes_per_s, 200ull << 20);
	assert_int_equal(cfg.sender.block_bytes, 64u << 10);
	assert_int_equal(cfg.volume_count, 2);
	assert_string_equal(cfg.volumes[0].name, "data");
	assert_int_equal(cfg.volumes[0].line, 20);
	assert_string_equal(cfg.volumes[0].device, "/dev/vg0/data");
	assert_string_equal(cfg.volumes[0].state_dir, "/var/lib/pvrepl/data");
	assert_int_equal(cfg.volumes[0].allow_count, 3);
	assert_string_equal(cfg.volumes[0].allow[0], "primary-a");
	assert_string_equal(cfg.volumes[0].allow[1], "primary-b");
	assert_string_equal(cfg.volumes[0].allow[2], "primary-c");
	assert_string_equal(cfg.volumes[1].name, "logs");
	assert_string_equal(cfg.volumes[1].device, "/dev/vg0/logs");
	assert_int_equal(cfg.volumes[1].allow_count, 0);
}

/* Four different problems: all four reported, sorted, with their lines. */
static void test_four_problems(void **state)
{
	static const char text[] = "[receiver]\n"		 /* 1: lacks state_dir */
				   "listen = 0.0.0.0:7400\n"	 /* 2 */
				   "tls_dir = /etc/pvrepl/tls\n" /* 3 */
				   "colour = blue\n"		 /* 4: unknown key */
				   "[volume a]\n"		 /* 5 */
				   "device = /dev/a\n"		 /* 6 */
				   "[volume a]\n"		 /* 7: duplicate */
				   "device = /dev/b\n"		 /* 8 */
				   "[volume b]\n"		 /* 9 */
				   "device = /dev/c\n"		 /* 10 */
				   "journal_size = 1M\n";	 /* 11: not a volume key */
	static const struct {
		unsigned line;
		const char *words;
	} want[] = {
		{ 1, "lacks state_dir" },
		{ 4, "unknown key 'colour'" },
		{ 7, "[volume a] appears twice (first on line 5)" },
		{ 11, "unknown key 'journal_size' in [volume]" },
	};
	unsigned n = 0;

	(void)state;
	assert_int_equal(
		config_load(&cfg, write_file("bad.ini", text), problems, CONFIG_PROBLEMS_MAX, &n),
		-EINVAL);
	dump(n);
	assert_int_equal(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		assert_int_equal(problems[i].line, want[i].line);
		assert_non_null(strstr(problems[i].message, want[i].words));
	}
}

/* One mistake per row: reported once, at its line, with the words. */
static void test_single_mistakes(void **state)
{
	static const char head[] = "[receiver]\n"
				   "listen = :7400\n"
				   "tls_dir = /t\n"
				   "state_dir = /s\n"
				   "[volume v]\n"
				   "device = /dev/v\n"
				   "state_dir = /s/v\n";
	static const struct {
		const char *tail; /* from line 8 on */
		unsigned line;
		const char *words;
	} rows[] = {
		{ "allow = a,,b\n", 8, "allow = a,,b: expected certificate names" },
		{ "allow = 1,2,3,4,5,6,7,8,9\n", 8, "at most 8 allow entries" },
		{ "device = /dev/w\n", 8, "device is set twice" },
		{ "state_dir =\n", 8, "state_dir is set twice" },
		{ "no equals sign\n", 8, "cannot parse this line" },
		{ "[volume a b]\n", 8, "a volume needs a name" },
		{ "[volume]\n", 8, "a volume needs a name" },
		{ "[receiver\n", 8, "lacks its ']'" },
		{ "[receiver]\n", 8, "[receiver] appears twice (first on line 1)" },
		{ "[volume w]\ndevice =\n", 9, "device = : expected an absolute path" },
		{ "[sender]\ntls_dir=/t\npeer=h:1\ninterval=0s\n", 11, "interval = 0s: expected" },
		{ "[sender]\ntls_dir=/t\npeer=h:99999\ninterval=1s\n", 10, "peer = h:99999" },
		{ "[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\nblock_size=12k\n", 12,
		  "block_size = 12k: expected a power of two" },
		{ "[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\nblock_size=2M\n", 12,
		  "block_size = 2M" },
		{ "[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\ntimeout=50ms\n", 12,
		  "timeout = 50ms: expected a duration from 100ms to 1h" },
		/* a shell command cut by libinih's inline comment */
		{ "snapshot_cmd = true ; /bin/snap\n", 8, "starts a comment in this file" },
		{ "[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\nmax_rate=fast\n", 12,
		  "max_rate = fast: expected a rate" },
		/* a sender's volume: its capture against its snapshot commands */
		{ "capture = snapshot\n[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\n", 5,
		  "lacks snapshot_cmd" },
		{ "snapshot_cmd = /bin/snap\n[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\n", 5,
		  "has a snapshot command, but its capture is auto" },
		{ "state_dir = relative\n", 8, "state_dir is set twice" },
	};
	char text[1024];
	unsigned n = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		snprintf(text, sizeof(text), "%s%s", head, rows[i].tail);
		n = 0;
		assert_int_equal(config_load(&cfg, write_file("one.ini", text), problems,
					     CONFIG_PROBLEMS_MAX, &n),
				 -EINVAL);
		if (n != 1 || !strstr(problems[0].message, rows[i].words)) {
			fprintf(stderr, "row %zu (%s):\n", i, rows[i].words);
			dump(n);
		}
		assert_int_equal(n, 1);
		assert_int_equal(problems[0].line, rows[i].line);
		assert_non_null(strstr(problems[0].message, rows[i].words));
	}
}

/* What the environment changes is checked as the file was: a capture that
 * PVREPL_CAPTURE turns away from the file's snapshot command is a problem. */
static void test_env_capture_check(void **state)
{
	static const char text[] = "[sender]\ntls_dir = /t\npeer = h:1\ninterval = 1s\n"
				   "[volume v]\ndevice = /dev/v\nstate_dir = /s/v\n"
				   "capture = snapshot\nsnapshot_cmd = /bin/snap\n";
	char *noenv[] = { NULL }, *bad[] = { "PVREPL_CAPTURE=reflink", NULL },
	     *none[] = { "PVREPL_CAPTURE=none", "PVREPL_SNAPSHOT_CMD=/bin/other", NULL };
	char msg[2048];
	const char *path = write_file("snap.ini", text);

	(void)state;
	assert_int_equal(config_gather(&cfg, path, noenv, msg, sizeof(msg)), 0);
	/* the volume's own capture wins over [sender]'s (PVREPL_CAPTURE) */
	assert_int_equal(config_gather(&cfg, path, bad, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.volumes[0].snapshot_cmd, "/bin/snap");
	assert_int_equal(config_gather(&cfg, path, none, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.volumes[0].snapshot_cmd, "/bin/other");
	/* [sender] capture = snapshot in the file, turned to reflink by the
	 * environment: the volume's command no longer fits */
	path = write_file("snap2.ini", "[sender]\ntls_dir = /t\npeer = h:1\ninterval = 1s\n"
				       "capture = snapshot\n"
				       "[volume v]\ndevice = /dev/v\nstate_dir = /s/v\n"
				       "snapshot_cmd = /bin/snap\n");
	assert_int_equal(config_gather(&cfg, path, noenv, msg, sizeof(msg)), 0);
	assert_int_equal(config_gather(&cfg, path, bad, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(
		msg, "environment: [volume v] has a snapshot command, but its capture is reflink"));
}

static void test_env_overrides(void **state)
{
	char *env[] = {
		"PVREPL=/usr/bin/pvrepl", /* not a config variable */
		"PVREPL_PEER=other:7401",
		"PVREPL_INTERVAL=1m",
		"PVREPL_RPO=10m",
		"PVREPL_TIMEOUT=5s",
		"PVREPL_MAX_RATE=10M",
		"PVREPL_TLS_DIR=/run/tls",
		"PVREPL_STATE_DIR=/srv/state",
		"PVREPL_METRICS_ADDR=127.0.0.1:9600",
		"PVREPL_LISTEN=[::]:7402",
		"PVREPL_DEVICE=/dev/vg1/data",
		"PVREPL_ALLOW=x,y",
		NULL,
	};
	char *bad[] = { "PVREPL_RPO=soon", "PVREPL_PEER=nohost", NULL };
	char *many[] = { "PVREPL_DEVICE=/dev/z", NULL };
	char *fresh[] = { "PVREPL_VOLUME=solo", "PVREPL_DEVICE=/dev/solo", NULL };
	static const char one[] = "[sender]\ntls_dir=/t\npeer=h:1\ninterval=1s\n"
				  "[volume data]\ndevice=/dev/d\nstate_dir=/s\nallow=a\n";
	unsigned n = 0;

	(void)state;
	assert_int_equal(
		config_load(&cfg, write_file("one.ini", one), problems, CONFIG_PROBLEMS_MAX, &n),
		0);
	assert_int_equal(config_apply_env(&cfg, env, problems, CONFIG_PROBLEMS_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(cfg.sender.peer, "other:7401");
	assert_int_equal(cfg.sender.interval_ms, 60000);
	assert_int_equal(cfg.sender.rpo_ms, 600000);
	assert_int_equal(cfg.sender.timeout_ms, 5000);
	assert_int_equal(cfg.receiver.timeout_ms, 5000);
	assert_int_equal(cfg.sender.max_rate_bytes_per_s, 10ull << 20);
	assert_string_equal(cfg.sender.tls_dir, "/run/tls");
	assert_string_equal(cfg.receiver.tls_dir, "/run/tls");
	assert_string_equal(cfg.receiver.state_dir, "/srv/state");
	assert_string_equal(cfg.volumes[0].state_dir, "/srv/state");
	assert_string_equal(cfg.sender.metrics_addr, "127.0.0.1:9600");
	assert_string_equal(cfg.receiver.listen, "[::]:7402");
	assert_string_equal(cfg.volumes[0].device, "/dev/vg1/data");
	assert_int_equal(cfg.volumes[0].allow_count, 2); /* replaced, not appended */
	assert_string_equal(cfg.volumes[0].allow[1], "y");

	/* Bad values are refused by name and leave the value as it was. */
	n = 0;
	assert_int_equal(config_apply_env(&cfg, bad, problems, CONFIG_PROBLEMS_MAX, &n), -EINVAL);
	assert_int_equal(n, 2);
	assert_int_equal(problems[0].line, 0);
	assert_non_null(strstr(problems[0].message, "PVREPL_PEER=nohost"));
	assert_non_null(strstr(problems[1].message, "PVREPL_RPO=soon"));
	assert_int_equal(cfg.sender.rpo_ms, 600000);
	assert_string_equal(cfg.sender.peer, "other:7401");

	/* Volume variables need a single volume. */
	n = 0;
	assert_int_equal(
		config_load(&cfg, write_file("good.ini", good), problems, CONFIG_PROBLEMS_MAX, &n),
		0);
	assert_int_equal(config_apply_env(&cfg, many, problems, CONFIG_PROBLEMS_MAX, &n), -EINVAL);
	assert_int_equal(n, 1);
	assert_non_null(strstr(problems[0].message, "PVREPL_DEVICE is about a single volume"));
	assert_string_equal(cfg.volumes[0].device, "/dev/vg0/data");

	/* With no file at all, the environment describes the one volume. */
	config_init(&cfg);
	n = 0;
	assert_int_equal(config_apply_env(&cfg, fresh, problems, CONFIG_PROBLEMS_MAX, &n), 0);
	assert_int_equal(cfg.volume_count, 1);
	assert_string_equal(cfg.volumes[0].name, "solo");
	assert_string_equal(cfg.volumes[0].device, "/dev/solo");
}

static void test_volume_limit(void **state)
{
	static char text[64 * 1024];
	size_t len;
	unsigned n = 0;

	(void)state;
	len = (size_t)snprintf(text, sizeof(text),
			       "[receiver]\nlisten=:1\ntls_dir=/t\nstate_dir=/s\n");
	for (unsigned i = 0; i < CONFIG_VOLUMES_MAX; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"[volume v%u]\ndevice=/dev/v%u\n", i, i);
	assert_int_equal(
		config_load(&cfg, write_file("64.ini", text), problems, CONFIG_PROBLEMS_MAX, &n),
		0);
	assert_int_equal(cfg.volume_count, CONFIG_VOLUMES_MAX);
	assert_string_equal(cfg.volumes[63].device, "/dev/v63");

	/* The 65th: header on line 4 + 64 * 2 + 1. */
	snprintf(text + len, sizeof(text) - len, "[volume v64]\ndevice=/dev/v64\n");
	assert_int_equal(
		config_load(&cfg, write_file("65.ini", text), problems, CONFIG_PROBLEMS_MAX, &n),
		-EINVAL);
	dump(n);
	assert_int_equal(n, 1);
	assert_int_equal(problems[0].line, 4 + 64 * 2 + 1);
	assert_non_null(strstr(problems[0].message, "more than 64 volumes"));
	assert_int_equal(cfg.volume_count, CONFIG_VOLUMES_MAX);

	/* More problems than room: the count is the truth, the array holds the first. */
	n = 0;
	assert_int_equal(
		config_load(&cfg, write_file("bad.ini", "[a]\n[b]\n[c]\n"), problems, 2, &n),
		-EINVAL);
	assert_true(n > 2);
}

static void test_missing_file(void **state)
{
	unsigned n = 0;

	(void)state;
	assert_int_equal(
		config_load(&cfg, "/nonexistent/pvrepl.ini", problems, CONFIG_PROBLEMS_MAX, &n),
		-ENOENT);
	assert_int_equal(n, 1);
	assert_int_equal(problems[0].line, 0);
	assert_non_null(strstr(problems[0].message, "/nonexistent/pvrepl.ini"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_two_volumes), cmocka_unit_test(test_four_problems),
		cmocka_unit_test(test_single_mistakes),	  cmocka_unit_test(test_env_overrides),
		cmocka_unit_test(test_volume_limit),	  cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_env_capture_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
