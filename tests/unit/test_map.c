// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of map: creation limits; create/commit/load round trips; hundreds of
 * epochs of log records with a reload after each, through log compaction; the
 * base rewrite when many blocks changed; the geometry mismatch sentence; corrupt
 * base and log files refused with -EBADMSG and a sentence naming the file; every
 * crash point of map_commit enumerated (for the log path, the base-rewrite path
 * and the very first commit), each followed by a load that must give exactly the
 * old or exactly the new map and by a commit that must work; a torn last record
 * cut at every byte; the cost of a commit of 100 blocks on a 2^22-block map (only
 * a small log record, the base untouched); and map_set from several threads.
 *
 * Crash points model a process killed between system calls (the page cache
 * survives); a power cut that loses un-synced data is modelled by the torn-tail
 * test, which cuts the last record anywhere. Temp dirs are removed at exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "map.h"
#include "map_format.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define BLOCK_BYTES 4096u

static char tmp_root[TU_PATH_MAX];
static unsigned dir_seq;

/* A fresh empty state directory under the test's temp dir. */
static void new_dir(char *out, size_t out_len)
{
	int n = snprintf(out, out_len, "%s/s%u", tmp_root, dir_seq++);

	assert_true(n > 0 && (size_t)n < out_len);
	assert_int_equal(mkdir(out, 0755), 0);
}

static void path_of(char *out, size_t out_len, const char *dir, const char *name)
{
	int n = snprintf(out, out_len, "%s/%s", dir, name);

	assert_true(n > 0 && (size_t)n < out_len);
}

static int64_t file_size(const char *dir, const char *name)
{
	char p[TU_PATH_MAX];
	struct stat st;

	path_of(p, sizeof(p), dir, name);
	if (stat(p, &st) < 0)
		return -1;
	return (int64_t)st.st_size;
}

static void file_truncate(const char *dir, const char *name, int64_t size)
{
	char p[TU_PATH_MAX];

	path_of(p, sizeof(p), dir, name);
	assert_int_equal(truncate(p, size), 0);
}

