/* SPDX-License-Identifier: Apache-2.0 */
/*
 * merkle — a Merkle tree over a volume's array of block hashes.
 *
 * Level 0 holds the leaves: leaf i hashes block hashes [i * MERKLE_LEAF_BLOCKS,
 * (i + 1) * MERKLE_LEAF_BLOCKS) (the last leaf may hold fewer). Each higher level
 * is binary: node i hashes nodes 2i and 2i + 1 of the level below (a last odd node
 * is hashed alone). The top level has one node; the root hashes that node together
 * with the block count, so maps of different lengths never share a root. Leaves,
 * nodes and the root use different seeds, so no value of one kind can pass for
 * another. Values are hashed in little-endian order: the root does not depend on
 * the host.
 *
 * Two sides compare roots in the handshake (DESIGN invariant 4) and, when they
 * differ, descend: merkle_diff locally, or a protocol remotely through the node
 * accessors, visiting only subtrees whose hashes differ.
 *
 * It knows nothing of blocks' content, maps, files or the network. The block
 * hashes are not copied: callers pass them to init, update and diff, and own them.
 */
#ifndef PVREPL_MERKLE_H
#define PVREPL_MERKLE_H

#include <stdint.h>

#define MERKLE_LEAF_BLOCKS 64u
#define MERKLE_FANOUT	   2u
/* At most 2^32 blocks: 2^26 leaves, 27 levels. */
#define MERKLE_BLOCKS_MAX (1ull << 32)
#define MERKLE_LEVELS_MAX 28u

struct merkle {
	uint64_t block_count;
	uint32_t levels;			  /* 0 when block_count is 0 */
	uint64_t level_nodes[MERKLE_LEVELS_MAX];  /* nodes per level; [levels-1] is 1 */
	uint64_t level_offset[MERKLE_LEVELS_MAX]; /* first node of the level in nodes */
	uint64_t *nodes;			  /* all levels, one allocation; owned */
	uint64_t root;
};

/*
 * Builds the tree over count block hashes (count <= MERKLE_BLOCKS_MAX, hashes may
 * be NULL when count is 0). Returns 0, -EINVAL for a count above the maximum, or
 * -ENOMEM. On error t needs no release.
 */
int merkle_init(struct merkle *t, const uint64_t *hashes, uint64_t count);
void merkle_release(struct merkle *t);

uint64_t merkle_root(const struct merkle *t);

/*
 * hashes[first_block, first_block + block_count) changed: recomputes only the
 * leaves covering them and the paths from those leaves to the root. hashes is the
 * whole array (same count as at init).
 */
void merkle_update(struct merkle *t, const uint64_t *hashes, uint64_t first_block,
		   uint64_t block_count);

/* Shape, for descending a remote tree: level 0 is the leaves, levels - 1 the top. */
uint32_t merkle_levels(const struct merkle *t);
uint64_t merkle_level_nodes(const struct merkle *t, uint32_t level);
uint64_t merkle_node(const struct merkle *t, uint32_t level, uint64_t index);
/* The blocks under node (level, index): [*first_block, *first_block + *block_count). */
void merkle_node_blocks(const struct merkle *t, uint32_t level, uint64_t index,
			uint64_t *first_block, uint64_t *block_count);

/*
 * Emits, in ascending order, the maximal runs of blocks whose hashes differ
 * between (a, hashes_a) and (b, hashes_b), descending only into subtrees whose
 * node hashes differ. Each tree must have been built over its hashes. A non-zero
 * return from emit stops the walk and is returned. Returns 0, -EINVAL when the
 * trees cover different block counts, or emit's value.
 */
int merkle_diff(const struct merkle *a, const uint64_t *hashes_a, const struct merkle *b,
		const uint64_t *hashes_b,
		int (*emit)(uint64_t first_block, uint64_t block_count, void *ctx), void *ctx);
/* The same, also counting the tree nodes compared (for tests and metrics). */
int merkle_diff_counted(const struct merkle *a, const uint64_t *hashes_a, const struct merkle *b,
			const uint64_t *hashes_b,
			int (*emit)(uint64_t first_block, uint64_t block_count, void *ctx),
			void *ctx, uint64_t *nodes_compared);

#endif
