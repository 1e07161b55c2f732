// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of scan, the change-detection pipeline, on regular files (kfio opens
 * them with O_DIRECT), so no root is needed.
 *
 * The sink is the instrument: it checks every batch against the file's content
 * while it is called (the data is valid only then) and records the first
 * violation, which the test thread reports (cmocka asserts only on its own
 * thread). Checked:
 *   - ordering, table-driven over block, read and batch sizes, worker counts,
 *     compression, backends and maps (fresh, or committed and then changed):
 *     with ordered = true the sink sees batches in strictly ascending block order,
 *     one call at a time, none overlapping, covering every changed block exactly
 *     once and nothing else, each with the right hashes, zero flag and data;
 *     unordered, the same coverage with at most `workers` calls at once;
 *   - back-pressure: with a sink that sleeps, the reads completed (the progress
 *     callback) never run ahead of the batches the sink has returned by more
 *     than the read buffers scan.h documents (queue depth + 2 x workers chunks),
 *     everything still arrives in order, and scan_run returns only after the
 *     last sink call has returned;
 *   - errors: a sink returning -EIO stops the scan, scan_run returns -EIO and the
 *     sink is not called again; a device that returns short reads (the file shrank
 *     under the scan) makes scan_run return -EIO with a message naming the
 *     offset, on the io_uring and on the simulated backend, and no batch reaches
 *     the blocks it could not read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "delta.h"
#include "kfio.h"
#include "map.h"
#include "pvrepl_assert.h"
#include "scan.h"
#include "testutil.h"

#define KIB	 1024ull
#define MIB	 (1024ull * KIB)
#define SEED_A	 0x5ca9a001ull
#define SEED_B	 0x5ca9b002ull
#define VIOL_MAX 256u
#define NO_FAIL	 UINT64_MAX
#define NO_LIMIT UINT64_MAX
#define SLEEP_US 2000u
/* change_kind's first_block for the device's last block */
#define LAST_BLOCK UINT64_MAX

static char tmp_root[TU_PATH_MAX];

/* ----------------------------------------------------------- the device */

/* How a case changes the device before the scan under test. */
enum change_kind {
	CHANGE_DATA, /* new pattern (incompressible) */
	CHANGE_TEXT, /* a compressible fill */
	CHANGE_ZERO, /* zeros */
};

struct change {
	enum change_kind kind;
	uint64_t first_block;
	uint64_t block_count;
};

struct dev_fix {
	char path[TU_PATH_MAX];
	char dir[TU_PATH_MAX + 16]; /* the map's state directory */
	uint64_t size_bytes;
	uint32_t block_bytes;
	uint64_t blocks;
	struct kfio_dev dev;
	bool dev_open;
	struct map map;
	uint8_t *img; /* the file as the scan under test will read it */
};

static void file_write(const char *path, const void *buf, uint64_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* Applies changes to the file, each run clipped to the device. */
static void apply_changes(struct dev_fix *f, const struct change *ch, unsigned n, uint64_t seed)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t first =
			ch[i].first_block == LAST_BLOCK ? f->blocks - 1 : ch[i].first_block;
		uint64_t off = first * f->block_bytes;
		uint64_t len = ch[i].block_count * f->block_bytes;
		uint8_t *buf;

		assert_true(off < f->size_bytes);
		if (len > f->size_bytes - off)
			len = f->size_bytes - off;
		buf = calloc(1, len);
		assert_non_null(buf);
		if (ch[i].kind == CHANGE_DATA)
			tu_pattern_fill(buf, len, off, seed + i);
		for (uint64_t k = 0; ch[i].kind == CHANGE_TEXT && k < len; k++)
			buf[k] = (uint8_t)("pvrepl scan "[k % 12] + (k / 4096) % 3);
		file_write(f->path, buf, len, off);
		free(buf);
	}
}

/*
 * A file of size_bytes with a pattern, the `initial` changes on it, and a map:
 * fresh (nothing confirmed), or, when committed, holding the file's hashes
 * after a first scan, before the `later` changes.
 */
