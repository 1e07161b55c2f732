// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the kfio queue on both backends (io_uring and the simulated one)
 * over regular files and loop devices with direct I/O and 512- or 4096-byte
 * blocks: configuration errors, buffer registration, write/read round trips at
 * queue depth with random offsets and lengths checked byte by byte (through the
 * engine and through the file underneath), completions that carry user_data,
 * offset, length, buffer and device index, flush ordering (IOSQE_IO_DRAIN), the
 * depth limit, request validation with its sentences, reads that cross or start
 * past the end of the device, several devices on one queue, and kfio_probe.
 *
 * Loop devices need root: without it the binary skips (exit 77).
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
#include <sys/stat.h>
#include <unistd.h>

#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define MIB	    (1024ull * 1024ull)
#define SEED_BASE   0x0b5e0001ull
#define SEED_WRITE  0x77a1e001ull
#define UD_BASE	    0xc0ffee0000000000ull /* high bits catch truncated user_data */
#define UD_FLUSH    0xf1f1f1f1deadbeefull
#define Q_DEPTH	    32u
#define Q_BUF_COUNT 64u
#define Q_BUF_BYTES (64u * 1024u)

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* ------------------------------------------------------------- fixtures */

struct q_case {
	const char *name;
	enum tu_backing_kind kind;
	enum kfio_backend_kind backend;
	uint64_t size_bytes;
};

struct q_fix {
	const struct q_case *c;
	struct tu_backing b;
	struct kfio_dev dev;
	bool dev_open;
	struct kfio_queue *q;
};

