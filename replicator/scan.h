/* SPDX-License-Identifier: Apache-2.0 */
/*
 * scan — the change-detection pipeline. The calling thread drives the engine
 * (large aligned O_DIRECT reads at a deep queue into registered buffers); worker
 * threads hash every block, compare it with the map, and turn runs of changed
 * blocks into batches: zero runs (sent as markers, never as data) and data runs
 * compressed with lz4 or kept raw, the codec chosen per batch. Batches go to a
 * sink the caller supplies (the scan CLI counts them; the sender will stream them).
 *
 * Memory is fixed at start: (queue depth + 2 x workers) read buffers and one
 * compression buffer per worker. Nothing is allocated per block. The engine
 * thread never hashes; a worker never waits on I/O.
 *
 * It does not persist the map (the caller commits it) and knows nothing of the
 * wire: a batch's data is only valid during the sink call.
 */
#ifndef PVREPL_SCAN_H
#define PVREPL_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "kfio.h"
#include "map.h"

#define SCAN_READ_BYTES_DEFAULT (1u << 20)
/* A tracked scan (only_pages) reads scattered blocks: smaller reads, more of
 * them in flight, so one slow read holds back less (the same 17 MiB of
 * buffers with 2 workers). */
#define SCAN_TRACKED_READ_BYTES_DEFAULT	 (256u << 10)
#define SCAN_TRACKED_QUEUE_DEPTH_DEFAULT 64u
#define SCAN_QUEUE_DEPTH_DEFAULT	 16u
#define SCAN_WORKERS_MAX		 64u
#define SCAN_BATCH_BYTES_MAX		 (4u << 20)
#define SCAN_BLOCK_BYTES_MIN		 4096u
#define SCAN_BLOCK_BYTES_MAX		 (1u << 20)
/* Chosen by the block-size sweep: see docs/CHANGE-DETECTION.md. */
#define SCAN_BLOCK_BYTES_DEFAULT (16u << 10)

struct scan_batch {
	uint64_t first_block;
	uint32_t block_count;
	bool zero;		/* a run of all-zero blocks: no data */
	enum codec_kind codec;	/* for data batches */
	const void *data;	/* codec output; valid only during the sink call */
	uint32_t data_bytes;	/* bytes of data (compressed or raw) */
	uint32_t payload_bytes; /* plaintext bytes the batch stands for */
	const uint64_t *hashes; /* xxh3 of each block's plaintext (block_count) */
};

struct scan_sink {
	/* Called from worker threads, concurrently unless cfg.ordered; return 0 or
	 * -errno to abort the scan. */
	int (*batch)(const struct scan_batch *b, void *ctx);
	void *ctx;
};

struct scan_config {
	uint32_t read_bytes;  /* engine request size; rounded up to a block multiple */
	uint32_t queue_depth; /* reads in flight */
	uint32_t workers;     /* hashing/compression threads; 0 = online CPUs */
	uint32_t batch_bytes; /* max plaintext per data batch; 0 = read_bytes */
	bool compress;	      /* run lz4 on data batches (else all raw) */
	/* Call the sink in ascending block order (one call at a time), as the wire
	 * protocol needs; workers still hash and compress in parallel, each holding
	 * its chunk's batches until the chunks before it were emitted. */
	bool ordered;
	enum kfio_backend_kind backend;
	/* Cap on the read load put on the device (bytes/s; 0 = none), so the
	 * workload keeps its I/O: reads are issued no faster than this. */
	uint64_t max_read_bytes_per_s;
	/* Read only the blocks that hold a marked page: one bit per page_bytes of
	 * the device (the write tracker's pending bitmap), NULL to read every block.
	 * Borrowed for the scan; page_bytes is a power of two no larger than the
	 * block size. Blocks are read in ascending order, runs of consecutive
	 * marked blocks in one request. */
	const uint64_t *only_pages;
	uint32_t page_bytes;
	/* Called on the engine thread after completions; may be NULL. */
	void (*progress)(uint64_t done_bytes, uint64_t total_bytes, void *ctx);
	void *progress_ctx;
};

struct scan_stats {
	uint64_t
		bytes_planned; /* what the scan set out to read (the device, or the marked blocks) */
	uint64_t bytes_read;
	uint64_t blocks_scanned;
	uint64_t blocks_changed;   /* hash differs from the map (zero blocks included) */
	uint64_t blocks_zero;	   /* changed blocks that are all zero */
	uint64_t payload_bytes;	   /* plaintext of changed non-zero blocks */
	uint64_t compressed_bytes; /* what the codec made of them */
	uint64_t batches_lz4;
	uint64_t batches_raw;
	uint64_t batches_zero;
	uint32_t workers;
	double seconds;
	double cpu_seconds;	  /* user + system of the whole process */
	double throttled_seconds; /* time held back by max_read_bytes_per_s */
};

void scan_config_defaults(struct scan_config *cfg);

/*
 * Scans dev against m (whose geometry must match the device: map_check_geometry)
 * and updates m in memory (map_set) for every changed block. Returns 0 or -errno
 * with a sentence in err; on error m may hold some new hashes, so the caller must
 * not commit it.
 */
int scan_run(struct kfio_dev *dev, struct map *m, const struct scan_config *cfg,
	     const struct scan_sink *sink, struct scan_stats *stats, char *err, size_t err_len);

#endif
