/* SPDX-License-Identifier: Apache-2.0 */
/*
 * merkle — a Merkle tree over a volume's array of block hashes (see merkle.h).
 *
 * All levels live in one array, leaves first, so building, updating and reading a
 * node are index arithmetic. The tree does not keep the block hashes: it reads
 * the caller's array when it (re)computes a leaf. It knows nothing of what the
 * hashes are hashes of.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "merkle.h"
#include "pvrepl_assert.h"

/* Domain separation: a leaf, an inner node and the root never hash alike. */
#define MERKLE_SEED_LEAF 0x707672656c6c6601ull
#define MERKLE_SEED_NODE 0x707672656c6e6402ull
#define MERKLE_SEED_ROOT 0x707672656c727403ull

_Static_assert(MERKLE_FANOUT == 2, "merkle.c implements a binary tree");
/* 2^32 blocks / 64 per leaf = 2^26 leaves: levels 2^26 .. 2^0 = 27 */
_Static_assert((1ull << (MERKLE_LEVELS_MAX - 2)) * MERKLE_LEAF_BLOCKS >= MERKLE_BLOCKS_MAX,
	       "MERKLE_LEVELS_MAX too small for MERKLE_BLOCKS_MAX");

static uint64_t merkle_leaf_hash(const uint64_t *hashes, uint64_t first_block, uint64_t block_count)
{
	uint64_t le[MERKLE_LEAF_BLOCKS];

	ASSERT(block_count >= 1);
	ASSERT(block_count <= MERKLE_LEAF_BLOCKS);
	for (uint64_t i = 0; i < block_count; i++)
		le[i] = htole64(hashes[first_block + i]);
	return delta_hash_seeded(le, block_count * sizeof(le[0]), MERKLE_SEED_LEAF);
}

static uint64_t *merkle_level(const struct merkle *t, uint32_t level)
{
	return t->nodes + t->level_offset[level];
}

/* Recomputes node index of level (>= 1) from its children. */
static void merkle_node_compute(struct merkle *t, uint32_t level, uint64_t index)
{
	const uint64_t *below = merkle_level(t, level - 1);
	uint64_t first = index * MERKLE_FANOUT;
	uint64_t n = t->level_nodes[level - 1] - first;
	uint64_t le[MERKLE_FANOUT];

	ASSERT(first < t->level_nodes[level - 1]);
	if (n > MERKLE_FANOUT)
		n = MERKLE_FANOUT;
	for (uint64_t i = 0; i < n; i++)
		le[i] = htole64(below[first + i]);
	merkle_level(t, level)[index] = delta_hash_seeded(le, n * sizeof(le[0]), MERKLE_SEED_NODE);
}

static void merkle_root_compute(struct merkle *t)
{
	uint64_t le[2];

	le[0] = htole64(t->block_count);
	le[1] = htole64(t->levels > 0 ? merkle_level(t, t->levels - 1)[0] : 0);
	t->root = delta_hash_seeded(le, sizeof(le), MERKLE_SEED_ROOT);
}

/* Recomputes leaves [leaf_lo, leaf_hi] and everything above them. */
static void merkle_recompute(struct merkle *t, const uint64_t *hashes, uint64_t leaf_lo,
			     uint64_t leaf_hi)
{
	uint64_t *leaves = merkle_level(t, 0);

	ASSERT(leaf_lo <= leaf_hi);
	ASSERT(leaf_hi < t->level_nodes[0]);
	for (uint64_t i = leaf_lo; i <= leaf_hi; i++) {
		uint64_t first = i * MERKLE_LEAF_BLOCKS;
		uint64_t n = t->block_count - first;

		if (n > MERKLE_LEAF_BLOCKS)
			n = MERKLE_LEAF_BLOCKS;
		leaves[i] = merkle_leaf_hash(hashes, first, n);
	}
	for (uint32_t level = 1; level < t->levels; level++) {
		leaf_lo /= MERKLE_FANOUT;
		leaf_hi /= MERKLE_FANOUT;
		for (uint64_t i = leaf_lo; i <= leaf_hi; i++)
			merkle_node_compute(t, level, i);
	}
	merkle_root_compute(t);
}

int merkle_init(struct merkle *t, const uint64_t *hashes, uint64_t count)
{
	uint64_t n, total = 0;

	ASSERT(t != NULL);
	ASSERT(hashes != NULL || count == 0);
	memset(t, 0, sizeof(*t));
	if (count > MERKLE_BLOCKS_MAX)
		return -EINVAL;
	t->block_count = count;
	if (count == 0) {
		merkle_root_compute(t);
		return 0;
	}
	n = (count + MERKLE_LEAF_BLOCKS - 1) / MERKLE_LEAF_BLOCKS;
	for (;;) {
		ASSERT(t->levels < MERKLE_LEVELS_MAX);
		t->level_nodes[t->levels] = n;
		t->level_offset[t->levels] = total;
		t->levels++;
		total += n;
		if (n == 1)
			break;
		n = (n + MERKLE_FANOUT - 1) / MERKLE_FANOUT;
	}
	t->nodes = malloc(total * sizeof(*t->nodes));
	if (t->nodes == NULL) {
		memset(t, 0, sizeof(*t));
		return -ENOMEM;
	}
	merkle_recompute(t, hashes, 0, t->level_nodes[0] - 1);
	return 0;
}

void merkle_release(struct merkle *t)
{
	if (t == NULL)
		return;
	free(t->nodes);
	memset(t, 0, sizeof(*t));
}

