// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the epoch journal, on regular files through kfio's power-loss
 * simulator (KFIO_BACKEND_SIM), so no root is needed.
 *
 * The crash matrix enumerates rather than samples: a counting run learns how many
 * writes and flushes one epoch issues (begin, data and zero records, commit,
 * apply); then for every k in 0..total and every mode (DROP, KEEP, TORN with
 * several seeds), the standby is reset to the epoch-E image and the journal to
 * its state after epoch E, the epoch runs until the journal_io_hook cuts power
 * before I/O k, and a fresh journal_open + journal_recover must leave the standby
 * byte for byte equal to E or to E+1 — E+1 whenever journal_commit had returned 0
 * — and a journal that takes the next epoch. Also: every superblock write torn at
 * every sector (prefix and suffix) or garbled; a crash at every I/O of a replay;
 * a hash mismatch (-EBADMSG, nothing written); an epoch too large (-ENOSPC); a
 * journal of another volume or block size refused; damaged records found at
 * recovery (-EBADMSG, standby untouched); double apply; sticky I/O errors; small
 * blocks with a short last block. Barriers: a block written again in a later
 * round ends with the later bytes, applied and replayed, and the first standby
 * write after a barrier is queued only when nothing is in flight; damaged
 * barrier headers are refused; an epoch of barriers only applies and replays.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "journal.h"
#include "journal_format.h"
#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define KIB	     1024u
#define JRN_BYTES    (1u << 20)
#define JRN_BUF	     (128u * KIB)
#define JRN_DEPTH    4u
#define GENERATION   3u
#define EPOCH_E	     7u
#define SEED_E	     0xe0e0e0ull
#define SEED_E1	     0xe1e1e1ull
#define SEED_E2	     0xe2e2e2ull
#define TORN_SEEDS   3u
#define SECTOR_BYTES 512u

enum run_kind {
	RUN_DATA = 1,
	RUN_ZERO = 2,
	RUN_BARRIER = 3, /* first and count 0 */
};

struct run {
	enum run_kind kind;
	uint64_t first;
	uint32_t count;
	uint64_t seed;
};

struct geo {
	uint32_t block_bytes;
	uint64_t volume_bytes;
	uint64_t blocks;
};

/* 8 KiB blocks, 48 of them, the last one 4 KiB short. */
static const struct geo geo_main = { 8192u, 48ull * 8192u - 4096u, 48 };

/* Epoch E: rewrites blocks with the bytes they already hold (the standby stays
 * E), leaving an APPLIED journal with stale records for the next epoch. */
static const struct run runs_e[] = {
	{ RUN_DATA, 0, 20, SEED_E },
	{ RUN_DATA, 40, 8, SEED_E },
};
/* Epoch E+1: data runs of one and two buffers, zero runs, a barrier, the short
 * last block (test_corrupt_record knows where the first three records are). */
static const struct run runs_e1[] = {
	{ RUN_DATA, 0, 3, SEED_E1 }, { RUN_ZERO, 5, 5, 0 },    { RUN_DATA, 10, 20, SEED_E1 },
	{ RUN_ZERO, 30, 2, 0 },	     { RUN_BARRIER, 0, 0, 0 }, { RUN_DATA, 45, 3, SEED_E1 },
};
static const struct run runs_e2[] = {
	{ RUN_DATA, 2, 4, SEED_E2 },
	{ RUN_ZERO, 40, 3, 0 },
};

static char tmp_root[TU_PATH_MAX];
static unsigned dir_seq;

/* ------------------------------------------------------------- helpers */

static uint32_t blen(const struct geo *g, uint64_t b)
{
	uint64_t left = g->volume_bytes - b * g->block_bytes;

	return left < g->block_bytes ? (uint32_t)left : g->block_bytes;
}

static uint64_t run_bytes(const struct geo *g, uint64_t first, uint64_t count)
{
	uint64_t end = (first + count) * g->block_bytes;

	if (end > g->volume_bytes)
		end = g->volume_bytes;
	return end - first * g->block_bytes;
}

static void apply_runs(const struct geo *g, unsigned char *img, const struct run *runs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = runs[i].first * g->block_bytes;
		uint64_t len = run_bytes(g, runs[i].first, runs[i].count);

		if (runs[i].kind == RUN_DATA)
			tu_pattern_fill(img + off, len, off, runs[i].seed);
		else if (runs[i].kind == RUN_ZERO)
			memset(img + off, 0, len);
	}
}

static uint64_t runs_blocks(const struct run *runs, unsigned n)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < n; i++)
		b += runs[i].count;
	return b;
}

static void new_dir(char *out, size_t out_len)
{
	int n = snprintf(out, out_len, "%s/s%u", tmp_root, dir_seq++);

	assert_true(n > 0 && (size_t)n < out_len);
	assert_int_equal(mkdir(out, 0755), 0);
}

