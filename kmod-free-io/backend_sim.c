// SPDX-License-Identifier: Apache-2.0
/*
 * kfio power-loss simulator: a backend for tests that behaves like a disk with a
 * volatile write cache. Requests run synchronously with pread/pwrite on the real
 * file or device, so reads see every write as a real cache would; each write keeps
 * an undo record (the bytes it replaced) until a flush of its device makes it
 * durable. kfio_queue_sim_crash() then decides what survived the "power cut":
 * nothing un-flushed (DROP), everything (KEEP), or per write old / new / torn at a
 * sector boundary (TORN, seeded so a failing case can be replayed). Afterwards the
 * queue is dead and refuses I/O, as the machine would be.
 *
 * Limitation, stated so nobody relies on it: with TORN, overlapping un-flushed
 * writes are reverted newest first, so an older dropped write may also erase the
 * overlap of a newer kept one. Real caches may do worse; the journal must not care.
 *
 * This is test machinery: it allocates per write, which the real data path never does.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kfio.h"
#include "kfio_internal.h"
#include "pvrepl_assert.h"

#define SIM_SECTOR_BYTES 512u
#define SIM_PENDING_MAX	 65536u

struct sim_undo {
	uint64_t offset;
	uint32_t len;
	uint16_t dev_idx;
	bool was_file;
	uint64_t old_size; /* regular files: size before the write (to undo growth) */
	void *old;	   /* len bytes, aligned for O_DIRECT */
};

struct sim_state {
	struct kfio_cqe *done; /* completions not yet reaped (ring of depth) */
	uint32_t done_head, done_count;
	struct sim_undo *undo;
	uint32_t undo_count;
	bool dead;
};

static int sim_setup(struct kfio_queue *q)
{
	struct sim_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->done = calloc(q->cfg.depth, sizeof(*s->done));
	s->undo = calloc(SIM_PENDING_MAX, sizeof(*s->undo));
	if (!s->done || !s->undo) {
		free(s->done);
		free(s->undo);
		free(s);
		return -ENOMEM;
	}
	q->backend = s;
	return 0;
}

static void drop_undo(struct sim_state *s, uint32_t i)
{
	kfio_buf_free(s->undo[i].old, s->undo[i].len);
	s->undo[i].old = NULL;
}

static void sim_teardown(struct kfio_queue *q)
{
	struct sim_state *s = q->backend;

	if (!s)
		return;
	for (uint32_t i = 0; i < s->undo_count; i++)
		drop_undo(s, i);
	free(s->undo);
	free(s->done);
	free(s);
	q->backend = NULL;
}

