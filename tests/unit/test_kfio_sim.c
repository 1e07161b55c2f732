// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the simulated power loss (KFIO_BACKEND_SIM): writes, some of them
 * flushed with kfio_queue_flush, then kfio_queue_sim_crash, then the volume is
 * reopened from the file and read back. Flushed writes always survive; un-flushed
 * ones are all absent with DROP, all present with KEEP, and with TORN each is old,
 * new, or a 512-byte-sector-aligned prefix of new, the same for the same seed.
 * Also: the pending count, reads seeing un-flushed data before the crash, a dead
 * queue after the crash, overwrites of flushed data, and flushes that cover only
 * their own device.
 *
 * Only regular files are used, so no root is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define KIB	     1024ull
#define MIB	     (1024ull * 1024ull)
#define SECTOR	     512u
#define FILE_BYTES   (4 * MIB)
#define SEED_OLD     0x01d0001ull
#define SEED_FLUSHED 0xf105edull
#define SEED_NEW     0x9e30001ull
#define Q_DEPTH	     16u
#define Q_BUF_COUNT  32u
#define Q_BUF_BYTES  (64u * 1024u)

/* ------------------------------------------------------------- fixtures */

struct sim_fix {
	char file[TU_PATH_MAX];
	struct kfio_dev dev;
	bool dev_open;
	struct kfio_queue *q;
};

