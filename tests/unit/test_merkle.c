// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of merkle: roots are equal exactly when the maps (hashes and length)
 * are; on random maps of random sizes with random mutations, merkle_diff lists
 * exactly the maximal runs of mutated blocks, in order; merkle_update after any
 * mutations leaves every node equal to a fresh build; a few changes on a map of
 * 2^22 blocks make the diff compare a number of nodes proportional to the changes
 * times the depth, not to the size; the accessors let a remote side descend.
 *
 * Random tests are seeded: the seed is printed, and PVREPL_TEST_SEED=<n> replays
 * a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "merkle.h"
#include "pvrepl_assert.h"
#include "testutil.h"

static uint64_t test_seed;

struct runs {
	uint64_t (*v)[2];
	size_t n, cap;
	size_t stop_after; /* emit returns -ECANCELED after this many (0: never) */
};

static int runs_emit(uint64_t first_block, uint64_t block_count, void *ctx)
{
	struct runs *r = ctx;

	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		assert_non_null(r->v);
	}
	r->v[r->n][0] = first_block;
	r->v[r->n][1] = block_count;
	r->n++;
	if (r->stop_after != 0 && r->n == r->stop_after)
		return -ECANCELED;
	return 0;
}

/* The maximal runs of differing entries, by a plain scan. */
static void runs_expected(struct runs *r, const uint64_t *a, const uint64_t *b, uint64_t count)
{
	for (uint64_t i = 0; i < count;) {
		uint64_t j = i;

		if (a[i] == b[i]) {
			i++;
			continue;
		}
		while (j < count && a[j] != b[j])
			j++;
		runs_emit(i, j - i, r);
		i = j;
	}
}

static void runs_free(struct runs *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static uint64_t *random_hashes(uint64_t count, uint64_t *rng)
{
	uint64_t *h = malloc((count ? count : 1) * sizeof(*h));

	assert_non_null(h);
	for (uint64_t i = 0; i < count; i++)
		h[i] = tu_rand_next(rng);
	return h;
}

static void assert_trees_equal(const struct merkle *x, const struct merkle *y)
{
	assert_int_equal(merkle_levels(x), merkle_levels(y));
	for (uint32_t l = 0; l < merkle_levels(x); l++) {
		assert_int_equal(merkle_level_nodes(x, l), merkle_level_nodes(y, l));
		for (uint64_t i = 0; i < merkle_level_nodes(x, l); i++) {
			if (merkle_node(x, l, i) != merkle_node(y, l, i))
				fail_msg("seed %" PRIu64 ": node (%u, %" PRIu64 ") differs",
					 test_seed, l, i);
		}
	}
	assert_true(merkle_root(x) == merkle_root(y));
}

static void test_roots_equal_iff_maps_equal(void **state)
{
	static const uint64_t counts[] = { 1, 2, 63, 64, 65, 127, 128, 129, 4096, 4097, 100000 };
	uint64_t rng = 1;

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(counts); c++) {
		uint64_t n = counts[c];
		uint64_t *a = random_hashes(n + 1, &rng);
		uint64_t *b = malloc((n + 1) * sizeof(*b));
		struct merkle ta, tb;

		assert_non_null(b);
		memcpy(b, a, (n + 1) * sizeof(*b));
		assert_int_equal(merkle_init(&ta, a, n), 0);
		assert_int_equal(merkle_init(&tb, b, n), 0);
		assert_true(merkle_root(&ta) == merkle_root(&tb));
		/* every single-block change moves the root (first, middle, last) */
		for (uint64_t k = 0; k < 3; k++) {
			uint64_t idx = k == 0 ? 0 : k == 1 ? n / 2 : n - 1;

			b[idx] ^= 1;
			merkle_release(&tb);
			assert_int_equal(merkle_init(&tb, b, n), 0);
			assert_true(merkle_root(&ta) != merkle_root(&tb));
			b[idx] ^= 1;
		}
		/* the same hashes plus one block (of value 0) is another map */
		merkle_release(&tb);
		b[n] = 0;
		assert_int_equal(merkle_init(&tb, b, n + 1), 0);
		assert_true(merkle_root(&ta) != merkle_root(&tb));
		merkle_release(&ta);
		merkle_release(&tb);
		free(a);
		free(b);
	}
}