static void dev_setup(struct dev_fix *f, uint64_t size_bytes, uint32_t block_bytes,
		      const struct change *initial, unsigned n_initial, bool committed,
		      const struct change *later, unsigned n_later)
{
	char err[512] = "";
	struct scan_config cfg;
	struct scan_stats st;

	memset(f, 0, sizeof(*f));
	f->size_bytes = size_bytes;
	f->block_bytes = block_bytes;
	f->blocks = (size_bytes - 1) / block_bytes + 1;
	assert_int_equal(tu_tmpfile(f->path, sizeof(f->path), size_bytes, SEED_A), 0);
	apply_changes(f, initial, n_initial, SEED_A);
	assert_int_equal(map_create(&f->map, "scanvol", size_bytes, block_bytes), 0);
	if (committed) {
		snprintf(f->dir, sizeof(f->dir), "%s/map-XXXXXX", tmp_root);
		assert_non_null(mkdtemp(f->dir));
		assert_int_equal(kfio_dev_open(&f->dev, f->path, 0), 0);
		scan_config_defaults(&cfg);
		if (scan_run(&f->dev, &f->map, &cfg, NULL, &st, err, sizeof(err)) != 0)
			fail_msg("first scan: %s", err);
		kfio_dev_close(&f->dev);
		if (map_commit(&f->map, f->dir, 1, err, sizeof(err)) != 0)
			fail_msg("map_commit: %s", err);
	}
	apply_changes(f, later, n_later, SEED_B);
	f->img = malloc(size_bytes);
	assert_non_null(f->img);
	assert_int_equal(tu_file_read(f->path, f->img, size_bytes, 0), 0);
	if (kfio_dev_open(&f->dev, f->path, 0) != 0)
		fail_msg("kfio_dev_open %s: %s", f->path, f->dev.err_msg);
	f->dev_open = true;
}

static void dev_teardown(struct dev_fix *f)
{
	char path[TU_PATH_MAX + 32];

	if (f->dev_open)
		kfio_dev_close(&f->dev);
	map_release(&f->map);
	free(f->img);
	tu_tmpfile_release(f->path);
	if (f->dir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/%s", f->dir, MAP_FILE);
		unlink(path);
		snprintf(path, sizeof(path), "%s/%s", f->dir, MAP_LOG_FILE);
		unlink(path);
		rmdir(f->dir);
	}
}

static uint32_t block_len(const struct dev_fix *f, uint64_t b)
{
	uint64_t left = f->size_bytes - b * f->block_bytes;

	return left < f->block_bytes ? (uint32_t)left : f->block_bytes;
}

/* ------------------------------------------------------------- the sink */

/* What the scan must deliver: computed from the image and the map before it runs. */
struct expect {
	const struct dev_fix *f;
	bool *changed;
	bool *zero;
	uint64_t *hash;
	uint64_t changed_count;
};

static void expect_init(struct expect *ex, const struct dev_fix *f)
{
	ex->f = f;
	ex->changed = calloc(f->blocks, sizeof(*ex->changed));
	ex->zero = calloc(f->blocks, sizeof(*ex->zero));
	ex->hash = calloc(f->blocks, sizeof(*ex->hash));
	assert_true(ex->changed && ex->zero && ex->hash);
	ex->changed_count = 0;
	for (uint64_t b = 0; b < f->blocks; b++) {
		const uint8_t *p = f->img + b * f->block_bytes;

		ex->hash[b] = delta_hash(p, block_len(f, b));
		ex->zero[b] = delta_is_zero(p, block_len(f, b));
		ex->changed[b] = map_differs(&f->map, b, ex->hash[b]);
		ex->changed_count += ex->changed[b];
	}
}

static void expect_free(struct expect *ex)
{
	free(ex->changed);
	free(ex->zero);
	free(ex->hash);
}