static void file_write(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void file_read(const char *path, void *buf, size_t len, uint64_t off)
{
	assert_int_equal(tu_file_read(path, buf, len, off), 0);
}

static void file_flip(const char *path, uint64_t off)
{
	unsigned char b;

	file_read(path, &b, 1, off);
	b ^= 0x20;
	file_write(path, &b, 1, off);
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* What on_block saw. */
struct seen {
	uint64_t calls;
	uint64_t *hash; /* per block, UINT64_MAX = not seen */
	uint64_t blocks;
};

static void seen_init(struct seen *s, uint64_t blocks)
{
	s->calls = 0;
	s->blocks = blocks;
	s->hash = malloc(blocks * sizeof(*s->hash));
	assert_non_null(s->hash);
	for (uint64_t b = 0; b < blocks; b++)
		s->hash[b] = UINT64_MAX;
}

static void seen_free(struct seen *s)
{
	free(s->hash);
	s->hash = NULL;
}

static int seen_cb(uint64_t block, uint64_t hash, void *ctx)
{
	struct seen *s = ctx;

	assert_true(block < s->blocks);
	s->hash[block] = hash;
	s->calls++;
	return 0;
}

/* on_block saw exactly the blocks of runs, each with the hash of img's block. */
static void seen_check(const struct geo *g, const struct seen *s, const unsigned char *img,
		       const struct run *runs, unsigned n)
{
	assert_int_equal(s->calls, runs_blocks(runs, n));
	for (unsigned i = 0; i < n; i++) {
		for (uint64_t b = runs[i].first; b < runs[i].first + runs[i].count; b++) {
			uint64_t want = delta_hash(img + b * g->block_bytes, blen(g, b));

			if (s->hash[b] != want)
				fail_msg("on_block for block %" PRIu64 ": hash %016" PRIx64
					 ", want %016" PRIx64,
					 b, s->hash[b], want);
		}
	}
}

/* ------------------------------------------------------------ fixture */

struct fix {
	struct geo g;
	char dir[TU_PATH_MAX];
	char jpath[TU_PATH_MAX + 16];
	char standby[TU_PATH_MAX];
	struct kfio_dev dev;
	bool dev_open;
	struct journal *j;
	struct journal_config cfg;
	unsigned char *img_e;  /* the standby at epoch E */
	unsigned char *img_e1; /* ... at E+1 */
	unsigned char *img_e2; /* ... at E+2 (after E+1) */
	unsigned char *jimg;   /* the journal after epoch E */
	unsigned char *buf;    /* scratch: standby read-back, plaintext */
};

static void fix_cfg(struct fix *f, uint64_t journal_bytes)
{
	memset(&f->cfg, 0, sizeof(f->cfg));
	f->cfg.backend = KFIO_BACKEND_SIM;
	f->cfg.journal_max_bytes = journal_bytes;
	f->cfg.block_bytes = f->g.block_bytes;
	f->cfg.volume_bytes = f->g.volume_bytes;
	for (unsigned i = 0; i < JOURNAL_DISK_VOLUME_ID_BYTES; i++)
		f->cfg.volume_id[i] = (uint8_t)(0xa0 + i);
	f->cfg.queue_depth = JRN_DEPTH;
	f->cfg.buf_bytes = JRN_BUF;
}

static int fix_try_open(struct fix *f, char *err, size_t err_len)
{
	int rc = kfio_dev_open(&f->dev, f->standby, KFIO_OPEN_WRITE);

	if (rc)
		fail_msg("kfio_dev_open %s: %d (%s)", f->standby, rc, f->dev.err_msg);
	f->dev_open = true;
	rc = journal_open(&f->j, f->dir, &f->cfg, &f->dev, err, err_len);
	if (rc) {
		kfio_dev_close(&f->dev);
		f->dev_open = false;
	}
	return rc;
}

static void fix_open(struct fix *f)
{
	char err[JOURNAL_ERR_MAX] = "";
	int rc = fix_try_open(f, err, sizeof(err));

	if (rc)
		fail_msg("journal_open %s: %d (%s)", f->dir, rc, err);
}

static void fix_close(struct fix *f)
{
	journal_close(f->j);
	f->j = NULL;
	if (f->dev_open)
		kfio_dev_close(&f->dev);
	f->dev_open = false;
}

/* Opens and recovers, expecting recovery to succeed; returns what it did. */
static void fix_open_recover(struct fix *f, struct journal_recovery *rec, struct seen *s)
{
	int rc;

	fix_open(f);
	rc = journal_recover(f->j, rec, s ? seen_cb : NULL, s);
	if (rc)
		fail_msg("journal_recover: %d (%s)", rc, journal_err(f->j));
}

/* Runs one epoch; *committed says whether journal_commit returned 0. */
static int run_epoch(struct fix *f, uint64_t epoch, const struct run *runs, unsigned n, bool apply,
		     bool *committed, struct seen *s)
{
	const struct geo *g = &f->g;
	int rc;

	*committed = false;
	rc = journal_begin(f->j, epoch, GENERATION, epoch - 1);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		if (runs[i].kind == RUN_BARRIER) {
			rc = journal_add_barrier(f->j);
		} else if (runs[i].kind == RUN_ZERO) {
			rc = journal_add_zero(f->j, runs[i].first, runs[i].count);
		} else {
			uint64_t off = runs[i].first * g->block_bytes;
			uint64_t len = run_bytes(g, runs[i].first, runs[i].count);
			uint64_t hashes[64];

			assert_true(runs[i].count <= ARRAY_SIZE(hashes));
			tu_pattern_fill(f->buf, len, off, runs[i].seed);
			for (uint32_t k = 0; k < runs[i].count; k++)
				hashes[k] = delta_hash(f->buf + (uint64_t)k * g->block_bytes,
						       blen(g, runs[i].first + k));
			rc = journal_add_data(f->j, runs[i].first, runs[i].count, f->buf,
					      (uint32_t)len, hashes);
		}
		if (rc)
			return rc;
	}
	rc = journal_commit(f->j);
	if (rc)
		return rc;
	*committed = true;
	if (!apply)
		return 0;
	return journal_apply(f->j, s ? seen_cb : NULL, s);
}

static void run_epoch_ok(struct fix *f, uint64_t epoch, const struct run *runs, unsigned n)
{
	bool committed;
	int rc = run_epoch(f, epoch, runs, n, true, &committed, NULL);

	if (rc)
		fail_msg("epoch %" PRIu64 ": %d (%s)", epoch, rc, journal_err(f->j));
}

/* The standby, read back through a fresh buffered read. */
static const unsigned char *standby_now(struct fix *f)
{
	file_read(f->standby, f->buf, f->g.volume_bytes, 0);
	return f->buf;
}

static void expect_standby(struct fix *f, const unsigned char *want, const char *what)
{
	const unsigned char *got = standby_now(f);

	for (uint64_t i = 0; i < f->g.volume_bytes; i++) {
		if (got[i] != want[i])
			fail_msg("%s: the standby differs at byte %" PRIu64 " (block %" PRIu64 ")",
				 what, i, i / f->g.block_bytes);
	}
}

/*
 * A fresh state dir and standby holding image E, the journal created, epoch E
 * run through it (so it is APPLIED with stale records), and both files saved.
 */
static void fix_setup(struct fix *f, const struct geo *g, uint64_t journal_bytes, bool run_e)
{
	struct journal_recovery rec;

	memset(f, 0, sizeof(*f));
	f->g = *g;
	new_dir(f->dir, sizeof(f->dir));
	snprintf(f->jpath, sizeof(f->jpath), "%s/%s", f->dir, JOURNAL_FILE);
	assert_int_equal(tu_tmpfile(f->standby, sizeof(f->standby), g->volume_bytes, SEED_E), 0);
	f->img_e = malloc(g->volume_bytes);
	f->img_e1 = malloc(g->volume_bytes);
	f->img_e2 = malloc(g->volume_bytes);
	assert_non_null(f->img_e2);
	f->buf = kfio_buf_alloc(g->volume_bytes + JRN_BYTES);
	assert_non_null(f->img_e);
	assert_non_null(f->img_e1);
	assert_non_null(f->buf);
	tu_pattern_fill(f->img_e, g->volume_bytes, 0, SEED_E);
	memcpy(f->img_e1, f->img_e, g->volume_bytes);
	if (g->blocks == geo_main.blocks) /* the runs of E+1 are for geo_main */
		apply_runs(g, f->img_e1, runs_e1, ARRAY_SIZE(runs_e1));
	memcpy(f->img_e2, f->img_e1, g->volume_bytes);
	if (g->blocks == geo_main.blocks)
		apply_runs(g, f->img_e2, runs_e2, ARRAY_SIZE(runs_e2));
	fix_cfg(f, journal_bytes);
	fix_open_recover(f, &rec, NULL);
	assert_int_equal(rec.found, JOURNAL_EMPTY);
	if (run_e)
		run_epoch_ok(f, EPOCH_E, runs_e, ARRAY_SIZE(runs_e));
	fix_close(f);
	expect_standby(f, f->img_e, "after epoch E");
	f->jimg = malloc(journal_bytes);
	assert_non_null(f->jimg);
	file_read(f->jpath, f->jimg, journal_bytes, 0);
}

/* Puts both files back to their state after epoch E. */
static void fix_reset(struct fix *f)
{
	file_write(f->standby, f->img_e, f->g.volume_bytes, 0);
	file_write(f->jpath, f->jimg, f->cfg.journal_max_bytes, 0);
}

static void fix_teardown(struct fix *f)
{
	if (f->j)
		fix_close(f);
	free(f->img_e);
	free(f->img_e1);
	free(f->img_e2);
	free(f->jimg);
	kfio_buf_free(f->buf, f->g.volume_bytes + JRN_BYTES);
	tu_tmpfile_release(f->standby);
}

/* ------------------------------------------------------------ the hook */

#define HOOK_LOG_MAX 256u
#define PEND_MAX     32u

enum hook_action {
	HOOK_COUNT = 0, /* only count */
	HOOK_CRASH,	/* kfio_queue_sim_crash before I/O stop_at */
	HOOK_TEAR,	/* before I/O stop_at: DROP, then land part of superblock write stop_at-1 */
	HOOK_FAIL,	/* return -EIO before I/O stop_at, no crash */
	HOOK_SUBSET,	/* before I/O stop_at: DROP, then land the pending writes in mask */
};

enum tear_kind {
	TEAR_PREFIX = 0, /* sectors [0, sectors) of the new superblock landed */
	TEAR_SUFFIX,	 /* sectors [sectors, 8) landed */
	TEAR_GARBLE,	 /* the first sector is garbage */
};

static struct {
	enum hook_action action;
	uint64_t count;
	uint64_t stop_at;
	enum kfio_crash_mode mode;
	uint64_t seed;
	bool fired;
	enum tear_kind tear;
	unsigned sectors;
	const char *jpath;
	const char *spath;
	/* writes not yet flushed on their device, in issue order */
	unsigned npend;
	struct {
		unsigned dev_idx;
		uint64_t offset;
		uint32_t len;
	} pend[PEND_MAX];
	uint32_t mask;	      /* HOOK_SUBSET: bit i lands pend[i] */
	uint64_t last_offset; /* of the previous I/O */
	const char *what[HOOK_LOG_MAX];
	uint64_t offset[HOOK_LOG_MAX];
} hk;

static void hook_arm(enum hook_action action, uint64_t stop_at)
{
	hk.action = action;
	hk.count = 0;
	hk.stop_at = stop_at;
	hk.fired = false;
	hk.npend = 0;
	journal_io_hook = NULL;
}

/* Cuts power with DROP, then lets exactly the pending writes in hk.mask land. */
static void crash_subset(struct kfio_queue *q)
{
	unsigned char *saved[PEND_MAX];

	/* the files hold every pending write's bytes now (the sim writes through) */
	for (unsigned i = 0; i < hk.npend; i++) {
		saved[i] = malloc(hk.pend[i].len);
		assert_non_null(saved[i]);
		file_read(hk.pend[i].dev_idx == JOURNAL_DEV_JOURNAL ? hk.jpath : hk.spath, saved[i],
			  hk.pend[i].len, hk.pend[i].offset);
	}
	assert_int_equal(kfio_queue_sim_crash(q, KFIO_CRASH_DROP, 0), 0);
	for (unsigned i = 0; i < hk.npend; i++) {
		if (hk.mask & (1u << i))
			file_write(hk.pend[i].dev_idx == JOURNAL_DEV_JOURNAL ? hk.jpath : hk.spath,
				   saved[i], hk.pend[i].len, hk.pend[i].offset);
		free(saved[i]);
	}
}

/* Keeps hk.pend up to date with the I/O about to be issued. */
static void pend_track(const struct journal_io_point *p)
{
	unsigned kept = 0;

	if (strcmp(p->what, "flush") != 0) {
		assert_true(hk.npend < PEND_MAX);
		hk.pend[hk.npend].dev_idx = p->dev_idx;
		hk.pend[hk.npend].offset = p->offset;
		hk.pend[hk.npend].len = p->len;
		hk.npend++;
		return;
	}
	for (unsigned i = 0; i < hk.npend; i++) {
		if (hk.pend[i].dev_idx != p->dev_idx)
			hk.pend[kept++] = hk.pend[i];
	}
	hk.npend = kept;
}

static int test_hook(struct kfio_queue *q, const struct journal_io_point *p)
{
	uint64_t i = hk.count++;
	unsigned char slot_new[JOURNAL_DISK_SLOT_BYTES];

	if (i < HOOK_LOG_MAX) {
		hk.what[i] = p->what;
		hk.offset[i] = p->offset;
	}
	if (hk.action == HOOK_COUNT || i != hk.stop_at) {
		hk.last_offset = p->offset;
		pend_track(p);
		return 0;
	}
	hk.fired = true;
	switch (hk.action) {
	case HOOK_CRASH:
		assert_int_equal(kfio_queue_sim_crash(q, hk.mode, hk.seed), 0);
		return -EIO;
	case HOOK_TEAR:
		/* the superblock write just before this I/O is not flushed: take its
		 * bytes, cut power (DROP puts the old slot back), then land a part */
		file_read(hk.jpath, slot_new, sizeof(slot_new), hk.last_offset);
		assert_int_equal(kfio_queue_sim_crash(q, KFIO_CRASH_DROP, 0), 0);
		if (hk.tear == TEAR_GARBLE) {
			for (unsigned b = 0; b < SECTOR_BYTES; b++)
				slot_new[b] = (unsigned char)(b * 7 + 1);
			file_write(hk.jpath, slot_new, SECTOR_BYTES, hk.last_offset);
		} else if (hk.tear == TEAR_PREFIX && hk.sectors > 0) {
			file_write(hk.jpath, slot_new, hk.sectors * SECTOR_BYTES, hk.last_offset);
		} else if (hk.tear == TEAR_SUFFIX &&
			   hk.sectors < JOURNAL_DISK_SLOT_BYTES / SECTOR_BYTES) {
			file_write(hk.jpath, slot_new + hk.sectors * SECTOR_BYTES,
				   JOURNAL_DISK_SLOT_BYTES - hk.sectors * SECTOR_BYTES,
				   hk.last_offset + hk.sectors * SECTOR_BYTES);
		}
		return -EIO;
	case HOOK_FAIL:
		return -EIO;
	case HOOK_SUBSET:
		crash_subset(q);
		return -EIO;
	case HOOK_COUNT:
		break;
	}
	return 0;
}

/* ------------------------------------------------------------- crashes */

struct matrix_stats {
	unsigned runs, replayed, discarded, acked;
	unsigned gave[3]; /* how many runs recovered to E, E+1, E+2 */
};

/* The epochs a crash run goes through, after E. */
static const struct {
	const struct run *runs;
	unsigned n;
} epochs[] = {
	{ runs_e1, ARRAY_SIZE(runs_e1) },
	{ runs_e2, ARRAY_SIZE(runs_e2) },
};
static const struct run runs_next[] = {
	{ RUN_DATA, 20, 2, 0x5eed },
	{ RUN_ZERO, 0, 1, 0 },
};

static const unsigned char *fix_img(const struct fix *f, unsigned x)
{
	return x == 0 ? f->img_e : x == 1 ? f->img_e1 : f->img_e2;
}

/*
 * After a crash: reopen, recover, check the standby is exactly the image of epoch
 * E + x for some x in [lo, hi] (lo: epochs whose commit returned 0, which must
 * never be lost; hi: epochs begun), that a replay reported that epoch's blocks
 * with the right hashes, and that the journal takes the next epoch.
 */
static void check_after_crash(struct fix *f, unsigned lo, unsigned hi, const char *what,
			      struct matrix_stats *st)
{
	struct journal_recovery rec;
	struct journal_status js;
	unsigned char *img_next = malloc(f->g.volume_bytes);
	const unsigned char *got;
	struct seen s;
	unsigned x;

	assert_non_null(img_next);
	assert_true(lo <= hi && hi < 3);
	seen_init(&s, f->g.blocks);
	fix_open_recover(f, &rec, &s);
	got = standby_now(f);
	for (x = 0; x < 3; x++) {
		if (memcmp(got, fix_img(f, x), f->g.volume_bytes) == 0)
			break;
	}
	if (x == 3)
		fail_msg("%s: after recovery the standby is not the image of any epoch", what);
	if (x < lo)
		fail_msg("%s: epoch E+%u was committed (acknowledgeable) but recovery gave E+%u",
			 what, lo, x);
	if (x > hi)
		fail_msg("%s: recovery gave E+%u, an epoch never begun", what, x);
	if (rec.replayed_epoch != 0) {
		assert_true(x > 0);
		assert_int_equal(rec.replayed_epoch, EPOCH_E + x);
		seen_check(&f->g, &s, fix_img(f, x), epochs[x - 1].runs, epochs[x - 1].n);
		st->replayed++;
	} else {
		assert_int_equal(s.calls, 0);
	}
	if (rec.discarded_epoch != 0) {
		assert_true(rec.discarded_epoch > EPOCH_E + x);
		assert_true(rec.discarded_epoch <= EPOCH_E + hi);
		st->discarded++;
	}
	journal_status(f->j, &js);
	assert_false(js.need_recover);
	assert_true(js.state == JOURNAL_EMPTY || js.state == JOURNAL_APPLIED);
	assert_int_equal(js.applied_epoch, EPOCH_E + x);
	st->runs++;
	st->acked += lo;
	st->gave[x]++;

	/* the journal takes the next epoch on top of whichever it holds */
	memcpy(img_next, fix_img(f, x), f->g.volume_bytes);
	apply_runs(&f->g, img_next, runs_next, ARRAY_SIZE(runs_next));
	run_epoch_ok(f, EPOCH_E + 10, runs_next, ARRAY_SIZE(runs_next));
	fix_close(f);
	expect_standby(f, img_next, what);
	free(img_next);
	seen_free(&s);
}

/*
 * Runs epochs E+1 .. E+nepochs from the saved state with the hook armed. Returns
 * how many were committed (journal_commit returned 0); *begun how many began.
 */
static unsigned crash_run(struct fix *f, unsigned nepochs, unsigned *begun, int *rc_out)
{
	struct journal_recovery rec;
	unsigned acked = 0;
	int rc = 0;

	ASSERT(nepochs <= ARRAY_SIZE(epochs));
	fix_reset(f);
	fix_open_recover(f, &rec, NULL);
	assert_int_equal(rec.found, JOURNAL_APPLIED);
	hk.count = 0;
	hk.fired = false;
	hk.jpath = f->jpath;
	hk.spath = f->standby;
	hk.npend = 0;
	*begun = 0;
	journal_io_hook = test_hook;
	for (unsigned e = 0; e < nepochs && rc == 0; e++) {
		bool committed;

		*begun = e + 1;
		rc = run_epoch(f, EPOCH_E + 1 + e, epochs[e].runs, epochs[e].n, true, &committed,
			       NULL);
		acked += committed;
	}
	journal_io_hook = NULL;
	fix_close(f);
	*rc_out = rc;
	return acked;
}

static uint64_t count_epoch_ios(struct fix *f, unsigned nepochs)
{
	unsigned begun;
	int rc;

	hook_arm(HOOK_COUNT, 0);
	assert_int_equal(crash_run(f, nepochs, &begun, &rc), nepochs);
	assert_int_equal(rc, 0);
	assert_true(hk.count < HOOK_LOG_MAX);
	return hk.count;
}

static void test_crash_matrix(void **state)
{
	static const enum kfio_crash_mode modes[] = { KFIO_CRASH_DROP, KFIO_CRASH_KEEP,
						      KFIO_CRASH_TORN };
	const unsigned nepochs = ARRAY_SIZE(epochs);
	struct matrix_stats st = { 0 };
	struct fix f;
	uint64_t total;
	unsigned points = 0;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	total = count_epoch_ios(&f, nepochs);
	for (uint64_t k = 0; k <= total; k++) {
		for (unsigned m = 0; m < ARRAY_SIZE(modes); m++) {
			unsigned seeds = modes[m] == KFIO_CRASH_TORN ? TORN_SEEDS : 1;

			for (unsigned sd = 0; sd < seeds; sd++) {
				unsigned acked, begun;
				char what[160];
				int rc;

				hook_arm(HOOK_CRASH, k);
				hk.mode = modes[m];
				hk.seed = 1000 * k + sd + 1;
				acked = crash_run(&f, nepochs, &begun, &rc);
				snprintf(what, sizeof(what),
					 "crash before I/O %" PRIu64 "/%" PRIu64
					 " (%s), mode %d seed %" PRIu64,
					 k, total, k < total ? hk.what[k] : "end", (int)modes[m],
					 hk.seed);
				if (k < total) {
					assert_true(hk.fired);
					assert_int_equal(rc, -EIO);
				} else {
					assert_int_equal(rc, 0);
				}
				check_after_crash(&f, acked, begun, what, &st);
				points++;
			}
		}
	}
	print_message(
		"crash matrix: 2 epochs, %" PRIu64 " I/O points + end = %" PRIu64
		" points x (DROP, KEEP, TORN x %u) = %u runs: %u gave E, %u E+1, %u E+2 (%u replayed, %u discarded)\n",
		total, total + 1, TORN_SEEDS, points, st.gave[0], st.gave[1], st.gave[2],
		st.replayed, st.discarded);
	/* the matrix must have exercised every outcome and both recoveries */
	for (unsigned x = 0; x < 3; x++)
		assert_true(st.gave[x] > 0);
	assert_true(st.replayed > 0);
	assert_true(st.discarded > 0);
	fix_teardown(&f);
}

/*
 * CrashMonkey-style: at every I/O point of two epochs, every subset of the writes
 * not yet flushed lands (all 2^n subsets when n <= SUBSET_FULL_MAX, else none,
 * all, each one alone and all but each one).
 */
#define SUBSET_FULL_MAX 6u

static void test_crash_subsets(void **state)
{
	const unsigned nepochs = ARRAY_SIZE(epochs);
	struct matrix_stats st = { 0 };
	unsigned npend_max = 0;
	struct fix f;
	uint64_t total;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	total = count_epoch_ios(&f, nepochs);
	for (uint64_t k = 0; k < total; k++) {
		unsigned n = 0, nmasks = 1;
		uint32_t masks[2 * PEND_MAX + 2];
		bool full = true;

		for (unsigned mi = 0; mi < nmasks; mi++) {
			uint32_t mask = full ? mi : masks[mi];
			unsigned acked, begun;
			char what[160];
			int rc;

			hook_arm(HOOK_SUBSET, k);
			hk.mask = mask;
			acked = crash_run(&f, nepochs, &begun, &rc);
			assert_true(hk.fired);
			assert_int_equal(rc, -EIO);
			if (mi == 0) {
				/* the first run (mask 0) tells how many writes are pending */
				n = hk.npend;
				if (n > npend_max)
					npend_max = n;
				full = n <= SUBSET_FULL_MAX;
				if (full) {
					nmasks = 1u << n;
				} else {
					nmasks = 0;
					masks[nmasks++] = 0;
					masks[nmasks++] = (uint32_t)((1ull << n) - 1);
					for (unsigned b = 0; b < n; b++) {
						masks[nmasks++] = 1u << b;
						masks[nmasks++] =
							(uint32_t)((1ull << n) - 1) & ~(1u << b);
					}
				}
			}
			assert_int_equal(hk.npend, n);
			snprintf(what, sizeof(what),
				 "crash before I/O %" PRIu64
				 " (%s), %u writes pending, landed mask %#x",
				 k, hk.what[k], n, mask);
			check_after_crash(&f, acked, begun, what, &st);
		}
	}
	print_message("crash subsets: %" PRIu64
		      " I/O points, up to %u writes pending, %u runs: %u gave E, %u E+1, %u E+2\n",
		      total, npend_max, st.runs, st.gave[0], st.gave[1], st.gave[2]);
	fix_teardown(&f);
}

/* Every superblock write of two epochs, torn at every sector or garbled. */
static void test_super_torn(void **state)
{
	const unsigned sectors = JOURNAL_DISK_SLOT_BYTES / SECTOR_BYTES;
	const unsigned nepochs = ARRAY_SIZE(epochs);
	struct matrix_stats st = { 0 };
	uint64_t supers[8];
	unsigned nsupers = 0, cases = 0;
	struct fix f;
	uint64_t total;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	total = count_epoch_ios(&f, nepochs);
	for (uint64_t k = 0; k < total; k++) {
		if (strcmp(hk.what[k], "super") != 0)
			continue;
		assert_true(nsupers < ARRAY_SIZE(supers));
		assert_true(k + 1 < total); /* a flush always follows */
		supers[nsupers++] = k;
	}
	assert_int_equal(nsupers, 3 * nepochs); /* OPEN, COMMITTED, APPLIED */
	for (unsigned i = 0; i < nsupers; i++) {
		for (unsigned t = TEAR_PREFIX; t <= TEAR_GARBLE; t++) {
			for (unsigned s = 0; s <= sectors; s++) {
				unsigned acked, begun;
				char what[128];
				int rc;

				if (t == TEAR_GARBLE && s > 0)
					break;
				hook_arm(HOOK_TEAR, supers[i] + 1);
				hk.tear = (enum tear_kind)t;
				hk.sectors = s;
				acked = crash_run(&f, nepochs, &begun, &rc);
				assert_true(hk.fired);
				assert_int_equal(rc, -EIO);
				snprintf(what, sizeof(what),
					 "superblock write (I/O %" PRIu64
					 ") torn: kind %u, %u sectors",
					 supers[i], t, s);
				check_after_crash(&f, acked, begun, what, &st);
				cases++;
			}
		}
	}
	print_message(
		"superblock tears: %u superblock writes x %u tears (prefix and suffix landings of 0..8 sectors, garbled) = %u runs: %u gave E, %u E+1, %u E+2\n",
		nsupers, cases / nsupers, cases, st.gave[0], st.gave[1], st.gave[2]);
	fix_teardown(&f);
}

/* Power cut at every I/O of a replay; the next recovery still gives E+1. */
static void test_crash_during_replay(void **state)
{
	static const enum kfio_crash_mode modes[] = { KFIO_CRASH_DROP, KFIO_CRASH_TORN };
	struct journal_recovery rec;
	struct matrix_stats st = { 0 };
	unsigned char *jcommitted;
	uint64_t total = 0;
	bool committed;
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	/* E+1 committed, never applied: what a crash right after the ack leaves */
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	rc = run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), false, &committed, NULL);
	assert_int_equal(rc, 0);
	fix_close(&f);
	jcommitted = malloc(JRN_BYTES);
	assert_non_null(jcommitted);
	file_read(f.jpath, jcommitted, JRN_BYTES, 0);

	/* k == UINT64_MAX: the counting run */
	for (uint64_t k = UINT64_MAX; k == UINT64_MAX || k <= total; k++) {
		for (unsigned m = 0; m < ARRAY_SIZE(modes); m++) {
			char what[96];

			file_write(f.standby, f.img_e, f.g.volume_bytes, 0);
			file_write(f.jpath, jcommitted, JRN_BYTES, 0);
			fix_open(&f);
			hook_arm(k == UINT64_MAX ? HOOK_COUNT : HOOK_CRASH, k);
			hk.mode = modes[m];
			hk.seed = k + 77;
			journal_io_hook = test_hook;
			rc = journal_recover(f.j, &rec, NULL, NULL);
			journal_io_hook = NULL;
			fix_close(&f);
			if (k == UINT64_MAX) {
				assert_int_equal(rc, 0);
				total = hk.count;
				break;
			}
			assert_int_equal(rc, k < total ? -EIO : 0);
			snprintf(what, sizeof(what),
				 "crash at replay I/O %" PRIu64 "/%" PRIu64 ", mode %d", k, total,
				 (int)modes[m]);
			check_after_crash(&f, 1, 1, what, &st);
		}
	}
	print_message("replay crashes: %" PRIu64 " I/O points + end x (DROP, TORN): all gave E+1\n",
		      total);
	assert_true(total >= 5);
	assert_int_equal(st.gave[1], st.runs);
	free(jcommitted);
	fix_teardown(&f);
}

