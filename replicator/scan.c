// SPDX-License-Identifier: Apache-2.0
/*
 * scan — the change-detection pipeline (see scan.h for the shape).
 *
 * Threads and hand-offs:
 *
 *   engine thread (caller)              worker threads (cfg.workers)
 *   ----------------------              ----------------------------
 *   take free buffers, queue reads  ->  take the next chunk in sequence
 *   reap completions, push to ready     hash each block, compare with the map,
 *   wait on `cond` only when no read    emit zero runs / data runs (lz4 or raw)
 *   is in flight and no buffer is free  give the buffer back to `free`
 *
 * One mutex guards both `ready` and `free`; it is taken once per chunk (1 MiB by
 * default), never per block. Per-worker counters are summed at the end, so the
 * hot loop touches no shared cache line except the map entries it owns.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "delta.h"
#include "scan.h"
#include "pvrepl_assert.h"

struct scan_chunk {
	uint32_t buf_idx;
	uint32_t bytes; /* valid bytes (short at the end of the device) */
	uint64_t offset;
	bool valid; /* slot holds a read chunk not yet taken by a worker */
};

struct scan_worker {
	struct scan_ctx *ctx;
	pthread_t thread;
	bool started;
	void *out; /* compression output: codec_bound(chunk_bytes) */
	size_t out_cap;
	size_t out_used;	    /* ordered mode: bytes of out held by pending batches */
	struct scan_batch *pending; /* ordered mode: this chunk's batches, in order */
	uint32_t pending_count;
	struct scan_stats st;
};

struct scan_ctx {
	struct kfio_dev *dev;
	struct map *map;
	const struct scan_config *cfg;
	const struct scan_sink *sink;
	struct kfio_queue *q;
	uint32_t block_bytes;
	uint32_t chunk_bytes;
	uint32_t batch_bytes;
	uint64_t zero_hash; /* xxh3 of a full zero block */
	uint64_t pages;	    /* only_pages: bits in the bitmap */
	uint32_t pages_per_block;
	uint64_t next_byte; /* where plan_read looks next; under lock */
	double t0;	    /* monotonic start, for the read-rate cap */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled on: chunk ready, buffer freed, error, end */
	/* Read chunks by issue sequence number modulo buf_count:
	 * at most buf_count chunks are read or waiting at once, and they are issued
	 * in sequence, so slots never collide. Workers take them in sequence. */
	struct scan_chunk *ready;
	uint64_t next_dispatch; /* sequence of the next chunk a worker takes */
	uint64_t next_emit;	/* ordered mode: sequence whose batches go next */
	uint32_t *free_bufs;	/* stack */
	uint32_t free_count;
	bool no_more_chunks;
	int error; /* first error, sticky */
	char err_msg[256];

	struct scan_worker workers[SCAN_WORKERS_MAX];
	uint32_t worker_count;
};

void scan_config_defaults(struct scan_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->read_bytes = SCAN_READ_BYTES_DEFAULT;
	cfg->queue_depth = SCAN_QUEUE_DEPTH_DEFAULT;
	cfg->compress = true;
	cfg->backend = KFIO_BACKEND_URING;
}

static void set_error(struct scan_ctx *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the first error and wakes everyone; called with c->lock held. */
static void set_error(struct scan_ctx *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->error)
		return;
	c->error = err;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	pthread_cond_broadcast(&c->cond);
}

/* Preparing or emitting chunk ch failed with rc; called with c->lock held. */
static void scan_chunk_failed(struct scan_ctx *c, const struct scan_chunk *ch, int rc)
{
	set_error(c, rc, "%s: preparing blocks at offset %" PRIu64 " failed: %s", c->dev->path,
		  ch->offset, strerror(-rc));
}