static void sim_open(struct sim_fix *f)
{
	struct kfio_queue_config cfg = { KFIO_BACKEND_SIM, Q_DEPTH, Q_BUF_COUNT, Q_BUF_BYTES };
	struct kfio_dev *devs[1] = { &f->dev };
	char err[KFIO_ERR_MSG_MAX] = "";
	int ret;

	ret = kfio_dev_open(&f->dev, f->file, KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("kfio_dev_open %s: %d (%s)", f->file, ret, f->dev.err_msg);
	f->dev_open = true;
	ret = kfio_queue_new(&f->q, &cfg, devs, 1, err, sizeof(err));
	if (ret)
		fail_msg("kfio_queue_new (sim): %d (%s)", ret, err);
}

static void sim_close(struct sim_fix *f)
{
	if (f->q)
		kfio_queue_free(f->q);
	f->q = NULL;
	if (f->dev_open)
		kfio_dev_close(&f->dev);
	f->dev_open = false;
}

static int sim_setup(void **state)
{
	struct sim_fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	assert_int_equal(tu_tmpfile(f->file, sizeof(f->file), FILE_BYTES, SEED_OLD), 0);
	sim_open(f);
	return 0;
}

static int sim_teardown(void **state)
{
	struct sim_fix *f = *state;

	if (f == NULL)
		return 0;
	sim_close(f);
	tu_tmpfile_release(f->file);
	free(f);
	*state = NULL;
	return 0;
}

/* ------------------------------------------------------------ helpers */

/* One write of len bytes of seed's pattern at offset, waited for. */
static void sim_write(struct kfio_queue *q, unsigned dev_idx, uint64_t offset, uint32_t len,
		      uint64_t seed)
{
	struct kfio_cqe cqe;
	int ret;

	tu_pattern_fill(kfio_queue_buf(q, 0), len, offset, seed);
	ret = kfio_queue_write(q, dev_idx, 0, offset, len, offset);
	if (ret)
		fail_msg("kfio_queue_write at %llu: %d (%s)", (unsigned long long)offset, ret,
			 kfio_queue_err(q));
	assert_int_equal(kfio_queue_submit(q), 1);
	assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
	assert_int_equal(cqe.user_data, offset);
	if (cqe.res != (int32_t)len)
		fail_msg("write at %llu: res %d (%s)", (unsigned long long)offset, cqe.res,
			 kfio_queue_err(q));
}

/* Many writes at depth, one buffer each, then waits for all. */
static void sim_write_batch(struct kfio_queue *q, const uint64_t *offs, unsigned n, uint32_t len,
			    uint64_t seed)
{
	struct kfio_cqe cqes[Q_DEPTH];
	unsigned i = 0, done = 0;

	assert_true(len <= Q_BUF_BYTES);
	while (done < n) {
		int got;

		while (i < n && i - done < Q_DEPTH) {
			uint32_t b = i % Q_BUF_COUNT;

			tu_pattern_fill(kfio_queue_buf(q, b), len, offs[i], seed);
			assert_int_equal(kfio_queue_write(q, 0, b, offs[i], len, i), 0);
			i++;
		}
		assert_true(kfio_queue_submit(q) >= 0);
		got = kfio_queue_reap(q, cqes, Q_DEPTH, 1);
		assert_true(got > 0);
		while (got-- > 0)
			assert_int_equal(cqes[got].res, (int32_t)len);
		done = i - kfio_queue_inflight(q);
	}
}

static void sim_flush(struct kfio_queue *q, unsigned dev_idx)
{
	struct kfio_cqe cqe;

	assert_int_equal(kfio_queue_flush(q, dev_idx, 0xf1), 0);
	assert_int_equal(kfio_queue_submit(q), 1);
	assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
	assert_int_equal(cqe.op, KFIO_OP_FLUSH);
	assert_int_equal(cqe.res, 0);
}

/* Reads len bytes at offset through the queue (before a crash). */
static void sim_read_expect(struct kfio_queue *q, uint64_t offset, uint32_t len, uint64_t seed)
{
	struct kfio_cqe cqe;

	memset(kfio_queue_buf(q, 1), 0, len);
	assert_int_equal(kfio_queue_read(q, 0, 1, offset, len, 7), 0);
	assert_int_equal(kfio_queue_submit(q), 1);
	assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
	assert_int_equal(cqe.res, (int32_t)len);
	if (tu_pattern_mismatch(kfio_queue_buf(q, 1), len, offset, seed) != -1)
		fail_msg("read at %llu on the sim queue does not see the last write",
			 (unsigned long long)offset);
}

/*
 * After a crash the queue is dead: a read fails with -EIO when queued, when
 * submitted, or in its completion.
 */
static void expect_dead(struct kfio_queue *q)
{
	struct kfio_cqe cqe;
	int ret = kfio_queue_read(q, 0, 0, 0, 4096, 1);

	if (ret == -EIO)
		return;
	assert_int_equal(ret, 0);
	ret = kfio_queue_submit(q);
	if (ret == -EIO)
		return;
	assert_true(ret >= 0);
	ret = kfio_queue_reap(q, &cqe, 1, 1);
	if (ret == -EIO)
		return;
	assert_int_equal(ret, 1);
	if (cqe.res != -EIO)
		fail_msg("a read after the crash completed with %d, want -EIO", cqe.res);
}

/* Reopens the file with kfio (a fresh process would) and reads it all. */
static unsigned char *reopen_read_all(const char *file)
{
	struct kfio_dev dev;
	unsigned char *buf = kfio_buf_alloc(FILE_BYTES);
	int ret;

	assert_non_null(buf);
	ret = kfio_dev_open(&dev, file, 0);
	if (ret)
		fail_msg("reopening %s: %d (%s)", file, ret, dev.err_msg);
	assert_int_equal(dev.size_bytes, FILE_BYTES);
	ret = kfio_dev_pread_all(&dev, buf, FILE_BYTES, 0);
	if (ret)
		fail_msg("reading %s: %d (%s)", file, ret, dev.err_msg);
	kfio_dev_close(&dev);
	return buf;
}

/* Checks that [offset, offset + len) of img holds seed's pattern. */
static void expect_pattern(const unsigned char *img, uint64_t offset, uint64_t len, uint64_t seed,
			   const char *what)
{
	long bad = tu_pattern_mismatch(img + offset, len, offset, seed);

	if (bad >= 0)
		fail_msg("%s: byte %llu does not hold the expected data", what,
			 (unsigned long long)(offset + (uint64_t)bad));
}

/* ------------------------------------------------------------------ tests */

static void test_sim_pending(void **state)
{
	struct sim_fix *f = *state;

	assert_int_equal(kfio_queue_sim_pending(f->q), 0);
	sim_write(f->q, 0, 0, 4096, SEED_NEW);
	sim_write(f->q, 0, 8192, 4096, SEED_NEW);
	sim_write(f->q, 0, 65536, 65536, SEED_NEW);
	assert_int_equal(kfio_queue_sim_pending(f->q), 3);
	sim_flush(f->q, 0);
	assert_int_equal(kfio_queue_sim_pending(f->q), 0);
	sim_write(f->q, 0, 0, 4096, SEED_NEW);
	assert_int_equal(kfio_queue_sim_pending(f->q), 1);
}

/* Flushed region A, un-flushed region B, crash with mode; B is lost or kept. */
static void test_sim_drop_keep(void **state)
{
	struct sim_fix *f = *state;
	enum kfio_crash_mode modes[2] = { KFIO_CRASH_DROP, KFIO_CRASH_KEEP };
	unsigned m;

	for (m = 0; m < 2; m++) {
		uint64_t a[8], b[8];
		unsigned char *img;
		unsigned i;

		if (m > 0) {
			/* A fresh volume for the next mode. */
			sim_close(f);
			assert_int_equal(tu_file_fill(f->file, 0, FILE_BYTES, SEED_OLD), 0);
			sim_open(f);
		}
		for (i = 0; i < 8; i++) {
			a[i] = (uint64_t)i * Q_BUF_BYTES;
			b[i] = MIB + (uint64_t)i * Q_BUF_BYTES;
		}
		sim_write_batch(f->q, a, 8, Q_BUF_BYTES, SEED_FLUSHED);
		sim_flush(f->q, 0);
		sim_write_batch(f->q, b, 8, Q_BUF_BYTES, SEED_NEW);
		assert_int_equal(kfio_queue_sim_pending(f->q), 8);
		/* Before the power goes, the cache serves the new data. */
		sim_read_expect(f->q, b[3], Q_BUF_BYTES, SEED_NEW);
		assert_int_equal(kfio_queue_sim_crash(f->q, modes[m], 0), 0);
		expect_dead(f->q);
		sim_close(f);

		img = reopen_read_all(f->file);
		expect_pattern(img, 0, 8 * Q_BUF_BYTES, SEED_FLUSHED, "flushed writes");
		expect_pattern(img, 8 * Q_BUF_BYTES, MIB - 8 * Q_BUF_BYTES, SEED_OLD,
			       "untouched gap");
		expect_pattern(img, MIB, 8 * Q_BUF_BYTES,
			       modes[m] == KFIO_CRASH_DROP ? SEED_OLD : SEED_NEW,
			       modes[m] == KFIO_CRASH_DROP ? "un-flushed writes after DROP"
							   : "un-flushed writes after KEEP");
		expect_pattern(img, MIB + 8 * Q_BUF_BYTES, FILE_BYTES - MIB - 8 * Q_BUF_BYTES,
			       SEED_OLD, "untouched tail");
		kfio_buf_free(img, FILE_BYTES);
	}
}

/* Overwriting flushed data without a flush: DROP brings back the flushed version. */
static void test_sim_overwrite(void **state)
{
	struct sim_fix *f = *state;
	static const struct {
		enum kfio_crash_mode mode;
		uint64_t want_seed;
	} cases[] = {
		{ KFIO_CRASH_DROP, SEED_FLUSHED },
		{ KFIO_CRASH_KEEP, SEED_NEW + 1 },
	};
	unsigned c;

	for (c = 0; c < ARRAY_SIZE(cases); c++) {
		unsigned char *img;

		if (c > 0) {
			sim_close(f);
			assert_int_equal(tu_file_fill(f->file, 0, FILE_BYTES, SEED_OLD), 0);
			sim_open(f);
		}
		sim_write(f->q, 0, 2 * MIB, 32 * KIB, SEED_FLUSHED);
		sim_flush(f->q, 0);
		sim_write(f->q, 0, 2 * MIB, 32 * KIB, SEED_NEW);
		/* A smaller write inside the first, then one straddling its end. */
		sim_write(f->q, 0, 2 * MIB + 4 * KIB, 8 * KIB, SEED_NEW + 1);
		sim_write(f->q, 0, 2 * MIB, 32 * KIB, SEED_NEW + 1);
		sim_read_expect(f->q, 2 * MIB, 32 * KIB, SEED_NEW + 1);
		assert_int_equal(kfio_queue_sim_crash(f->q, cases[c].mode, 0), 0);
		sim_close(f);
		img = reopen_read_all(f->file);
		expect_pattern(img, 2 * MIB, 32 * KIB, cases[c].want_seed,
			       cases[c].mode == KFIO_CRASH_DROP ? "overwrite after DROP"
								: "overwrite after KEEP");
		expect_pattern(img, 0, 2 * MIB, SEED_OLD, "before");
		expect_pattern(img, 2 * MIB + 32 * KIB, FILE_BYTES - 2 * MIB - 32 * KIB, SEED_OLD,
			       "after");
		kfio_buf_free(img, FILE_BYTES);
	}
}

#define TORN_WRITES  48u
#define TORN_BYTES   (16u * 1024u)
#define TORN_SECTORS (TORN_BYTES / SECTOR)

/*
 * One TORN run on a fresh file: 4 flushed writes, then TORN_WRITES un-flushed ones
 * 64 KiB apart, crash with seed. outcome[i] is how many leading sectors of write i
 * are new (0 = lost, TORN_SECTORS = kept).
 */
static void torn_run(struct sim_fix *f, uint64_t seed, unsigned *outcome)
{
	uint64_t offs[TORN_WRITES], flushed[4];
	unsigned char *img;
	unsigned i, s;

	sim_close(f);
	assert_int_equal(tu_file_fill(f->file, 0, FILE_BYTES, SEED_OLD), 0);
	sim_open(f);
	for (i = 0; i < 4; i++)
		flushed[i] = 3 * MIB + (uint64_t)i * Q_BUF_BYTES;
	sim_write_batch(f->q, flushed, 4, TORN_BYTES, SEED_FLUSHED);
	sim_flush(f->q, 0);
	for (i = 0; i < TORN_WRITES; i++)
		offs[i] = (uint64_t)i * Q_BUF_BYTES + (i % 4) * SECTOR;
	sim_write_batch(f->q, offs, TORN_WRITES, TORN_BYTES, SEED_NEW);
	assert_int_equal(kfio_queue_sim_pending(f->q), TORN_WRITES);
	assert_int_equal(kfio_queue_sim_crash(f->q, KFIO_CRASH_TORN, seed), 0);
	expect_dead(f->q);
	sim_close(f);

	img = reopen_read_all(f->file);
	for (i = 0; i < 4; i++)
		expect_pattern(img, flushed[i], TORN_BYTES, SEED_FLUSHED, "flushed before TORN");
	for (i = 0; i < TORN_WRITES; i++) {
		unsigned new_sectors = 0;
		bool seen_old = false;

		for (s = 0; s < TORN_SECTORS; s++) {
			uint64_t at = offs[i] + (uint64_t)s * SECTOR;
			bool is_new = tu_pattern_mismatch(img + at, SECTOR, at, SEED_NEW) == -1;
			bool is_old = tu_pattern_mismatch(img + at, SECTOR, at, SEED_OLD) == -1;

			if (!is_new && !is_old)
				fail_msg(
					"TORN seed %llu: write %u sector %u (byte %llu) is neither "
					"old nor new",
					(unsigned long long)seed, i, s, (unsigned long long)at);
			if (is_new && seen_old)
				fail_msg(
					"TORN seed %llu: write %u has a new sector %u after an old "
					"one (not a prefix)",
					(unsigned long long)seed, i, s);
			if (is_new)
				new_sectors++;
			else
				seen_old = true;
		}
		outcome[i] = new_sectors;
	}
	/* Between the writes nothing changed. */
	for (i = 0; i < TORN_WRITES; i++) {
		uint64_t gap = offs[i] + TORN_BYTES;
		uint64_t end = (uint64_t)(i + 1) * Q_BUF_BYTES + ((i + 1) % 4) * SECTOR;

		if (end > 3 * MIB)
			end = 3 * MIB;
		if (gap < end)
			expect_pattern(img, gap, end - gap, SEED_OLD, "between torn writes");
	}
	kfio_buf_free(img, FILE_BYTES);
}

static void test_sim_torn(void **state)
{
	struct sim_fix *f = *state;
	unsigned first[TORN_WRITES], again[TORN_WRITES];
	unsigned i, torn = 0, lost = 0, kept = 0;

	torn_run(f, 42, first);
	for (i = 0; i < TORN_WRITES; i++) {
		if (first[i] == 0)
			lost++;
		else if (first[i] == TORN_SECTORS)
			kept++;
		else
			torn++;
	}
	print_message("TORN seed 42: %u lost, %u kept, %u torn of %u\n", lost, kept, torn,
		      TORN_WRITES);
	if (torn == 0)
		fail_msg("TORN seed 42 tore none of %u writes (%u lost, %u kept)", TORN_WRITES,
			 lost, kept);
	/* The same seed replays the same crash. */
	torn_run(f, 42, again);
	for (i = 0; i < TORN_WRITES; i++) {
		if (first[i] != again[i])
			fail_msg(
				"TORN seed 42 is not replayable: write %u kept %u sectors, then %u",
				i, first[i], again[i]);
	}
}

/* A flush covers its own device only. */
static void test_sim_flush_per_device(void **state)
{
	struct kfio_queue_config cfg = { KFIO_BACKEND_SIM, Q_DEPTH, Q_BUF_COUNT, Q_BUF_BYTES };
	char files[2][TU_PATH_MAX];
	struct kfio_dev dev[2];
	struct kfio_dev *devs[2] = { &dev[0], &dev[1] };
	struct kfio_queue *q = NULL;
	char err[KFIO_ERR_MSG_MAX] = "";
	unsigned d;

	(void)state;
	for (d = 0; d < 2; d++) {
		assert_int_equal(tu_tmpfile(files[d], sizeof(files[d]), FILE_BYTES, SEED_OLD), 0);
		assert_int_equal(kfio_dev_open(&dev[d], files[d], KFIO_OPEN_WRITE), 0);
	}
	if (kfio_queue_new(&q, &cfg, devs, 2, err, sizeof(err)))
		fail_msg("kfio_queue_new: %s", err);
	sim_write(q, 0, 0, 64 * KIB, SEED_NEW);
	sim_write(q, 1, 0, 64 * KIB, SEED_NEW);
	sim_flush(q, 0);
	assert_int_equal(kfio_queue_sim_pending(q), 1);
	assert_int_equal(kfio_queue_sim_crash(q, KFIO_CRASH_DROP, 0), 0);
	kfio_queue_free(q);
	for (d = 0; d < 2; d++) {
		unsigned char *img;

		kfio_dev_close(&dev[d]);
		img = reopen_read_all(files[d]);
		expect_pattern(img, 0, 64 * KIB, d == 0 ? SEED_NEW : SEED_OLD,
			       d == 0 ? "flushed device" : "device not flushed");
		kfio_buf_free(img, FILE_BYTES);
		tu_tmpfile_release(files[d]);
	}
}

#define SIM_TEST(fn)                                   \
	{                                              \
#fn, fn, sim_setup, sim_teardown, NULL \
	}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		SIM_TEST(test_sim_pending),
		SIM_TEST(test_sim_drop_keep),
		SIM_TEST(test_sim_overwrite),
		SIM_TEST(test_sim_torn),
		cmocka_unit_test(test_sim_flush_per_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