struct rec {
	pthread_mutex_t lock;
	const struct expect *ex;
	bool ordered;
	uint32_t batch_bytes; /* the largest data batch allowed */
	uint64_t limit_block; /* no batch may reach this block (NO_LIMIT: none) */
	unsigned sleep_us;    /* per call, outside the lock */
	uint64_t fail_at;     /* the call (1, 2, ...) that returns fail_rc (NO_FAIL: none) */
	int fail_rc;

	uint8_t *seen; /* per block: times delivered */
	uint64_t next_block;
	uint64_t calls, returned;
	unsigned in_sink, max_in_sink;
	bool failed;		   /* the failing call has returned */
	uint64_t calls_after_fail; /* calls that started after it */
	uint8_t *scratch;	   /* decompression */
	char violation[VIOL_MAX];

	/* back-pressure */
	uint64_t chunk_bytes;
	int64_t returned_chunk; /* highest chunk whose last block a returned batch held */
	int64_t max_lead;	/* completed chunks beyond returned_chunk + 1 */
};

static void rec_init(struct rec *r, const struct expect *ex, bool ordered, uint32_t batch_bytes)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->ex = ex;
	r->ordered = ordered;
	r->batch_bytes = batch_bytes;
	r->limit_block = NO_LIMIT;
	r->fail_at = NO_FAIL;
	r->seen = calloc(ex->f->blocks, 1);
	r->scratch = malloc(SCAN_BATCH_BYTES_MAX);
	assert_true(r->seen && r->scratch);
	r->returned_chunk = -1;
}

static void rec_free(struct rec *r)
{
	pthread_mutex_destroy(&r->lock);
	free(r->seen);
	free(r->scratch);
}

__attribute__((format(printf, 2, 3))) static void violate(struct rec *r, const char *fmt, ...)
{
	va_list ap;

	if (r->violation[0] != '\0')
		return; /* the first one says most */
	va_start(ap, fmt);
	vsnprintf(r->violation, sizeof(r->violation), fmt, ap);
	va_end(ap);
}

/* Checks one batch against the expectation; called with r->lock held. */
static void check_batch(struct rec *r, const struct scan_batch *b)
{
	const struct expect *ex = r->ex;
	const struct dev_fix *f = ex->f;
	uint64_t end = b->first_block + b->block_count, bytes = 0;

	if (b->block_count == 0 || b->first_block >= f->blocks || b->block_count > f->blocks ||
	    end > f->blocks) {
		violate(r, "batch %" PRIu64 "+%u is outside the %" PRIu64 " blocks", b->first_block,
			b->block_count, f->blocks);
		return;
	}
	if (r->ordered && b->first_block < r->next_block)
		violate(r,
			"batch %" PRIu64 "+%u does not come after the previous one, which ended at "
			"block %" PRIu64,
			b->first_block, b->block_count, r->next_block);
	r->next_block = end;
	if (end > r->limit_block)
		violate(r, "batch %" PRIu64 "+%u reaches block %" PRIu64 ", which was not read",
			b->first_block, b->block_count, r->limit_block);
	for (uint64_t k = b->first_block; k < end; k++) {
		if (!ex->changed[k])
			violate(r, "unchanged block %" PRIu64 " delivered", k);
		if (r->seen[k]++ != 0)
			violate(r, "block %" PRIu64 " delivered twice", k);
		if (b->hashes[k - b->first_block] != ex->hash[k])
			violate(r, "block %" PRIu64 ": wrong hash", k);
		if (b->zero != ex->zero[k])
			violate(r, "block %" PRIu64 " is %s but came in a %s batch", k,
				ex->zero[k] ? "zero" : "data", b->zero ? "zero" : "data");
		bytes += block_len(f, k);
	}
	if (b->payload_bytes != bytes)
		violate(r, "batch %" PRIu64 ": %u payload bytes for %" PRIu64, b->first_block,
			b->payload_bytes, bytes);
	if (b->zero)
		return;
	if (b->payload_bytes > r->batch_bytes || b->data_bytes > b->payload_bytes)
		violate(r, "batch %" PRIu64 ": %u bytes (%u of data), above the limit of %u",
			b->first_block, b->payload_bytes, b->data_bytes, r->batch_bytes);
	else if (codec_decompress(b->codec, b->data, b->data_bytes, r->scratch, b->payload_bytes) !=
			 0 ||
		 memcmp(r->scratch, f->img + b->first_block * f->block_bytes, b->payload_bytes) !=
			 0)
		violate(r, "batch %" PRIu64 ": the data is not the device's", b->first_block);
}