static int q_fix_setup(void **state)
{
	const struct q_case *c = *state;
	struct q_fix *f = calloc(1, sizeof(*f));
	struct kfio_queue_config cfg = { c->backend, Q_DEPTH, Q_BUF_COUNT, Q_BUF_BYTES };
	struct kfio_dev *devs[1];
	char err[KFIO_ERR_MSG_MAX] = "";
	int ret;

	assert_non_null(f);
	f->c = c;
	*state = f;
	ret = tu_backing_create(&f->b, c->kind, c->size_bytes, SEED_BASE);
	assert_int_equal(ret, 0);
	if (c->kind != TU_BACKING_FILE && !f->b.loop.direct)
		fail_msg("%s: the kernel turned direct I/O off on %s", c->name, f->b.path);
	ret = kfio_dev_open(&f->dev, f->b.path, KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("kfio_dev_open %s: %d (%s)", f->b.path, ret, f->dev.err_msg);
	f->dev_open = true;
	devs[0] = &f->dev;
	ret = kfio_queue_new(&f->q, &cfg, devs, 1, err, sizeof(err));
	if (ret)
		fail_msg("kfio_queue_new on %s: %d (%s)", c->name, ret, err);
	return 0;
}

static int q_fix_teardown(void **state)
{
	struct q_fix *f = *state;

	if (f == NULL)
		return 0;
	if (f->q)
		kfio_queue_free(f->q);
	if (f->dev_open)
		kfio_dev_close(&f->dev);
	tu_backing_destroy(&f->b);
	free(f);
	*state = NULL;
	return 0;
}

#define CASE(n, k, be, sz) static const struct q_case n = { #n, k, be, sz }
CASE(file_uring, TU_BACKING_FILE, KFIO_BACKEND_URING, 32 * MIB);
CASE(loop512_uring, TU_BACKING_LOOP512, KFIO_BACKEND_URING, 32 * MIB);
CASE(loop4096_uring, TU_BACKING_LOOP4096, KFIO_BACKEND_URING, 32 * MIB);
CASE(file_sim, TU_BACKING_FILE, KFIO_BACKEND_SIM, 32 * MIB);
CASE(loop512_sim, TU_BACKING_LOOP512, KFIO_BACKEND_SIM, 32 * MIB);
CASE(loop4096_sim, TU_BACKING_LOOP4096, KFIO_BACKEND_SIM, 32 * MIB);
/* Sizes that end mid-buffer, for the end-of-device tests. */
CASE(file_odd_uring, TU_BACKING_FILE, KFIO_BACKEND_URING, MIB + 1536);
CASE(loop512_odd_uring, TU_BACKING_LOOP512, KFIO_BACKEND_URING, MIB + 1536);
CASE(loop4096_odd_uring, TU_BACKING_LOOP4096, KFIO_BACKEND_URING, MIB + 8192);
CASE(file_odd_sim, TU_BACKING_FILE, KFIO_BACKEND_SIM, MIB + 1536);
CASE(loop4096_odd_sim, TU_BACKING_LOOP4096, KFIO_BACKEND_SIM, MIB + 8192);

/* --------------------------------------------------- running operations */

struct op {
	uint8_t kind; /* enum kfio_op */
	uint16_t dev_idx;
	uint64_t offset;
	uint32_t len;
	uint64_t seed;	  /* pattern written, or expected when reading */
	int32_t want_res; /* expected cqe res */
	uint32_t buf_idx; /* set when queued */
	bool queued;
	bool done;
};

/* Checks one completion against the request it answers; frees its buffer. */
static void check_cqe(struct kfio_queue *q, const struct kfio_cqe *cqe, struct op *ops, unsigned n,
		      uint32_t *free_bufs, unsigned *free_count)
{
	uint64_t i = cqe->user_data - UD_BASE;
	struct op *o;

	if (cqe->user_data < UD_BASE || i >= n)
		fail_msg("completion with unknown user_data 0x%llx",
			 (unsigned long long)cqe->user_data);
	o = &ops[i];
	if (!o->queued || o->done)
		fail_msg("op %llu completed twice or was never queued", (unsigned long long)i);
	o->done = true;
	assert_int_equal(cqe->op, o->kind);
	assert_int_equal(cqe->dev_idx, o->dev_idx);
	assert_int_equal(cqe->offset, o->offset);
	assert_int_equal(cqe->len, o->len);
	assert_int_equal(cqe->buf_idx, o->buf_idx);
	if (cqe->res != o->want_res)
		fail_msg("op %llu (%s at %llu len %u): res %d, want %d (%s)", (unsigned long long)i,
			 o->kind == KFIO_OP_READ ? "read" : "write", (unsigned long long)o->offset,
			 o->len, cqe->res, o->want_res, kfio_queue_err(q));
	if (o->kind == KFIO_OP_READ && cqe->res > 0) {
		long bad = tu_pattern_mismatch(kfio_queue_buf(q, o->buf_idx), (size_t)cqe->res,
					       o->offset, o->seed);

		if (bad >= 0)
			fail_msg("read at %llu len %u: byte %ld differs from the pattern",
				 (unsigned long long)o->offset, o->len, bad);
	}
	free_bufs[(*free_count)++] = o->buf_idx;
}

/*
 * Runs ops keeping up to depth in flight, each in its own registered buffer, and
 * checks every completion. Returns when all completed.
 */
static void run_ops(struct kfio_queue *q, struct op *ops, unsigned n, unsigned depth)
{
	uint32_t nbufs = kfio_queue_buf_count(q);
	uint32_t *free_bufs = calloc(nbufs, sizeof(*free_bufs));
	struct kfio_cqe cqes[64];
	unsigned next = 0, done = 0, free_count = 0, i;
	uint32_t b;

	assert_non_null(free_bufs);
	for (b = 0; b < nbufs; b++)
		free_bufs[free_count++] = nbufs - 1 - b;
	while (done < n) {
		int got;

		while (next < n && kfio_queue_inflight(q) < depth && free_count > 0) {
			struct op *o = &ops[next];
			int ret;

			o->buf_idx = free_bufs[--free_count];
			if (o->kind == KFIO_OP_WRITE)
				tu_pattern_fill(kfio_queue_buf(q, o->buf_idx), o->len, o->offset,
						o->seed);
			else
				memset(kfio_queue_buf(q, o->buf_idx), 0xee, o->len);
			if (o->kind == KFIO_OP_WRITE)
				ret = kfio_queue_write(q, o->dev_idx, o->buf_idx, o->offset, o->len,
						       UD_BASE + next);
			else
				ret = kfio_queue_read(q, o->dev_idx, o->buf_idx, o->offset, o->len,
						      UD_BASE + next);
			if (ret)
				fail_msg("queueing op %u at %llu len %u: %d (%s)", next,
					 (unsigned long long)o->offset, o->len, ret,
					 kfio_queue_err(q));
			o->queued = true;
			next++;
		}
		got = kfio_queue_submit(q);
		if (got < 0)
			fail_msg("kfio_queue_submit: %d (%s)", got, kfio_queue_err(q));
		got = kfio_queue_reap(q, cqes, ARRAY_SIZE(cqes), 1);
		if (got <= 0)
			fail_msg("kfio_queue_reap: %d (%s), %u of %u done", got, kfio_queue_err(q),
				 done, n);
		for (i = 0; i < (unsigned)got; i++)
			check_cqe(q, &cqes[i], ops, n, free_bufs, &free_count);
		done += (unsigned)got;
	}
	assert_int_equal(kfio_queue_inflight(q), 0);
	free(free_bufs);
}

/* Queues a flush of dev_idx, submits, and checks its completion. */
static void flush_dev(struct kfio_queue *q, unsigned dev_idx)
{
	struct kfio_cqe cqe;
	int ret;

	ret = kfio_queue_flush(q, dev_idx, UD_FLUSH);
	if (ret)
		fail_msg("kfio_queue_flush: %d (%s)", ret, kfio_queue_err(q));
	assert_true(kfio_queue_submit(q) >= 0);
	assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
	assert_int_equal(cqe.user_data, UD_FLUSH);
	assert_int_equal(cqe.op, KFIO_OP_FLUSH);
	assert_int_equal(cqe.buf_idx, UINT32_MAX);
	assert_int_equal(cqe.dev_idx, dev_idx);
	if (cqe.res != 0)
		fail_msg("flush completed with %d (%s)", cqe.res, kfio_queue_err(q));
}

/*
 * Makes n writes at random, non-overlapping places: one per 64 KiB slot, slots in
 * random order, a random block-aligned start and length inside the slot.
 */
static struct op *random_writes(unsigned n, uint64_t size_bytes, uint32_t lbs, uint64_t *rng)
{
	uint64_t slots = size_bytes / Q_BUF_BYTES;
	uint32_t *perm = calloc(slots, sizeof(*perm));
	struct op *ops = calloc(n, sizeof(*ops));
	uint64_t i;

	assert_non_null(perm);
	assert_non_null(ops);
	assert_true(n <= slots);
	for (i = 0; i < slots; i++)
		perm[i] = (uint32_t)i;
	for (i = slots - 1; i > 0; i--) {
		uint64_t j = tu_rand_below(rng, i + 1);
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (i = 0; i < n; i++) {
		uint32_t blocks = Q_BUF_BYTES / lbs;
		uint32_t start = (uint32_t)tu_rand_below(rng, blocks);
		uint32_t count = 1 + (uint32_t)tu_rand_below(rng, blocks - start);

		ops[i].kind = KFIO_OP_WRITE;
		ops[i].offset = (uint64_t)perm[i] * Q_BUF_BYTES + (uint64_t)start * lbs;
		ops[i].len = count * lbs;
		ops[i].seed = SEED_WRITE;
		ops[i].want_res = (int32_t)ops[i].len;
	}
	free(perm);
	return ops;
}

/* Turns completed writes into reads of the same ranges, in a new random order. */
static void writes_to_reads(struct op *ops, unsigned n, uint64_t *rng)
{
	unsigned i;

	for (i = n - 1; i > 0; i--) {
		unsigned j = (unsigned)tu_rand_below(rng, i + 1);
		struct op t = ops[i];

		ops[i] = ops[j];
		ops[j] = t;
	}
	for (i = 0; i < n; i++) {
		ops[i].kind = KFIO_OP_READ;
		ops[i].queued = false;
		ops[i].done = false;
	}
}

static int cmp_op_offset(const void *a, const void *b)
{
	const struct op *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * Reads the whole file underneath (not through the engine) and checks that the
 * written ranges hold SEED_WRITE and everything else still holds SEED_BASE.
 */
static void verify_file(const char *file, uint64_t size_bytes, struct op *ops, unsigned n)
{
	unsigned char *buf = malloc(size_bytes);
	uint64_t pos = 0;
	unsigned i;
	long bad;

	assert_non_null(buf);
	assert_int_equal(tu_file_read(file, buf, size_bytes, 0), 0);
	qsort(ops, n, sizeof(*ops), cmp_op_offset);
	for (i = 0; i <= n; i++) {
		uint64_t end = i < n ? ops[i].offset : size_bytes;

		bad = tu_pattern_mismatch(buf + pos, end - pos, pos, SEED_BASE);
		if (bad >= 0)
			fail_msg("%s: byte %llu outside the writes changed", file,
				 (unsigned long long)(pos + (uint64_t)bad));
		if (i == n)
			break;
		bad = tu_pattern_mismatch(buf + ops[i].offset, ops[i].len, ops[i].offset,
					  SEED_WRITE);
		if (bad >= 0)
			fail_msg("%s: write at %llu len %u: byte %ld not written", file,
				 (unsigned long long)ops[i].offset, ops[i].len, bad);
		pos = ops[i].offset + ops[i].len;
	}
	free(buf);
}

/* ------------------------------------------------------------------ tests */

static void test_probe(void **state)
{
	struct kfio_caps caps;

	(void)state;
	memset(&caps, 0, sizeof(caps));
	assert_int_equal(kfio_probe(&caps), 0);
	assert_true(caps.uring);
	assert_true(caps.read_fixed);
	assert_true(caps.write_fixed);
	assert_true(caps.fsync);
	assert_true(caps.fallocate);
	assert_true(caps.register_files);
}

static void test_accessors(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	uintptr_t starts[Q_BUF_COUNT];
	uint32_t i, j;

	assert_int_equal(kfio_queue_depth(q), Q_DEPTH);
	assert_int_equal(kfio_queue_buf_count(q), Q_BUF_COUNT);
	assert_int_equal(kfio_queue_buf_bytes(q), Q_BUF_BYTES);
	assert_int_equal(kfio_queue_inflight(q), 0);
	for (i = 0; i < Q_BUF_COUNT; i++) {
		unsigned char *p = kfio_queue_buf(q, i);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % KFIO_MEM_ALIGN, 0);
		/* Every byte is ours (ASan would catch an undersized buffer). */
		memset(p, (int)i, Q_BUF_BYTES);
		starts[i] = (uintptr_t)p;
	}
	for (i = 0; i < Q_BUF_COUNT; i++) {
		for (j = i + 1; j < Q_BUF_COUNT; j++) {
			uintptr_t lo = starts[i] < starts[j] ? starts[i] : starts[j];
			uintptr_t hi = starts[i] < starts[j] ? starts[j] : starts[i];

			if (hi - lo < Q_BUF_BYTES)
				fail_msg("buffers %u and %u overlap", i, j);
		}
	}
	for (i = 0; i < Q_BUF_COUNT; i++) {
		const unsigned char *p = kfio_queue_buf(q, i);

		assert_int_equal(p[0], (unsigned char)i);
		assert_int_equal(p[Q_BUF_BYTES - 1], (unsigned char)i);
	}
}

struct cfg_case {
	const char *what;
	struct kfio_queue_config cfg;
	unsigned dev_count;
};

static const struct cfg_case bad_cfgs[] = {
	{ "depth 0", { KFIO_BACKEND_URING, 0, 8, 4096 }, 1 },
	{ "depth over max", { KFIO_BACKEND_URING, KFIO_QUEUE_DEPTH_MAX + 1, 8, 4096 }, 1 },
	{ "buffers over max", { KFIO_BACKEND_URING, 8, KFIO_BUF_COUNT_MAX + 1, 4096 }, 1 },
	{ "buffer bytes 0", { KFIO_BACKEND_URING, 8, 8, 0 }, 1 },
	{ "buffer bytes 1000", { KFIO_BACKEND_URING, 8, 8, 1000 }, 1 },
	{ "buffer bytes 512", { KFIO_BACKEND_URING, 8, 8, 512 }, 1 },
	{ "buffer bytes over max", { KFIO_BACKEND_URING, 8, 8, KFIO_BUF_BYTES_MAX + 4096 }, 1 },
	{ "sim buffer bytes 1000", { KFIO_BACKEND_SIM, 8, 8, 1000 }, 1 },
	{ "unknown backend", { (enum kfio_backend_kind)7, 8, 8, 4096 }, 1 },
	{ "no devices", { KFIO_BACKEND_URING, 8, 8, 4096 }, 0 },
	{ "too many devices", { KFIO_BACKEND_URING, 8, 8, 4096 }, KFIO_DEVS_MAX + 1 },
};

static void test_queue_new_errors(void **state)
{
	struct q_fix *f = *state;
	struct kfio_dev **devs = calloc(KFIO_DEVS_MAX + 1, sizeof(*devs));
	unsigned i;

	assert_non_null(devs);
	for (i = 0; i <= KFIO_DEVS_MAX; i++)
		devs[i] = &f->dev;
	for (i = 0; i < ARRAY_SIZE(bad_cfgs); i++) {
		struct kfio_queue *q = (struct kfio_queue *)devs; /* not NULL */
		char err[KFIO_ERR_MSG_MAX] = "";
		int ret = kfio_queue_new(&q, &bad_cfgs[i].cfg, devs, bad_cfgs[i].dev_count, err,
					 sizeof(err));

		if (ret == 0) {
			kfio_queue_free(q);
			fail_msg("kfio_queue_new accepted %s", bad_cfgs[i].what);
		}
		if (ret != -EINVAL)
			fail_msg("kfio_queue_new with %s: %d, want -EINVAL (%s)", bad_cfgs[i].what,
				 ret, err);
		assert_null(q);
		if (err[0] == '\0')
			fail_msg("kfio_queue_new with %s left no sentence", bad_cfgs[i].what);
	}
	free(devs);
	/* The simulated crash is refused on a real queue. */
	if (f->c->backend == KFIO_BACKEND_URING)
		assert_int_equal(kfio_queue_sim_crash(f->q, KFIO_CRASH_DROP, 1), -EOPNOTSUPP);
}

/* 512 random writes at depth 32 with 64 buffers, flush, read back, compare. */
static void test_roundtrip(void **state)
{
	struct q_fix *f = *state;
	const unsigned n = 512;
	uint64_t rng = 0x1234 + f->c->kind * 17 + f->c->backend;
	struct op *ops = random_writes(n, f->dev.size_bytes, f->dev.logical_block_bytes, &rng);

	run_ops(f->q, ops, n, Q_DEPTH);
	flush_dev(f->q, 0);
	writes_to_reads(ops, n, &rng);
	run_ops(f->q, ops, n, Q_DEPTH);
	verify_file(f->b.file, f->dev.size_bytes, ops, n);
	free(ops);
}

/*
 * Writes and a flush submitted together: the flush is drained behind them, so its
 * completion comes after every write's.
 */
static void test_flush_after_writes(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	struct kfio_cqe cqes[Q_DEPTH];
	unsigned i, got = 0, writes = Q_DEPTH - 1;

	for (i = 0; i < writes; i++) {
		uint64_t off = (uint64_t)i * Q_BUF_BYTES;

		tu_pattern_fill(kfio_queue_buf(q, i), Q_BUF_BYTES, off, SEED_WRITE);
		assert_int_equal(kfio_queue_write(q, 0, i, off, Q_BUF_BYTES, UD_BASE + i), 0);
	}
	assert_int_equal(kfio_queue_flush(q, 0, UD_FLUSH), 0);
	assert_int_equal(kfio_queue_inflight(q), writes + 1);
	assert_int_equal(kfio_queue_submit(q), (int)writes + 1);
	while (got < writes + 1) {
		int r = kfio_queue_reap(q, cqes + got, writes + 1 - got, 1);

		if (r <= 0)
			fail_msg("kfio_queue_reap: %d (%s)", r, kfio_queue_err(q));
		got += (unsigned)r;
	}
	for (i = 0; i < writes; i++) {
		if (cqes[i].user_data == UD_FLUSH)
			fail_msg("the flush completed as number %u, before %u writes", i,
				 writes - i);
		assert_int_equal(cqes[i].res, Q_BUF_BYTES);
		assert_int_equal(cqes[i].op, KFIO_OP_WRITE);
	}
	assert_int_equal(cqes[writes].user_data, UD_FLUSH);
	assert_int_equal(cqes[writes].op, KFIO_OP_FLUSH);
	assert_int_equal(cqes[writes].res, 0);
	assert_int_equal(cqes[writes].buf_idx, UINT32_MAX);
	assert_int_equal(kfio_queue_inflight(q), 0);
}

/* At most depth requests in flight; the next one is refused with -EBUSY. */
static void test_depth_limit(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	struct kfio_cqe cqes[Q_DEPTH];
	unsigned i, got = 0;
	int ret;

	for (i = 0; i < Q_DEPTH; i++)
		assert_int_equal(kfio_queue_read(q, 0, i, (uint64_t)i * 4096, 4096, UD_BASE + i),
				 0);
	assert_int_equal(kfio_queue_inflight(q), Q_DEPTH);
	assert_int_equal(kfio_queue_read(q, 0, Q_DEPTH, 0, 4096, 99), -EBUSY);
	assert_int_equal(kfio_queue_write(q, 0, Q_DEPTH, 0, 4096, 99), -EBUSY);
	assert_int_equal(kfio_queue_flush(q, 0, 99), -EBUSY);
	ret = kfio_queue_submit(q);
	assert_int_equal(ret, Q_DEPTH);
	/* Submitted but not reaped still counts. */
	assert_int_equal(kfio_queue_read(q, 0, Q_DEPTH, 0, 4096, 99), -EBUSY);
	while (got < Q_DEPTH) {
		int r = kfio_queue_reap(q, cqes + got, Q_DEPTH - got, Q_DEPTH - got);

		if (r <= 0)
			fail_msg("kfio_queue_reap: %d (%s)", r, kfio_queue_err(q));
		got += (unsigned)r;
	}
	for (i = 0; i < Q_DEPTH; i++) {
		assert_int_equal(cqes[i].res, 4096);
		assert_int_equal(tu_pattern_mismatch(kfio_queue_buf(q, cqes[i].buf_idx), 4096,
						     cqes[i].offset, SEED_BASE),
				 -1);
	}
	assert_int_equal(kfio_queue_inflight(q), 0);
	/* Reaping an idle queue without waiting returns nothing. */
	assert_int_equal(kfio_queue_reap(q, cqes, Q_DEPTH, 0), 0);
}

struct bad_req {
	const char *what;
	bool write;
	unsigned dev_idx;
	uint32_t buf_idx;
	int64_t offset; /* bytes, or with from_end: logical blocks before the end */
	bool from_end;
	uint32_t len_lbs;
	int32_t len_extra;
	int want;
	const char *msg; /* must appear in kfio_queue_err, or NULL */
};

static const struct bad_req bad_reqs[] = {
	{ "offset 4100", false, 0, 0, 4100, false, 1, 0, -EINVAL, "offset 4100 is not aligned" },
	{ "write offset 4100", true, 0, 0, 4100, false, 1, 0, -EINVAL,
	  "offset 4100 is not aligned" },
	{ "length +100", false, 0, 0, 0, false, 1, 100, -EINVAL, NULL },
	{ "buffer index = count", false, 0, Q_BUF_COUNT, 0, false, 1, 0, -EINVAL, NULL },
	{ "buffer index huge", true, 0, UINT32_MAX - 1, 0, false, 1, 0, -EINVAL, NULL },
	{ "device index 1 of 1", false, 1, 0, 0, false, 1, 0, -EINVAL, NULL },
	{ "length over buffer", false, 0, 0, 0, false, 0, Q_BUF_BYTES + 4096, -EINVAL, NULL },
	{ "misaligned length at the end", false, 0, 0, 0, true, 1, 4100, -EINVAL, NULL },
};

static void test_request_validation(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	uint32_t lbs = f->dev.logical_block_bytes;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(bad_reqs); i++) {
		const struct bad_req *r = &bad_reqs[i];
		uint64_t off = r->from_end ? f->dev.size_bytes - (uint64_t)(r->offset * lbs)
					   : (uint64_t)r->offset;
		uint32_t len = r->len_lbs * lbs + (uint32_t)r->len_extra;
		int ret;

		if (r->write)
			ret = kfio_queue_write(q, r->dev_idx, r->buf_idx, off, len, 1);
		else
			ret = kfio_queue_read(q, r->dev_idx, r->buf_idx, off, len, 1);
		if (ret != r->want)
			fail_msg("%s: got %d, want %d (%s)", r->what, ret, r->want,
				 kfio_queue_err(q));
		assert_true(kfio_queue_err(q)[0] != '\0');
		if (r->msg)
			assert_contains(kfio_queue_err(q), r->msg);
		assert_int_equal(kfio_queue_inflight(q), 0);
	}
	/* Nothing was queued, so nothing is submitted. */
	assert_int_equal(kfio_queue_submit(q), 0);
}

/*
 * Writes that cross or start past the end are refused when queued (kfio.h: only
 * reads may extend past the end), and a file-backed volume never grows.
 */
static void test_write_past_end(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	uint32_t lbs = f->dev.logical_block_bytes;
	uint64_t size = f->dev.size_bytes;
	const uint64_t offs[] = { size - lbs, size, size + 64 * MIB };
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(offs); i++) {
		struct kfio_cqe cqe;
		struct stat st;
		int ret;

		tu_pattern_fill(kfio_queue_buf(q, 0), 2 * lbs, offs[i], SEED_WRITE);
		ret = kfio_queue_write(q, 0, 0, offs[i], 2 * lbs, UD_BASE);
		if (ret == -ERANGE) {
			assert_true(kfio_queue_err(q)[0] != '\0');
			assert_int_equal(kfio_queue_inflight(q), 0);
			continue;
		}
		/* Accepted: run it to see what it did, then fail. */
		if (ret == 0 && kfio_queue_submit(q) == 1)
			kfio_queue_reap(q, &cqe, 1, 1);
		assert_int_equal(stat(f->b.file, &st), 0);
		fail_msg("%s: write of %u bytes at %llu (size %llu) returned %d, want -ERANGE; "
			 "backing file now %llu bytes",
			 f->c->name, 2 * lbs, (unsigned long long)offs[i], (unsigned long long)size,
			 ret, (unsigned long long)st.st_size);
	}
}