static void test_empty_and_limits(void **state)
{
	struct merkle a, b, one;
	uint64_t zero = 0;
	struct runs r = { 0 };

	(void)state;
	assert_int_equal(merkle_init(&a, NULL, 0), 0);
	assert_int_equal(merkle_init(&b, NULL, 0), 0);
	assert_int_equal(merkle_levels(&a), 0);
	assert_true(merkle_root(&a) == merkle_root(&b));
	assert_int_equal(merkle_diff(&a, NULL, &b, NULL, runs_emit, &r), 0);
	assert_int_equal(r.n, 0);
	/* an empty map and a one-block map of hash 0 differ */
	assert_int_equal(merkle_init(&one, &zero, 1), 0);
	assert_true(merkle_root(&a) != merkle_root(&one));
	assert_int_equal(merkle_levels(&one), 1);
	/* different counts cannot be diffed */
	assert_int_equal(merkle_diff(&a, NULL, &one, &zero, runs_emit, &r), -EINVAL);
	merkle_release(&a);
	merkle_release(&b);
	merkle_release(&one);
	assert_int_equal(merkle_init(&a, &zero, MERKLE_BLOCKS_MAX + 1), -EINVAL);
	merkle_release(&a); /* harmless after a failed init */
	runs_free(&r);
}

static void test_shape(void **state)
{
	uint64_t rng = 5;
	uint64_t n = 64 * 5 + 3; /* 6 leaves, the last with 3 blocks */
	uint64_t *h = random_hashes(n, &rng);
	uint64_t first, count;
	struct merkle t;

	(void)state;
	assert_int_equal(merkle_init(&t, h, n), 0);
	assert_int_equal(merkle_levels(&t), 4); /* 6, 3, 2, 1 */
	assert_int_equal(merkle_level_nodes(&t, 0), 6);
	assert_int_equal(merkle_level_nodes(&t, 1), 3);
	assert_int_equal(merkle_level_nodes(&t, 2), 2);
	assert_int_equal(merkle_level_nodes(&t, 3), 1);
	merkle_node_blocks(&t, 0, 5, &first, &count);
	assert_int_equal(first, 320);
	assert_int_equal(count, 3);
	merkle_node_blocks(&t, 1, 2, &first, &count);
	assert_int_equal(first, 256);
	assert_int_equal(count, 67);
	merkle_node_blocks(&t, 3, 0, &first, &count);
	assert_int_equal(first, 0);
	assert_int_equal(count, n);
	merkle_release(&t);
	free(h);
}

/* Mutates random blocks of b: single blocks, runs, runs across leaf edges. */
static void mutate(uint64_t *b, uint64_t count, uint64_t *rng)
{
	uint64_t events = 1 + tu_rand_below(rng, 12);

	for (uint64_t e = 0; e < events; e++) {
		uint64_t start = tu_rand_below(rng, count);
		uint64_t len = 1;

		switch (tu_rand_below(rng, 4)) {
		case 1:
			len = 1 + tu_rand_below(rng, 200);
			break;
		case 2: /* straddle a leaf boundary */
			start = (start / MERKLE_LEAF_BLOCKS) * MERKLE_LEAF_BLOCKS;
			start = start >= 3 ? start - 3 : 0;
			len = 6;
			break;
		default:
			break;
		}
		for (uint64_t i = start; i < start + len && i < count; i++)
			b[i] = tu_rand_next(rng);
	}
}