/* -------------------------------------------------------------- errors */

static void test_roundtrip(void **state)
{
	struct journal_recovery rec;
	struct journal_status js;
	struct stat sb;
	bool committed;
	struct seen s;
	struct fix f;
	char tmp[TU_PATH_MAX + 32];
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	/* created preallocated, no staging file left */
	assert_int_equal(stat(f.jpath, &sb), 0);
	assert_int_equal(sb.st_size, JRN_BYTES);
	assert_true((uint64_t)sb.st_blocks * 512 >= JRN_BYTES);
	snprintf(tmp, sizeof(tmp), "%s/%s", f.dir, JOURNAL_TMP_FILE);
	assert_int_equal(stat(tmp, &sb), -1);

	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.found, JOURNAL_APPLIED);
	assert_int_equal(rec.applied_epoch, EPOCH_E);
	seen_init(&s, f.g.blocks);
	rc = run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), true, &committed, &s);
	assert_int_equal(rc, 0);
	seen_check(&f.g, &s, f.img_e1, runs_e1, ARRAY_SIZE(runs_e1));
	journal_status(f.j, &js);
	assert_int_equal(js.state, JOURNAL_APPLIED);
	assert_int_equal(js.epoch, EPOCH_E + 1);
	assert_int_equal(js.applied_epoch, EPOCH_E + 1);
	assert_int_equal(js.generation, GENERATION);
	fix_close(&f);
	expect_standby(&f, f.img_e1, "round trip");

	/* a clean reopen has nothing to do */
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.found, JOURNAL_APPLIED);
	assert_int_equal(rec.replayed_epoch, 0);
	assert_int_equal(rec.discarded_epoch, 0);
	fix_close(&f);
	seen_free(&s);
	fix_teardown(&f);
}