static int rec_sink(const struct scan_batch *b, void *ctx)
{
	struct rec *r = ctx;
	uint64_t call;
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	call = ++r->calls;
	if (r->failed)
		r->calls_after_fail++;
	if (++r->in_sink > r->max_in_sink)
		r->max_in_sink = r->in_sink;
	check_batch(r, b);
	pthread_mutex_unlock(&r->lock);
	if (r->sleep_us)
		usleep(r->sleep_us);
	pthread_mutex_lock(&r->lock);
	r->in_sink--;
	r->returned++;
	if (r->chunk_bytes) {
		int64_t c = (int64_t)((b->first_block + b->block_count - 1) *
				      r->ex->f->block_bytes / r->chunk_bytes);

		if (c > r->returned_chunk)
			r->returned_chunk = c;
	}
	if (call == r->fail_at) {
		r->failed = true;
		rc = r->fail_rc;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Progress on the engine thread: how far completed reads ran ahead of the sink. */
static void rec_progress(uint64_t done_bytes, uint64_t total_bytes, void *ctx)
{
	struct rec *r = ctx;
	int64_t done_chunks = (int64_t)((done_bytes + r->chunk_bytes - 1) / r->chunk_bytes);

	(void)total_bytes;
	pthread_mutex_lock(&r->lock);
	if (done_chunks - (r->returned_chunk + 1) > r->max_lead)
		r->max_lead = done_chunks - (r->returned_chunk + 1);
	pthread_mutex_unlock(&r->lock);
}

/* A scan_config: the defaults, with the geometry and threads of a case. */
static void cfg_init(struct scan_config *cfg, uint32_t read_bytes, uint32_t batch_bytes,
		     uint32_t workers, uint32_t queue_depth, bool ordered)
{
	scan_config_defaults(cfg);
	cfg->read_bytes = read_bytes;
	cfg->batch_bytes = batch_bytes;
	cfg->workers = workers;
	cfg->queue_depth = queue_depth;
	cfg->ordered = ordered;
}

/* scan_run over f's device and map, with r as the sink. */
static int scan_rec(struct dev_fix *f, struct rec *r, const struct scan_config *cfg,
		    struct scan_stats *st, char *err, size_t err_len)
{
	struct scan_sink sink = { rec_sink, r };

	err[0] = '\0';
	return scan_run(&f->dev, &f->map, cfg, &sink, st, err, err_len);
}

static void expect_eio(int rc, const char *name, const char *err)
{
	if (rc != -EIO)
		fail_msg("%s: scan_run returned %d (%s), not -EIO", name, rc, err);
}

/* Every changed block delivered exactly once (check_batch saw the rest). */
static void expect_covered(const struct rec *r, const char *name)
{
	if (r->violation[0] != '\0')
		fail_msg("%s: %s", name, r->violation);
	for (uint64_t k = 0; k < r->ex->f->blocks; k++) {
		if (r->ex->changed[k] && r->seen[k] != 1)
			fail_msg("%s: changed block %" PRIu64 " delivered %u times", name, k,
				 r->seen[k]);
	}
}

/* ------------------------------------------------------------- ordering */

struct order_case {
	const char *name;
	uint64_t size_bytes;
	uint32_t block_bytes, read_bytes, batch_bytes;
	uint32_t workers, queue_depth;
	bool ordered, compress;
	enum kfio_backend_kind backend;
	bool committed; /* map: scanned and committed first; else fresh */
};

/* Zero runs and compressible runs on the first image: every kind of batch. */
static const struct change initial_changes[] = {
	{ CHANGE_ZERO, 5, 7 },
	{ CHANGE_TEXT, 20, 9 },
	{ CHANGE_ZERO, 40, 1 },
	{ CHANGE_TEXT, 100, 40 },
};

/* Later changes: single blocks, runs across chunk edges, zeros, the last block. */
static const struct change later_changes[] = {
	{ CHANGE_DATA, 0, 1 },	  { CHANGE_DATA, 14, 4 },  { CHANGE_ZERO, 30, 3 },
	{ CHANGE_TEXT, 33, 2 },	  { CHANGE_DATA, 63, 2 },  { CHANGE_DATA, 90, 30 },
	{ CHANGE_ZERO, 150, 20 }, { CHANGE_DATA, 171, 1 }, { CHANGE_DATA, LAST_BLOCK, 1 },
};

static const struct order_case order_cases[] = {
	{ "fresh, 1 worker", 4 * MIB, 4096, 64 * KIB, 16 * KIB, 1, 4, true, true,
	  KFIO_BACKEND_URING, false },
	{ "fresh, 4 workers, short tail", 4 * MIB + 4096 + 1000, 4096, 64 * KIB, 16 * KIB, 4, 8,
	  true, true, KFIO_BACKEND_URING, false },
	{ "changes, 2 workers", 3 * MIB, 4096, 32 * KIB, 8 * KIB, 2, 4, true, true,
	  KFIO_BACKEND_URING, true },
	{ "changes, 8 workers, raw", 3 * MIB + 8192, 4096, 32 * KIB, 32 * KIB, 8, 16, true, false,
	  KFIO_BACKEND_URING, true },
	{ "changes, 3 workers, 16 KiB blocks", 6 * MIB, 16 * KIB, 128 * KIB, 64 * KIB, 3, 4, true,
	  true, KFIO_BACKEND_URING, true },
	{ "changes, 4 workers, sim backend", 3 * MIB, 4096, 64 * KIB, 16 * KIB, 4, 4, true, true,
	  KFIO_BACKEND_SIM, true },
	{ "changes, one block per read", 1 * MIB, 4096, 4096, 4096, 4, 2, true, true,
	  KFIO_BACKEND_URING, true },
	{ "unordered, 4 workers", 4 * MIB, 4096, 64 * KIB, 16 * KIB, 4, 8, false, true,
	  KFIO_BACKEND_URING, true },
};

static void run_case(const struct order_case *c, const struct change *later, unsigned n_later)
{
	char err[512] = "";
	struct scan_config cfg;
	struct scan_stats st;
	struct dev_fix f;
	struct expect ex;
	struct rec r;
	int rc;

	dev_setup(&f, c->size_bytes, c->block_bytes, initial_changes, ARRAY_SIZE(initial_changes),
		  c->committed, later, n_later);
	expect_init(&ex, &f);
	rec_init(&r, &ex, c->ordered, c->batch_bytes);
	cfg_init(&cfg, c->read_bytes, c->batch_bytes, c->workers, c->queue_depth, c->ordered);
	cfg.compress = c->compress;
	cfg.backend = c->backend;
	rc = scan_rec(&f, &r, &cfg, &st, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: scan_run: %d (%s)", c->name, rc, err);
	expect_covered(&r, c->name);
	if (r.max_in_sink > (c->ordered ? 1u : c->workers))
		fail_msg("%s: %u sink calls at once", c->name, r.max_in_sink);
	if (st.blocks_changed != ex.changed_count || st.blocks_scanned != f.blocks)
		fail_msg("%s: stats say %" PRIu64 " of %" PRIu64
			 " blocks changed, expected %" PRIu64 " of %" PRIu64,
			 c->name, st.blocks_changed, st.blocks_scanned, ex.changed_count, f.blocks);
	assert_int_equal(st.batches_lz4 + st.batches_raw + st.batches_zero, r.calls);
	if (!c->compress)
		assert_int_equal(st.batches_lz4, 0);
	rec_free(&r);
	expect_free(&ex);
	dev_teardown(&f);
}

static void test_ordering(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(order_cases); i++)
		run_case(&order_cases[i], later_changes, ARRAY_SIZE(later_changes));
}

/* A committed map and an unchanged device: the sink is never called. */
static void test_nothing_changed(void **state)
{
	(void)state;
	run_case(&order_cases[2], NULL, 0);
}

/* --------------------------------------------------------- back-pressure */

static void test_back_pressure(void **state)
{
	static const uint32_t workers[] = { 1, 2, 4 };
	char err[512] = "";
	struct scan_config cfg;
	struct scan_stats st;
	struct dev_fix f;
	struct expect ex;
	struct rec r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(workers); i++) {
		/* a fresh map: every chunk has batches, so the sink's position bounds
		 * which chunks can have given their buffer back */
		dev_setup(&f, 2 * MIB, 4096, initial_changes, ARRAY_SIZE(initial_changes), false,
			  NULL, 0);
		expect_init(&ex, &f);
		rec_init(&r, &ex, true, 16 * KIB);
		r.sleep_us = SLEEP_US;
		r.chunk_bytes = 64 * KIB;
		cfg_init(&cfg, 64 * KIB, 16 * KIB, workers[i], 2, true);
		cfg.progress = rec_progress;
		cfg.progress_ctx = &r;
		if (scan_rec(&f, &r, &cfg, &st, err, sizeof(err)) != 0)
			fail_msg("scan_run: %s", err);
		/* scan_run returned: every call had returned, none is running */
		assert_int_equal(r.in_sink, 0);
		assert_int_equal(r.returned, r.calls);
		expect_covered(&r, "slow sink");
		assert_int_equal(r.max_in_sink, 1);
		/* scan.h: (queue depth + 2 x workers) read buffers of one chunk each */
		if (r.max_lead > (int64_t)(cfg.queue_depth + 2 * workers[i]))
			fail_msg("%u workers: reads ran %" PRId64
				 " chunks ahead of the sink, more than the %u buffers",
				 workers[i], r.max_lead, cfg.queue_depth + 2 * workers[i]);
		print_message("back-pressure: %u workers, reads at most %" PRId64
			      " chunks ahead of a slow sink (bound %u)\n",
			      workers[i], r.max_lead, cfg.queue_depth + 2 * workers[i]);
		rec_free(&r);
		expect_free(&ex);
		dev_teardown(&f);
	}
}

/* ---------------------------------------------------------------- errors */

struct sink_error_case {
	const char *name;
	uint32_t workers;
	bool ordered;
	uint64_t fail_at; /* 1: the first call */
	unsigned repeat;  /* runs: a race between workers shows in some only */
};

static const struct sink_error_case sink_error_cases[] = {
	{ "ordered, 1 worker, first batch", 1, true, 1, 1 },
	{ "ordered, 1 worker, later batch", 1, true, 37, 1 },
	{ "ordered, 2 workers, first batch", 2, true, 1, 10 },
	{ "ordered, 4 workers, later batch", 4, true, 25, 20 },
	{ "ordered, 8 workers, later batch", 8, true, 60, 20 },
	{ "unordered, 1 worker, later batch", 1, false, 40, 1 },
};

/* One run of c over the device of ex: the sink fails once, nothing follows. */
static void run_sink_error(const struct sink_error_case *c, struct dev_fix *f,
			   const struct expect *ex)
{
	char err[512] = "";
	struct scan_config cfg;
	struct scan_stats st;
	struct rec r;
	int rc;

	/* the map stays fresh (nothing committed): every block is sent */
	rec_init(&r, ex, c->ordered, 16 * KIB);
	r.fail_at = c->fail_at;
	r.fail_rc = -EIO;
	cfg_init(&cfg, 64 * KIB, 16 * KIB, c->workers, 4, c->ordered);
	rc = scan_rec(f, &r, &cfg, &st, err, sizeof(err));
	expect_eio(rc, c->name, err);
	if (strstr(err, strerror(EIO)) == NULL)
		fail_msg("%s: the message \"%s\" does not give the sink's error", c->name, err);
	if (r.violation[0] != '\0')
		fail_msg("%s: %s", c->name, r.violation);
	if (r.calls < c->fail_at || r.calls_after_fail != 0)
		fail_msg("%s: the sink failed at call %" PRIu64 " of %" PRIu64 "; %" PRIu64
			 " started after it",
			 c->name, c->fail_at, r.calls, r.calls_after_fail);
	rec_free(&r);
}

static void test_sink_error(void **state)
{
	struct dev_fix f;
	struct expect ex;

	(void)state;
	dev_setup(&f, 4 * MIB, 4096, initial_changes, ARRAY_SIZE(initial_changes), false, NULL, 0);
	expect_init(&ex, &f);
	for (size_t i = 0; i < ARRAY_SIZE(sink_error_cases); i++)
		for (unsigned run = 0; run < sink_error_cases[i].repeat; run++)
			run_sink_error(&sink_error_cases[i], &f, &ex);
	expect_free(&ex);
	dev_teardown(&f);
}

struct read_error_case {
	const char *name;
	enum kfio_backend_kind backend;
	uint32_t workers;
	bool ordered;
};

static const struct read_error_case read_error_cases[] = {
	{ "uring, ordered, 2 workers", KFIO_BACKEND_URING, 2, true },
	{ "uring, unordered, 4 workers", KFIO_BACKEND_URING, 4, false },
	{ "sim, ordered, 1 worker", KFIO_BACKEND_SIM, 1, true },
	{ "sim, ordered, 4 workers", KFIO_BACKEND_SIM, 4, true },
};

/*
 * The file shrinks between open and scan: the read of its last chunk comes back
 * short. scan_run must fail with -EIO naming that chunk's offset, and no batch
 * may carry a block at or past it.
 */
static void test_read_error(void **state)
{
	const uint64_t size = 4 * MIB, chunk = 64 * KIB, cut = size - chunk + 20 * KIB;
	char err[512], want[64];
	struct scan_config cfg;
	struct scan_stats st;
	struct dev_fix f;
	struct expect ex;
	struct rec r;
	int rc;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(read_error_cases); i++) {
		const struct read_error_case *c = &read_error_cases[i];

		dev_setup(&f, size, 4096, initial_changes, ARRAY_SIZE(initial_changes), false, NULL,
			  0);
		expect_init(&ex, &f);
		assert_int_equal(truncate(f.path, (off_t)cut), 0);
		rec_init(&r, &ex, c->ordered, 16 * KIB);
		r.limit_block = (size - chunk) / f.block_bytes;
		cfg_init(&cfg, (uint32_t)chunk, 16 * KIB, c->workers, 4, c->ordered);
		cfg.backend = c->backend;
		rc = scan_rec(&f, &r, &cfg, &st, err, sizeof(err));
		expect_eio(rc, c->name, err);
		snprintf(want, sizeof(want), "offset %" PRIu64 " ", size - chunk);
		if (strstr(err, want) == NULL || strstr(err, f.path) == NULL)
			fail_msg("%s: the message \"%s\" does not name %s at %s", c->name, err,
				 f.path, want);
		if (r.violation[0] != '\0')
			fail_msg("%s: %s", c->name, r.violation);
		rec_free(&r);
		expect_free(&ex);
		dev_teardown(&f);
	}
}