static int64_t sim_pread(struct kfio_dev *dev, void *buf, uint32_t len, uint64_t off)
{
	uint32_t done = 0;

	while (done < len) {
		ssize_t n = pread(dev->fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (uint32_t)n;
	}
	return done;
}

static int64_t sim_pwrite(struct kfio_dev *dev, const void *buf, uint32_t len, uint64_t off)
{
	uint32_t done = 0;

	while (done < len) {
		ssize_t n =
			pwrite(dev->fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint32_t)n;
	}
	return done;
}

/* Remember what a write is about to replace, so a power cut can bring it back. */
static int record_undo(struct kfio_queue *q, struct sim_state *s, const struct kfio_req *r)
{
	struct kfio_dev *dev = q->devs[r->dev_idx];
	struct sim_undo *u;
	struct stat st;
	int64_t n;

	if (s->undo_count >= SIM_PENDING_MAX) {
		kfio_fmt(q->err_msg, sizeof(q->err_msg),
			 "sim backend: more than %u un-flushed writes; flush more often",
			 SIM_PENDING_MAX);
		return -ENOBUFS;
	}
	u = &s->undo[s->undo_count];
	memset(u, 0, sizeof(*u));
	u->offset = r->offset;
	u->len = r->len;
	u->dev_idx = r->dev_idx;
	u->old = kfio_buf_alloc(r->len);
	if (!u->old)
		return -ENOMEM;
	if (!dev->is_blockdev) {
		if (fstat(dev->fd, &st) < 0) {
			kfio_buf_free(u->old, r->len);
			return -errno;
		}
		u->was_file = true;
		u->old_size = (uint64_t)st.st_size;
	}
	memset(u->old, 0, r->len);
	n = sim_pread(dev, u->old, r->len, r->offset);
	if (n < 0) {
		kfio_buf_free(u->old, r->len);
		return (int)n;
	}
	s->undo_count++;
	return 0;
}

static void complete(struct kfio_queue *q, struct sim_state *s, const struct kfio_req *r,
		     int32_t res)
{
	struct kfio_cqe *c;

	ASSERT(s->done_count < q->cfg.depth);
	c = &s->done[(s->done_head + s->done_count) % q->cfg.depth];
	s->done_count++;
	c->user_data = r->user_data;
	c->offset = r->offset;
	c->len = r->len;
	c->buf_idx = r->buf_idx;
	c->dev_idx = r->dev_idx;
	c->op = r->op;
	c->res = res;
}

static int32_t sim_flush(struct kfio_queue *q, struct sim_state *s, uint16_t dev_idx)
{
	uint32_t kept = 0;

	if (fdatasync(q->devs[dev_idx]->fd) < 0)
		return -errno;
	/* The device's writes are durable now: forget their undo records. */
	for (uint32_t i = 0; i < s->undo_count; i++) {
		if (s->undo[i].dev_idx == dev_idx)
			drop_undo(s, i);
		else
			s->undo[kept++] = s->undo[i];
	}
	s->undo_count = kept;
	return 0;
}

static int sim_prep(struct kfio_queue *q, const struct kfio_req *r)
{
	struct sim_state *s = q->backend;
	struct kfio_dev *dev = q->devs[r->dev_idx];
	int64_t n;
	int rc;

	if (s->dead) {
		kfio_fmt(q->err_msg, sizeof(q->err_msg),
			 "sim backend: power was cut; reopen the device to recover");
		return -EIO;
	}
	switch (r->op) {
	case KFIO_OP_READ:
		n = sim_pread(dev, q->bufs[r->buf_idx], r->len, r->offset);
		break;
	case KFIO_OP_WRITE:
		rc = record_undo(q, s, r);
		if (rc)
			return rc;
		n = sim_pwrite(dev, q->bufs[r->buf_idx], r->len, r->offset);
		break;
	case KFIO_OP_FLUSH:
		n = sim_flush(q, s, r->dev_idx);
		break;
	default:
		return -EINVAL;
	}
	complete(q, s, r, (int32_t)n);
	return 0;
}

static int sim_submit(struct kfio_queue *q)
{
	return (int)q->prepared;
}

static int sim_reap(struct kfio_queue *q, struct kfio_cqe *out, unsigned max, unsigned min_wait)
{
	struct sim_state *s = q->backend;
	unsigned got = 0;

	(void)min_wait; /* everything completed at prep time */
	while (got < max && s->done_count) {
		out[got++] = s->done[s->done_head];
		s->done_head = (s->done_head + 1) % q->cfg.depth;
		s->done_count--;
	}
	return (int)got;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Put back bytes [from, len) of an un-flushed write: the part that "never made it". */
static int revert(struct kfio_queue *q, struct sim_undo *u, uint32_t from)
{
	struct kfio_dev *dev = q->devs[u->dev_idx];
	int64_t n;

	if (from >= u->len)
		return 0;
	n = sim_pwrite(dev, (char *)u->old + from, u->len - from, u->offset + from);
	if (n < 0)
		return (int)n;
	if (u->was_file && u->offset + u->len > u->old_size && from == 0 &&
	    ftruncate(dev->fd, (off_t)u->old_size) < 0)
		return -errno;
	return 0;
}

static int sim_crash(struct kfio_queue *q, enum kfio_crash_mode mode, uint64_t seed)
{
	struct sim_state *s = q->backend;
	int rc = 0;

	for (uint32_t i = s->undo_count; i-- > 0 && !rc;) {
		struct sim_undo *u = &s->undo[i];
		uint64_t pick;
		uint32_t sectors;

		switch (mode) {
		case KFIO_CRASH_KEEP:
			break;
		case KFIO_CRASH_DROP:
			rc = revert(q, u, 0);
			break;
		case KFIO_CRASH_TORN:
			pick = splitmix64(&seed) % 3;
			sectors = u->len / SIM_SECTOR_BYTES;
			if (pick == 0) /* lost */
				rc = revert(q, u, 0);
			else if (pick == 2 && sectors > 1) /* torn: a prefix of sectors landed */
				rc = revert(q, u,
					    (uint32_t)(1 + splitmix64(&seed) % (sectors - 1)) *
						    SIM_SECTOR_BYTES);
			break;
		default:
			rc = -EINVAL;
		}
	}
	for (unsigned d = 0; d < q->dev_count; d++)
		fdatasync(q->devs[d]->fd);
	for (uint32_t i = 0; i < s->undo_count; i++)
		drop_undo(s, i);
	s->undo_count = 0;
	s->done_count = 0;
	s->dead = true;
	q->inflight = 0;
	q->prepared = 0;
	if (rc)
		kfio_fmt(q->err_msg, sizeof(q->err_msg), "sim backend: crash simulation failed: %s",
			 strerror(-rc));
	return rc;
}

static uint32_t sim_pending(const struct kfio_queue *q)
{
	const struct sim_state *s = q->backend;

	return s->undo_count;
}

const struct kfio_backend_ops kfio_backend_sim = {
	.name = "sim",
	.setup = sim_setup,
	.teardown = sim_teardown,
	.prep = sim_prep,
	.submit = sim_submit,
	.reap = sim_reap,
	.crash = sim_crash,
	.pending = sim_pending,
};