/* The same epochs on the real backend: io_uring, completions out of order. */
static void test_roundtrip_uring(void **state)
{
	struct journal_recovery rec;
	struct kfio_caps caps;
	bool committed;
	struct seen s;
	struct fix f;
	int rc;

	(void)state;
	if (kfio_probe(&caps) != 0 || !caps.uring) {
		print_message("io_uring is not available: only the sim backend was tested\n");
		return;
	}
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	f.cfg.backend = KFIO_BACKEND_URING;
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.found, JOURNAL_APPLIED);
	seen_init(&s, f.g.blocks);
	rc = run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), true, &committed, &s);
	if (rc)
		fail_msg("uring epoch: %d (%s)", rc, journal_err(f.j));
	seen_check(&f.g, &s, f.img_e1, runs_e1, ARRAY_SIZE(runs_e1));
	run_epoch_ok(&f, EPOCH_E + 2, runs_e2, ARRAY_SIZE(runs_e2));
	/* committed, not applied: the replay runs on io_uring too */
	rc = run_epoch(&f, EPOCH_E + 3, runs_e1, ARRAY_SIZE(runs_e1), false, &committed, NULL);
	assert_int_equal(rc, 0);
	fix_close(&f);
	expect_standby(&f, f.img_e2, "io_uring, before the replay");
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.replayed_epoch, EPOCH_E + 3);
	fix_close(&f);
	apply_runs(&f.g, f.img_e2, runs_e1, ARRAY_SIZE(runs_e1));
	expect_standby(&f, f.img_e2, "io_uring, replayed");
	seen_free(&s);
	fix_teardown(&f);
}

