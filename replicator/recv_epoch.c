// SPDX-License-Identifier: Apache-2.0
/*
 * recv_epoch — one epoch on the standby side (see recv_epoch.h for the frame
 * loop and its two sinks, and receiver.c for the invariants they keep).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "pvrepl_assert.h"
#include "recv_epoch.h"

/* ------------------------------------------------------------ replies */

/* After an ERROR, what the sender still streams is drained this long at most
 * (it stops at the ERROR it reads between its writes), so the ERROR reaches it
 * instead of a reset. */
#define RECV_LINGER_MS 2000u

int recv_epoch_reply(struct recv_peer *p, const struct recv_verdict *vd)
{
	int n;

	ASSERT(p != NULL);
	ASSERT(vd != NULL);
	if (vd->kind == RECV_VERDICT_ERROR) {
		struct proto_error e = { .code = vd->code };

		proto_message_format(e.message, "%s", vd->message);
		log_msg(LOG_WARN, NULL, p->addr, 0, "%s: %s", proto_error_name(vd->code),
			vd->message);
		n = proto_encode_error(&e, p->c.tx, PROTO_FRAME_BYTES_MAX);
		if (n > 0 && conn_send(&p->c, p->c.tx, (size_t)n) == 0)
			conn_linger(&p->c, RECV_LINGER_MS); /* the sender may be mid-stream */
		return -EPROTO;
	}
	if (vd->kind == RECV_VERDICT_REFUSE) {
		struct proto_refuse f = {
			.reason = vd->code,
			.version_min = PROTO_VERSION_MIN,
			.version_max = PROTO_VERSION_MAX,
		};

		proto_message_format(f.message, "%s", vd->message);
		log_msg(LOG_WARN, NULL, p->addr, 0, "cert=%s refused (%s): %s", p->name,
			proto_refuse_name(vd->code), vd->message);
		n = proto_encode_refuse(&f, p->c.tx, PROTO_FRAME_BYTES_MAX);
		if (n > 0)
			conn_send(&p->c, p->c.tx, (size_t)n);
		return -EACCES;
	}
	return 0;
}

int recv_epoch_welcome(struct recv_peer *p, const struct standby *v, const struct proto_hello *h)
{
	struct proto_welcome w = {
		.version = PROTO_VERSION_MAX,
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.capabilities = h->capabilities &
				(PROTO_CAP_LZ4 | PROTO_CAP_RESUME | PROTO_CAP_CAPTURE_TIME |
				 PROTO_CAP_PAGES | PROTO_CAP_ROUNDS | PROTO_CAP_CAPTURE_KIND),
	};
	int n;

	ASSERT(p != NULL);
	ASSERT(v != NULL);
	if (v->vs.kind == VSTATE_CONSISTENT && v->have_map) {
		w.state = PROTO_STATE_CONSISTENT;
		w.generation = v->map.generation;
		w.epoch = v->map.epoch;
		w.merkle_root = map_merkle_root(&v->map);
		memcpy(w.volume_id, v->map.volume_id, 16);
	} else if (v->vs.kind == VSTATE_SYNCING) {
		w.state = PROTO_STATE_SYNCING;
		w.generation = v->vs.generation;
		w.epoch = v->have_map ? v->map.epoch : 0;
		if (!memcmp(v->vs.volume_id, h->volume_id, 16) && v->vs.sync_cursor &&
		    v->vs.sync_epoch > w.epoch) {
			w.resume_epoch = v->vs.sync_epoch;
			w.resume_block = v->vs.sync_cursor;
		}
		memcpy(w.volume_id, v->vs.volume_id, 16);
	} else {
		w.state = PROTO_STATE_EMPTY;
		memcpy(w.volume_id, h->volume_id, 16);
	}
	n = proto_encode_welcome(&w, p->c.tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0)
		return n;
	return conn_send(&p->c, p->c.tx, (size_t)n);
}

/* root: the map's root, already computed and checked against the sender's in
 * recv_check_end (the tree covers the whole volume: build it once). */
static int send_ack(struct recv_peer *p, const struct standby *v, uint64_t epoch, uint64_t root)
{
	struct proto_epoch_ack a = {
		.epoch = epoch,
		.generation = v->map.generation,
		.merkle_root = root,
	};
	int n = proto_encode_epoch_ack(&a, p->c.tx, PROTO_FRAME_BYTES_MAX);

	return n < 0 ? n : conn_send(&p->c, p->c.tx, (size_t)n);
}

/* ------------------------------------------------------------ the epoch */

/*
 * PAGES blocks being completed: each waits for its read of the standby's
 * block (into the registered buffer of the same index) with the pages to lay
 * over it. Up to RX_PAGES_INFLIGHT reads overlap, within RX_PAGES_MEM_BYTES of
 * buffers and copies: a scattered epoch is thousands of them, and one at a
 * time each would cost the standby's read latency.
 */
