/* SPDX-License-Identifier: Apache-2.0 */
/*
 * map — a volume's block hash map, the sender's (or receiver's) record of what
 * the other side confirmed, persisted crash-safely in the volume's state
 * directory.
 *
 * In memory: one xxh3-64 per block and a dirty bitmap. The scan compares each
 * block's hash with map_differs() and records a sent block with map_set(); when
 * the receiver acknowledges the epoch, map_commit() makes every dirty entry part
 * of the confirmed map at that epoch. On disk (include/map_format.h,
 * docs/FORMATS.md): a base file `map` with every hash, and `map.log`, one
 * appended record per epoch with only that epoch's changed entries, so the cost
 * of a commit is proportional to the blocks that changed, not to the volume. The
 * base is rewritten (atomically, by rename) when the map was empty or the log has
 * grown to the size of the base.
 *
 * After map_load() the map holds exactly one committed epoch, never a mix of two,
 * whatever point a previous commit crashed at. It knows nothing of devices,
 * hashing, Merkle trees, the network or generations' meaning: the caller sets
 * generation and picks epochs. The state directory must exist (and be durable in
 * its parent); map only manages the files in it.
 */
#ifndef PVREPL_MAP_H
#define PVREPL_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map_format.h"
#include "pvrepl_assert.h"

#define MAP_BLOCK_BYTES_MIN 512u
#define MAP_BLOCK_BYTES_MAX (64u << 20)
#define MAP_BLOCK_COUNT_MAX (1ull << 32)
#define MAP_VOLUME_NAME_MAX (MAP_DISK_VOLUME_NAME_BYTES - 1) /* bytes, without NUL */
/* A log record above this size, or above 1/MAP_LOG_RECORD_BASE_DIVISOR of the
 * base, is not worth appending: the base is rewritten instead. */
#define MAP_LOG_RECORD_BYTES_MAX    (64u << 20)
#define MAP_LOG_RECORD_BASE_DIVISOR 4u

#define MAP_FILE	 "map"
#define MAP_TMP_FILE	 "map.tmp"
#define MAP_LOG_FILE	 "map.log"
#define MAP_LOG_TMP_FILE "map.log.tmp"

struct map {
	uint64_t block_count; /* ceil(size_bytes / block_bytes) */
	uint32_t block_bytes;
	uint64_t size_bytes;
	uint64_t generation; /* set by the caller; persisted by map_commit */
	uint64_t epoch;	     /* the last committed epoch (0: none) */
	uint8_t volume_id[MAP_DISK_VOLUME_ID_BYTES];
	char volume_name[MAP_DISK_VOLUME_NAME_BYTES];
	uint64_t *hashes; /* block_count entries; owned */
	uint64_t *dirty;  /* bitmap, one bit per block; owned */
	bool empty;	  /* nothing confirmed yet: every block differs */

	/* persistence, private to map.c */
	uint64_t log_bytes; /* valid bytes of map.log; 0 when there is none */
	bool failed;	    /* a commit failed part-way: reload before committing */
	bool last_commit_rewrote_base;
	uint64_t last_commit_bytes; /* bytes written by the last commit (metrics) */
};

/*
 * Test-only crash points. When set, map_commit calls it with a step name before
 * every write, fsync and rename; a non-zero return makes map_commit stop there
 * and return that value, leaving the files as a process killed at that point
 * would. NULL (the default) in production.
 */
extern int (*map_crash_hook)(const char *step);

/*
 * A new in-memory map with nothing confirmed (every block differs) and a random
 * volume_id. volume_name: 1..MAP_VOLUME_NAME_MAX bytes. block_bytes: a power of
 * two in [MAP_BLOCK_BYTES_MIN, MAP_BLOCK_BYTES_MAX]; size_bytes > 0 and at most
 * MAP_BLOCK_COUNT_MAX blocks. Returns 0, -EINVAL, -ENOMEM, or getrandom's error.
 */
int map_create(struct map *m, const char *volume_name, uint64_t size_bytes, uint32_t block_bytes);

/*
 * Loads the map of state_dir: the base, then every log record with a later epoch.
 * A torn last record (a commit that never completed) is dropped and the log
 * truncated before it. Returns 0; -ENOENT when there is no map; -EBADMSG when a
 * file is corrupt, with a sentence naming the file and the fault in err; another
 * -errno for an I/O error (also described in err). err may be NULL.
 */
int map_load(struct map *m, const char *state_dir, char *err, size_t err_len);

/*
 * -EINVAL, with a sentence saying what the map has, what the device has and how
 * to fix it, when size_bytes or block_bytes differ from the map's; else 0.
 */
int map_check_geometry(const struct map *m, uint64_t size_bytes, uint32_t block_bytes, char *err,
		       size_t err_len);

/*
 * True when block idx must be sent: nothing is confirmed yet, or its confirmed
 * hash differs. Safe from many threads at once.
 *
 * map_set stores the hash as the block's value for the epoch being built, so a
 * block set in an epoch that is never committed no longer "differs". After a
 * failed epoch the caller reloads the map (map_release + map_load) or sends every
 * block for which map_is_dirty() holds.
 */
static inline bool map_differs(const struct map *m, uint64_t idx, uint64_t hash)
{
	ASSERT(idx < m->block_count);
	return m->empty || m->hashes[idx] != hash;
}

static inline bool map_is_dirty(const struct map *m, uint64_t idx)
{
	ASSERT(idx < m->block_count);
	return (__atomic_load_n(&m->dirty[idx / 64], __ATOMIC_RELAXED) >> (idx % 64)) & 1;
}

/*
 * Records hash as block idx's value in the epoch being built. Safe from many
 * threads at once for distinct idx: the hash is the thread's own word, and the
 * dirty bit is set with an atomic OR because 64 neighbours share a bitmap word.
 * Relaxed order is enough: map_commit runs after the workers are joined, and the
 * join orders their stores before it.
 */
static inline void map_set(struct map *m, uint64_t idx, uint64_t hash)
{
	ASSERT(idx < m->block_count);
	m->hashes[idx] = hash;
	__atomic_fetch_or(&m->dirty[idx / 64], 1ull << (idx % 64), __ATOMIC_RELAXED);
}

/* Blocks set since the last commit. Not concurrently with map_set. */
uint64_t map_dirty_count(const struct map *m);

/*
 * Persists every dirty entry as the confirmed map at epoch (> m->epoch), with
 * m->generation; then clears the dirty bits and empty. Appends one log record,
 * or rewrites the base when the map was empty or the log would grow too large.
 * On error nothing in memory changes, m is marked failed and every later commit
 * returns -EIO: an I/O error is never retried in place; map_release and map_load
 * give the state that is on disk (the old epoch or the new one). Returns 0 or
 * -errno with a sentence in err.
 */
int map_commit(struct map *m, const char *state_dir, uint64_t epoch, char *err, size_t err_len);

/* Frees the arrays; m can be reused with map_create or map_load. */
/* The Merkle root (merkle.h) of the hashes as they are now, committed or not;
 * 0 if memory for the tree runs out. */
uint64_t map_merkle_root(const struct map *m);

void map_release(struct map *m);

#endif