/* 1 KiB blocks (two per 4 KiB journal unit), the last one 512 bytes. */
static void test_small_blocks(void **state)
{
	static const struct geo g = { 1024u, 37u * 1024u - 512u, 37 };
	static const struct run runs[] = {
		{ RUN_DATA, 0, 3, SEED_E1 },
		{ RUN_ZERO, 3, 2, 0 },
		{ RUN_DATA, 7, 1, SEED_E1 },
		{ RUN_DATA, 9, 28, SEED_E1 },
	};
	unsigned char *want;
	struct seen s;
	bool committed;
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &g, JRN_BYTES, false);
	want = malloc(g.volume_bytes);
	assert_non_null(want);
	memcpy(want, f.img_e, g.volume_bytes);
	apply_runs(&g, want, runs, ARRAY_SIZE(runs));
	fix_open(&f);
	seen_init(&s, g.blocks);
	rc = run_epoch(&f, 2, runs, ARRAY_SIZE(runs), true, &committed, &s);
	if (rc)
		fail_msg("small blocks: %d (%s)", rc, journal_err(f.j));
	seen_check(&g, &s, want, runs, ARRAY_SIZE(runs));
	fix_close(&f);
	expect_standby(&f, want, "1 KiB blocks");
	seen_free(&s);
	free(want);
	fix_teardown(&f);
}

static void test_hash_mismatch(void **state)
{
	struct journal_recovery rec;
	struct journal_status js;
	uint64_t hashes[3];
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(journal_begin(f.j, EPOCH_E + 1, GENERATION, EPOCH_E), 0);
	assert_int_equal(journal_add_zero(f.j, 5, 2), 0);
	tu_pattern_fill(f.buf, 3 * 8192, 0, SEED_E1);
	for (unsigned i = 0; i < 3; i++)
		hashes[i] = delta_hash(f.buf + i * 8192, 8192);
	hashes[1] ^= 1;
	hook_arm(HOOK_COUNT, 0);
	journal_io_hook = test_hook;
	rc = journal_add_data(f.j, 0, 3, f.buf, 3 * 8192, hashes);
	journal_io_hook = NULL;
	assert_int_equal(rc, -EBADMSG);
	assert_int_equal(hk.count, 0); /* checked before any write */
	assert_contains(journal_err(f.j), "block 1 does not match its hash");
	assert_contains(journal_err(f.j), "aborted");
	journal_status(f.j, &js);
	assert_int_equal(js.state, JOURNAL_EMPTY);
	assert_false(js.failed);
	assert_int_equal(journal_commit(f.j), -EINVAL);
	assert_int_equal(journal_abort(f.j), 0);
	fix_close(&f);
	expect_standby(&f, f.img_e, "after a hash mismatch");

	/* on disk the epoch is OPEN: recovery discards it; the next epoch works */
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.discarded_epoch, EPOCH_E + 1);
	run_epoch_ok(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1));
	fix_close(&f);
	expect_standby(&f, f.img_e1, "after a hash mismatch and a good epoch");
	fix_teardown(&f);
}

static void test_enospc(void **state)
{
	static const struct run small[] = { { RUN_ZERO, 0, 48, 0 }, { RUN_ZERO, 1, 1, 0 } };
	struct journal_recovery rec;
	unsigned char *want;
	uint64_t hashes[3];
	struct fix f;
	int rc;

	(void)state;
	/* room for two 4 KiB records: a 3-block data record needs 28 KiB */
	fix_setup(&f, &geo_main, JOURNAL_BYTES_MIN, false);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(journal_begin(f.j, 2, GENERATION, 1), 0);
	tu_pattern_fill(f.buf, 3 * 8192, 0, SEED_E1);
	for (unsigned i = 0; i < 3; i++)
		hashes[i] = delta_hash(f.buf + i * 8192, 8192);
	rc = journal_add_data(f.j, 0, 3, f.buf, 3 * 8192, hashes);
	assert_int_equal(rc, -ENOSPC);
	assert_contains(journal_err(f.j), "does not fit the journal");
	assert_contains(journal_err(f.j), "the epoch is aborted");
	assert_int_equal(journal_commit(f.j), -EINVAL);
	/* a third zero record does not fit either */
	assert_int_equal(journal_begin(f.j, 2, GENERATION, 1), 0);
	assert_int_equal(journal_add_zero(f.j, 0, 1), 0);
	assert_int_equal(journal_add_zero(f.j, 1, 1), 0);
	assert_int_equal(journal_add_zero(f.j, 2, 1), -ENOSPC);
	/* nor a third barrier */
	assert_int_equal(journal_begin(f.j, 2, GENERATION, 1), 0);
	assert_int_equal(journal_add_barrier(f.j), 0);
	assert_int_equal(journal_add_barrier(f.j), 0);
	assert_int_equal(journal_add_barrier(f.j), -ENOSPC);
	fix_close(&f);
	expect_standby(&f, f.img_e, "after -ENOSPC");
	/* what fits still works */
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.discarded_epoch, 2);
	run_epoch_ok(&f, 2, small, ARRAY_SIZE(small));
	fix_close(&f);
	want = calloc(1, f.g.volume_bytes);
	assert_non_null(want);
	expect_standby(&f, want, "zeroed by a small epoch");
	free(want);
	fix_teardown(&f);
}

