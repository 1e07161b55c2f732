// SPDX-License-Identifier: Apache-2.0
/*
 * kfio io_uring backend: registered buffers and fixed files, a ring sized to the
 * queue depth, one slot per request in flight (the slot index is the sqe's
 * user_data, so a completion finds its request without a search), and short
 * transfers resubmitted for their remainder unless they hit the end of the device.
 *
 * Debian 12 ships liburing 2.3: only helpers from 2.3 are used, and opcodes and
 * setup flags are probed at run time, falling back where the kernel says no.
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kfio.h"
#include "kfio_internal.h"
#include "pvrepl_assert.h"

#define URING_SHORT_RETRY_MAX 16

struct uring_slot {
	struct kfio_req req;
	uint32_t done; /* bytes already transferred (short-transfer resubmits) */
	uint32_t retries;
};

struct uring_state {
	struct io_uring ring;
	bool ring_ok;
	bool fixed_bufs;
	bool fixed_files;
	bool have_read_fixed;
	bool have_write_fixed;
	struct uring_slot *slots;
	uint32_t *free_slots; /* stack of free slot indices */
	uint32_t free_count;
};

int kfio_probe(struct kfio_caps *caps)
{
	struct io_uring_probe *p;

	memset(caps, 0, sizeof(*caps));
	p = io_uring_get_probe();
	if (!p)
		return -ENOSYS;
	caps->uring = true;
	caps->read_fixed = io_uring_opcode_supported(p, IORING_OP_READ_FIXED);
	caps->write_fixed = io_uring_opcode_supported(p, IORING_OP_WRITE_FIXED);
	caps->fsync = io_uring_opcode_supported(p, IORING_OP_FSYNC);
	caps->fallocate = io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
	caps->register_files = io_uring_opcode_supported(p, IORING_OP_FILES_UPDATE);
	io_uring_free_probe(p);
	return 0;
}

static int ring_init(struct uring_state *s, uint32_t depth)
{
	struct io_uring_params p;
	int rc;

	/*
	 * COOP_TASKRUN: completions are run when we enter the kernel anyway instead
	 * of interrupting the thread with an IPI. Not SINGLE_ISSUER: a queue may be
	 * created on one thread and driven by another (the receiver's connection
	 * threads). Kernels before 5.19 refuse the flag; retry without it.
	 */
	memset(&p, 0, sizeof(p));
#ifdef IORING_SETUP_COOP_TASKRUN
	p.flags = IORING_SETUP_COOP_TASKRUN;
#endif
	rc = io_uring_queue_init_params(depth, &s->ring, &p);
	if (rc == -EINVAL && p.flags) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(depth, &s->ring, &p);
	}
	return rc;
}