/* A read crossing the end completes short; one starting at or past it reads nothing. */
static void test_end_of_device(void **state)
{
	struct q_fix *f = *state;
	struct kfio_queue *q = f->q;
	uint32_t lbs = f->dev.logical_block_bytes;
	uint64_t size = f->dev.size_bytes;
	uint64_t tail = size % Q_BUF_BYTES; /* bytes of the last, partial buffer */
	const uint64_t past[] = { size, size + lbs, size + 64 * MIB };
	struct op op;
	struct kfio_cqe cqe;
	unsigned i;

	assert_int_equal(size, f->c->size_bytes);
	assert_true(tail > 0 && tail % lbs == 0);

	/* Crossing: asks for a whole buffer, gets the tail. */
	memset(&op, 0, sizeof(op));
	op.kind = KFIO_OP_READ;
	op.offset = size - tail;
	op.len = Q_BUF_BYTES;
	op.seed = SEED_BASE;
	op.want_res = (int32_t)tail;
	run_ops(q, &op, 1, 1);

	/* Starting at or past the end: refused with -ERANGE, or completes with 0. */
	for (i = 0; i < ARRAY_SIZE(past); i++) {
		int ret = kfio_queue_read(q, 0, 0, past[i], 4 * lbs, UD_BASE);

		if (ret == -ERANGE) {
			assert_true(kfio_queue_err(q)[0] != '\0');
			continue;
		}
		if (ret != 0)
			fail_msg("read at %llu (size %llu): %d (%s)", (unsigned long long)past[i],
				 (unsigned long long)size, ret, kfio_queue_err(q));
		assert_int_equal(kfio_queue_submit(q), 1);
		assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
		assert_int_equal(cqe.user_data, UD_BASE);
		if (cqe.res != 0)
			fail_msg("read at %llu past the end (size %llu): res %d, want 0",
				 (unsigned long long)past[i], (unsigned long long)size, cqe.res);
	}

	/* The last block alone reads in full. */
	memset(&op, 0, sizeof(op));
	op.kind = KFIO_OP_READ;
	op.offset = size - lbs;
	op.len = lbs;
	op.seed = SEED_BASE;
	op.want_res = (int32_t)lbs;
	run_ops(q, &op, 1, 1);
	assert_int_equal(kfio_queue_inflight(q), 0);
}

