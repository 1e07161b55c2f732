// SPDX-License-Identifier: Apache-2.0
/*
 * kfio queue front end: validates every request against the device's O_DIRECT
 * rules and the queue's limits before any backend sees it, owns the registered
 * buffer pool (one aligned allocation, addressed by index), counts what is in
 * flight, and dispatches to a backend (io_uring, or the power-loss simulator).
 *
 * Callers see one behaviour whatever the backend: that is what lets the crash
 * tests to come cut power under the journal without touching the journal's code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kfio.h"
#include "kfio_internal.h"
#include "pvrepl_assert.h"

#define q_err(q, ...) kfio_fmt((q)->err_msg, sizeof((q)->err_msg), __VA_ARGS__)

#define POOL_HUGE_BYTES (2u << 20)

/*
 * The registered pool comes from a 2 MiB-aligned mapping with MADV_HUGEPAGE.
 * Why: io_uring maps a registered buffer page by page, so a 1 MiB read into 4 KiB
 * pages has 256 segments, more than most disks take in one request (254 here):
 * every read is split in two and neighbours no longer merge, costing a fifth of
 * sequential throughput. Huge pages make each buffer one segment. Where THP is
 * off, madvise fails and the pool is plain pages: slower, still correct.
 */
static void *pool_alloc(size_t len)
{
	size_t map_len = len + POOL_HUGE_BYTES;
	char *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start;
	size_t head, tail;

	if (p == MAP_FAILED)
		return NULL;
	start = ((uintptr_t)p + POOL_HUGE_BYTES - 1) & ~(uintptr_t)(POOL_HUGE_BYTES - 1);
	head = start - (uintptr_t)p;
	tail = map_len - head - len;
	if (head)
		munmap(p, head);
	if (tail)
		munmap((char *)start + len, tail);
	madvise((void *)start, len, MADV_HUGEPAGE);
	return (void *)start;
}

static void pool_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

static int config_check(const struct kfio_queue_config *cfg, unsigned dev_count, char *err,
			size_t err_len)
{
	if (cfg->depth == 0 || cfg->depth > KFIO_QUEUE_DEPTH_MAX) {
		kfio_fmt(err, err_len, "queue depth %u is outside 1..%u", cfg->depth,
			 KFIO_QUEUE_DEPTH_MAX);
		return -EINVAL;
	}
	if (cfg->buf_count > KFIO_BUF_COUNT_MAX) {
		kfio_fmt(err, err_len, "buffer count %u is above the limit of %u", cfg->buf_count,
			 KFIO_BUF_COUNT_MAX);
		return -EINVAL;
	}
	if (cfg->buf_count && (cfg->buf_bytes == 0 || cfg->buf_bytes > KFIO_BUF_BYTES_MAX ||
			       cfg->buf_bytes % KFIO_MEM_ALIGN)) {
		kfio_fmt(err, err_len,
			 "buffer size %u must be a multiple of %u bytes and at most %u bytes",
			 cfg->buf_bytes, KFIO_MEM_ALIGN, KFIO_BUF_BYTES_MAX);
		return -EINVAL;
	}
	if (dev_count == 0 || dev_count > KFIO_DEVS_MAX) {
		kfio_fmt(err, err_len, "a queue serves 1..%u devices, not %u", KFIO_DEVS_MAX,
			 dev_count);
		return -EINVAL;
	}
	if (cfg->backend != KFIO_BACKEND_URING && cfg->backend != KFIO_BACKEND_SIM) {
		kfio_fmt(err, err_len, "unknown I/O backend %d", (int)cfg->backend);
		return -EINVAL;
	}
	return 0;
}

int kfio_queue_new(struct kfio_queue **out, const struct kfio_queue_config *cfg,
		   struct kfio_dev *const *devs, unsigned dev_count, char *err, size_t err_len)
{
	struct kfio_queue *q;
	int rc;

	*out = NULL;
	rc = config_check(cfg, dev_count, err, err_len);
	if (rc)
		return rc;
	for (unsigned i = 0; i < dev_count; i++) {
		if (!devs[i] || devs[i]->fd < 0) {
			kfio_fmt(err, err_len, "device %u is not open", i);
			return -EBADF;
		}
	}

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->cfg = *cfg;
	q->ops = cfg->backend == KFIO_BACKEND_SIM ? &kfio_backend_sim : &kfio_backend_uring;
	q->dev_count = dev_count;
	memcpy(q->devs, devs, dev_count * sizeof(devs[0]));

	if (cfg->buf_count) {
		q->buf_mem_bytes = (size_t)cfg->buf_count * cfg->buf_bytes;
		q->buf_mem = pool_alloc(q->buf_mem_bytes);
		q->bufs = calloc(cfg->buf_count, sizeof(*q->bufs));
		if (!q->buf_mem || !q->bufs) {
			kfio_fmt(err, err_len, "cannot allocate %zu bytes of I/O buffers",
				 q->buf_mem_bytes);
			rc = -ENOMEM;
			goto free_bufs;
		}
		for (uint32_t i = 0; i < cfg->buf_count; i++)
			q->bufs[i] = (char *)q->buf_mem + (size_t)i * cfg->buf_bytes;
	}

	rc = q->ops->setup(q);
	if (rc) {
		kfio_fmt(err, err_len, "%s", q->err_msg);
		goto free_bufs;
	}
	*out = q;
	return 0;

free_bufs:
	free(q->bufs);
	pool_free(q->buf_mem, q->buf_mem_bytes);
	free(q);
	return rc;
}