static int uring_setup(struct kfio_queue *q)
{
	struct uring_state *s;
	struct kfio_caps caps;
	int fds[KFIO_DEVS_MAX];
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->slots = calloc(q->cfg.depth, sizeof(*s->slots));
	s->free_slots = calloc(q->cfg.depth, sizeof(*s->free_slots));
	if (!s->slots || !s->free_slots) {
		rc = -ENOMEM;
		goto free_state;
	}
	for (uint32_t i = 0; i < q->cfg.depth; i++)
		s->free_slots[i] = q->cfg.depth - 1 - i;
	s->free_count = q->cfg.depth;

	rc = kfio_probe(&caps);
	if (rc) {
		kfio_fmt(
			q->err_msg, sizeof(q->err_msg),
			"io_uring is not available on this kernel (probe failed: %s); check kernel.io_uring_disabled",
			strerror(-rc));
		goto free_state;
	}
	s->have_read_fixed = caps.read_fixed;
	s->have_write_fixed = caps.write_fixed;
	if (!caps.fsync) {
		kfio_fmt(q->err_msg, sizeof(q->err_msg),
			 "this kernel's io_uring lacks IORING_OP_FSYNC, which flushes need");
		rc = -EOPNOTSUPP;
		goto free_state;
	}

	rc = ring_init(s, q->cfg.depth);
	if (rc) {
		kfio_fmt(q->err_msg, sizeof(q->err_msg),
			 "io_uring_queue_init(depth %u) failed: %s%s", q->cfg.depth, strerror(-rc),
			 rc == -EPERM ? " (io_uring disabled by sysctl kernel.io_uring_disabled?)"
				      : "");
		goto free_state;
	}
	s->ring_ok = true;

	if (q->cfg.buf_count) {
		struct iovec *iov = calloc(q->cfg.buf_count, sizeof(*iov));

		if (!iov) {
			rc = -ENOMEM;
			goto exit_ring;
		}
		for (uint32_t i = 0; i < q->cfg.buf_count; i++) {
			iov[i].iov_base = q->bufs[i];
			iov[i].iov_len = q->cfg.buf_bytes;
		}
		/* Registered buffers are pinned once here instead of per request. If the
		 * memlock limit refuses, fall back to plain reads: slower, still right. */
		rc = io_uring_register_buffers(&s->ring, iov, q->cfg.buf_count);
		free(iov);
		s->fixed_bufs = rc == 0;
	}

	for (unsigned i = 0; i < q->dev_count; i++)
		fds[i] = q->devs[i]->fd;
	rc = io_uring_register_files(&s->ring, fds, q->dev_count);
	s->fixed_files = rc == 0;

	q->backend = s;
	return 0;

exit_ring:
	io_uring_queue_exit(&s->ring);
free_state:
	free(s->slots);
	free(s->free_slots);
	free(s);
	return rc;
}

static void uring_teardown(struct kfio_queue *q)
{
	struct uring_state *s = q->backend;

	if (!s)
		return;
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	free(s->slots);
	free(s->free_slots);
	free(s);
	q->backend = NULL;
}

static struct io_uring_sqe *get_sqe(struct kfio_queue *q, struct uring_state *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		/* The SQ ring is full of prepared entries: push them to the kernel. */
		int rc = io_uring_submit(&s->ring);

		if (rc < 0) {
			kfio_fmt(q->err_msg, sizeof(q->err_msg), "io_uring_submit failed: %s",
				 strerror(-rc));
			return NULL;
		}
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

static int prep_slot(struct kfio_queue *q, struct uring_state *s, uint32_t slot_idx)
{
	struct uring_slot *slot = &s->slots[slot_idx];
	const struct kfio_req *r = &slot->req;
	struct io_uring_sqe *sqe = get_sqe(q, s);
	int fd = s->fixed_files ? (int)r->dev_idx : q->devs[r->dev_idx]->fd;
	char *buf;
	uint32_t len;
	uint64_t off;

	if (!sqe)
		return -EAGAIN;
	if (r->op == KFIO_OP_FLUSH) {
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		/* DRAIN: start only after every earlier request completed, so the flush
		 * covers the writes queued before it (io_uring does not order otherwise). */
		sqe->flags |= IOSQE_IO_DRAIN;
	} else {
		buf = (char *)q->bufs[r->buf_idx] + slot->done;
		len = r->len - slot->done;
		off = r->offset + slot->done;
		if (r->op == KFIO_OP_READ) {
			if (s->fixed_bufs && s->have_read_fixed)
				io_uring_prep_read_fixed(sqe, fd, buf, len, off, (int)r->buf_idx);
			else
				io_uring_prep_read(sqe, fd, buf, len, off);
		} else {
			if (s->fixed_bufs && s->have_write_fixed)
				io_uring_prep_write_fixed(sqe, fd, buf, len, off, (int)r->buf_idx);
			else
				io_uring_prep_write(sqe, fd, buf, len, off);
		}
	}
	if (s->fixed_files)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, slot_idx);
	return 0;
}

static int uring_prep(struct kfio_queue *q, const struct kfio_req *req)
{
	struct uring_state *s = q->backend;
	uint32_t slot_idx;
	int rc;

	ASSERT(s->free_count > 0); /* the front end bounds inflight by depth */
	slot_idx = s->free_slots[--s->free_count];
	s->slots[slot_idx].req = *req;
	s->slots[slot_idx].done = 0;
	s->slots[slot_idx].retries = 0;
	rc = prep_slot(q, s, slot_idx);
	if (rc)
		s->free_slots[s->free_count++] = slot_idx;
	return rc;
}