#define RX_PAGES_INFLIGHT  32u
#define RX_PAGES_MEM_BYTES (8u << 20)

struct rx_page_slot {
	uint64_t block;
	uint64_t hash;
	uint32_t page_count;
	uint32_t *index; /* the pages' indices in the block, in the order of pages */
	uint8_t *pages;	 /* their bytes (the tail block's last page may be short) */
};

/* One epoch in flight. */
struct rx {
	struct recv_peer *p;
	struct standby *v;
	const struct proto_hello *h;
	const struct proto_epoch_begin *eb;
	struct recv_runs runs;
	struct recv_verdict vd; /* what to tell the sender when the epoch fails */
	/* After the final ROUND: EPOCH_BEGIN with the capture instant it named
	 * (x->eb points here then: the commit records that instant). */
	struct proto_epoch_begin eb_final;
	bool begun; /* the sink holds something its abort must undo */
	/* The sync sink's writes: up to STANDBY_WRITE_BUFS in flight. */
	uint32_t next_buf;
	uint32_t inflight;
	uint64_t bytes_since_cursor;
	bool zero_out_unsupported; /* the standby refused a zero-out: write zeros */
	/* PAGES: set up at the first PAGES frame (rx_pages_setup). */
	struct kfio_queue *pq; /* reads of the standby, one buffer per slot */
	struct rx_page_slot *ps;
	uint32_t ps_count;
	uint32_t *ps_free; /* free slots, a stack */
	uint32_t ps_free_count;
	bool pq_broken; /* reaping failed: what is in flight cannot be waited for */
	/* PAGES blocks of a captured epoch that did not make the sender's hash,
	 * journaled as completed (see rx_pages_complete) */
	uint64_t pages_mismatched;
};

/*
 * Where an epoch's blocks go. Each operation returns 0 or -errno, and on a
 * failure the sender should hear about it fills x->vd.
 */
struct rx_sink {
	/* sync: the map and state make the epoch durable, so they come before the
	 * ack; journal: the journal commit does, and they follow the apply. */
	bool commit_before_ack;
	/* The log line of a committed epoch: "<done>: N blocks<done_note>". */
	const char *done;
	const char *done_note;
	int (*begin)(struct rx *x); /* on failure, abort runs if it set x->begun */
	/* The buffer a DATA frame is decoded into (buf: its registered index). */
	int (*data_dst)(struct rx *x, uint32_t *buf, void **dst);
	int (*data)(struct rx *x, const struct proto_data *d, uint32_t buf, const void *dst);
	int (*zero)(struct rx *x, uint64_t first, uint32_t count);
	/* Some pages of one block, verified and decompressed into page_data; NULL
	 * where PAGES is not accepted (a full sync sends whole blocks). Returns 0
	 * and the block's hash to record, or -errno with x->vd. */
	int (*pages)(struct rx *x, const struct proto_pages *pg, const uint8_t *page_data);
	/* ROUND: what came before is in, in order, before anything after it (NULL
	 * where rounds are not accepted: a full sync). */
	int (*round)(struct rx *x);
	int (*frame_done)(struct rx *x); /* may be NULL */
	/* At EPOCH_END: seal before the checks, durable after them (each may be
	 * NULL). sync: every write reaped and the device flushed, then the checks;
	 * journal: the checks, then the journal commit. */
	int (*seal)(struct rx *x);
	int (*durable)(struct rx *x);
	int (*apply)(struct rx *x); /* after the ack; NULL when nothing is left */
	void (*lost)(struct rx *x); /* the connection went: says so in the log */
	void (*abort)(struct rx *x);
};

/* The sticky failure, told to the sender. */
static int rx_io_verdict(struct rx *x)
{
	return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_IO, "volume %s: %s",
				x->v->cfg->name, x->v->fail_msg);
}

/* ------------------------------------------------------- the sync sink */

static int sync_reap(struct rx *x, unsigned min_wait);

/* A sync's I/O failure: the writes still in flight are reaped first (a later
 * failure among them is the one the sender hears), then the verdict. */
static int sync_io_verdict(struct rx *x)
{
	sync_reap(x, x->inflight);
	return rx_io_verdict(x);
}

static int sync_reap(struct rx *x, unsigned min_wait)
{
	struct kfio_cqe cqes[STANDBY_WRITE_BUFS];
	struct standby *v = x->v;
	int n;

	while (min_wait > 0 || x->inflight) {
		n = kfio_queue_reap(v->q, cqes, STANDBY_WRITE_BUFS, min_wait ? 1 : 0);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		for (int i = 0; i < n; i++) {
			if (cqes[i].res < 0 || (uint32_t)cqes[i].res != cqes[i].len) {
				standby_fail(
					v, "%s: standby write at offset %" PRIu64 " failed: %s",
					v->cfg->device, cqes[i].offset,
					cqes[i].res < 0 ? strerror(-cqes[i].res) : "short write");
				return -EIO;
			}
		}
		x->inflight -= (uint32_t)n;
		min_wait = min_wait > (unsigned)n ? min_wait - (unsigned)n : 0;
		if (!min_wait)
			break;
	}
	return 0;
}