/* Two devices on one queue: completions name the right device, data lands there. */
static void test_two_devices(void **state)
{
	const enum kfio_backend_kind backend = *(const enum kfio_backend_kind *)*state;
	const enum tu_backing_kind kinds[2] = { TU_BACKING_FILE, TU_BACKING_LOOP4096 };
	struct kfio_queue_config cfg = { backend, Q_DEPTH, Q_BUF_COUNT, Q_BUF_BYTES };
	struct tu_backing b[2];
	struct kfio_dev dev[2];
	struct kfio_dev *devs[2] = { &dev[0], &dev[1] };
	struct kfio_queue *q = NULL;
	char err[KFIO_ERR_MSG_MAX] = "";
	struct op ops[64];
	unsigned i, d;

	for (d = 0; d < 2; d++) {
		assert_int_equal(tu_backing_create(&b[d], kinds[d], 8 * MIB, SEED_BASE), 0);
		assert_int_equal(kfio_dev_open(&dev[d], b[d].path, KFIO_OPEN_WRITE), 0);
	}
	if (kfio_queue_new(&q, &cfg, devs, 2, err, sizeof(err)))
		fail_msg("kfio_queue_new with two devices: %s", err);
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		ops[i].kind = KFIO_OP_WRITE;
		ops[i].dev_idx = (uint16_t)(i % 2);
		/* The same offsets on both devices, with a different pattern each. */
		ops[i].offset = (uint64_t)(i / 2) * Q_BUF_BYTES;
		ops[i].len = Q_BUF_BYTES;
		ops[i].seed = SEED_WRITE + ops[i].dev_idx;
		ops[i].want_res = Q_BUF_BYTES;
	}
	run_ops(q, ops, ARRAY_SIZE(ops), Q_DEPTH);
	flush_dev(q, 0);
	flush_dev(q, 1);
	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		ops[i].kind = KFIO_OP_READ;
		ops[i].queued = ops[i].done = false;
	}
	run_ops(q, ops, ARRAY_SIZE(ops), Q_DEPTH);
	kfio_queue_free(q);
	for (d = 0; d < 2; d++) {
		unsigned char *buf = malloc(32 * Q_BUF_BYTES);

		assert_non_null(buf);
		assert_int_equal(tu_file_read(b[d].file, buf, 32 * Q_BUF_BYTES, 0), 0);
		assert_int_equal(tu_pattern_mismatch(buf, 32 * Q_BUF_BYTES, 0, SEED_WRITE + d), -1);
		free(buf);
		kfio_dev_close(&dev[d]);
		tu_backing_destroy(&b[d]);
	}
}