/* Counts a batch and hands it to the sink. */
static int emit_now(struct scan_worker *w, const struct scan_batch *b)
{
	const struct scan_sink *sink = w->ctx->sink;

	if (b->zero)
		w->st.batches_zero++;
	else if (b->codec == CODEC_LZ4)
		w->st.batches_lz4++;
	else
		w->st.batches_raw++;
	w->st.compressed_bytes += b->data_bytes;
	return sink && sink->batch ? sink->batch(b, sink->ctx) : 0;
}

static int emit(struct scan_worker *w, const struct scan_batch *b)
{
	if (!w->ctx->cfg->ordered)
		return emit_now(w, b);
	/* Held until this chunk's turn (emit_pending). A chunk has at most one batch
	 * per block, and its data lives in `out` or the chunk buffer until then. */
	ASSERT(w->pending_count < w->ctx->chunk_bytes / w->ctx->block_bytes);
	w->pending[w->pending_count++] = *b;
	return 0;
}

/* A run of consecutive changed non-zero blocks, contiguous in the chunk buffer. */
static int emit_data(struct scan_worker *w, const char *p, uint64_t first_block,
		     uint32_t block_count, uint32_t bytes, const uint64_t *hashes)
{
	struct scan_ctx *c = w->ctx;
	struct scan_batch b = {
		.first_block = first_block,
		.block_count = block_count,
		.payload_bytes = bytes,
		.hashes = hashes,
	};
	int n;

	if (c->cfg->compress) {
		/* Ordered mode keeps every batch of the chunk in `out` until its turn;
		 * out holds a whole chunk, and a batch never outgrows its plaintext. */
		char *dst = (char *)w->out + w->out_used;

		n = codec_compress(p, bytes, dst, w->out_cap - w->out_used, &b.codec);
		if (n < 0)
			return n;
		b.data = dst;
		b.data_bytes = (uint32_t)n;
		if (c->cfg->ordered)
			w->out_used += (size_t)n;
	} else {
		/* Raw: the chunk buffer itself is the data; no copy. */
		b.codec = CODEC_RAW;
		b.data = p;
		b.data_bytes = bytes;
	}
	w->st.payload_bytes += bytes;
	return emit(w, &b);
}

static int emit_zero(struct scan_worker *w, uint64_t first_block, uint32_t block_count,
		     uint32_t bytes, const uint64_t *hashes)
{
	struct scan_batch b = {
		.first_block = first_block,
		.block_count = block_count,
		.zero = true,
		.payload_bytes = bytes,
		.hashes = hashes,
	};

	return emit(w, &b);
}

/*
 * Hashes and classifies one chunk. Runs are flushed when the kind changes, an
 * unchanged block breaks them, or a data run reaches batch_bytes. `hashes` is a
 * per-chunk scratch array so a batch can carry its blocks' hashes.
 */
static int process_chunk(struct scan_worker *w, const struct scan_chunk *ch, uint64_t *hashes)
{
	struct scan_ctx *c = w->ctx;
	const char *base = kfio_queue_buf(c->q, ch->buf_idx);
	uint32_t bb = c->block_bytes;
	uint32_t nblocks = (ch->bytes + bb - 1) / bb;
	uint64_t first = ch->offset / bb;
	/* current run: [run_start, i) of kind run_zero; run_start == UINT32_MAX if none */
	uint32_t run_start = UINT32_MAX, run_bytes = 0;
	bool run_zero = false;
	int rc = 0;

	ASSERT(ch->offset % bb == 0);
	for (uint32_t i = 0; i <= nblocks; i++) {
		bool changed = false, zero = false;
		uint32_t len = 0;

		if (i < nblocks) {
			const char *p = base + (size_t)i * bb;
			uint64_t h;

			len = ch->bytes - i * bb < bb ? ch->bytes - i * bb : bb;
			zero = delta_is_zero(p, len);
			h = zero && len == bb ? c->zero_hash : delta_hash(p, len);
			hashes[i] = h;
			w->st.blocks_scanned++;
			if (map_differs(c->map, first + i, h)) {
				changed = true;
				map_set(c->map, first + i, h);
				w->st.blocks_changed++;
				w->st.blocks_zero += zero;
			}
		}
		/* Close the open run if this block does not extend it. */
		if (run_start != UINT32_MAX &&
		    (!changed || zero != run_zero || (!zero && run_bytes + len > c->batch_bytes))) {
			uint32_t count = i - run_start;

			if (run_zero)
				rc = emit_zero(w, first + run_start, count, run_bytes,
					       hashes + run_start);
			else
				rc = emit_data(w, base + (size_t)run_start * bb, first + run_start,
					       count, run_bytes, hashes + run_start);
			if (rc)
				return rc;
			run_start = UINT32_MAX;
			run_bytes = 0;
		}
		if (changed) {
			if (run_start == UINT32_MAX) {
				run_start = i;
				run_zero = zero;
			}
			run_bytes += len;
		}
	}
	return 0;
}