/* Waits for every write, then flushes the standby (the writes are durable). */
static int sync_flush(struct rx *x)
{
	struct standby *v = x->v;
	struct kfio_cqe cqe;
	int rc;

	rc = sync_reap(x, x->inflight);
	if (rc)
		return sync_io_verdict(x);
	rc = kfio_queue_flush(v->q, 0, 0);
	if (!rc)
		rc = kfio_queue_submit(v->q);
	if (rc >= 0)
		rc = kfio_queue_reap(v->q, &cqe, 1, 1);
	if (rc < 0 || cqe.res < 0) {
		standby_fail(v, "%s: flush failed: %s", v->cfg->device,
			     strerror(rc < 0 ? -rc : -cqe.res));
		return sync_io_verdict(x);
	}
	return 0;
}

/* Gets a free registered buffer for the next write (reaping one if all are busy). */
static int sync_buf(struct rx *x, uint32_t *idx)
{
	if (x->inflight >= STANDBY_WRITE_BUFS && sync_reap(x, 1))
		return sync_io_verdict(x);
	/* Buffers are used round-robin and writes complete in any order, so wait
	 * until the one we are about to reuse is free: drain fully when wrapping. */
	if (x->next_buf == STANDBY_WRITE_BUFS) {
		if (sync_reap(x, x->inflight))
			return sync_io_verdict(x);
		x->next_buf = 0;
	}
	*idx = x->next_buf++;
	return 0;
}

/*
 * The O_DIRECT length of bytes at block first of the standby: rounded up to
 * the device's alignment (the volume's short tail is aligned on devices), but
 * never past the end of a file, whose size need not be.
 */
static uint32_t standby_io_len(const struct standby *v, uint64_t first, uint32_t bytes)
{
	uint32_t a = v->dev.dio_offset_align > 1 ? v->dev.dio_offset_align : 1;
	uint32_t len = (bytes + a - 1) / a * a;

	return first * v->map.block_bytes + len > v->dev.size_bytes ? bytes : len;
}

static int sync_write(struct rx *x, uint32_t buf, uint64_t first, uint32_t bytes)
{
	struct standby *v = x->v;
	uint32_t len = standby_io_len(v, first, bytes);
	int rc;

	rc = kfio_queue_write(v->q, 0, buf, first * v->map.block_bytes, len, first);
	if (!rc)
		rc = kfio_queue_submit(v->q);
	if (rc < 0) {
		standby_fail(v, "%s", kfio_queue_err(v->q));
		return sync_io_verdict(x);
	}
	x->inflight++;
	x->bytes_since_cursor += bytes;
	return 0;
}

static int sync_begin(struct rx *x)
{
	const struct proto_epoch_begin *eb = x->eb;
	struct standby *v = x->v;
	char err[STANDBY_ERR_MAX];
	int r;

	x->runs.next_block = eb->resume_block;
	if (eb->flags & PROTO_EPOCH_RESUMED) {
		r = recv_check_resume(v, x->h, eb, &x->vd);
		if (r)
			return r;
		r = standby_sync_resume(v, x->h, err, sizeof(err));
		if (r)
			return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_IO,
						"volume %s: rehashing the standby failed: %s",
						v->cfg->name, err);
		log_msg(LOG_INFO, v->cfg->name, x->p->addr, eb->epoch,
			"resuming the sync at block %" PRIu64, eb->resume_block);
		return 0;
	}
	r = standby_sync_begin(v, x->h, eb, err, sizeof(err));
	if (r)
		return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR,
					v->failed ? PROTO_ERR_IO : PROTO_ERR_INTERNAL,
					"volume %s: %s", v->cfg->name, err);
	log_msg(LOG_INFO, v->cfg->name, x->p->addr, eb->epoch, "full sync started");
	return 0;
}

static int sync_data_dst(struct rx *x, uint32_t *buf, void **dst)
{
	int r = sync_buf(x, buf);

	if (!r)
		*dst = kfio_queue_buf(x->v->q, *buf);
	return r;
}

static int sync_data(struct rx *x, const struct proto_data *d, uint32_t buf, const void *dst)
{
	(void)dst; /* already in the registered buffer buf */
	return sync_write(x, buf, d->first_block, d->plaintext_bytes);
}

