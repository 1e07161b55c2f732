// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of out, the text/JSON printer of every command: a string that is
 * not valid UTF-8 (from a status record on disk, a path the user typed) is
 * printed with '?' for its bad bytes, never an abort (jansson refuses such
 * strings; bytes from disk never reach an assert); valid UTF-8 is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "out.h"

/* The JSON out_print writes for one string field, into buf. */
static void json_of(const char *value, char *buf, size_t len)
{
	struct out *o = out_new();
	FILE *f = fmemopen(buf, len, "w");

	assert_non_null(o);
	assert_non_null(f);
	out_str(o, "s", "S", value);
	assert_int_equal(out_print(o, OUT_JSON, f), 0);
	fclose(f);
	out_free(o);
}

static void test_invalid_utf8(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "plain", "{\"s\":\"plain\"}" },
		{ "caf\xc3\xa9", "{\"s\":\"caf\xc3\xa9\"}" }, /* valid: kept */
		{ "donn\xc3", "{\"s\":\"donn?\"}" },	      /* cut mid-character */
		{ "a\xff"
		  "b",
		  "{\"s\":\"a?b\"}" },			   /* never valid */
		{ "\xc0\xaf", "{\"s\":\"??\"}" },	   /* overlong */
		{ "x\xed\xa0\x80y", "{\"s\":\"x???y\"}" }, /* a surrogate */
		{ "\xe2\x82", "{\"s\":\"??\"}" },	   /* truncated */
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_of(cases[i].in, buf, sizeof(buf));
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, cases[i].want))
			fail_msg("case %zu: got %s, want %s", i, buf, cases[i].want);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invalid_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