/*
 * Ordered mode: waits for this chunk's turn, emits its batches, passes the turn.
 * A failure (rc, or the sink's) is recorded before the turn passes: the worker
 * of the next chunk must find the scan stopped, not call the sink again.
 */
static int emit_pending(struct scan_worker *w, const struct scan_chunk *ch, uint64_t seq, int rc)
{
	struct scan_ctx *c = w->ctx;

	pthread_mutex_lock(&c->lock);
	while (c->next_emit != seq && !c->error)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	for (uint32_t i = 0; i < w->pending_count && !rc && !c->error; i++)
		rc = emit_now(w, &w->pending[i]);
	w->pending_count = 0;
	w->out_used = 0;
	pthread_mutex_lock(&c->lock);
	if (rc)
		scan_chunk_failed(c, ch, rc);
	c->next_emit = seq + 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void *worker_main(void *arg)
{
	struct scan_worker *w = arg;
	struct scan_ctx *c = w->ctx;
	uint32_t max_blocks = c->chunk_bytes / c->block_bytes;
	uint32_t slots = kfio_queue_buf_count(c->q);
	uint64_t *hashes = calloc(max_blocks ? max_blocks : 1, sizeof(*hashes));

	pthread_mutex_lock(&c->lock);
	if (!hashes)
		set_error(c, -ENOMEM, "out of memory for a worker's hash scratch");
	for (;;) {
		struct scan_chunk ch;
		struct scan_chunk *slot;
		uint64_t seq;
		int rc;

		/* Chunks are taken in sequence, so in ordered mode the chunk whose turn
		 * it is to emit is always held by a running worker: no wait cycles. */
		for (;;) {
			slot = &c->ready[c->next_dispatch % slots];
			if (c->error || slot->valid || c->no_more_chunks)
				break;
			pthread_cond_wait(&c->cond, &c->lock);
		}
		if (c->error || !slot->valid)
			break;
		ch = *slot;
		slot->valid = false;
		seq = c->next_dispatch++;
		pthread_mutex_unlock(&c->lock);

		rc = process_chunk(w, &ch, hashes);
		if (c->cfg->ordered)
			rc = emit_pending(w, &ch, seq, rc);

		pthread_mutex_lock(&c->lock);
		c->free_bufs[c->free_count++] = ch.buf_idx;
		pthread_cond_broadcast(&c->cond);
		if (rc)
			scan_chunk_failed(c, &ch, rc);
	}
	pthread_mutex_unlock(&c->lock);
	free(hashes);
	return NULL;
}

/* Length to read at off for want bytes: want, or the tail rounded up to the
 * O_DIRECT alignment (the read then completes short at the end of the device). */
static uint32_t read_len(const struct scan_ctx *c, uint64_t off, uint32_t want)
{
	uint64_t left = c->dev->size_bytes - off;
	uint32_t a = c->dev->dio_offset_align > 1 ? c->dev->dio_offset_align : 1;

	if (left >= want)
		return want;
	return (uint32_t)((left + a - 1) / a * a);
}

/* The first marked page in [from, to), or to; a zero word is skipped whole. */
static uint64_t next_marked(const uint64_t *bm, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t w = bm[from / 64] >> (from % 64);

		if (w) {
			uint64_t p = from + (uint64_t)__builtin_ctzll(w);

			return p < to ? p : to;
		}
		from = (from / 64 + 1) * 64;
	}
	return to;
}