/*
 * A zero run: zeroed by the device where it can (BLKZEROOUT, which loop turns
 * into a hole or zero range of its file and NVMe into write-zeroes or a
 * deallocate; fallocate on a file), else written as zeros, a registered buffer
 * at a time. The zero-out is synchronous and covers blocks no write in flight
 * touches (each block comes once per sync); the next sync_flush makes it
 * durable with them. The power-loss simulator sees only its queue, so its
 * backend always writes.
 */
static int sync_zero(struct rx *x, uint64_t first, uint32_t count)
{
	struct standby *v = x->v;
	uint64_t end = first + count;

	if (v->rcfg->backend == KFIO_BACKEND_URING && !x->zero_out_unsupported) {
		uint64_t bytes = 0;
		int rc;

		for (uint64_t b = first; b < end; b++)
			bytes += standby_block_len(v, b);
		rc = kfio_dev_zero_out(&v->dev, first * v->map.block_bytes, bytes);
		if (!rc) {
			x->bytes_since_cursor += bytes;
			return 0;
		}
		if (rc != -EOPNOTSUPP && rc != -EINVAL) {
			standby_fail(v, "%s", v->dev.err_msg);
			return sync_io_verdict(x);
		}
		x->zero_out_unsupported = true; /* write zeros from now on */
	}
	for (uint64_t b = first; b < end;) {
		uint32_t n = PROTO_DATA_PLAINTEXT_MAX / v->map.block_bytes, buf = 0, bytes = 0;
		int r;

		if (n > end - b)
			n = (uint32_t)(end - b);
		r = sync_buf(x, &buf);
		if (r)
			return r;
		for (uint32_t i = 0; i < n; i++)
			bytes += standby_block_len(v, b + i);
		memset(kfio_queue_buf(v->q, buf), 0, bytes);
		r = sync_write(x, buf, b, bytes);
		if (r)
			return r;
		b += n;
	}
	return 0;
}

/* The cursor: everything below it is durable and need not be resent. It
 * moves in the first round only: a resumed sync reads again from it, and what
 * later rounds rewrite stays marked at the sender for the epoch after. */
static int sync_frame_done(struct rx *x)
{
	int r;

	if (x->bytes_since_cursor < PROTO_CURSOR_SYNC_BYTES || x->runs.round)
		return 0;
	r = sync_flush(x);
	if (r)
		return r;
	if (standby_sync_cursor(x->v, x->runs.next_block))
		return sync_io_verdict(x);
	x->bytes_since_cursor = 0;
	return 0;
}

/* ROUND: every write of the round before is reaped (and flushed) before a
 * block of the next may be written again. */
static int sync_round(struct rx *x)
{
	return sync_flush(x);
}

static void sync_lost(struct rx *x)
{
	log_msg(LOG_WARN, x->v->cfg->name, x->p->addr, x->eb->epoch,
		"sync interrupted: %s (cursor %" PRIu64 ")", x->p->c.err, x->v->vs.sync_cursor);
}

/* Keep what is durable (the cursor); the in-memory map is rebuilt on resume. */
static void sync_abort(struct rx *x)
{
	sync_reap(x, x->inflight);
}

static const struct rx_sink sync_sink = {
	.commit_before_ack = true,
	.done = "full sync complete",
	.done_note = ", standby consistent",
	.begin = sync_begin,
	.data_dst = sync_data_dst,
	.data = sync_data,
	.zero = sync_zero,
	.round = sync_round,
	.frame_done = sync_frame_done,
	.seal = sync_flush,
	.durable = NULL,
	.apply = NULL,
	.lost = sync_lost,
	.abort = sync_abort,
};

/* ---------------------------------------------------- the journal sink */

/* A journal failure: a full journal and a damaged record are the epoch's
 * fault; anything else is an I/O error, sticky. */
static int journal_verdict(struct rx *x, int r)
{
	struct standby *v = x->v;

	if (r == -ENOSPC) {
		struct journal_status js;

		/* The journal's own size (a setting changed since it was made
		 * takes effect only when it is resized at a start). */
		journal_status(v->j, &js);
		return recv_verdict_set(
			&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_JOURNAL_FULL,
			"volume %s: epoch %" PRIu64
			" does not fit the receiver's journal of %" PRIu64 " bytes (%" PRIu64
			" written, %" PRIu64
			" more needed at least); raise journal_size and restart the receiver, which resizes it",
			v->cfg->name, x->eb->epoch, js.journal_bytes, js.full_written,
			js.full_needed);
	}
	if (r == -EBADMSG)
		return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
					"volume %s: %s", v->cfg->name, journal_err(v->j));
	standby_fail(v, "journal: %s", journal_err(v->j));
	return rx_io_verdict(x);
}

static int rx_pages_drain(struct rx *x, bool keep);

