// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of netwatch that need no namespace: the peer forms it accepts
 * ("host", "host:port", "[v6]:port", a bare IPv6 literal) and refuses, with a
 * sentence; the loopback peer, reachable when lo is up (skipped when it is not,
 * as in a namespace where nobody brought lo up); and that netwatch_process() with
 * no pending event neither blocks nor reports a change. Link and route changes
 * are tested in network namespaces by tests/integ/040-netwatch.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "netwatch.h"

static void test_peer_forms(void **state)
{
	static const struct {
		const char *peer;
		const char *resolved; /* NULL: refused with -EINVAL */
	} cases[] = {
		{ "127.0.0.1", "127.0.0.1" },
		{ "127.0.0.1:7000", "127.0.0.1" },
		{ "[::1]:7000", "::1" },
		{ "::1", "::1" },
		{ "[::1", NULL },
		{ ":7000", NULL },
		{ "", NULL },
		{ "[]:1", NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct netwatch *nw = NULL;
		char err[256] = "";
		int rc = netwatch_new(&nw, cases[i].peer, err, sizeof(err));

		print_message("'%s': %d %s\n", cases[i].peer, rc, rc ? err : netwatch_reason(nw));
		if (!cases[i].resolved) {
			assert_int_equal(rc, -EINVAL);
			assert_null(nw);
			assert_true(strlen(err) > 0);
			continue;
		}
		if (rc == -EAFNOSUPPORT || rc == -EHOSTUNREACH)
			continue; /* no IPv6 on this machine */
		assert_int_equal(rc, 0);
		assert_string_equal(netwatch_peer(nw), cases[i].resolved);
		assert_true(netwatch_fd(nw) >= 0);
		netwatch_free(nw);
	}
}

static void test_unresolvable(void **state)
{
	struct netwatch *nw = NULL;
	char err[256] = "";

	(void)state;
	assert_true(netwatch_new(&nw, "no-such-host.invalid", err, sizeof(err)) < 0);
	assert_null(nw);
	assert_non_null(strstr(err, "no-such-host.invalid"));
}

static void test_loopback(void **state)
{
	struct netwatch *nw = NULL;
	bool changed = true;
	char err[256] = "";

	(void)state;
	assert_int_equal(netwatch_new(&nw, "127.0.0.1", err, sizeof(err)), 0);
	if (!netwatch_reachable(nw)) {
		print_message("skipped: %s (lo down here?)\n", netwatch_reason(nw));
		netwatch_free(nw);
		skip();
	}
	assert_string_equal(netwatch_reason(nw), "route to 127.0.0.1 via lo is up");
	/* Nothing pending: returns at once, no change. */
	assert_int_equal(netwatch_process(nw, &changed), 0);
	assert_false(changed);
	assert_true(netwatch_reachable(nw));
	netwatch_free(nw);
	netwatch_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peer_forms),
		cmocka_unit_test(test_unresolvable),
		cmocka_unit_test(test_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