static bool block_marked(const struct scan_ctx *c, uint64_t b)
{
	uint64_t from = b * c->pages_per_block, to = from + c->pages_per_block;

	if (to > c->pages)
		to = c->pages;
	return next_marked(c->cfg->only_pages, from, to) < to;
}

/*
 * The next read, in ascending order: the next chunk of the device, or (with
 * only_pages) the next run of marked blocks, at most a chunk long. Returns false
 * when nothing is left. Called with c->lock held (it moves next_byte).
 */
static bool plan_read(struct scan_ctx *c, uint64_t *off, uint32_t *len)
{
	uint64_t size = c->dev->size_bytes, bb = c->block_bytes;
	uint64_t b, e, p, end;

	if (c->next_byte >= size)
		return false;
	if (!c->cfg->only_pages) {
		*off = c->next_byte;
		*len = read_len(c, *off, c->chunk_bytes);
		c->next_byte = size - *off > c->chunk_bytes ? *off + c->chunk_bytes : size;
		return true;
	}
	p = next_marked(c->cfg->only_pages, c->next_byte / bb * c->pages_per_block, c->pages);
	if (p >= c->pages) {
		c->next_byte = size;
		return false;
	}
	b = p / c->pages_per_block;
	e = b + 1;
	while (e < c->map->block_count && (e - b) * bb < c->chunk_bytes && block_marked(c, e))
		e++;
	end = e * bb < size ? e * bb : size;
	*off = b * bb;
	*len = read_len(c, *off, (uint32_t)(end - *off));
	c->next_byte = end;
	return true;
}

/* What the scan will read: the device, or every marked block. */
static uint64_t planned_bytes(const struct scan_ctx *c)
{
	uint64_t size = c->dev->size_bytes, total = 0;

	if (!c->cfg->only_pages)
		return size;
	for (uint64_t b = 0; b < c->map->block_count;) {
		uint64_t p = next_marked(c->cfg->only_pages, b * c->pages_per_block, c->pages);

		if (p >= c->pages)
			break;
		b = p / c->pages_per_block;
		total += (b + 1) * c->block_bytes <= size ? c->block_bytes
							  : size - b * c->block_bytes;
		b++;
	}
	return total;
}

/*
 * Token bucket for --max-read-rate: how many chunk reads may start now, given
 * `issued` bytes so far since the scan began (one chunk of burst). When none may
 * and nothing is in flight, sleeps until one may, counting it as throttled.
 */
static uint32_t read_budget(struct scan_ctx *c, uint64_t issued, uint32_t want,
			    struct scan_stats *st)
{
	double rate = (double)c->cfg->max_read_bytes_per_s;
	double allowed = (clock_mono_s() - c->t0) * rate + c->chunk_bytes;
	uint64_t n = allowed > (double)issued
			     ? (uint64_t)((allowed - (double)issued) / c->chunk_bytes)
			     : 0;

	if (n >= want)
		return want;
	if (n == 0 && !kfio_queue_inflight(c->q)) {
		double wait_s = ((double)issued + c->chunk_bytes - allowed) / rate;
		struct timespec ts = { .tv_sec = (time_t)wait_s,
				       .tv_nsec = (long)((wait_s - (double)(time_t)wait_s) * 1e9) };

		nanosleep(&ts, NULL);
		st->throttled_seconds += wait_s;
	}
	return (uint32_t)n;
}

/*
 * The engine loop: keep up to depth reads in flight, hand completions to
 * workers. Reads carry their issue sequence number as user_data: it is the
 * chunk's slot in `ready` and its turn in ordered mode, whatever its offset.
 */