static void journal_sink_abort(struct rx *x)
{
	struct standby *v = x->v;

	rx_pages_drain(x, false);
	if (v->j && !v->failed)
		journal_abort(v->j);
	standby_reload_map(v);
}

static int journal_sink_begin(struct rx *x)
{
	struct standby *v = x->v;
	char err[STANDBY_ERR_MAX];
	int r;

	r = recv_check_delta(v, x->eb, &x->vd);
	if (r)
		return r;
	r = standby_open_journal(v, err, sizeof(err));
	if (r) {
		/* No room for the journal (nothing written: it left no partial
		 * file): the next epoch tries again once there is. Anything else
		 * is sticky. */
		if (r != -ENOSPC && r != -EDQUOT)
			standby_fail(v, "%s", err);
		else
			standby_record(v, x->p->addr, -1, 0, 0, err);
		return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_IO, "volume %s: %s",
					v->cfg->name, err);
	}
	x->begun = true;
	r = journal_begin(v->j, x->eb->epoch, x->eb->generation, x->eb->base_epoch);
	return r ? journal_verdict(x, r) : 0;
}

static int journal_sink_data_dst(struct rx *x, uint32_t *buf, void **dst)
{
	*buf = 0;
	*dst = x->p->plain;
	return 0;
}

static int journal_sink_data(struct rx *x, const struct proto_data *d, uint32_t buf,
			     const void *dst)
{
	int r;

	(void)buf;
	r = journal_add_data(x->v->j, d->first_block, d->block_count, dst, d->plaintext_bytes,
			     x->p->hashes);
	return r ? journal_verdict(x, r) : 0;
}

static int journal_sink_zero(struct rx *x, uint64_t first, uint32_t count)
{
	int r = journal_add_zero(x->v->j, first, count);

	return r ? journal_verdict(x, r) : 0;
}

/* ----------------------------------------------- PAGES, read and completed */

static int rx_pages_setup(struct rx *x)
{
	struct standby *v = x->v;
	uint32_t bb = v->map.block_bytes, ppb = (bb + PROTO_PAGE_BYTES - 1) / PROTO_PAGE_BYTES;
	uint32_t n = RX_PAGES_MEM_BYTES / (2 * bb);
	struct kfio_dev *devs[1] = { &v->dev };
	char err[STANDBY_ERR_MAX];
	int rc;

	if (n > RX_PAGES_INFLIGHT)
		n = RX_PAGES_INFLIGHT;
	if (n == 0)
		n = 1;
	struct kfio_queue_config qc = {
		.backend = v->rcfg->backend,
		.depth = n,
		.buf_count = n,
		.buf_bytes = (bb + KFIO_MEM_ALIGN - 1) / KFIO_MEM_ALIGN * KFIO_MEM_ALIGN,
	};

	x->ps = calloc(n, sizeof(*x->ps));
	x->ps_free = calloc(n, sizeof(*x->ps_free));
	if (!x->ps || !x->ps_free)
		goto oom;
	x->ps_count = n;
	for (uint32_t i = 0; i < n; i++) {
		x->ps[i].index = calloc(ppb, sizeof(*x->ps[i].index));
		x->ps[i].pages = malloc(bb);
		if (!x->ps[i].index || !x->ps[i].pages)
			goto oom;
		x->ps_free[x->ps_free_count++] = n - 1 - i;
	}
	rc = kfio_queue_new(&x->pq, &qc, devs, 1, err, sizeof(err));
	if (rc) {
		standby_fail(v, "%s: reading blocks to complete their pages: %s", v->cfg->device,
			     err);
		return rx_io_verdict(x);
	}
	return 0;
oom:
	return recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_INTERNAL,
				"volume %s: out of memory for %u blocks being completed",
				v->cfg->name, n);
}

static void rx_pages_free(struct rx *x)
{
	if (x->pq)
		kfio_queue_free(x->pq);
	for (uint32_t i = 0; x->ps && i < x->ps_count; i++) {
		free(x->ps[i].index);
		free(x->ps[i].pages);
	}
	free(x->ps);
	free(x->ps_free);
}

/*
 * A block whose read finished: the block as the standby holds it (the last
 * committed epoch, applied: the volume is ours alone and the previous epoch's
 * apply finished before it was released), the pages laid over it, and the
 * whole journaled as one DATA block under the sender's block hash, which
 * journal_add_data checks before it writes anything. A mismatch means the
 * source changed outside the pages sent: a write racing the read (its data
 * read before its completion marked it), or one the tracker missed.
 * PROTO_ERR_PAGES then, and the sender's next attempt sends whole blocks;
 * except in a captured epoch (rounds): every page written after round 1's
 * harvest is read again, whole, in a later round, so the block is journaled as
 * completed, under its own hash, and EPOCH_END's Merkle check says whether a
 * later round replaced it (else the epoch fails there, PROTO_ERR_PAGES).
 */