static int uring_submit(struct kfio_queue *q)
{
	struct uring_state *s = q->backend;
	int rc = io_uring_submit(&s->ring);

	if (rc < 0)
		kfio_fmt(q->err_msg, sizeof(q->err_msg), "io_uring_submit failed: %s",
			 strerror(-rc));
	return rc;
}

/*
 * A transfer that moved fewer bytes than asked: at the end of the device that is
 * the answer (the caller sees res < len); anywhere else the kernel may legally
 * stop early, so the remainder is resubmitted. Returns true if resubmitted.
 */
static bool resubmit_short(struct kfio_queue *q, struct uring_state *s, uint32_t slot_idx, int res)
{
	struct uring_slot *slot = &s->slots[slot_idx];
	const struct kfio_req *r = &slot->req;
	uint64_t end;

	if (r->op == KFIO_OP_FLUSH || res <= 0)
		return false;
	slot->done += (uint32_t)res;
	if (slot->done >= r->len)
		return false;
	end = r->offset + slot->done;
	if (r->op == KFIO_OP_READ && end >= q->devs[r->dev_idx]->size_bytes)
		return false;
	if (++slot->retries > URING_SHORT_RETRY_MAX)
		return false;
	return prep_slot(q, s, slot_idx) == 0;
}

static int uring_reap(struct kfio_queue *q, struct kfio_cqe *out, unsigned max, unsigned min_wait)
{
	struct uring_state *s = q->backend;
	unsigned got = 0;
	bool resubmitted = false;

	while (got < max) {
		struct io_uring_cqe *cqe;
		int rc = 0;

		if (got < min_wait) {
			/* Submits anything prepared (resubmits included) and waits. */
			rc = io_uring_submit_and_wait(&s->ring, 1);
			if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
				continue;
		}
		if (rc >= 0)
			rc = io_uring_peek_cqe(&s->ring, &cqe);
		if (rc == -EAGAIN) {
			if (got >= min_wait)
				break;
			continue;
		}
		if (rc < 0) {
			kfio_fmt(q->err_msg, sizeof(q->err_msg),
				 "waiting for io_uring completions failed: %s", strerror(-rc));
			return got ? (int)got : rc;
		}

		uint32_t slot_idx = (uint32_t)io_uring_cqe_get_data64(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&s->ring, cqe);
		ASSERT(slot_idx < q->cfg.depth);
		if (resubmit_short(q, s, slot_idx, res)) {
			resubmitted = true;
			continue;
		}

		struct uring_slot *slot = &s->slots[slot_idx];
		struct kfio_cqe *o = &out[got++];

		o->user_data = slot->req.user_data;
		o->offset = slot->req.offset;
		o->len = slot->req.len;
		o->buf_idx = slot->req.buf_idx;
		o->dev_idx = slot->req.dev_idx;
		o->op = slot->req.op;
		if (res < 0)
			o->res = res;
		else if (slot->req.op == KFIO_OP_FLUSH)
			o->res = 0;
		else
			o->res = (int32_t)slot->done;
		if (res < 0)
			kfio_fmt(q->err_msg, sizeof(q->err_msg),
				 "%s: %s at offset %" PRIu64 " failed: %s",
				 q->devs[o->dev_idx]->path,
				 o->op == KFIO_OP_READ	  ? "read"
				 : o->op == KFIO_OP_WRITE ? "write"
							  : "flush",
				 o->offset, strerror(-res));
		s->free_slots[s->free_count++] = slot_idx;
	}
	if (resubmitted)
		io_uring_submit(&s->ring);
	return (int)got;
}

const struct kfio_backend_ops kfio_backend_uring = {
	.name = "io_uring",
	.setup = uring_setup,
	.teardown = uring_teardown,
	.prep = uring_prep,
	.submit = uring_submit,
	.reap = uring_reap,
};