static void test_diff_property(void **state)
{
	uint64_t rng = test_seed;

	(void)state;
	for (int iter = 0; iter < 300; iter++) {
		uint64_t count = tu_rand_below(&rng, 4) == 0 ? 1 + tu_rand_below(&rng, 200)
							     : 1 + tu_rand_below(&rng, 60000);
		uint64_t *a = random_hashes(count, &rng);
		uint64_t *b = malloc(count * sizeof(*b));
		struct runs got = { 0 }, want = { 0 };
		struct merkle ta, tb, tu;
		uint64_t nodes;

		assert_non_null(b);
		memcpy(b, a, count * sizeof(*b));
		mutate(b, count, &rng);
		assert_int_equal(merkle_init(&ta, a, count), 0);
		assert_int_equal(merkle_init(&tb, b, count), 0);
		runs_expected(&want, a, b, count);
		assert_int_equal(merkle_diff_counted(&ta, a, &tb, b, runs_emit, &got, &nodes), 0);
		if (got.n != want.n)
			fail_msg("seed %" PRIu64 " iter %d: %zu runs, want %zu", test_seed, iter,
				 got.n, want.n);
		for (size_t i = 0; i < got.n; i++) {
			if (got.v[i][0] != want.v[i][0] || got.v[i][1] != want.v[i][1])
				fail_msg("seed %" PRIu64 " iter %d: run %zu is (%" PRIu64
					 ", %" PRIu64 "), want (%" PRIu64 ", %" PRIu64 ")",
					 test_seed, iter, i, got.v[i][0], got.v[i][1], want.v[i][0],
					 want.v[i][1]);
		}
		/* symmetric */
		runs_free(&got);
		assert_int_equal(merkle_diff(&tb, b, &ta, a, runs_emit, &got), 0);
		assert_int_equal(got.n, want.n);
		/* incremental update of a's tree to b's content == fresh build of b */
		assert_int_equal(merkle_init(&tu, a, count), 0);
		for (size_t i = 0; i < want.n; i++) {
			memcpy(a + want.v[i][0], b + want.v[i][0], want.v[i][1] * sizeof(*a));
			merkle_update(&tu, a, want.v[i][0], want.v[i][1]);
		}
		assert_trees_equal(&tu, &tb);
		/* and a tree equal to itself diffs to nothing after comparing one node */
		runs_free(&got);
		assert_int_equal(merkle_diff_counted(&tu, a, &tb, b, runs_emit, &got, &nodes), 0);
		assert_int_equal(got.n, 0);
		assert_int_equal(nodes, 1);
		merkle_release(&ta);
		merkle_release(&tb);
		merkle_release(&tu);
		runs_free(&got);
		runs_free(&want);
		free(a);
		free(b);
	}
}

static void test_emit_stops_walk(void **state)
{
	uint64_t rng = 17, count = 10000;
	uint64_t *a = random_hashes(count, &rng);
	uint64_t *b = malloc(count * sizeof(*b));
	struct runs got = { .stop_after = 2 };
	struct merkle ta, tb;

	(void)state;
	assert_non_null(b);
	memcpy(b, a, count * sizeof(*b));
	b[10] ^= 1;
	b[5000] ^= 1;
	b[9999] ^= 1;
	assert_int_equal(merkle_init(&ta, a, count), 0);
	assert_int_equal(merkle_init(&tb, b, count), 0);
	assert_int_equal(merkle_diff(&ta, a, &tb, b, runs_emit, &got), -ECANCELED);
	assert_int_equal(got.n, 2);
	merkle_release(&ta);
	merkle_release(&tb);
	runs_free(&got);
	free(a);
	free(b);
}

/*
 * 2^22 blocks (a 1 TiB volume in 256 KiB blocks): 5 scattered changes. The diff
 * compares at most 2 nodes per level per change (the differing path and its
 * sibling), i.e. O(changes * depth), against ~131000 nodes in the tree.
 */