/* A device opened read-only refuses writes, at queueing or in the completion. */
static void test_read_only_dev(void **state)
{
	const enum kfio_backend_kind backend = *(const enum kfio_backend_kind *)*state;
	struct kfio_queue_config cfg = { backend, 4, 4, Q_BUF_BYTES };
	struct tu_backing b;
	struct kfio_dev dev;
	struct kfio_dev *devs[1] = { &dev };
	struct kfio_queue *q = NULL;
	struct kfio_cqe cqe;
	char err[KFIO_ERR_MSG_MAX] = "";
	unsigned char *check;
	int ret;

	assert_int_equal(tu_backing_create(&b, TU_BACKING_LOOP512, 4 * MIB, SEED_BASE), 0);
	assert_int_equal(kfio_dev_open(&dev, b.path, 0), 0);
	if (kfio_queue_new(&q, &cfg, devs, 1, err, sizeof(err)))
		fail_msg("kfio_queue_new on a read-only device: %s", err);
	tu_pattern_fill(kfio_queue_buf(q, 0), 4096, 0, SEED_WRITE);
	ret = kfio_queue_write(q, 0, 0, 0, 4096, 42);
	if (ret == 0) {
		assert_int_equal(kfio_queue_submit(q), 1);
		assert_int_equal(kfio_queue_reap(q, &cqe, 1, 1), 1);
		if (cqe.res >= 0)
			fail_msg("write to a read-only device completed with %d", cqe.res);
	}
	kfio_queue_free(q);
	kfio_dev_close(&dev);
	check = malloc(4096);
	assert_non_null(check);
	assert_int_equal(tu_file_read(b.file, check, 4096, 0), 0);
	assert_int_equal(tu_pattern_mismatch(check, 4096, 0, SEED_BASE), -1);
	free(check);
	tu_backing_destroy(&b);
}

