// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * track.bpf.c — the write tracker's eBPF program: one bit per 4 KiB of a volume,
 * set when a write to it completes. User space (kmod-free-io/track.c) harvests
 * the bitmap through mmap and reads only what was marked.
 *
 * Why each choice is correct (DESIGN.md, "Write tracking"; measured on 6.18):
 *
 * - tp_btf, not a classic tracepoint program: classic tracepoint programs share
 *   one per-CPU recursion guard with every other BPF program on the CPU and drop
 *   events when it is held (thousands of misses in a 20 s run, real blocks
 *   missed). A tp_btf program has its own guard, and whatever it misses is
 *   counted in the program's recursion_misses, which user space reads at every
 *   harvest: a miss means a full scan, never a silent loss. fentry on the block
 *   layer is refused here (EPERM), and a ring buffer of events would drop writes
 *   when full; a bitmap cannot overflow.
 *
 * - Mark at completion (block_rq_complete), not at submission. A write marked
 *   at submission could be harvested, its block read while the write is still in
 *   flight (old data), and then complete: nothing would mark it again and the
 *   standby would keep the old block. Marked at completion, a write whose bit was
 *   harvested has already reached the device, so the read that follows sees it;
 *   a write still in flight at the harvest marks its bit afterwards, for the next
 *   epoch. A failed write is marked too: it may have changed part of the range.
 *   block_rq_complete fires from blk_update_request (nr_bytes done, before the
 *   request's position advances) and from the batched completion path, so
 *   __sector with nr_bytes is exactly the range just completed.
 *
 * - Requests only (blk-mq devices: loop, nvme, virtio, scsi). block_bio_complete
 *   never fires on blk-mq devices, and bio-based devices (device-mapper, md) never
 *   reach block_rq_complete at all: user space refuses to track them, with the
 *   reason, rather than track them blind.
 *
 * - Filter on the whole disk's dev_t and the volume's sector range: events carry
 *   the disk (a partition's writes arrive as the disk's, at absolute sectors), so
 *   a partition is the range [first_sector, first_sector + nr_sectors) of its
 *   disk. Only the part of a request inside the range is marked.
 *
 * - A discard request may hold several separate ranges (max_discard_segments >
 *   1: NVMe, virtio-blk merge discards of distant ranges into one request, and
 *   __sector + nr_bytes then describes none of them): for discards every bio's
 *   own range is marked as well. Loop devices have one segment, so here this
 *   only re-marks the request's range; marking more than was written is safe.
 *
 * - Classify by operation code, not by the rwbs string (write-zeroes shows as
 *   'N' there): WRITE (with or without preflush/FUA: flush-with-data is a WRITE),
 *   DISCARD, SECURE_ERASE, WRITE_ZEROES and ZONE_APPEND change data. A
 *   passthrough command (REQ_OP_DRV_OUT: SG_IO, NVMe passthrough) carries no
 *   sector range the block layer understands, so it is counted at issue and user
 *   space answers it with a full scan.
 *
 * - Bits are set with atomic OR (BPF_ATOMIC, -mcpu=v3): completions run on every
 *   CPU at once and 64 pages share a word; user space takes words with an atomic
 *   exchange, so a bit set during the harvest is either taken or left for the
 *   next one, never lost.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "track_types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (rodata, frozen afterwards). */
const volatile unsigned int target_major = 0;
const volatile unsigned int target_minor = 0;
const volatile unsigned long long first_sector = 0;
const volatile unsigned long long nr_sectors = 0;

/* The live bitmap: bit p of word p / 64 is the volume's 4 KiB page p. Sized by
 * user space (max_entries) before load; mmapped there. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, unsigned int);
	__type(value, unsigned long long);
	__uint(max_entries, 1);
} live SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, unsigned int);
	__type(value, struct track_stats);
	__uint(max_entries, 1);
} stats SEC(".maps");

struct mark_ctx {
	unsigned long long first_page;
	unsigned long long last_page; /* inclusive */
	unsigned long long first_word;
};

static long mark_word(unsigned int i, void *arg)
{
	struct mark_ctx *m = arg;
	unsigned long long w = m->first_word + i;
	unsigned long long lo = w * 64, hi = lo + 63, mask = ~0ull;
	unsigned int key = (unsigned int)w;
	unsigned long long *word;

	if (lo > m->last_page)
		return 1;
	if (m->first_page > lo)
		mask &= ~0ull << (m->first_page - lo);
	if (m->last_page < hi)
		mask &= ~0ull >> (hi - m->last_page);
	word = bpf_map_lookup_elem(&live, &key);
	if (!word)
		return 1;
	__sync_fetch_and_or(word, mask);
	return 0;
}

static __always_inline int on_target(struct request *rq)
{
	struct gendisk *disk = rq->q->disk;

	return disk && disk->major == (int)target_major && disk->first_minor == (int)target_minor;
}

static __always_inline struct track_stats *stats_get(void)
{
	unsigned int zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

/* Marks the pages of sectors [s, s + n) inside the volume; false if too many. */
static __always_inline int mark_range(unsigned long long s, unsigned long long n)
{
	unsigned long long e = s + n, end = first_sector + nr_sectors, words;
	struct mark_ctx m;

	if (!n || e <= first_sector || s >= end)
		return 1;
	if (s < first_sector)
		s = first_sector;
	if (e > end)
		e = end;
	m.first_page = (s - first_sector) >> TRACK_PAGE_SECTORS_SHIFT;
	m.last_page = (e - 1 - first_sector) >> TRACK_PAGE_SECTORS_SHIFT;
	m.first_word = m.first_page / 64;
	words = m.last_page / 64 - m.first_word + 1;
	if (words > TRACK_LOOP_WORDS_MAX)
		return 0;
	bpf_loop((unsigned int)words, mark_word, &m, 0);
	return 1;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(track_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	unsigned int op = rq->cmd_flags & TRACK_REQ_OP_MASK;
	struct track_stats *st;
	int ok;

	if (op != TRACK_REQ_OP_WRITE && op != TRACK_REQ_OP_DISCARD &&
	    op != TRACK_REQ_OP_SECURE_ERASE && op != TRACK_REQ_OP_WRITE_ZEROES &&
	    op != TRACK_REQ_OP_ZONE_APPEND)
		return 0;
	if (!nr_bytes || !on_target(rq))
		return 0;
	ok = mark_range(rq->__sector,
			(nr_bytes + (1u << TRACK_SECTOR_SHIFT) - 1) >> TRACK_SECTOR_SHIFT);
	if (op == TRACK_REQ_OP_DISCARD || op == TRACK_REQ_OP_SECURE_ERASE) {
		struct bio *bio = rq->bio;

		for (int i = 0; i < TRACK_DISCARD_BIOS_MAX && bio; i++) {
			ok &= mark_range(bio->bi_iter.bi_sector,
					 bio->bi_iter.bi_size >> TRACK_SECTOR_SHIFT);
			bio = bio->bi_next;
		}
		if (bio)
			ok = 0;
	}
	st = stats_get();
	if (st) {
		if (ok)
			__sync_fetch_and_add(&st->marks, 1);
		else
			__sync_fetch_and_add(&st->overflows, 1);
	}
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(track_issue, struct request *rq)
{
	struct track_stats *st;

	if ((rq->cmd_flags & TRACK_REQ_OP_MASK) != TRACK_REQ_OP_DRV_OUT || !on_target(rq))
		return 0;
	st = stats_get();
	if (st)
		__sync_fetch_and_add(&st->passthrough, 1);
	return 0;
}