static int engine_loop(struct scan_ctx *c, struct scan_stats *st)
{
	uint64_t size = c->dev->size_bytes, seq = 0, issued = 0, done_bytes = 0;
	uint32_t depth = kfio_queue_depth(c->q), slots = kfio_queue_buf_count(c->q);
	struct kfio_cqe cqes[64];
	bool planned_all = false;
	int rc = 0;

	while (!planned_all || kfio_queue_inflight(c->q) > 0) {
		struct {
			uint32_t buf;
			uint32_t len;
			uint64_t off;
		} grab[64];
		uint32_t ngrab = 0, want = depth - kfio_queue_inflight(c->q);

		if (want > ARRAY_SIZE(grab))
			want = ARRAY_SIZE(grab);
		if (c->cfg->max_read_bytes_per_s && !planned_all) {
			want = read_budget(c, issued, want, st);
			if (!want && !kfio_queue_inflight(c->q))
				continue; /* read_budget slept; try again */
		}
		pthread_mutex_lock(&c->lock);
		/* Sleep only when there is nothing to reap and nothing to read into. */
		while (!planned_all && !c->free_count && !c->error && !kfio_queue_inflight(c->q))
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->error) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		while (!planned_all && ngrab < want && c->free_count) {
			if (!plan_read(c, &grab[ngrab].off, &grab[ngrab].len)) {
				planned_all = true;
				break;
			}
			grab[ngrab++].buf = c->free_bufs[--c->free_count];
		}
		pthread_mutex_unlock(&c->lock);

		for (uint32_t i = 0; i < ngrab; i++, seq++) {
			rc = kfio_queue_read(c->q, 0, grab[i].buf, grab[i].off, grab[i].len, seq);
			if (rc) {
				pthread_mutex_lock(&c->lock);
				set_error(c, rc, "%s", kfio_queue_err(c->q));
				pthread_mutex_unlock(&c->lock);
				return rc;
			}
			issued += grab[i].len;
		}
		if (ngrab) {
			rc = kfio_queue_submit(c->q);
			if (rc < 0)
				goto fail_queue;
		}
		if (!kfio_queue_inflight(c->q))
			continue;

		int n = kfio_queue_reap(c->q, cqes, ARRAY_SIZE(cqes), 1);

		if (n < 0) {
			rc = n;
			goto fail_queue;
		}
		pthread_mutex_lock(&c->lock);
		for (int i = 0; i < n; i++) {
			const struct kfio_cqe *e = &cqes[i];
			uint64_t expect = size - e->offset < e->len ? size - e->offset : e->len;

			if (e->res < 0) {
				set_error(c, e->res,
					  "%s: read of %u bytes at offset %" PRIu64 " failed: %s",
					  c->dev->path, e->len, e->offset, strerror(-e->res));
				break;
			}
			if ((uint64_t)e->res < expect) {
				set_error(c, -EIO,
					  "%s: read at offset %" PRIu64 " returned %d of %" PRIu64
					  " bytes; did the device shrink?",
					  c->dev->path, e->offset, e->res, expect);
				break;
			}
			struct scan_chunk *slot = &c->ready[e->user_data % slots];

			ASSERT(!slot->valid);
			*slot = (struct scan_chunk){ .buf_idx = e->buf_idx,
						     .bytes = (uint32_t)expect,
						     .offset = e->offset,
						     .valid = true };
			done_bytes += expect;
			st->bytes_read += (uint64_t)e->res;
		}
		pthread_cond_broadcast(&c->cond);
		rc = c->error;
		pthread_mutex_unlock(&c->lock);
		if (rc)
			break;
		if (c->cfg->progress)
			c->cfg->progress(done_bytes, st->bytes_planned, c->cfg->progress_ctx);
	}
	return rc;