static const enum kfio_backend_kind be_uring = KFIO_BACKEND_URING;
static const enum kfio_backend_kind be_sim = KFIO_BACKEND_SIM;

#define Q_TEST(fn, c)                                                   \
	{                                                               \
#fn "/" #c, fn, q_fix_setup, q_fix_teardown, (void *)&c \
	}
#define BE_TEST(fn, be)                                  \
	{                                                \
#fn "/" #be, fn, NULL, NULL, (void *)&be \
	}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe),
		Q_TEST(test_accessors, file_uring),
		Q_TEST(test_accessors, file_sim),
		Q_TEST(test_queue_new_errors, file_uring),
		Q_TEST(test_roundtrip, file_uring),
		Q_TEST(test_roundtrip, loop512_uring),
		Q_TEST(test_roundtrip, loop4096_uring),
		Q_TEST(test_roundtrip, file_sim),
		Q_TEST(test_roundtrip, loop512_sim),
		Q_TEST(test_roundtrip, loop4096_sim),
		Q_TEST(test_flush_after_writes, file_uring),
		Q_TEST(test_flush_after_writes, loop4096_uring),
		Q_TEST(test_flush_after_writes, file_sim),
		Q_TEST(test_depth_limit, loop512_uring),
		Q_TEST(test_depth_limit, file_sim),
		Q_TEST(test_request_validation, file_uring),
		Q_TEST(test_request_validation, loop4096_uring),
		Q_TEST(test_request_validation, file_sim),
		Q_TEST(test_end_of_device, file_odd_uring),
		Q_TEST(test_end_of_device, loop512_odd_uring),
		Q_TEST(test_end_of_device, loop4096_odd_uring),
		Q_TEST(test_end_of_device, file_odd_sim),
		Q_TEST(test_end_of_device, loop4096_odd_sim),
		Q_TEST(test_write_past_end, file_odd_uring),
		Q_TEST(test_write_past_end, loop512_odd_uring),
		Q_TEST(test_write_past_end, loop4096_odd_uring),
		Q_TEST(test_write_past_end, file_odd_sim),
		Q_TEST(test_write_past_end, loop4096_odd_sim),
		BE_TEST(test_two_devices, be_uring),
		BE_TEST(test_two_devices, be_sim),
		BE_TEST(test_read_only_dev, be_uring),
		BE_TEST(test_read_only_dev, be_sim),
	};

	tu_require_root();
	tu_require_loop();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
