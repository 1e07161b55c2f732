/* SPDX-License-Identifier: Apache-2.0 */
/*
 * track_types.h — the few kernel types the write tracker reads, declared by hand
 * for CO-RE instead of a generated vmlinux.h (130,000 lines that would tie the
 * tree to one kernel build). Only the fields named here are used; with
 * preserve_access_index, clang records each access as a BTF relocation and
 * libbpf moves it to the field's real offset in the running kernel's BTF at load
 * time, so the layout below need not match any kernel.
 *
 * Shared with user space: struct track_stats (the counters the program keeps)
 * and the TRACK_* constants, so both sides agree on them at compile time.
 */
#ifndef KFIO_TRACK_TYPES_H
#define KFIO_TRACK_TYPES_H

/* Log2 of the tracking granularity: one bit per 4 KiB of the volume. */
#define TRACK_PAGE_SHIFT	 12
#define TRACK_SECTOR_SHIFT	 9
#define TRACK_PAGE_SECTORS_SHIFT (TRACK_PAGE_SHIFT - TRACK_SECTOR_SHIFT)
/* bpf_loop runs at most 1 << 23 iterations: one bitmap word each, so one request
 * can mark at most 2^23 * 64 pages (2 TiB). A larger one (a whole-device discard
 * of a bigger volume) is counted in `overflows`, which forces a full scan. */
#define TRACK_LOOP_WORDS_MAX (1u << 23)
/* A discard request may carry up to max_discard_segments separate ranges, one
 * bio each (NVMe, virtio-blk); more bios than this count as an overflow. */
#define TRACK_DISCARD_BIOS_MAX 128

/* Request operations (include/linux/blk_types.h, enum req_op). Stable since 4.10
 * renumbered them; REQ_OP_MASK has been 0xff since 6.0 (8 bits before too). */
#define TRACK_REQ_OP_MASK	  0xffu
#define TRACK_REQ_OP_WRITE	  1u
#define TRACK_REQ_OP_DISCARD	  3u
#define TRACK_REQ_OP_SECURE_ERASE 5u
#define TRACK_REQ_OP_ZONE_APPEND  7u
#define TRACK_REQ_OP_WRITE_ZEROES 9u
#define TRACK_REQ_OP_DRV_IN	  34u
#define TRACK_REQ_OP_DRV_OUT	  35u

struct track_stats {
	unsigned long long marks;	/* write completions that marked pages */
	unsigned long long passthrough; /* REQ_OP_DRV_OUT issued to the disk */
	unsigned long long overflows;	/* requests too large to mark (see above) */
};

#ifdef __bpf__
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct gendisk {
	int major;
	int first_minor;
};

struct request_queue {
	struct gendisk *disk;
};

struct bvec_iter {
	unsigned long long bi_sector;
	unsigned int bi_size;
};

struct bio {
	struct bio *bi_next;
	struct bvec_iter bi_iter;
};

struct request {
	struct request_queue *q;
	struct bio *bio;
	unsigned int cmd_flags;
	unsigned int __data_len;
	unsigned long long __sector;
};
#pragma clang attribute pop
#endif

#endif