fail_queue:
	pthread_mutex_lock(&c->lock);
	set_error(c, rc, "%s", kfio_queue_err(c->q));
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Drains completions after an error so no read still targets a buffer we free. */
static void drain(struct scan_ctx *c)
{
	struct kfio_cqe cqes[64];

	while (kfio_queue_inflight(c->q) > 0)
		if (kfio_queue_reap(c->q, cqes, ARRAY_SIZE(cqes), 1) < 0)
			break;
}

static uint32_t online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > SCAN_WORKERS_MAX ? SCAN_WORKERS_MAX : (uint32_t)n;
}

int scan_run(struct kfio_dev *dev, struct map *m, const struct scan_config *cfg,
	     const struct scan_sink *sink, struct scan_stats *stats, char *err, size_t err_len)
{
	struct scan_ctx *c;
	struct kfio_queue_config qc;
	struct kfio_dev *devs[1] = { dev };
	double t0 = clock_mono_s(), cpu0 = clock_cpu_s();
	uint32_t bufs, depth;
	void *zero_block;
	int rc;

	memset(stats, 0, sizeof(*stats));
	if (m->block_bytes < SCAN_BLOCK_BYTES_MIN || m->block_bytes > SCAN_BLOCK_BYTES_MAX ||
	    (m->block_bytes & (m->block_bytes - 1))) {
		snprintf(err, err_len, "block size %u is not a power of two from %u to %u",
			 m->block_bytes, SCAN_BLOCK_BYTES_MIN, SCAN_BLOCK_BYTES_MAX);
		return -EINVAL;
	}
	if (m->size_bytes != dev->size_bytes) {
		snprintf(err, err_len,
			 "%s: device is %" PRIu64 " bytes but the map is for %" PRIu64, dev->path,
			 dev->size_bytes, m->size_bytes);
		return -EINVAL;
	}
	if (cfg->only_pages && (cfg->page_bytes == 0 || (cfg->page_bytes & (cfg->page_bytes - 1)) ||
				cfg->page_bytes > m->block_bytes)) {
		snprintf(err, err_len, "page size %u is not a power of two up to the block size %u",
			 cfg->page_bytes, m->block_bytes);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (cfg->only_pages) {
		c->pages = (dev->size_bytes + cfg->page_bytes - 1) / cfg->page_bytes;
		c->pages_per_block = m->block_bytes / cfg->page_bytes;
	}
	c->dev = dev;
	c->map = m;
	c->cfg = cfg;
	c->sink = sink;
	c->block_bytes = m->block_bytes;
	/* Requests are whole blocks, so a block never straddles two chunks. */
	c->chunk_bytes = cfg->read_bytes   ? cfg->read_bytes
			 : cfg->only_pages ? SCAN_TRACKED_READ_BYTES_DEFAULT
					   : SCAN_READ_BYTES_DEFAULT;
	c->chunk_bytes = (c->chunk_bytes + c->block_bytes - 1) / c->block_bytes * c->block_bytes;
	c->batch_bytes = cfg->batch_bytes ? cfg->batch_bytes : c->chunk_bytes;
	if (c->batch_bytes > SCAN_BATCH_BYTES_MAX)
		c->batch_bytes = SCAN_BATCH_BYTES_MAX;
	if (c->batch_bytes < c->block_bytes)
		c->batch_bytes = c->block_bytes;
	stats->bytes_planned = planned_bytes(c);
	c->worker_count = cfg->workers ? cfg->workers : online_cpus();
	if (c->worker_count > SCAN_WORKERS_MAX)
		c->worker_count = SCAN_WORKERS_MAX;
	/* Nothing marked: no queue, buffers or threads (setting them up is most of
	 * a tracked no-change epoch: registering buffers zeroes them). */
	if (cfg->only_pages && stats->bytes_planned == 0) {
		stats->seconds = clock_mono_s() - t0;
		stats->cpu_seconds = clock_cpu_s() - cpu0;
		rc = 0;
		goto free_ctx;
	}

	zero_block = calloc(1, c->block_bytes);
	if (!zero_block) {
		rc = -ENOMEM;
		goto free_ctx;
	}
	c->zero_hash = delta_hash(zero_block, c->block_bytes);
	c->t0 = clock_mono_s();
	free(zero_block);

	/* Enough buffers to keep the queue full while every worker holds one and
	 * one more chunk per worker waits in `ready`. */
	depth = cfg->queue_depth  ? cfg->queue_depth
		: cfg->only_pages ? SCAN_TRACKED_QUEUE_DEPTH_DEFAULT
				  : SCAN_QUEUE_DEPTH_DEFAULT;
	bufs = depth + 2 * c->worker_count;
	/* A tracked scan makes at most one read per marked block: no more
	 * requests or buffers than that. */
	if (cfg->only_pages) {
		uint64_t reads = (stats->bytes_planned + c->block_bytes - 1) / c->block_bytes;

		if (depth > reads)
			depth = (uint32_t)reads;
		if (bufs > reads)
			bufs = (uint32_t)reads;
	}
	qc = (struct kfio_queue_config){
		.backend = cfg->backend,
		.depth = depth,
		.buf_count = bufs,
		.buf_bytes = c->chunk_bytes,
	};
	rc = kfio_queue_new(&c->q, &qc, devs, 1, err, err_len);
	if (rc)
		goto free_ctx;
	c->ready = calloc(bufs, sizeof(*c->ready));
	c->free_bufs = calloc(bufs, sizeof(*c->free_bufs));
	if (!c->ready || !c->free_bufs) {
		rc = -ENOMEM;
		goto free_queue;
	}
	for (uint32_t i = 0; i < bufs; i++)
		c->free_bufs[c->free_count++] = bufs - 1 - i;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);

	for (uint32_t i = 0; i < c->worker_count; i++) {
		struct scan_worker *w = &c->workers[i];

		w->ctx = c;
		w->out_cap = codec_bound(cfg->ordered ? c->chunk_bytes : c->batch_bytes);
		w->out = malloc(w->out_cap);
		w->pending = cfg->ordered
				     ? calloc(c->chunk_bytes / c->block_bytes, sizeof(*w->pending))
				     : NULL;
		if (!w->out || (cfg->ordered && !w->pending)) {
			rc = -ENOMEM;
			snprintf(err, err_len, "out of memory for compression buffers");
			goto stop_workers;
		}
		rc = -pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			snprintf(err, err_len, "cannot start worker thread: %s", strerror(-rc));
			goto stop_workers;
		}
		w->started = true;
	}

	rc = engine_loop(c, stats);