static void test_identity_refused(void **state)
{
	char err[JOURNAL_ERR_MAX] = "";
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	f.cfg.volume_id[3] ^= 0xff;
	rc = fix_try_open(&f, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_contains(err, f.jpath);
	assert_contains(err, "belongs to volume id a0a1a2a3");
	f.cfg.volume_id[3] ^= 0xff;

	f.cfg.block_bytes = 4096;
	rc = fix_try_open(&f, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_contains(err, "uses 8192-byte blocks but 4096-byte blocks are configured");
	f.cfg.block_bytes = 8192;

	f.cfg.volume_bytes -= 4096;
	rc = fix_try_open(&f, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_contains(err, "-byte volume");
	f.cfg.volume_bytes += 4096;

	/* both superblock copies damaged */
	file_flip(f.jpath, 100);
	file_flip(f.jpath, JOURNAL_DISK_SLOT_BYTES + 100);
	rc = fix_try_open(&f, err, sizeof(err));
	assert_int_equal(rc, -EBADMSG);
	assert_contains(err, "no valid superblock");
	assert_contains(err, "offset 0");
	expect_standby(&f, f.img_e, "after refusals");
	fix_teardown(&f);
}

/*
 * A superblock whose sequence is near 2^64 (a forged one, with a good checksum)
 * is damage: the other copy is used, and the next write does not wrap to a
 * sequence that would lose to it (it once tripped an invariant: an abort).
 */
static void test_super_sequence_bound(void **state)
{
	struct journal_disk_super sb[JOURNAL_DISK_SLOTS];
	struct journal_recovery rec;
	char err[JOURNAL_ERR_MAX] = "";
	unsigned k;
	struct fix f;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	for (k = 0; k < JOURNAL_DISK_SLOTS; k++)
		file_read(f.jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
	/* the newest copy, re-signed with the largest sequence of its slot */
	k = le64toh(sb[1].sequence) > le64toh(sb[0].sequence) ? 1 : 0;
	sb[k].sequence = htole64(k ? UINT64_MAX : UINT64_MAX - 1);
	sb[k].checksum = htole64(delta_hash_seeded(
		&sb[k], offsetof(struct journal_disk_super, checksum), JOURNAL_DISK_SEED_SUPER));
	file_write(f.jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), 0);
	assert_int_equal(journal_recover(f.j, &rec, NULL, NULL), 0);
	/* a new epoch writes superblocks: no abort, and it commits */
	assert_int_equal(journal_begin(f.j, EPOCH_E + 1, GENERATION, EPOCH_E), 0);
	assert_int_equal(journal_add_zero(f.j, 0, 1), 0);
	assert_int_equal(journal_commit(f.j), 0);
	fix_close(&f);
	/* both copies forged: refused as damaged, naming the sequence */
	for (k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		file_read(f.jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
		sb[k].sequence = htole64(k ? UINT64_MAX : UINT64_MAX - 1);
		sb[k].checksum = htole64(
			delta_hash_seeded(&sb[k], offsetof(struct journal_disk_super, checksum),
					  JOURNAL_DISK_SEED_SUPER));
		file_write(f.jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
	}
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), -EBADMSG);
	assert_contains(err, "sequence number is out of range");
	fix_teardown(&f);
}

/* Damage in a committed epoch's records: -EBADMSG at recovery, standby untouched. */
static void test_corrupt_record(void **state)
{
	/* record 0: data 0..2 at 8192 (4 KiB header, 24 KiB data); record 1: zero at
	 * 36864; record 2: data 10..29 at 40960 (header, 160 KiB data) */
	static const struct {
		uint64_t offset;
		const char *want;
	} cases[] = {
		{ 8192 + 8, "record 0 at offset 8192" },      /* header: type */
		{ 8192 + 64 + 8, "checksum mismatch" },	      /* the hash table */
		{ 8192 + 4096 + 100, "block 0 in record 0" }, /* data */
		{ 36864 + 16, "record 1 at offset 36864" },   /* zero record header */
		{ 40960 + 4096 + 17 * 8192 + 5, "block 27" }, /* data, second buffer */
		{ 40960 + 56, "checksum mismatch" },	      /* a record checksum */
	};
	struct journal_recovery rec;
	struct journal_status js;
	unsigned char *jcommitted;
	bool committed;
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	rc = run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), false, &committed, NULL);
	assert_int_equal(rc, 0);
	fix_close(&f);
	jcommitted = malloc(JRN_BYTES);
	assert_non_null(jcommitted);
	file_read(f.jpath, jcommitted, JRN_BYTES, 0);

	for (unsigned c = 0; c < ARRAY_SIZE(cases); c++) {
		file_write(f.jpath, jcommitted, JRN_BYTES, 0);
		file_flip(f.jpath, cases[c].offset);
		fix_open(&f);
		rc = journal_recover(f.j, &rec, NULL, NULL);
		if (rc != -EBADMSG)
			fail_msg("damage at %" PRIu64 ": recover gave %d (%s)", cases[c].offset, rc,
				 journal_err(f.j));
		assert_contains(journal_err(f.j), f.jpath);
		assert_contains(journal_err(f.j), cases[c].want);
		journal_status(f.j, &js);
		assert_true(js.need_recover);
		assert_int_equal(js.state, JOURNAL_COMMITTED);
		/* refuses new epochs until reset for a resync */
		assert_int_equal(journal_begin(f.j, EPOCH_E + 2, GENERATION, EPOCH_E + 1), -EINVAL);
		assert_contains(journal_err(f.j), "journal_reset");
		fix_close(&f);
		expect_standby(&f, f.img_e, "damaged journal");
	}
	/* journal_reset gives a usable journal */
	fix_open(&f);
	assert_int_equal(journal_reset(f.j), 0);
	run_epoch_ok(&f, EPOCH_E + 2, runs_e1, ARRAY_SIZE(runs_e1));
	fix_close(&f);
	expect_standby(&f, f.img_e1, "after reset");
	free(jcommitted);
	fix_teardown(&f);
}

static void test_double_apply(void **state)
{
	struct journal_recovery rec;
	struct seen s1, s2;
	bool committed;
	struct fix f;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	seen_init(&s1, f.g.blocks);
	seen_init(&s2, f.g.blocks);
	assert_int_equal(
		run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), true, &committed, &s1), 0);
	assert_int_equal(journal_apply(f.j, seen_cb, &s2), 0);
	fix_close(&f);
	expect_standby(&f, f.img_e1, "applied twice");
	seen_check(&f.g, &s2, f.img_e1, runs_e1, ARRAY_SIZE(runs_e1));
	/* and once more after a reopen */
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(journal_apply(f.j, NULL, NULL), 0);
	fix_close(&f);
	expect_standby(&f, f.img_e1, "applied three times");
	seen_free(&s1);
	seen_free(&s2);
	fix_teardown(&f);
}

/* An I/O error (not a crash) is sticky until the journal is reopened. */
static void test_io_error_sticky(void **state)
{
	struct journal_recovery rec;
	struct journal_status js;
	bool committed;
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	hook_arm(HOOK_FAIL, 2);
	journal_io_hook = test_hook;
	rc = run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), true, &committed, NULL);
	assert_int_equal(rc, -EIO);
	assert_true(hk.fired);
	assert_false(committed);
	assert_int_equal(journal_add_zero(f.j, 0, 1), -EIO);
	assert_int_equal(journal_commit(f.j), -EIO);
	assert_int_equal(journal_begin(f.j, EPOCH_E + 2, GENERATION, EPOCH_E), -EIO);
	assert_int_equal(journal_reset(f.j), -EIO);
	assert_int_equal(journal_recover(f.j, &rec, NULL, NULL), -EIO);
	journal_io_hook = NULL;
	journal_status(f.j, &js);
	assert_true(js.failed);
	/* no write was retried in place: I/O 2 never happened, nor any after it */
	assert_int_equal(hk.count, 3);
	fix_close(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.discarded_epoch, EPOCH_E + 1);
	fix_close(&f);
	expect_standby(&f, f.img_e, "after a sticky error");
	fix_teardown(&f);
}

static void test_bad_config(void **state)
{
	char err[JOURNAL_ERR_MAX] = "";
	struct fix f;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	f.cfg.block_bytes = 3000;
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), -EINVAL);
	assert_contains(err, "not a power of two");
	f.cfg.block_bytes = 8192;
	f.cfg.volume_bytes = f.g.volume_bytes + 8192;
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), -EINVAL);
	assert_contains(err, "smaller than the volume");
	f.cfg.volume_bytes = f.g.volume_bytes;
	f.cfg.buf_bytes = 100000;
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), -EINVAL);
	assert_contains(err, "buffer size");
	/* an apply holds a record's header and its data in two pool buffers */
	f.cfg.buf_bytes = JRN_BUF;
	f.cfg.queue_depth = 1;
	assert_int_equal(fix_try_open(&f, err, sizeof(err)), -EINVAL);
	assert_contains(err, "queue depth 1");
	fix_teardown(&f);
}

/* The smallest queue depth accepted commits, applies and replays an epoch. */
static void test_min_queue_depth(void **state)
{
	struct journal_recovery rec;
	bool committed;
	struct fix f;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	f.cfg.queue_depth = JOURNAL_QUEUE_DEPTH_MIN;
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	run_epoch_ok(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1));
	fix_close(&f);
	expect_standby(&f, f.img_e1, "applied at the smallest queue depth");
	/* committed, not applied: journal_recover replays it */
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(
		run_epoch(&f, EPOCH_E + 1, runs_e1, ARRAY_SIZE(runs_e1), false, &committed, NULL),
		0);
	assert_true(committed);
	fix_close(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.replayed_epoch, EPOCH_E + 1);
	fix_close(&f);
	expect_standby(&f, f.img_e1, "replayed at the smallest queue depth");
	fix_teardown(&f);
}

/* ------------------------------------------------------------ barriers */

#define ORDER_LOG_MAX 256u
#define BARRIER_B     4u  /* the block every round of test_barrier_rounds writes */
#define BARRIER_DEPTH 32u /* deep enough for a whole round in flight at once */