static int rx_pages_complete(struct rx *x, const struct kfio_cqe *c)
{
	struct standby *v = x->v;
	struct rx_page_slot *s = &x->ps[c->user_data];
	uint8_t *buf = kfio_queue_buf(x->pq, (uint32_t)c->user_data);
	uint32_t len = standby_block_len(v, s->block), off = 0;
	int r;

	if (c->res < 0 || (uint32_t)c->res < len) {
		standby_fail(
			v, "%s: standby read of block %" PRIu64 " at offset %" PRIu64 " failed: %s",
			v->cfg->device, s->block, c->offset,
			c->res < 0 ? strerror(-c->res) : "short read");
		return rx_io_verdict(x);
	}
	for (uint32_t i = 0; i < s->page_count; i++) {
		uint32_t at = s->index[i] * PROTO_PAGE_BYTES;
		uint32_t n = len - at < PROTO_PAGE_BYTES ? len - at : PROTO_PAGE_BYTES;

		memcpy(buf + at, s->pages + off, n);
		off += n;
	}
	if (x->eb->flags & PROTO_EPOCH_CRASH_CONSISTENT) {
		uint64_t got = delta_hash(buf, len);

		if (got != s->hash) {
			s->hash = got;
			x->pages_mismatched++;
		}
	}
	r = journal_add_data(v->j, s->block, 1, buf, len, &s->hash);
	if (!r)
		map_set(&v->map, s->block, s->hash);
	if (r == -EBADMSG)
		return recv_verdict_set(
			&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_PAGES,
			"volume %s: block %" PRIu64
			": the %u pages sent and the standby's other pages do not make the source's block (the source changed outside the pages its write tracker marked); epoch aborted, nothing applied",
			v->cfg->name, s->block, s->page_count);
	return r ? journal_verdict(x, r) : 0;
}

/*
 * Reaps finished reads (waiting for min_wait of them) and completes their
 * blocks; with keep false (an aborted epoch) only frees their slots. After the
 * first failure the rest are freed, not completed: the epoch is lost.
 */
static int rx_pages_reap(struct rx *x, unsigned min_wait, bool keep)
{
	struct kfio_cqe cqes[RX_PAGES_INFLIGHT];
	int n, rc = 0;

	n = kfio_queue_reap(x->pq, cqes, ARRAY_SIZE(cqes), min_wait);
	if (n < 0) {
		x->pq_broken = true;
		standby_fail(x->v, "%s: %s", x->v->cfg->device, kfio_queue_err(x->pq));
		return rx_io_verdict(x);
	}
	for (int i = 0; i < n; i++) {
		ASSERT(cqes[i].user_data < x->ps_count);
		if (keep && !rc)
			rc = rx_pages_complete(x, &cqes[i]);
		x->ps_free[x->ps_free_count++] = (uint32_t)cqes[i].user_data;
	}
	return rc;
}

/* Every read finished, completed (keep) or dropped. */
static int rx_pages_drain(struct rx *x, bool keep)
{
	int rc = 0;

	while (x->pq && !x->pq_broken && kfio_queue_inflight(x->pq)) {
		int r = rx_pages_reap(x, 1, keep && !rc);

		if (r && !rc)
			rc = r;
	}
	return rc;
}

/* PAGES: the pages kept and the standby's block read; completed when it is in. */
static int journal_sink_pages(struct rx *x, const struct proto_pages *pg, const uint8_t *page_data)
{
	struct standby *v = x->v;
	uint32_t len = standby_block_len(v, pg->block), idx;
	struct rx_page_slot *s;
	int r;

	if (!x->pq) {
		r = rx_pages_setup(x);
		if (r)
			return r;
	}
	while (!x->ps_free_count) {
		r = rx_pages_reap(x, 1, true);
		if (r)
			return r;
	}
	idx = x->ps_free[--x->ps_free_count];
	s = &x->ps[idx];
	s->block = pg->block;
	s->hash = pg->block_hash;
	s->page_count = pg->page_count;
	for (uint32_t i = 0; i < pg->page_count; i++)
		s->index[i] = proto_pages_index(pg, i);
	memcpy(s->pages, page_data, pg->plaintext_bytes); /* recv_check_pages: <= len */
	r = kfio_queue_read(x->pq, 0, idx, pg->block * v->map.block_bytes,
			    standby_io_len(v, pg->block, len), idx);
	if (!r)
		r = kfio_queue_submit(x->pq);
	if (r < 0) {
		x->ps_free[x->ps_free_count++] = idx;
		standby_fail(v, "%s", kfio_queue_err(x->pq));
		return rx_io_verdict(x);
	}
	/* Complete whatever is already in, without waiting. */
	return rx_pages_reap(x, 0, true);
}

