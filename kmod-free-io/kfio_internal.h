/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kfio internals: the queue front end (queue.c) and the backends it drives.
 * A backend implements submit/reap over the queue's prepared requests; the front
 * end owns validation, buffers and bookkeeping, so a backend stays small and a
 * test backend (sim) behaves the same to callers as io_uring does.
 */
#ifndef KFIO_INTERNAL_H
#define KFIO_INTERNAL_H

#include "kfio.h"

void kfio_fmt(char *dst, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A request as the front end hands it to a backend. */
struct kfio_req {
	uint64_t user_data;
	uint64_t offset;
	uint32_t len;
	uint32_t buf_idx;
	uint16_t dev_idx;
	uint8_t op;
};

struct kfio_backend_ops {
	const char *name;
	int (*setup)(struct kfio_queue *q);
	void (*teardown)(struct kfio_queue *q);
	/* Take one request into the backend's submission queue (not yet submitted). */
	int (*prep)(struct kfio_queue *q, const struct kfio_req *req);
	int (*submit)(struct kfio_queue *q);
	int (*reap)(struct kfio_queue *q, struct kfio_cqe *out, unsigned max, unsigned min_wait);
	int (*crash)(struct kfio_queue *q, enum kfio_crash_mode mode, uint64_t seed);
	uint32_t (*pending)(const struct kfio_queue *q);
};

struct kfio_queue {
	const struct kfio_backend_ops *ops;
	struct kfio_queue_config cfg;
	struct kfio_dev *devs[KFIO_DEVS_MAX];
	unsigned dev_count;
	void **bufs; /* buf_count pointers into one aligned allocation */
	void *buf_mem;
	size_t buf_mem_bytes;
	uint32_t inflight; /* prepared or submitted, not yet reaped */
	uint32_t prepared; /* prepared, not yet submitted */
	char err_msg[KFIO_ERR_MSG_MAX];
	void *backend; /* backend private state */
};

extern const struct kfio_backend_ops kfio_backend_uring;
extern const struct kfio_backend_ops kfio_backend_sim;

#endif