/* Every write and flush as the journal queues it, with what is still in flight. */
static struct {
	unsigned n;
	uint64_t crash_at; /* cut power (KEEP) before this standby write; 0: never */
	uint64_t standby_writes;
	struct {
		unsigned dev_idx;
		bool flush;
		uint64_t offset;
		uint32_t inflight; /* requests queued before it and not yet reaped */
	} io[ORDER_LOG_MAX];
} ord;

static void order_arm(uint64_t crash_at)
{
	memset(&ord, 0, sizeof(ord));
	ord.crash_at = crash_at;
	journal_io_hook = NULL;
}

static int order_hook(struct kfio_queue *q, const struct journal_io_point *p)
{
	bool flush = strcmp(p->what, "flush") == 0;

	if (p->dev_idx == JOURNAL_DEV_STANDBY && !flush && ++ord.standby_writes == ord.crash_at) {
		assert_int_equal(kfio_queue_sim_crash(q, KFIO_CRASH_KEEP, 0), 0);
		return -EIO;
	}
	assert_true(ord.n < ORDER_LOG_MAX);
	ord.io[ord.n].dev_idx = p->dev_idx;
	ord.io[ord.n].flush = flush;
	ord.io[ord.n].offset = p->offset;
	ord.io[ord.n].inflight = kfio_queue_inflight(q);
	ord.n++;
	return 0;
}

/*
 * Checks the standby writes order_hook logged for one apply (or replay) of runs:
 * one per chunk of per_chunk blocks, in record order, and the first one after a
 * barrier queued only when nothing was in flight any more, i.e. when every write
 * before the barrier had completed. Returns the most requests that were in
 * flight at any other standby write: the writes a barrier keeps apart would
 * otherwise have been in flight together.
 */
static uint32_t check_barrier_order(const struct fix *f, const struct run *runs, unsigned n,
				    uint32_t per_chunk)
{
	uint32_t overlap = 0;
	bool after_barrier = false;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (runs[i].kind == RUN_BARRIER) {
			after_barrier = true;
			continue;
		}
		for (uint64_t c = 0; c < runs[i].count; c += per_chunk) {
			uint64_t off = (runs[i].first + c) * f->g.block_bytes;

			while (k < ord.n &&
			       (ord.io[k].dev_idx != JOURNAL_DEV_STANDBY || ord.io[k].flush))
				k++;
			if (k == ord.n)
				fail_msg("run %u (block %" PRIu64 "): no standby write", i,
					 runs[i].first + c);
			if (ord.io[k].offset != off)
				fail_msg("run %u: standby write at offset %" PRIu64
					 ", want %" PRIu64,
					 i, ord.io[k].offset, off);
			if (after_barrier && ord.io[k].inflight != 0)
				fail_msg(
					"run %u (block %" PRIu64
					"), the first after a barrier, was queued with %u requests still in flight",
					i, runs[i].first + c, ord.io[k].inflight);
			if (!after_barrier && ord.io[k].inflight > overlap)
				overlap = ord.io[k].inflight;
			after_barrier = false;
			k++;
		}
	}
	for (; k < ord.n; k++)
		assert_true(ord.io[k].dev_idx != JOURNAL_DEV_STANDBY || ord.io[k].flush);
	return overlap;
}

/*
 * Three rounds of one epoch: a barrier first, block BARRIER_B by record 1 and
 * every other block of 0..23 alone, a zero run; two barriers in a row, BARRIER_B
 * again with other bytes, a long run, block 0 zeroed; a barrier, BARRIER_B once
 * more and the short last block; a barrier last.
 */
static unsigned barrier_runs(struct run *runs, unsigned max)
{
	static const struct run barrier = { RUN_BARRIER, 0, 0, 0 };
	unsigned n = 0;

	ASSERT(max >= 40);
	runs[n++] = barrier;
	runs[n++] = (struct run){ RUN_DATA, BARRIER_B, 1, SEED_E1 };
	for (uint64_t b = 0; b < 24; b++) {
		if (b != BARRIER_B)
			runs[n++] = (struct run){ RUN_DATA, b, 1, SEED_E1 };
	}
	runs[n++] = (struct run){ RUN_ZERO, 24, 2, 0 };
	runs[n++] = barrier;
	runs[n++] = barrier;
	runs[n++] = (struct run){ RUN_DATA, BARRIER_B, 1, SEED_E2 };
	runs[n++] = (struct run){ RUN_DATA, 26, 20, SEED_E2 };
	runs[n++] = (struct run){ RUN_ZERO, 0, 1, 0 };
	runs[n++] = barrier;
	runs[n++] = (struct run){ RUN_DATA, BARRIER_B, 1, SEED_E2 + 1 };
	runs[n++] = (struct run){ RUN_DATA, 46, 2, SEED_E2 };
	runs[n++] = barrier;
	return n;
}

/*
 * A block written again after a barrier ends with the later bytes: applied,
 * replayed after a power cut in the middle of the apply, and on io_uring.
 *
 * The sim backend runs each write at once, in order, so the standby's bytes
 * alone cannot show a reordering; on io_uring one may happen, but not on
 * demand. So the hook checks the cause: the first write after a barrier is
 * queued only once every write before it has completed (nothing in flight),
 * while without the barrier the earlier round would still be in flight: the
 * window holds the whole record area (no read, so no reap, during the apply)
 * and the pool holds every write of the epoch.
 */
static void test_barrier_rounds(void **state)
{
	struct journal_recovery rec;
	struct kfio_caps caps;
	struct run runs[40];
	unsigned char *want;
	bool committed;
	struct seen s;
	struct fix f;
	unsigned n;
	int rc;

	(void)state;
	n = barrier_runs(runs, ARRAY_SIZE(runs));
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	want = malloc(f.g.volume_bytes);
	assert_non_null(want);
	memcpy(want, f.img_e, f.g.volume_bytes);
	apply_runs(&f.g, want, runs, n);
	f.cfg.queue_depth = BARRIER_DEPTH;
	f.cfg.buf_bytes = JOURNAL_BUF_BYTES_DEFAULT;

	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	seen_init(&s, f.g.blocks);
	order_arm(0);
	journal_io_hook = order_hook;
	rc = run_epoch(&f, EPOCH_E + 1, runs, n, true, &committed, &s);
	journal_io_hook = NULL;
	if (rc)
		fail_msg("rounds: %d (%s)", rc, journal_err(f.j));
	assert_true(check_barrier_order(&f, runs, n, f.cfg.buf_bytes / 8192) >= 20);
	seen_check(&f.g, &s, want, runs, n);
	fix_close(&f);
	expect_standby(&f, want, "rounds applied");

	/* power cut (writes kept) before the 27th standby write: round 1 and the
	 * first write of round 2 reached the standby; the replay orders its writes
	 * the same way */
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	order_arm(27);
	journal_io_hook = order_hook;
	rc = run_epoch(&f, EPOCH_E + 1, runs, n, true, &committed, NULL);
	journal_io_hook = NULL;
	assert_int_equal(rc, -EIO);
	assert_true(committed);
	fix_close(&f);
	assert_true(memcmp(standby_now(&f), f.img_e, f.g.volume_bytes) != 0);
	assert_true(memcmp(standby_now(&f), want, f.g.volume_bytes) != 0);
	order_arm(0);
	journal_io_hook = order_hook;
	fix_open_recover(&f, &rec, NULL);
	journal_io_hook = NULL;
	assert_int_equal(rec.found, JOURNAL_COMMITTED);
	assert_int_equal(rec.replayed_epoch, EPOCH_E + 1);
	assert_int_equal(rec.replayed_blocks, runs_blocks(runs, n));
	assert_true(check_barrier_order(&f, runs, n, f.cfg.buf_bytes / 8192) >= 20);
	fix_close(&f);
	expect_standby(&f, want, "rounds replayed");

	if (kfio_probe(&caps) != 0 || !caps.uring) {
		print_message(
			"io_uring is not available: barriers tested on the sim backend only\n");
	} else {
		f.cfg.backend = KFIO_BACKEND_URING;
		f.cfg.buf_bytes = JRN_BUF;
		fix_reset(&f);
		fix_open_recover(&f, &rec, NULL);
		order_arm(0);
		journal_io_hook = order_hook;
		rc = run_epoch(&f, EPOCH_E + 1, runs, n, true, &committed, NULL);
		journal_io_hook = NULL;
		if (rc)
			fail_msg("rounds on io_uring: %d (%s)", rc, journal_err(f.j));
		(void)check_barrier_order(&f, runs, n, JRN_BUF / 8192);
		fix_close(&f);
		expect_standby(&f, want, "rounds on io_uring");
	}
	seen_free(&s);
	free(want);
	fix_teardown(&f);
}

/*
 * Re-signs the record header at file offset changed, then the commit checksum
 * over the records at recs and the newest superblock, as journal_add_* and
 * journal_commit would have: only the structure checks are left to see it.
 */