/*
 * ROUND: the blocks of the round before are all journaled (the PAGES reads
 * completed), then a barrier: the apply writes nothing of the next round
 * before every write of this one completed, so a block repeated in it wins.
 */
static int journal_sink_round(struct rx *x)
{
	int r = rx_pages_drain(x, true);

	if (!r) {
		r = journal_add_barrier(x->v->j);
		if (r)
			r = journal_verdict(x, r);
	}
	return r;
}

/* EPOCH_END: every block of the epoch is in the journal before the checks. */
static int journal_sink_seal(struct rx *x)
{
	return rx_pages_drain(x, true);
}

/* Durable once journal_commit returns: only then the ack. */
static int journal_sink_durable(struct rx *x)
{
	int r = journal_commit(x->v->j);

	return r ? journal_verdict(x, r) : 0;
}

static int journal_sink_apply(struct rx *x)
{
	struct standby *v = x->v;

	if (journal_apply(v->j, NULL, NULL)) {
		standby_fail(v, "applying epoch %" PRIu64 ": %s", x->eb->epoch, journal_err(v->j));
		return -EIO;
	}
	return 0;
}

static void journal_sink_lost(struct rx *x)
{
	log_msg(LOG_WARN, x->v->cfg->name, x->p->addr, x->eb->epoch, "interrupted: %s; discarded",
		x->p->c.err);
}

static const struct rx_sink journal_sink = {
	.commit_before_ack = false,
	.done = "committed and applied",
	.done_note = "",
	.begin = journal_sink_begin,
	.data_dst = journal_sink_data_dst,
	.data = journal_sink_data,
	.zero = journal_sink_zero,
	.pages = journal_sink_pages,
	.round = journal_sink_round,
	.frame_done = NULL,
	.seal = journal_sink_seal,
	.durable = journal_sink_durable,
	.apply = journal_sink_apply,
	.lost = journal_sink_lost,
	.abort = journal_sink_abort,
};

/* ------------------------------------------------------- the frame loop */

static int rx_data(struct rx *x, const struct rx_sink *k, const struct proto_data *d)
{
	uint32_t buf = 0;
	void *dst = NULL;
	int r;

	r = recv_check_run(x->v, &x->runs, d->first_block, d->block_count, &x->vd);
	if (!r)
		r = k->data_dst(x, &buf, &dst);
	if (!r)
		r = recv_check_data(x->v, d, dst, x->p->hashes, &x->vd);
	if (r < 0)
		return r;
	r = k->data(x, d, buf, dst);
	if (r)
		return r;
	for (uint32_t i = 0; i < d->block_count; i++)
		map_set(&x->v->map, d->first_block + i, x->p->hashes[i]);
	return 0;
}

static int rx_pages(struct rx *x, const struct rx_sink *k, const struct proto_pages *pg)
{
	int r;

	if (!k->pages)
		return recv_check_unexpected(x->v, x->eb, PROTO_PAGES, &x->vd);
	/* A block of an earlier round is not on the standby yet: it cannot be
	 * completed from there. */
	if (x->runs.round)
		return recv_verdict_set(
			&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
			"volume %s: PAGES for block %" PRIu64 " in round %u of epoch %" PRIu64
			"; only the first round may send partial blocks",
			x->v->cfg->name, pg->block, x->runs.round + 1, x->eb->epoch);
	r = recv_check_run(x->v, &x->runs, pg->block, 1, &x->vd);
	if (!r)
		r = recv_check_pages(x->v, pg, x->p->plain, &x->vd);
	/* The map takes the block's hash when it is completed (rx_pages_complete). */
	return r ? r : k->pages(x, pg, x->p->plain);
}

static int rx_round(struct rx *x, const struct rx_sink *k, const struct proto_round *rd)
{
	int r;

	if (!k->round)
		return recv_check_unexpected(x->v, x->eb, PROTO_ROUND, &x->vd);
	r = recv_check_round(x->v, x->eb, &x->runs, rd, &x->vd);
	if (!r)
		r = k->round(x);
	if (!r && (rd->flags & PROTO_ROUND_FINAL)) {
		x->eb_final = *x->eb;
		x->eb_final.capture_unix_ms = rd->capture_unix_ms;
		x->eb_final.capture_kind = (uint8_t)PROTO_ROUND_CAPTURE(rd->flags);
		x->eb = &x->eb_final;
	}
	return r;
}

static int rx_zero(struct rx *x, const struct rx_sink *k, const struct proto_zero *z)
{
	int r;

	r = recv_check_run(x->v, &x->runs, z->first_block, z->block_count, &x->vd);
	if (!r)
		r = k->zero(x, z->first_block, z->block_count);
	if (r)
		return r;
	for (uint64_t b = z->first_block; b < z->first_block + z->block_count; b++)
		map_set(&x->v->map, b, standby_zero_hash(x->v, b));
	return 0;
}