void kfio_queue_free(struct kfio_queue *q)
{
	if (!q)
		return;
	q->ops->teardown(q);
	free(q->bufs);
	pool_free(q->buf_mem, q->buf_mem_bytes);
	free(q);
}

void *kfio_queue_buf(struct kfio_queue *q, uint32_t idx)
{
	ASSERT(idx < q->cfg.buf_count);
	return q->bufs[idx];
}

uint32_t kfio_queue_buf_count(const struct kfio_queue *q)
{
	return q->cfg.buf_count;
}

uint32_t kfio_queue_buf_bytes(const struct kfio_queue *q)
{
	return q->cfg.buf_bytes;
}

uint32_t kfio_queue_depth(const struct kfio_queue *q)
{
	return q->cfg.depth;
}

uint32_t kfio_queue_inflight(const struct kfio_queue *q)
{
	return q->inflight;
}

const char *kfio_queue_err(const struct kfio_queue *q)
{
	return q->err_msg;
}

static int queue_rw(struct kfio_queue *q, uint8_t op, unsigned dev_idx, uint32_t buf_idx,
		    uint64_t offset, uint32_t len, uint64_t user_data)
{
	struct kfio_req req = {
		.user_data = user_data,
		.offset = offset,
		.len = len,
		.buf_idx = buf_idx,
		.dev_idx = (uint16_t)dev_idx,
		.op = op,
	};
	struct kfio_dev *dev;
	int rc;

	if (dev_idx >= q->dev_count) {
		q_err(q, "device index %u is out of range (queue has %u)", dev_idx, q->dev_count);
		return -EINVAL;
	}
	dev = q->devs[dev_idx];
	if (buf_idx >= q->cfg.buf_count) {
		q_err(q, "%s: buffer index %u is out of range (queue has %u buffers)", dev->path,
		      buf_idx, q->cfg.buf_count);
		return -EINVAL;
	}
	if (len == 0 || len > q->cfg.buf_bytes) {
		q_err(q, "%s: request length %u must be 1..%u bytes (the buffer size)", dev->path,
		      len, q->cfg.buf_bytes);
		return -EINVAL;
	}
	if (op == KFIO_OP_WRITE && dev->read_only) {
		q_err(q, "%s is open read-only; cannot write at offset %" PRIu64, dev->path,
		      offset);
		return -EBADF;
	}
	/* Reads may cross the end of the device and complete short; writes may not,
	 * not even on regular files: a volume's size is part of its identity, and a
	 * standby that grew would no longer match its source. */
	rc = kfio_dev_check_io(dev, offset, len, q->bufs[buf_idx], op == KFIO_OP_READ);
	if (rc) {
		q_err(q, "%s", dev->err_msg);
		return rc;
	}
	if (q->inflight >= q->cfg.depth) {
		q_err(q, "queue is full (%u requests in flight)", q->inflight);
		return -EBUSY;
	}
	rc = q->ops->prep(q, &req);
	if (rc)
		return rc;
	q->inflight++;
	q->prepared++;
	return 0;
}

int kfio_queue_read(struct kfio_queue *q, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		    uint32_t len, uint64_t user_data)
{
	return queue_rw(q, KFIO_OP_READ, dev_idx, buf_idx, offset, len, user_data);
}

int kfio_queue_write(struct kfio_queue *q, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		     uint32_t len, uint64_t user_data)
{
	return queue_rw(q, KFIO_OP_WRITE, dev_idx, buf_idx, offset, len, user_data);
}

int kfio_queue_flush(struct kfio_queue *q, unsigned dev_idx, uint64_t user_data)
{
	struct kfio_req req = {
		.user_data = user_data,
		.buf_idx = UINT32_MAX,
		.dev_idx = (uint16_t)dev_idx,
		.op = KFIO_OP_FLUSH,
	};
	int rc;

	if (dev_idx >= q->dev_count) {
		q_err(q, "device index %u is out of range (queue has %u)", dev_idx, q->dev_count);
		return -EINVAL;
	}
	if (q->inflight >= q->cfg.depth) {
		q_err(q, "queue is full (%u requests in flight)", q->inflight);
		return -EBUSY;
	}
	rc = q->ops->prep(q, &req);
	if (rc)
		return rc;
	q->inflight++;
	q->prepared++;
	return 0;
}

int kfio_queue_submit(struct kfio_queue *q)
{
	int rc;

	if (q->prepared == 0)
		return 0;
	rc = q->ops->submit(q);
	if (rc >= 0)
		q->prepared = 0;
	return rc;
}

int kfio_queue_reap(struct kfio_queue *q, struct kfio_cqe *out, unsigned max, unsigned min_wait)
{
	int n;

	if (min_wait > q->inflight) {
		q_err(q, "cannot wait for %u completions with %u requests in flight", min_wait,
		      q->inflight);
		return -EINVAL;
	}
	if (min_wait > max)
		min_wait = max;
	n = q->ops->reap(q, out, max, min_wait);
	if (n > 0) {
		ASSERT((uint32_t)n <= q->inflight);
		q->inflight -= (uint32_t)n;
		if (q->prepared > q->inflight)
			q->prepared = q->inflight;
	}
	return n;
}

int kfio_queue_sim_crash(struct kfio_queue *q, enum kfio_crash_mode mode, uint64_t seed)
{
	if (!q->ops->crash) {
		q_err(q, "power-loss simulation needs the sim backend");
		return -EOPNOTSUPP;
	}
	return q->ops->crash(q, mode, seed);
}

uint32_t kfio_queue_sim_pending(const struct kfio_queue *q)
{
	return q->ops->pending ? q->ops->pending(q) : 0;
}