static void resign_records(const char *jpath, const uint64_t *recs, unsigned n, uint64_t changed)
{
	struct journal_disk_super sb[JOURNAL_DISK_SLOTS];
	struct journal_disk_record h;
	struct delta_stream st;
	unsigned k;
	uint64_t le;

	file_read(jpath, &h, sizeof(h), changed);
	h.checksum = 0;
	delta_stream_init(&st, JOURNAL_DISK_SEED_RECORD);
	delta_stream_update(&st, &h, sizeof(h));
	h.checksum = htole64(delta_stream_digest(&st));
	file_write(jpath, &h, sizeof(h), changed);
	delta_stream_init(&st, JOURNAL_DISK_SEED_CHAIN);
	for (unsigned i = 0; i < n; i++) {
		file_read(jpath, &le, sizeof(le),
			  recs[i] + offsetof(struct journal_disk_record, checksum));
		delta_stream_update(&st, &le, sizeof(le));
	}
	for (k = 0; k < JOURNAL_DISK_SLOTS; k++)
		file_read(jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
	k = le64toh(sb[1].sequence) > le64toh(sb[0].sequence) ? 1 : 0;
	assert_int_equal(le32toh(sb[k].state), JOURNAL_DISK_STATE_COMMITTED);
	sb[k].records_checksum = htole64(delta_stream_digest(&st));
	sb[k].checksum = htole64(delta_hash_seeded(
		&sb[k], offsetof(struct journal_disk_super, checksum), JOURNAL_DISK_SEED_SUPER));
	file_write(jpath, &sb[k], sizeof(sb[k]), k * JOURNAL_DISK_SLOT_BYTES);
}

/* A damaged barrier header is refused like any damaged record: by the apply and
 * by recovery, -EBADMSG, the standby untouched. */
static void test_corrupt_barrier(void **state)
{
	/* record 0: data 0 at 8192 (12 KiB), record 1: the barrier at 20480,
	 * record 2: data 2 at 24576 */
	static const struct run runs[] = {
		{ RUN_DATA, 0, 1, SEED_E1 },
		{ RUN_BARRIER, 0, 0, 0 },
		{ RUN_DATA, 2, 1, SEED_E1 },
	};
	static const uint64_t recs[] = { 8192, 20480, 24576 };
	static const struct {
		size_t field;
		uint32_t width;
		uint64_t value;
		bool resign;
		const char *want;
	} cases[] = {
		{ offsetof(struct journal_disk_record, block_count), 4, 1, true,
		  "a barrier with a block run" },
		{ offsetof(struct journal_disk_record, block_count), 4, 1, false,
		  "a barrier with a block run" },
		{ offsetof(struct journal_disk_record, first_block), 8, 3, true,
		  "a barrier with a block run" },
		{ offsetof(struct journal_disk_record, plaintext_bytes), 4, 8192, true,
		  "a barrier with plaintext" },
		{ offsetof(struct journal_disk_record, type), 4, 4, true, "unknown record type" },
		{ offsetof(struct journal_disk_record, checksum), 8, 1, false,
		  "checksum mismatch" },
	};
	struct journal_recovery rec;
	struct journal_status js;
	unsigned char *jcommitted, *want;
	bool committed;
	struct fix f;
	int rc;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	rc = run_epoch(&f, EPOCH_E + 1, runs, ARRAY_SIZE(runs), false, &committed, NULL);
	assert_int_equal(rc, 0);
	jcommitted = malloc(JRN_BYTES);
	assert_non_null(jcommitted);
	file_read(f.jpath, jcommitted, JRN_BYTES, 0);

	/* the apply of a committed epoch reads the records back from the file */
	{
		uint32_t one = htole32(1);

		file_write(f.jpath, &one, sizeof(one),
			   recs[1] + offsetof(struct journal_disk_record, block_count));
		resign_records(f.jpath, recs, ARRAY_SIZE(recs), recs[1]);
	}
	assert_int_equal(journal_apply(f.j, NULL, NULL), -EBADMSG);
	assert_contains(journal_err(f.j), "record 1 at offset 20480");
	assert_contains(journal_err(f.j), "a barrier with a block run");
	fix_close(&f);
	expect_standby(&f, f.img_e, "a damaged barrier at apply");

	for (unsigned c = 0; c < ARRAY_SIZE(cases); c++) {
		uint64_t le = htole64(cases[c].value);

		file_write(f.jpath, jcommitted, JRN_BYTES, 0);
		file_write(f.jpath, &le, cases[c].width, recs[1] + cases[c].field);
		if (cases[c].resign)
			resign_records(f.jpath, recs, ARRAY_SIZE(recs), recs[1]);
		fix_open(&f);
		rc = journal_recover(f.j, &rec, NULL, NULL);
		if (rc != -EBADMSG)
			fail_msg("barrier case %u: recover gave %d (%s)", c, rc, journal_err(f.j));
		assert_contains(journal_err(f.j), "record 1 at offset 20480");
		assert_contains(journal_err(f.j), cases[c].want);
		journal_status(f.j, &js);
		assert_true(js.need_recover);
		assert_int_equal(js.state, JOURNAL_COMMITTED);
		fix_close(&f);
		expect_standby(&f, f.img_e, "a damaged barrier at recovery");
	}
	/* undamaged, the same epoch replays */
	file_write(f.jpath, jcommitted, JRN_BYTES, 0);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(rec.replayed_epoch, EPOCH_E + 1);
	fix_close(&f);
	want = malloc(f.g.volume_bytes);
	assert_non_null(want);
	memcpy(want, f.img_e, f.g.volume_bytes);
	apply_runs(&f.g, want, runs, ARRAY_SIZE(runs));
	expect_standby(&f, want, "the barrier epoch replayed");
	free(want);
	free(jcommitted);
	fix_teardown(&f);
}

/* An epoch of nothing but barriers commits, applies and replays, writing nothing. */
static void test_barrier_only(void **state)
{
	static const struct run one[] = { { RUN_BARRIER, 0, 0, 0 } };
	static const struct run three[] = {
		{ RUN_BARRIER, 0, 0, 0 },
		{ RUN_BARRIER, 0, 0, 0 },
		{ RUN_BARRIER, 0, 0, 0 },
	};
	struct journal_recovery rec;
	struct journal_status js;
	bool committed;
	struct seen s;
	struct fix f;

	(void)state;
	fix_setup(&f, &geo_main, JRN_BYTES, true);
	fix_reset(&f);
	fix_open_recover(&f, &rec, NULL);
	assert_int_equal(journal_add_barrier(f.j), -EINVAL);
	assert_contains(journal_err(f.j), "journal_add_barrier without an open epoch");
	seen_init(&s, f.g.blocks);
	assert_int_equal(run_epoch(&f, EPOCH_E + 1, one, ARRAY_SIZE(one), true, &committed, &s), 0);
	assert_int_equal(s.calls, 0);
	journal_status(f.j, &js);
	assert_int_equal(js.state, JOURNAL_APPLIED);
	assert_int_equal(js.applied_epoch, EPOCH_E + 1);
	assert_int_equal(js.records_bytes, JOURNAL_DISK_ALIGN_BYTES);
	/* committed, not applied: recovery replays three barriers */
	assert_int_equal(
		run_epoch(&f, EPOCH_E + 2, three, ARRAY_SIZE(three), false, &committed, NULL), 0);
	fix_close(&f);
	fix_open_recover(&f, &rec, &s);
	assert_int_equal(rec.replayed_epoch, EPOCH_E + 2);
	assert_int_equal(rec.replayed_blocks, 0);
	assert_int_equal(rec.applied_epoch, EPOCH_E + 2);
	assert_int_equal(s.calls, 0);
	fix_close(&f);
	expect_standby(&f, f.img_e, "epochs of barriers only");
	seen_free(&s);
	fix_teardown(&f);
}

static int setup(void **state)
{
	(void)state;
	return tu_tmpdir(tmp_root, sizeof(tmp_root)) == 0 ? 0 : -1;
}

int main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_roundtrip_uring),
		cmocka_unit_test(test_small_blocks),
		cmocka_unit_test(test_hash_mismatch),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_identity_refused),
		cmocka_unit_test(test_super_sequence_bound),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_min_queue_depth),
		cmocka_unit_test(test_corrupt_record),
		cmocka_unit_test(test_double_apply),
		cmocka_unit_test(test_io_error_sticky),
		cmocka_unit_test(test_barrier_rounds),
		cmocka_unit_test(test_corrupt_barrier),
		cmocka_unit_test(test_barrier_only),
		cmocka_unit_test(test_crash_matrix),
		cmocka_unit_test(test_crash_subsets),
		cmocka_unit_test(test_super_torn),
		cmocka_unit_test(test_crash_during_replay),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, setup, NULL);
}