uint64_t merkle_root(const struct merkle *t)
{
	ASSERT(t != NULL);
	return t->root;
}

void merkle_update(struct merkle *t, const uint64_t *hashes, uint64_t first_block,
		   uint64_t block_count)
{
	ASSERT(t != NULL);
	ASSERT(hashes != NULL);
	ASSERT(first_block <= t->block_count);
	ASSERT(block_count <= t->block_count - first_block);
	if (block_count == 0)
		return;
	merkle_recompute(t, hashes, first_block / MERKLE_LEAF_BLOCKS,
			 (first_block + block_count - 1) / MERKLE_LEAF_BLOCKS);
}

uint32_t merkle_levels(const struct merkle *t)
{
	ASSERT(t != NULL);
	return t->levels;
}

uint64_t merkle_level_nodes(const struct merkle *t, uint32_t level)
{
	ASSERT(t != NULL);
	ASSERT(level < t->levels);
	return t->level_nodes[level];
}

uint64_t merkle_node(const struct merkle *t, uint32_t level, uint64_t index)
{
	ASSERT(t != NULL);
	ASSERT(level < t->levels);
	ASSERT(index < t->level_nodes[level]);
	return merkle_level(t, level)[index];
}

void merkle_node_blocks(const struct merkle *t, uint32_t level, uint64_t index,
			uint64_t *first_block, uint64_t *block_count)
{
	uint64_t span = MERKLE_LEAF_BLOCKS;
	uint64_t first;

	ASSERT(t != NULL);
	ASSERT(level < t->levels);
	ASSERT(index < t->level_nodes[level]);
	/* level <= 26, so span <= 2^32 and index * span < 2^33: no overflow */
	span <<= level;
	first = index * span;
	ASSERT(first < t->block_count);
	*first_block = first;
	*block_count = t->block_count - first < span ? t->block_count - first : span;
}

/* The state of one diff walk: the run being grown and the counters. */
struct merkle_walk {
	const struct merkle *a, *b;
	const uint64_t *hashes_a, *hashes_b;
	int (*emit)(uint64_t first_block, uint64_t block_count, void *ctx);
	void *ctx;
	uint64_t run_first;
	uint64_t run_count;
	uint64_t nodes_compared;
};

static int merkle_walk_flush(struct merkle_walk *w)
{
	int rc;

	if (w->run_count == 0)
		return 0;
	rc = w->emit(w->run_first, w->run_count, w->ctx);
	w->run_count = 0;
	return rc;
}

static int merkle_walk_leaf(struct merkle_walk *w, uint64_t index)
{
	uint64_t first, count;
	int rc;

	merkle_node_blocks(w->a, 0, index, &first, &count);
	for (uint64_t i = first; i < first + count; i++) {
		if (w->hashes_a[i] == w->hashes_b[i])
			continue;
		/* runs grow across leaf boundaries: the walk goes left to right */
		if (w->run_count > 0 && w->run_first + w->run_count == i) {
			w->run_count++;
			continue;
		}
		rc = merkle_walk_flush(w);
		if (rc != 0)
			return rc;
		w->run_first = i;
		w->run_count = 1;
	}
	return 0;
}

/* Depth is at most MERKLE_LEVELS_MAX, so recursion is bounded. */
static int merkle_walk_node(struct merkle_walk *w, uint32_t level, uint64_t index)
{
	uint64_t first = index * MERKLE_FANOUT;
	uint64_t end;
	int rc;

	w->nodes_compared++;
	if (merkle_node(w->a, level, index) == merkle_node(w->b, level, index))
		return 0;
	if (level == 0)
		return merkle_walk_leaf(w, index);
	end = first + MERKLE_FANOUT;
	if (end > w->a->level_nodes[level - 1])
		end = w->a->level_nodes[level - 1];
	for (uint64_t i = first; i < end; i++) {
		rc = merkle_walk_node(w, level - 1, i);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int merkle_diff_counted(const struct merkle *a, const uint64_t *hashes_a, const struct merkle *b,
			const uint64_t *hashes_b,
			int (*emit)(uint64_t first_block, uint64_t block_count, void *ctx),
			void *ctx, uint64_t *nodes_compared)
{
	struct merkle_walk w = {
		.a = a,
		.b = b,
		.hashes_a = hashes_a,
		.hashes_b = hashes_b,
		.emit = emit,
		.ctx = ctx,
	};
	int rc = 0;

	ASSERT(a != NULL);
	ASSERT(b != NULL);
	ASSERT(emit != NULL);
	if (nodes_compared != NULL)
		*nodes_compared = 0;
	if (a->block_count != b->block_count)
		return -EINVAL;
	ASSERT(a->levels == b->levels);
	if (a->levels > 0) {
		ASSERT(hashes_a != NULL);
		ASSERT(hashes_b != NULL);
		rc = merkle_walk_node(&w, a->levels - 1, 0);
		if (rc == 0)
			rc = merkle_walk_flush(&w);
	}
	if (nodes_compared != NULL)
		*nodes_compared = w.nodes_compared;
	return rc;
}

int merkle_diff(const struct merkle *a, const uint64_t *hashes_a, const struct merkle *b,
		const uint64_t *hashes_b,
		int (*emit)(uint64_t first_block, uint64_t block_count, void *ctx), void *ctx)
{
	return merkle_diff_counted(a, hashes_a, b, hashes_b, emit, ctx, NULL);
}