/* The commit tail, the same for every epoch: map and state, then the report. */
static int rx_commit_tail(struct rx *x, const struct rx_sink *k)
{
	struct standby *v = x->v;

	if (standby_commit(v, x->eb))
		return -EIO;
	log_msg(LOG_INFO, v->cfg->name, x->p->addr, x->eb->epoch, "%s: %" PRIu64 " blocks%s",
		k->done, x->runs.blocks, k->done_note);
	if (v->mv)
		metrics_add(&v->mv->applied_bytes_total, x->runs.blocks * v->map.block_bytes);
	return 0;
}

/* EPOCH_END checked and the sink's data durable: commit, ack, in the sink's order. */
static int rx_commit(struct rx *x, const struct rx_sink *k, uint64_t root)
{
	int acked, r;

	if (k->commit_before_ack) {
		r = rx_commit_tail(x, k);
		if (r) {
			rx_io_verdict(x);
			recv_epoch_reply(x->p, &x->vd);
			k->abort(x);
			return r;
		}
		return send_ack(x->p, x->v, x->eb->epoch, root);
	}
	acked = send_ack(x->p, x->v, x->eb->epoch, root);
	/* Apply whatever happens to the connection: the epoch is committed. */
	r = k->apply ? k->apply(x) : 0;
	if (!r)
		r = rx_commit_tail(x, k);
	return r ? r : acked;
}

static int rx_loop(struct rx *x, const struct rx_sink *k)
{
	struct proto_msg msg;
	uint64_t root = 0;
	int r;

	r = k->begin(x);
	if (r) {
		recv_epoch_reply(x->p, &x->vd);
		if (x->begun)
			k->abort(x);
		return r;
	}
	for (;;) {
		r = conn_recv(&x->p->c, &msg);
		if (r) {
			k->lost(x);
			/* Say why, where the sender can still hear it: a damaged
			 * frame or a silence past the timeout (not a connection
			 * that is gone). */
			if (r == -EBADMSG)
				recv_verdict_set(&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
						 "volume %s: epoch %" PRIu64 ": %s; epoch aborted",
						 x->v->cfg->name, x->eb->epoch, x->p->c.err);
			else if (r == -ETIMEDOUT)
				recv_verdict_set(
					&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_TIMEOUT,
					"volume %s: epoch %" PRIu64
					": nothing received for the receiver's timeout; epoch aborted",
					x->v->cfg->name, x->eb->epoch);
			break;
		}
		switch (msg.header.type) {
		case PROTO_DATA:
			r = rx_data(x, k, &msg.u.data);
			break;
		case PROTO_ZERO:
			r = rx_zero(x, k, &msg.u.zero);
			break;
		case PROTO_PAGES:
			r = rx_pages(x, k, &msg.u.pages);
			break;
		case PROTO_ROUND:
			r = rx_round(x, k, &msg.u.round);
			break;
		case PROTO_EPOCH_END:
			r = k->seal ? k->seal(x) : 0;
			if (!r)
				r = recv_check_end(x->v, x->eb, &x->runs, &msg.u.epoch_end, &root,
						   &x->vd);
			if (r && x->pages_mismatched && x->vd.code == PROTO_ERR_VERIFY)
				recv_verdict_set(
					&x->vd, RECV_VERDICT_ERROR, PROTO_ERR_PAGES,
					"volume %s: epoch %" PRIu64 ": %" PRIu64
					" partial blocks did not make the source's block from the standby's pages, and no later round sent them whole; epoch aborted, nothing applied",
					x->v->cfg->name, x->eb->epoch, x->pages_mismatched);
			if (!r && k->durable)
				r = k->durable(x);
			if (!r)
				return rx_commit(x, k, root);
			break;
		default:
			r = recv_check_unexpected(x->v, x->eb, msg.header.type, &x->vd);
			break;
		}
		if (!r && k->frame_done)
			r = k->frame_done(x);
		if (r)
			break;
	}
	recv_epoch_reply(x->p, &x->vd);
	k->abort(x);
	return r ? r : -EPROTO;
}

int recv_epoch_run(struct recv_peer *p, struct standby *v, const struct proto_hello *h,
		   const struct proto_epoch_begin *eb)
{
	struct rx x = { .p = p, .v = v, .h = h, .eb = eb };
	int r;

	ASSERT(p != NULL);
	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(eb != NULL);
	ASSERT(eb->generation == h->generation); /* recv_check_begin */
	r = rx_loop(&x, eb->flags & PROTO_EPOCH_INITIAL_SYNC ? &sync_sink : &journal_sink);
	rx_pages_free(&x);
	return r;
}