stop_workers:
	pthread_mutex_lock(&c->lock);
	if (rc)
		set_error(c, rc, "%s", err && *err ? err : "scan aborted");
	c->no_more_chunks = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (uint32_t i = 0; i < c->worker_count; i++) {
		struct scan_worker *w = &c->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		free(w->out);
		free(w->pending);
		stats->blocks_scanned += w->st.blocks_scanned;
		stats->blocks_changed += w->st.blocks_changed;
		stats->blocks_zero += w->st.blocks_zero;
		stats->payload_bytes += w->st.payload_bytes;
		stats->compressed_bytes += w->st.compressed_bytes;
		stats->batches_lz4 += w->st.batches_lz4;
		stats->batches_raw += w->st.batches_raw;
		stats->batches_zero += w->st.batches_zero;
	}
	if (!rc && c->error)
		rc = c->error;
	if (rc && c->err_msg[0])
		snprintf(err, err_len, "%s", c->err_msg);
	drain(c);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	stats->workers = c->worker_count;
	stats->seconds = clock_mono_s() - t0;
	stats->cpu_seconds = clock_cpu_s() - cpu0;
free_queue:
	free(c->ready);
	free(c->free_bufs);
	kfio_queue_free(c->q);
free_ctx:
	free(c);
	return rc;
}