static void file_pwrite(const char *dir, const char *name, const void *buf, size_t len, int64_t off)
{
	char p[TU_PATH_MAX];
	int fd;

	path_of(p, sizeof(p), dir, name);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void file_pread(const char *dir, const char *name, void *buf, size_t len, int64_t off)
{
	char p[TU_PATH_MAX];
	int fd;

	path_of(p, sizeof(p), dir, name);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void file_flip(const char *dir, const char *name, int64_t off, unsigned char mask)
{
	unsigned char b;

	file_pread(dir, name, &b, 1, off);
	b ^= mask;
	file_pwrite(dir, name, &b, 1, off);
}

static void file_copy(const char *from_dir, const char *to_dir, const char *name)
{
	int64_t n = file_size(from_dir, name);
	unsigned char *buf;

	assert_true(n >= 0);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	file_pread(from_dir, name, buf, (size_t)n, 0);
	file_truncate(to_dir, name, 0);
	file_pwrite(to_dir, name, buf, (size_t)n, 0);
	free(buf);
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* What a committed map holds, to compare a loaded map with. */
struct snap {
	uint64_t epoch, generation, block_count;
	uint64_t *hashes;
};

static void snap_take(struct snap *s, const struct map *m)
{
	s->epoch = m->epoch;
	s->generation = m->generation;
	s->block_count = m->block_count;
	s->hashes = malloc(m->block_count * sizeof(*s->hashes));
	assert_non_null(s->hashes);
	memcpy(s->hashes, m->hashes, m->block_count * sizeof(*s->hashes));
}

static bool snap_matches(const struct snap *s, const struct map *m)
{
	return s->epoch == m->epoch && s->generation == m->generation &&
	       s->block_count == m->block_count &&
	       memcmp(s->hashes, m->hashes, m->block_count * sizeof(*s->hashes)) == 0;
}

static void snap_free(struct snap *s)
{
	free(s->hashes);
	memset(s, 0, sizeof(*s));
}

/* Loads dir and checks it equals m's committed state and identity. */
static void assert_reload_equals(const char *dir, const struct map *m)
{
	char err[512] = "";
	struct map l;
	int rc;

	rc = map_load(&l, dir, err, sizeof(err));
	if (rc != 0)
		fail_msg("map_load: %d: %s", rc, err);
	assert_int_equal(l.block_count, m->block_count);
	assert_int_equal(l.block_bytes, m->block_bytes);
	assert_int_equal(l.size_bytes, m->size_bytes);
	assert_int_equal(l.generation, m->generation);
	assert_int_equal(l.epoch, m->epoch);
	assert_memory_equal(l.volume_id, m->volume_id, sizeof(l.volume_id));
	assert_string_equal(l.volume_name, m->volume_name);
	assert_memory_equal(l.hashes, m->hashes, m->block_count * sizeof(*l.hashes));
	assert_false(l.empty);
	assert_int_equal(map_dirty_count(&l), 0);
	map_release(&l);
}

static void set_random(struct map *m, uint64_t n, uint64_t *rng)
{
	for (uint64_t i = 0; i < n; i++)
		map_set(m, tu_rand_below(rng, m->block_count), tu_rand_next(rng));
}

static void set_all(struct map *m, uint64_t *rng)
{
	for (uint64_t i = 0; i < m->block_count; i++)
		map_set(m, i, tu_rand_next(rng));
}

static void commit_ok(struct map *m, const char *dir, uint64_t epoch)
{
	char err[512] = "";
	int rc = map_commit(m, dir, epoch, err, sizeof(err));

	if (rc != 0)
		fail_msg("map_commit epoch %" PRIu64 ": %d: %s", epoch, rc, err);
}

/* ------------------------------------------------------------------ tests */

static void test_create(void **state)
{
	char name64[65];
	struct map a, b;

	(void)state;
	memset(name64, 'n', 64);
	name64[64] = 0;
	assert_int_equal(map_create(&a, "", 1 << 20, BLOCK_BYTES), -EINVAL);
	assert_int_equal(map_create(&a, name64, 1 << 20, BLOCK_BYTES), -EINVAL);
	assert_int_equal(map_create(&a, "v", 1 << 20, 0), -EINVAL);
	assert_int_equal(map_create(&a, "v", 1 << 20, 256), -EINVAL);
	assert_int_equal(map_create(&a, "v", 1 << 20, 3000), -EINVAL);
	assert_int_equal(map_create(&a, "v", 1 << 20, 128u << 20), -EINVAL);
	assert_int_equal(map_create(&a, "v", 0, BLOCK_BYTES), -EINVAL);
	/* 2^32 blocks is the limit, one byte more is one block too many */
	assert_int_equal(map_create(&a, "v", (1ull << 32) * 512 + 1, 512), -EINVAL);

	name64[63] = 0; /* 63 bytes fit */
	assert_int_equal(map_create(&a, name64, 10 * BLOCK_BYTES + 1, BLOCK_BYTES), 0);
	assert_int_equal(a.block_count, 11); /* a partial last block counts */
	assert_true(a.empty);
	assert_int_equal(a.epoch, 0);
	assert_int_equal(map_dirty_count(&a), 0);
	for (uint64_t i = 0; i < a.block_count; i++)
		assert_true(map_differs(&a, i, 0));
	assert_int_equal(map_create(&b, "v", BLOCK_BYTES, BLOCK_BYTES), 0);
	assert_memory_not_equal(a.volume_id, b.volume_id, sizeof(a.volume_id));
	map_set(&b, 0, 42);
	assert_true(map_is_dirty(&b, 0));
	assert_int_equal(map_dirty_count(&b), 1);
	map_release(&a);
	map_release(&b);
}

static void test_round_trip(void **state)
{
	char dir[TU_PATH_MAX], err[512] = "";
	uint64_t rng = 1;
	struct map m, l;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(map_load(&l, dir, err, sizeof(err)), -ENOENT);
	assert_int_equal(map_load(&l, "/nonexistent/pvrepl", err, sizeof(err)), -ENOENT);
	assert_int_equal(map_create(&m, "db-0", 1000 * BLOCK_BYTES - 100, BLOCK_BYTES), 0);
	set_all(&m, &rng);
	m.generation = 3;
	commit_ok(&m, dir, 1);
	assert_true(m.last_commit_rewrote_base);
	assert_false(m.empty);
	assert_int_equal(map_dirty_count(&m), 0);
	assert_int_equal(file_size(dir, MAP_FILE),
			 (int64_t)(sizeof(struct map_disk_header) + 1000 * 8));
	assert_int_equal(file_size(dir, MAP_LOG_FILE), (int64_t)sizeof(struct map_disk_log_header));
	assert_reload_equals(dir, &m);

	assert_int_equal(map_load(&l, dir, err, sizeof(err)), 0);
	for (uint64_t i = 0; i < l.block_count; i++) {
		assert_false(map_differs(&l, i, m.hashes[i]));
		assert_true(map_differs(&l, i, m.hashes[i] + 1));
	}
	/* a commit with nothing dirty still advances the epoch */
	commit_ok(&l, dir, 2);
	assert_false(l.last_commit_rewrote_base);
	assert_reload_equals(dir, &l);
	map_release(&l);
	map_release(&m);
}

static void test_many_epochs(void **state)
{
	char dir[TU_PATH_MAX];
	uint64_t rng = 2, appends = 0, rewrites = 0;
	struct map m;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(map_create(&m, "many", 4096ull * BLOCK_BYTES, BLOCK_BYTES), 0);
	set_all(&m, &rng);
	commit_ok(&m, dir, 1);
	/* epochs need not be dense: a failed epoch number is never reused */
	for (uint64_t i = 0, epoch = 1; i < 398; i++) {
		epoch += 1 + tu_rand_below(&rng, 2);
		set_random(&m, 1 + tu_rand_below(&rng, 20), &rng);
		if (i % 50 == 0)
			m.generation++;
		commit_ok(&m, dir, epoch);
		if (m.last_commit_rewrote_base) {
			rewrites++;
			assert_int_equal(file_size(dir, MAP_LOG_FILE),
					 (int64_t)sizeof(struct map_disk_log_header));
		} else {
			appends++;
		}
		/* the log never outgrows the base */
		assert_true(file_size(dir, MAP_LOG_FILE) <= file_size(dir, MAP_FILE));
		assert_reload_equals(dir, &m);
	}
	print_message("398 epochs: %" PRIu64 " log appends, %" PRIu64 " base rewrites\n", appends,
		      rewrites);
	assert_true(appends > 300);
	assert_true(rewrites >= 1); /* compaction happened */
	map_release(&m);
}

static void test_base_rewrite_when_many_dirty(void **state)
{
	char dir[TU_PATH_MAX];
	uint64_t rng = 3;
	struct map m;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(map_create(&m, "big-change", 10000ull * BLOCK_BYTES, BLOCK_BYTES), 0);
	set_all(&m, &rng);
	commit_ok(&m, dir, 1);
	set_random(&m, 10, &rng);
	commit_ok(&m, dir, 2);
	assert_false(m.last_commit_rewrote_base);
	assert_true(file_size(dir, MAP_LOG_FILE) > (int64_t)sizeof(struct map_disk_log_header));
	/* a record of 3000 entries (48 KB) is more than 1/4 of the 80 KB base */
	for (uint64_t i = 0; i < 3000; i++)
		map_set(&m, i * 3, tu_rand_next(&rng));
	commit_ok(&m, dir, 3);
	assert_true(m.last_commit_rewrote_base);
	assert_int_equal(file_size(dir, MAP_LOG_FILE), (int64_t)sizeof(struct map_disk_log_header));
	assert_reload_equals(dir, &m);
	map_release(&m);
}

static void test_geometry_mismatch(void **state)
{
	char err[512] = "";
	struct map m;

	(void)state;
	assert_int_equal(map_create(&m, "pg-data", 1ull << 30, BLOCK_BYTES), 0);
	assert_int_equal(map_check_geometry(&m, 1ull << 30, BLOCK_BYTES, err, sizeof(err)), 0);
	assert_int_equal(map_check_geometry(&m, 2ull << 30, BLOCK_BYTES, err, sizeof(err)),
			 -EINVAL);
	assert_contains(err, "pg-data");
	assert_contains(err, "1073741824 bytes"); /* what the map has */
	assert_contains(err, "2147483648 bytes"); /* what the device has */
	assert_contains(err, "remove the map");	  /* the fix */
	assert_int_equal(map_check_geometry(&m, 1ull << 30, 65536, err, sizeof(err)), -EINVAL);
	assert_contains(err, "4096-byte blocks");
	assert_contains(err, "65536-byte blocks");
	assert_contains(err, "full resync");
	/* a small buffer truncates the sentence but never overflows */
	assert_int_equal(map_check_geometry(&m, 1, BLOCK_BYTES, err, 8), -EINVAL);
	assert_int_equal(strlen(err), 7);
	map_release(&m);
}

/* A committed map of 1000 blocks with base epoch 1 and log records 2, 3, 4. */
static void make_committed(const char *dir, struct map *m, uint64_t seed)
{
	uint64_t rng = seed;

	assert_int_equal(map_create(m, "vol", 1000ull * BLOCK_BYTES, BLOCK_BYTES), 0);
	set_all(m, &rng);
	commit_ok(m, dir, 1);
	for (uint64_t e = 2; e <= 4; e++) {
		set_random(m, 5, &rng);
		commit_ok(m, dir, e);
		assert_false(m->last_commit_rewrote_base);
	}
}

static void expect_bad(const char *dir, const char *file, const char *words)
{
	char err[512] = "", want[64];
	struct map l;
	int rc;

	rc = map_load(&l, dir, err, sizeof(err));
	if (rc != -EBADMSG)
		fail_msg("map_load gave %d (%s), want -EBADMSG (%s)", rc, err, words);
	snprintf(want, sizeof(want), "/%s:", file);
	assert_contains(err, want);
	assert_contains(err, words);
	assert_null(l.hashes);
}

static void test_corrupt_base(void **state)
{
	static const struct {
		int64_t off;
		const char *words;
	} flips[] = {
		{ 0, "bad magic" },
		{ 8, "format version" },
		{ 12, "header checksum" },  /* block_bytes */
		{ 40, "header checksum" },  /* volume name */
		{ 100, "header checksum" }, /* size_bytes */
		{ 128, "header checksum" }, /* body checksum field */
		{ 200, "header checksum" }, /* reserved */
		{ 250, "header checksum" }, /* the checksum itself */
		{ 256, "checksum of the hashes" },
		{ 256 + 8 * 999 + 7, "checksum of the hashes" },
	};
	char dir[TU_PATH_MAX];
	struct map m;

	(void)state;
	new_dir(dir, sizeof(dir));
	make_committed(dir, &m, 4);
	for (size_t i = 0; i < ARRAY_SIZE(flips); i++) {
		file_flip(dir, MAP_FILE, flips[i].off, 0x10);
		expect_bad(dir, MAP_FILE, flips[i].words);
		file_flip(dir, MAP_FILE, flips[i].off, 0x10);
		assert_reload_equals(dir, &m);
	}
	/* wrong lengths */
	file_truncate(dir, MAP_FILE, 256 + 8 * 999);
	expect_bad(dir, MAP_FILE, "header says 1000 blocks");
	file_truncate(dir, MAP_FILE, 100);
	expect_bad(dir, MAP_FILE, "shorter than its 256-byte header");
	file_truncate(dir, MAP_FILE, 0);
	expect_bad(dir, MAP_FILE, "shorter than its 256-byte header");
	map_release(&m);

	new_dir(dir, sizeof(dir));
	make_committed(dir, &m, 5);
	file_truncate(dir, MAP_FILE, 256 + 8 * 1000 + 8);
	expect_bad(dir, MAP_FILE, "header says 1000 blocks");
	map_release(&m);
}

static void test_corrupt_log(void **state)
{
	char dir[TU_PATH_MAX], other[TU_PATH_MAX];
	int64_t rec1 = sizeof(struct map_disk_log_header);
	struct map m, o;

	(void)state;
	new_dir(dir, sizeof(dir));
	make_committed(dir, &m, 6);
	/* the log header is written whole by rename: any fault in it is corruption */
	for (int64_t off = 0; off < rec1; off += 7) {
		file_flip(dir, MAP_LOG_FILE, off, 0x01);
		expect_bad(dir, MAP_LOG_FILE, off < 8 ? "bad magic" : "header checksum");
		file_flip(dir, MAP_LOG_FILE, off, 0x01);
	}
	file_flip(dir, MAP_LOG_FILE, 8, 0x01);
	expect_bad(dir, MAP_LOG_FILE, "format version");
	file_flip(dir, MAP_LOG_FILE, 8, 0x01);
	/* a record in the middle damaged, whole records after it: not a torn tail */
	file_flip(dir, MAP_LOG_FILE, rec1 + 40 + 3, 0x40);
	expect_bad(dir, MAP_LOG_FILE, "a whole record follows");
	file_flip(dir, MAP_LOG_FILE, rec1 + 40 + 3, 0x40);
	file_flip(dir, MAP_LOG_FILE, rec1, 0x40); /* its magic */
	expect_bad(dir, MAP_LOG_FILE, "a whole record follows");
	file_flip(dir, MAP_LOG_FILE, rec1, 0x40);
	assert_reload_equals(dir, &m);
	file_truncate(dir, MAP_LOG_FILE, 10);
	expect_bad(dir, MAP_LOG_FILE, "shorter than its 40-byte header");

	/* another volume's log next to this base */
	new_dir(other, sizeof(other));
	make_committed(other, &o, 7);
	file_copy(other, dir, MAP_LOG_FILE);
	expect_bad(dir, MAP_LOG_FILE, "another volume");
	map_release(&o);
	map_release(&m);
}

/* Appends a record with a correct checksum, whatever its content. */
static void append_record(const char *dir, uint64_t epoch, uint64_t block, uint64_t hash)
{
	unsigned char buf[sizeof(struct map_disk_record) + sizeof(struct map_disk_entry)];
	struct map_disk_record r = {
		.magic = htole64(MAP_DISK_RECORD_MAGIC),
		.epoch = htole64(epoch),
		.generation = 0,
		.entry_count = htole64(1),
		.checksum = 0,
	};
	struct map_disk_entry e = { .block = htole64(block), .hash = htole64(hash) };
	struct delta_stream ds;

	delta_stream_init(&ds, MAP_DISK_SEED_RECORD);
	delta_stream_update(&ds, &r, sizeof(r));
	delta_stream_update(&ds, &e, sizeof(e));
	r.checksum = htole64(delta_stream_digest(&ds));
	memcpy(buf, &r, sizeof(r));
	memcpy(buf + sizeof(r), &e, sizeof(e));
	file_pwrite(dir, MAP_LOG_FILE, buf, sizeof(buf), file_size(dir, MAP_LOG_FILE));
}

/*
 * Records whose checksum is right but whose content is impossible (a block
 * beyond the map, epochs not increasing) are refused, not applied or cut off.
 */
static void test_impossible_records(void **state)
{
	char dir[TU_PATH_MAX], err[512];
	int64_t good_end;
	struct map m, l;

	(void)state;
	new_dir(dir, sizeof(dir));
	make_committed(dir, &m, 10); /* base 1, records 2, 3, 4 */
	good_end = file_size(dir, MAP_LOG_FILE);

	/* the crafting is right: a sane record is applied */
	append_record(dir, 6, 5, 0x1234);
	assert_int_equal(map_load(&l, dir, err, sizeof(err)), 0);
	assert_int_equal(l.epoch, 6);
	assert_true(l.hashes[5] == 0x1234);
	map_release(&l);
	file_truncate(dir, MAP_LOG_FILE, good_end);

	append_record(dir, 5, 1000, 1);
	expect_bad(dir, MAP_LOG_FILE, "names block 1000, beyond the map's 1000 blocks");
	file_truncate(dir, MAP_LOG_FILE, good_end);
	append_record(dir, 4, 5, 1);
	expect_bad(dir, MAP_LOG_FILE, "has epoch 4, not after the previous record's epoch 4");
	file_truncate(dir, MAP_LOG_FILE, good_end);
	append_record(dir, 1, 5, 1); /* stale epochs come first, never after */
	expect_bad(dir, MAP_LOG_FILE, "has epoch 1, not after");
	file_truncate(dir, MAP_LOG_FILE, good_end);
	assert_reload_equals(dir, &m);
	map_release(&m);
}

/* The torn-tail setup: a map at epoch 3 (old) plus one more record (new, epoch 4). */
static void test_torn_tail(void **state)
{
	char dir[TU_PATH_MAX], err[512];
	struct snap old_snap, new_snap;
	uint64_t rng = 8;
	int64_t tail_start, tail_end;
	uint64_t dirty;
	struct map m, l;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(map_create(&m, "torn", 1000ull * BLOCK_BYTES, BLOCK_BYTES), 0);
	set_all(&m, &rng);
	commit_ok(&m, dir, 1);
	set_random(&m, 5, &rng);
	commit_ok(&m, dir, 3);
	snap_take(&old_snap, &m);
	tail_start = file_size(dir, MAP_LOG_FILE);
	set_random(&m, 9, &rng);
	dirty = map_dirty_count(&m);
	m.generation = 2;
	commit_ok(&m, dir, 4);
	snap_take(&new_snap, &m);
	tail_end = file_size(dir, MAP_LOG_FILE);
	assert_int_equal(tail_end - tail_start, 40 + 16 * (int64_t)dirty);

	unsigned char *saved = malloc((size_t)tail_end);
	assert_non_null(saved);
	file_pread(dir, MAP_LOG_FILE, saved, (size_t)tail_end, 0);
	for (int64_t cut = tail_start; cut <= tail_end; cut++) {
		file_truncate(dir, MAP_LOG_FILE, cut);
		if (map_load(&l, dir, err, sizeof(err)) != 0)
			fail_msg("cut at %" PRId64 ": %s", cut, err);
		if (cut < tail_end) {
			if (!snap_matches(&old_snap, &l))
				fail_msg("log cut at byte %" PRId64 ": not the old map", cut);
			/* the torn bytes are gone from the file */
			assert_int_equal(file_size(dir, MAP_LOG_FILE), tail_start);
		} else {
			assert_true(snap_matches(&new_snap, &l));
		}
		map_release(&l);
		file_truncate(dir, MAP_LOG_FILE, 0);
		file_pwrite(dir, MAP_LOG_FILE, saved, (size_t)tail_end, 0);
	}
	/* a last record of the right length with garbage in it (zeros, a flipped
	 * bit anywhere) is also a torn tail */
	for (int64_t off = tail_start; off < tail_end; off += 5) {
		file_flip(dir, MAP_LOG_FILE, off, 0x02);
		assert_int_equal(map_load(&l, dir, err, sizeof(err)), 0);
		assert_true(snap_matches(&old_snap, &l));
		map_release(&l);
		file_pwrite(dir, MAP_LOG_FILE, saved, (size_t)tail_end, 0);
	}
	/* after a cut, the next commit appends where the torn record was */
	file_truncate(dir, MAP_LOG_FILE, tail_end - 1);
	assert_int_equal(map_load(&l, dir, err, sizeof(err)), 0);
	assert_true(snap_matches(&old_snap, &l));
	set_random(&l, 3, &rng);
	commit_ok(&l, dir, 4);
	assert_reload_equals(dir, &l);
	map_release(&l);
	free(saved);
	snap_free(&old_snap);
	snap_free(&new_snap);
	map_release(&m);
}

/* ----------------------------------------------------------- crash points */

static int hook_stop_at;
static int hook_calls;
static const char *hook_stopped;

static int crash_hook(const char *step)
{
	if (hook_calls++ == hook_stop_at) {
		hook_stopped = step;
		return -EINTR;
	}
	return 0;
}

enum crash_kind { CRASH_LOG_APPEND, CRASH_BASE_REWRITE, CRASH_FIRST_COMMIT };
static const char *const crash_kind_names[] = { "log append", "base rewrite", "first commit" };

/* The steps after which the new epoch is what a process death leaves behind. */
static bool step_after_commit_point(enum crash_kind kind, const char *step)
{
	static const char *const after_base[] = { "base.dirsync", "log.create", "log.write",
						  "log.fsync",	  "log.rename", "log.dirsync" };

	if (kind == CRASH_LOG_APPEND)
		return strcmp(step, "log.fdatasync") == 0;
	for (size_t i = 0; i < ARRAY_SIZE(after_base); i++)
		if (strcmp(step, after_base[i]) == 0)
			return true;
	return false;
}

/*
 * Builds the starting state of a scenario in dir (nothing for a first commit) and
 * the map in memory with the changes of the commit under test made.
 */
static void crash_setup(enum crash_kind kind, const char *dir, struct map *m, uint64_t *rng)
{
	assert_int_equal(map_create(m, "crash", 2000ull * BLOCK_BYTES, BLOCK_BYTES), 0);
	if (kind != CRASH_FIRST_COMMIT) {
		set_all(m, rng);
		commit_ok(m, dir, 1);
		set_random(m, 10, rng);
		commit_ok(m, dir, 2);
	}
	switch (kind) {
	case CRASH_LOG_APPEND:
		set_random(m, 17, rng);
		break;
	case CRASH_BASE_REWRITE:
		for (uint64_t i = 0; i < 1000; i++)
			map_set(m, i * 2, tu_rand_next(rng));
		m->generation = 7;
		break;
	case CRASH_FIRST_COMMIT:
		set_all(m, rng);
		break;
	}
}

static void crash_scenario(enum crash_kind kind)
{
	int olds = 0, news = 0;

	for (int k = 0;; k++) {
		char dir[TU_PATH_MAX], err[512] = "";
		struct snap old_snap = { 0 }, new_snap;
		bool have_old, is_new;
		uint64_t rng = 100 + (uint64_t)k;
		struct map m, l;
		int rc;

		new_dir(dir, sizeof(dir));
		crash_setup(kind, dir, &m, &rng);
		have_old = kind != CRASH_FIRST_COMMIT;
		if (have_old) {
			assert_int_equal(map_load(&l, dir, err, sizeof(err)), 0);
			snap_take(&old_snap, &l);
			map_release(&l);
		}
		hook_stop_at = k;
		hook_calls = 0;
		hook_stopped = NULL;
		map_crash_hook = crash_hook;
		rc = map_commit(&m, dir, 3, err, sizeof(err));
		map_crash_hook = NULL;
		if (hook_stopped == NULL) {
			/* k is past the last step: the commit ran to its end */
			assert_int_equal(rc, 0);
			assert_true(k >= 2);
			assert_reload_equals(dir, &m);
			print_message("%s: %d crash points, %d gave the old map, %d the new\n",
				      crash_kind_names[kind], k, olds, news);
			map_release(&m);
			snap_free(&old_snap);
			break;
		}
		assert_int_equal(rc, -EINTR);
		/* the map refuses to commit again until reloaded */
		assert_true(m.failed);
		assert_int_equal(map_commit(&m, dir, 4, err, sizeof(err)), -EIO);
		/* the map in memory still holds the intended new state */
		new_snap.epoch = 3;
		new_snap.generation = m.generation;
		new_snap.block_count = m.block_count;
		new_snap.hashes = m.hashes;

		rc = map_load(&l, dir, err, sizeof(err));
		if (rc == -ENOENT && !have_old) {
			is_new = false;
		} else {
			if (rc != 0)
				fail_msg("%s, crash before %s: map_load %d: %s",
					 crash_kind_names[kind], hook_stopped, rc, err);
			is_new = snap_matches(&new_snap, &l);
			if (!is_new && !(have_old && snap_matches(&old_snap, &l)))
				fail_msg("%s, crash before %s: the map is neither the old nor "
					 "the new one",
					 crash_kind_names[kind], hook_stopped);
		}
		if (is_new != step_after_commit_point(kind, hook_stopped))
			fail_msg("%s, crash before %s: got the %s map", crash_kind_names[kind],
				 hook_stopped, is_new ? "new" : "old");
		olds += !is_new;
		news += is_new;

		/* recovery: the loaded map commits again and reloads exactly */
		if (rc == 0) {
			uint64_t next = l.epoch + 1;

			set_random(&l, 4, &rng);
			commit_ok(&l, dir, next);
			assert_reload_equals(dir, &l);
			map_release(&l);
		}
		map_release(&m);
		snap_free(&old_snap);
	}
	assert_true(olds > 0);
	assert_true(news > 0 || kind == CRASH_FIRST_COMMIT);
}

static void test_crash_log_append(void **state)
{
	(void)state;
	crash_scenario(CRASH_LOG_APPEND);
}

static void test_crash_base_rewrite(void **state)
{
	(void)state;
	crash_scenario(CRASH_BASE_REWRITE);
}

static void test_crash_first_commit(void **state)
{
	(void)state;
	crash_scenario(CRASH_FIRST_COMMIT);
}

/*
 * "1 TiB" in 256 KiB blocks: 2^22 blocks, a 32 MiB base. Committing 100 changed
 * blocks must append one 1640-byte record and leave the base alone.
 */
static void test_commit_cost_proportional(void **state)
{
	char dir[TU_PATH_MAX], p[TU_PATH_MAX];
	struct stat before, after;
	int64_t log_before, log_after;
	uint64_t rng = 9;
	struct map m;

	(void)state;
	new_dir(dir, sizeof(dir));
	assert_int_equal(map_create(&m, "tib", 1ull << 40, 256u << 10), 0);
	assert_int_equal(m.block_count, 1ull << 22);
	set_all(&m, &rng);
	commit_ok(&m, dir, 1);
	assert_int_equal(file_size(dir, MAP_FILE), 256 + (8ll << 22));
	path_of(p, sizeof(p), dir, MAP_FILE);
	assert_int_equal(stat(p, &before), 0);
	log_before = file_size(dir, MAP_LOG_FILE);
	for (int i = 0; i < 100; i++)
		map_set(&m, (uint64_t)i * 41941 + 7, tu_rand_next(&rng));
	assert_int_equal(map_dirty_count(&m), 100);
	commit_ok(&m, dir, 2);
	assert_false(m.last_commit_rewrote_base);
	assert_int_equal(m.last_commit_bytes, 40 + 100 * 16);
	assert_int_equal(stat(p, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_size, before.st_size);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	log_after = file_size(dir, MAP_LOG_FILE);
	assert_int_equal(log_after - log_before, 40 + 100 * 16);
	assert_reload_equals(dir, &m);
	map_release(&m);
}

/* --------------------------------------------------------------- threads */

#define SET_THREADS 4

struct set_arg {
	struct map *m;
	unsigned t;
	pthread_barrier_t *start;
};

static void *set_worker(void *p)
{
	struct set_arg *a = p;

	/* all threads start together, so they really contend */
	pthread_barrier_wait(a->start);
	/* interleaved indices: every bitmap word is shared by all threads */
	for (uint64_t i = a->t; i < a->m->block_count; i += SET_THREADS)
		map_set(a->m, i, i * 2654435761u + 1);
	return NULL;
}

static void test_concurrent_set(void **state)
{
	struct set_arg args[SET_THREADS];
	pthread_t th[SET_THREADS];
	pthread_barrier_t start;
	struct map m;

	(void)state;
	for (int round = 0; round < 5; round++) {
		assert_int_equal(map_create(&m, "mt", 2000000ull * BLOCK_BYTES, BLOCK_BYTES), 0);
		assert_int_equal(pthread_barrier_init(&start, NULL, SET_THREADS), 0);
		for (unsigned t = 0; t < SET_THREADS; t++) {
			args[t].m = &m;
			args[t].t = t;
			args[t].start = &start;
			assert_int_equal(pthread_create(&th[t], NULL, set_worker, &args[t]), 0);
		}
		for (unsigned t = 0; t < SET_THREADS; t++)
			assert_int_equal(pthread_join(th[t], NULL), 0);
		pthread_barrier_destroy(&start);
		assert_int_equal(map_dirty_count(&m), m.block_count);
		for (uint64_t i = 0; i < m.block_count; i++)
			assert_true(m.hashes[i] == i * 2654435761u + 1);
		map_release(&m);
	}
}

static int setup(void **state)
{
	(void)state;
	return tu_tmpdir(tmp_root, sizeof(tmp_root)) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_many_epochs),
		cmocka_unit_test(test_base_rewrite_when_many_dirty),
		cmocka_unit_test(test_geometry_mismatch),
		cmocka_unit_test(test_corrupt_base),
		cmocka_unit_test(test_corrupt_log),
		cmocka_unit_test(test_impossible_records),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_crash_log_append),
		cmocka_unit_test(test_crash_base_rewrite),
		cmocka_unit_test(test_crash_first_commit),
		cmocka_unit_test(test_commit_cost_proportional),
		cmocka_unit_test(test_concurrent_set),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