static void test_diff_cost_proportional(void **state)
{
	uint64_t count = 1ull << 22, rng = 23, nodes, total = 0;
	uint64_t *a = random_hashes(count, &rng);
	uint64_t *b = malloc(count * sizeof(*b));
	static const uint64_t changed[] = { 0, 77777, 1000000, 3000001, (1ull << 22) - 1 };
	struct runs got = { 0 };
	struct merkle ta, tb;
	uint32_t levels;

	(void)state;
	assert_non_null(b);
	memcpy(b, a, count * sizeof(*b));
	for (size_t i = 0; i < ARRAY_SIZE(changed); i++)
		b[changed[i]] ^= 0xff;
	assert_int_equal(merkle_init(&ta, a, count), 0);
	assert_int_equal(merkle_init(&tb, b, count), 0);
	levels = merkle_levels(&ta);
	for (uint32_t l = 0; l < levels; l++)
		total += merkle_level_nodes(&ta, l);
	assert_int_equal(merkle_diff_counted(&ta, a, &tb, b, runs_emit, &got, &nodes), 0);
	assert_int_equal(got.n, ARRAY_SIZE(changed));
	for (size_t i = 0; i < got.n; i++) {
		assert_int_equal(got.v[i][0], changed[i]);
		assert_int_equal(got.v[i][1], 1);
	}
	print_message("%zu changes in %" PRIu64 " blocks: %" PRIu64 " of %" PRIu64
		      " nodes compared (%u levels)\n",
		      ARRAY_SIZE(changed), count, nodes, total, levels);
	assert_true(nodes <= 1 + 2 * ARRAY_SIZE(changed) * (levels - 1));
	assert_true(nodes * 100 < total);
	/* one more change costs at most one more path */
	b[2000000] ^= 1;
	merkle_update(&tb, b, 2000000, 1);
	runs_free(&got);
	{
		uint64_t nodes2;

		assert_int_equal(merkle_diff_counted(&ta, a, &tb, b, runs_emit, &got, &nodes2), 0);
		assert_int_equal(got.n, ARRAY_SIZE(changed) + 1);
		assert_true(nodes2 <= nodes + 2 * (levels - 1));
	}
	merkle_release(&ta);
	merkle_release(&tb);
	runs_free(&got);
	free(a);
	free(b);
}

/*
 * A remote side sees only (level, index) -> hash: descend through the accessors
 * alone, as a protocol would, and find the leaves holding the changed blocks.
 */
static void test_remote_descent(void **state)
{
	uint64_t count = 100000, rng = 31;
	uint64_t *a = random_hashes(count, &rng);
	uint64_t *b = malloc(count * sizeof(*b));
	uint64_t(*stack)[2] = malloc(64 * MERKLE_LEVELS_MAX * sizeof(*stack));
	uint64_t found[8], nfound = 0;
	struct merkle ta, tb;
	size_t sp = 0;

	(void)state;
	assert_non_null(b);
	assert_non_null(stack);
	memcpy(b, a, count * sizeof(*b));
	b[12345] ^= 1;
	b[99999] ^= 1;
	assert_int_equal(merkle_init(&ta, a, count), 0);
	assert_int_equal(merkle_init(&tb, b, count), 0);
	stack[sp][0] = merkle_levels(&ta) - 1;
	stack[sp][1] = 0;
	sp++;
	while (sp > 0) {
		uint32_t level;
		uint64_t index;

		sp--;
		level = (uint32_t)stack[sp][0];
		index = stack[sp][1];
		if (merkle_node(&ta, level, index) == merkle_node(&tb, level, index))
			continue;
		if (level == 0) {
			uint64_t first, n;

			merkle_node_blocks(&ta, 0, index, &first, &n);
			assert_true(nfound < ARRAY_SIZE(found));
			found[nfound++] = first;
			continue;
		}
		for (uint64_t c = 2 * index; c < 2 * index + 2; c++) {
			if (c < merkle_level_nodes(&ta, level - 1)) {
				stack[sp][0] = level - 1;
				stack[sp][1] = c;
				sp++;
			}
		}
	}
	assert_int_equal(nfound, 2);
	/* depth-first, right child popped first */
	assert_int_equal(found[0], 99999 / 64 * 64);
	assert_int_equal(found[1], 12345 / 64 * 64);
	merkle_release(&ta);
	merkle_release(&tb);
	free(stack);
	free(a);
	free(b);
}

int main(void)
{
	const char *env = getenv("PVREPL_TEST_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roots_equal_iff_maps_equal),
		cmocka_unit_test(test_empty_and_limits),
		cmocka_unit_test(test_shape),
		cmocka_unit_test(test_diff_property),
		cmocka_unit_test(test_emit_stops_walk),
		cmocka_unit_test(test_diff_cost_proportional),
		cmocka_unit_test(test_remote_descent),
	};

	test_seed = env != NULL ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("test_merkle: seed %" PRIu64 " (replay with PVREPL_TEST_SEED=%" PRIu64 ")\n",
	       test_seed, test_seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