static int setup(void **state)
{
	(void)state;
	return tu_tmpdir(tmp_root, sizeof(tmp_root)) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ only_pages */

/*
 * A scan limited to marked pages (the write tracker's bitmap) reads exactly the
 * blocks holding a marked page, in runs, and delivers those of them that
 * changed: a changed block left unmarked is not read (the tracker is trusted;
 * the safety-net full scan finds such a block), a marked block that did not
 * change sends nothing. Pages of 4 KiB inside 16 KiB blocks; the marks include
 * the last, short block and runs longer than a read.
 */
static void test_only_pages(void **state)
{
	const uint32_t bb = 16 * KIB, page = 4096, ppb = bb / page;
	char err[512] = "";
	struct scan_config cfg;
	struct scan_stats st;
	struct dev_fix f;
	struct expect ex;
	struct rec r;
	uint64_t *pages, npages, marked_blocks = 0, expect_bytes = 0, changed = 0;
	bool *marked;
	int rc;

	(void)state;
	dev_setup(&f, 6 * MIB + 8192, bb, initial_changes, ARRAY_SIZE(initial_changes), true,
		  later_changes, ARRAY_SIZE(later_changes));
	npages = (f.size_bytes + page - 1) / page;
	pages = calloc((npages + 63) / 64, sizeof(*pages));
	marked = calloc(f.blocks, sizeof(*marked));
	assert_true(pages && marked);
	expect_init(&ex, &f);
	/* Mark one page of every changed block but block 14 (left unmarked), the
	 * last page of unchanged block 60, and the whole range 200..219 (a run
	 * longer than the 128 KiB reads, unchanged). */
	for (uint64_t b = 0; b < f.blocks; b++) {
		uint64_t p = b * ppb + (b % ppb);

		if (b >= 200 && b < 220)
			for (uint64_t k = 0; k < ppb; k++)
				pages[(b * ppb + k) / 64] |= 1ull << ((b * ppb + k) % 64);
		if (p >= npages)
			p = npages - 1;
		if ((ex.changed[b] && b != 14) || b == 60)
			pages[p / 64] |= 1ull << (p % 64);
	}
	for (uint64_t b = 0; b < f.blocks; b++) {
		for (uint64_t k = b * ppb; k < (b + 1) * ppb && k < npages; k++)
			marked[b] |= (pages[k / 64] >> (k % 64)) & 1;
		if (!marked[b])
			ex.changed[b] = false; /* not read, so not delivered */
		changed += ex.changed[b];
		marked_blocks += marked[b];
		expect_bytes += marked[b] ? block_len(&f, b) : 0;
	}
	assert_true(marked[f.blocks - 1]);
	assert_false(marked[14]);
	rec_init(&r, &ex, true, 64 * KIB);
	cfg_init(&cfg, 128 * KIB, 64 * KIB, 3, 4, true);
	cfg.only_pages = pages;
	cfg.page_bytes = page;
	rc = scan_rec(&f, &r, &cfg, &st, err, sizeof(err));
	if (rc != 0)
		fail_msg("only_pages: scan_run: %d (%s)", rc, err);
	expect_covered(&r, "only_pages");
	assert_int_equal(st.blocks_scanned, marked_blocks);
	assert_int_equal(st.blocks_changed, changed);
	assert_int_equal(st.bytes_planned, expect_bytes);
	assert_int_equal(st.bytes_read, expect_bytes);
	/* Nothing marked: nothing read. */
	memset(pages, 0, (npages + 63) / 64 * sizeof(*pages));
	rc = scan_run(&f.dev, &f.map, &cfg, NULL, &st, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(st.bytes_read, 0);
	assert_int_equal(st.blocks_scanned, 0);
	/* A page size larger than the block is refused. */
	cfg.page_bytes = 2 * bb;
	assert_int_equal(scan_run(&f.dev, &f.map, &cfg, NULL, &st, err, sizeof(err)), -EINVAL);
	rec_free(&r);
	expect_free(&ex);
	free(pages);
	free(marked);
	dev_teardown(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordering),      cmocka_unit_test(test_nothing_changed),
		cmocka_unit_test(test_back_pressure), cmocka_unit_test(test_sink_error),
		cmocka_unit_test(test_read_error),    cmocka_unit_test(test_only_pages),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
