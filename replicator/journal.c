/* SPDX-License-Identifier: Apache-2.0 */
/*
 * journal — the receiver's epoch journal (see journal.h; the format and the crash
 * analysis are in docs/FORMATS.md, the structs in include/journal_format.h).
 *
 * One preallocated file per volume: two superblock slots, then a record area that
 * each epoch rewrites from its start. Every write and flush, to the journal and
 * to the standby, goes through one kfio queue, so the power-loss simulator can
 * cut power before any of them (journal_io_hook) and the crash tests enumerate
 * them all. It knows nothing of frames, maps or codecs, never prints and never
 * retries: every failure is -errno with a sentence in journal_err().
 *
 * Invariants (after any crash, the newest valid superblock tells the truth):
 *   1. At most one superblock slot is ever un-flushed: jrn_super_write flushes the
 *      journal before it writes a superblock if the previous one is not yet
 *      durable. So the other slot always holds the last durable state, and a
 *      torn or lost superblock write falls back to it.
 *   2. A COMMITTED superblock is written only after every record of its epoch is
 *      durable (journal_commit flushes first) and names their count, length and
 *      chain checksum: a durable COMMITTED superblock describes intact records.
 *   3. The standby is written only by jrn_apply, for a durable COMMITTED (or
 *      APPLIED) epoch, and only after a full pass has verified every record
 *      (structure, the chain checksum, every block's xxh3). So the standby holds
 *      epoch E until the commit of E+1 is durable, then E+1 (after replay).
 *   4. The record area is overwritten (journal_begin) only while the durable
 *      state is EMPTY or APPLIED: APPLIED is written after the standby flush and
 *      flushed before journal_apply returns. So the fallback after a crash is
 *      never a COMMITTED superblock whose records were partly overwritten.
 *   5. Every journal I/O is 4 KiB-aligned and inside the preallocated file; an
 *      I/O error is sticky (-EIO until reopened): the disk state is then known
 *      only to journal_recover.
 *   6. The apply (and so the replay) writes the standby in record order across a
 *      BARRIER record: jrn_walk queues no standby write of a record after a
 *      barrier until every standby write of the records before it has completed
 *      (jrn_walk_barrier). Between barriers writes are in flight together and
 *      may complete in any order, so only a barrier lets a later round of an
 *      epoch rewrite a block an earlier round wrote.
 * journal_check_invariants() checks the in-memory side of these (and of the
 * state diagram below) on entry to and exit from every public function that
 * changes state; it is called only from ASSERT.
 *
 * States and the functions that move between them:
 *
 *      journal_open (a new file starts EMPTY)
 *          │
 *          ▼
 *   ┌──► EMPTY / APPLIED ◄───────────────────────────────────────────────┐
 *   │        │ journal_begin: OPEN superblock (flushed with the records)   │
 *   │        ▼                                                             │
 *   │      OPEN ─── journal_add_data / _add_zero / _add_barrier: verify,   │
 *   │        │         append (a barrier is a header-only record)          │
 *   │        │                                                             │
 *   │        │ journal_commit: flush records, COMMITTED superblock, flush  │
 *   │        ▼            (the epoch may be acknowledged from here)        │
 *   │    COMMITTED ── journal_apply / journal_recover (replay): verify all,│
 *   │                 write the standby (draining it at each barrier),     │
 *   │                 flush it, APPLIED superblock, flush ─────────────────┘
 *   │
 *   └── OPEN: journal_abort or an add_* error (in memory), journal_recover
 *       (EMPTY superblock, flushed); any state: journal_reset (for a resync).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "journal.h"
#include "pvrepl_assert.h"

int (*journal_io_hook)(struct kfio_queue *q, const struct journal_io_point *p);

/* Registered buffers: the superblock, a buffer that stays zero, then the pool. */
#define JOURNAL_BUF_SUPER      0u
#define JOURNAL_BUF_ZERO       1u
#define JOURNAL_BUF_POOL_FIRST 2u
#define JOURNAL_BUF_NONE       UINT32_MAX
#define JOURNAL_REAP_BATCH     32u
#define JOURNAL_SUBMIT_BATCH   8u
/* Hashes converted to little-endian per step of a record checksum (4 KiB of stack). */
#define JOURNAL_HASH_CHUNK	512u
#define JOURNAL_BLOCK_COUNT_MAX (1ull << 32)

struct journal {
	char dir[KFIO_PATH_MAX];
	char path[KFIO_PATH_MAX];
	struct kfio_dev jdev; /* the journal file; dev 0 of the queue */
	bool jdev_open;
	struct kfio_dev *standby; /* borrowed; dev 1 */
	struct kfio_queue *q;

	uint32_t block_bytes;
	uint32_t buf_bytes;
	uint64_t volume_bytes;
	uint64_t volume_blocks;
	uint64_t journal_bytes;
	uint64_t area_bytes;		    /* journal_bytes - JOURNAL_DISK_RECORDS_OFFSET */
	uint64_t full_written, full_needed; /* the last epoch that did not fit */
	uint8_t volume_id[JOURNAL_DISK_VOLUME_ID_BYTES];
	uint64_t zero_hash;	 /* xxh3 of a zero block */
	uint64_t zero_tail_hash; /* xxh3 of the zero short last block (or zero_hash) */

	/* free registered buffers of the pool (a stack of indices) */
	uint32_t *free_bufs;
	uint32_t free_count;
	uint32_t pool_count;

	/* the newest superblock written or read, host order */
	struct journal_disk_super sb;
	uint64_t sb_sequence_loaded; /* sb.sequence at open: a larger one was written here */
	/* sb's epoch and record fields were set by this process (journal_begin, a
	 * discard, journal_reset), not read from disk: only then may
	 * journal_check_invariants hold them to the rules of their state */
	bool sb_epoch_ours;
	bool sb_unflushed; /* sb written, no journal flush since */
	bool sb_inflight;  /* the superblock buffer is being written */
	enum journal_state found;
	enum journal_state state; /* in memory; differs from sb.state after an abort */
	bool need_recover;
	bool failed;

	/* the open epoch */
	uint64_t tail; /* bytes of records written */
	uint64_t record_count;
	struct delta_stream chain;

	/* The record stream of the open epoch: buffer wbuf holds wfill bytes for
	 * woff, written when it is full or at the commit (records are not written
	 * one by one: a scattered epoch is thousands of 20 KiB records). */
	uint32_t wbuf;
	uint32_t wfill;
	uint64_t woff;

	/* the one read in flight */
	bool read_done;
	/* The read-ahead window of jrn_walk: records_bytes of a scattered epoch are
	 * thousands of small records, read in buf_bytes pieces, not one by one. */
	uint32_t win_buf; /* JOURNAL_BUF_NONE outside a walk */
	uint64_t win_off; /* file offset of the window's first byte */
	uint32_t win_len; /* 0: empty */
	int32_t read_res;

	uint64_t io_index;
	uint32_t unsubmitted; /* batched writes queued since the last submit */
	char err[JOURNAL_ERR_MAX];
};

/* --------------------------------------------------------------- helpers */

__attribute__((format(printf, 2, 3))) static void jrn_errf(struct journal *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->err, sizeof(j->err), fmt, ap);
	va_end(ap);
}

/* An I/O failure: the journal refuses further work until it is reopened. */
__attribute__((format(printf, 3, 4))) static int jrn_fail(struct journal *j, int rc,
							  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->err, sizeof(j->err), fmt, ap);
	va_end(ap);
	j->failed = true;
	return rc;
}

/* A superblock's sequence at or past this is damage (see jrn_super_decode). */
#define JOURNAL_SEQUENCE_MAX (UINT64_MAX / 2)

static const char *jrn_state_name(uint32_t state)
{
	switch (state) {
	case JOURNAL_DISK_STATE_EMPTY:
		return "empty";
	case JOURNAL_DISK_STATE_OPEN:
		return "open";
	case JOURNAL_DISK_STATE_COMMITTED:
		return "committed";
	case JOURNAL_DISK_STATE_APPLIED:
		return "applied";
	default:
		return "unknown";
	}
}

static uint64_t jrn_round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}

/* Bytes of block b of the volume: block_bytes, or less for the last block. */
static uint32_t jrn_block_len(const struct journal *j, uint64_t b)
{
	uint64_t left = j->volume_bytes - b * j->block_bytes;

	ASSERT(b < j->volume_blocks);
	return left < j->block_bytes ? (uint32_t)left : j->block_bytes;
}

/* Plaintext bytes of the run [first, first + count). */
static uint64_t jrn_run_bytes(const struct journal *j, uint64_t first, uint64_t count)
{
	uint64_t end = (first + count) * j->block_bytes;

	if (end > j->volume_bytes)
		end = j->volume_bytes;
	return end - first * j->block_bytes;
}

/* The header section of a record: header, hashes, padded to 4 KiB. */
static uint64_t jrn_header_section_bytes(uint32_t type, uint64_t block_count)
{
	uint64_t n = sizeof(struct journal_disk_record);

	if (type == JOURNAL_DISK_RECORD_DATA)
		n += block_count * sizeof(uint64_t);
	return jrn_round_up(n, JOURNAL_DISK_ALIGN_BYTES);
}

static uint64_t jrn_data_section_bytes(const struct journal *j, uint32_t type, uint64_t block_count)
{
	if (type != JOURNAL_DISK_RECORD_DATA)
		return 0;
	return jrn_round_up(block_count * j->block_bytes, JOURNAL_DISK_ALIGN_BYTES);
}

static uint64_t jrn_record_bytes(const struct journal *j, uint32_t type, uint64_t block_count)
{
	return jrn_header_section_bytes(type, block_count) +
	       jrn_data_section_bytes(j, type, block_count);
}

/*
 * A broken invariant names itself before the ASSERT around the call aborts: one
 * boolean would not say which of the checks below failed.
 */
#define JRN_INVARIANT(cond)                                                                      \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "pvrepl: journal invariant broken: %s (%s:%d)\n", #cond, \
				__FILE__, __LINE__);                                             \
			return false;                                                            \
		}                                                                                \
	} while (0)

/*
 * Only from ASSERT (SQLite's pager_check_invariants): the in-memory state agrees
 * with itself between calls (at entry and exit of every public function that
 * changes it, and between records). It reads only what this code computed or has
 * already validated (jrn_super_decode, jrn_check_identity, the size checks of
 * journal_open): bytes fresh from disk are errors elsewhere, never asserts here.
 */
static bool journal_check_invariants(const struct journal *j)
{
	uint64_t seen[JOURNAL_QUEUE_DEPTH_MAX / 64] = { 0 };
	uint32_t bb = j->block_bytes;

	/* Geometry, fixed at journal_open. */
	JRN_INVARIANT(bb >= JOURNAL_BLOCK_BYTES_MIN && bb <= JOURNAL_BLOCK_BYTES_MAX);
	JRN_INVARIANT((bb & (bb - 1)) == 0);
	JRN_INVARIANT(j->volume_bytes > 0);
	JRN_INVARIANT(j->volume_blocks == (j->volume_bytes - 1) / bb + 1);
	JRN_INVARIANT(j->volume_blocks <= JOURNAL_BLOCK_COUNT_MAX);
	JRN_INVARIANT(j->journal_bytes >= JOURNAL_BYTES_MIN);
	JRN_INVARIANT(j->journal_bytes % JOURNAL_DISK_ALIGN_BYTES == 0);
	JRN_INVARIANT(j->area_bytes == j->journal_bytes - JOURNAL_DISK_RECORDS_OFFSET);
	/* a buffer holds whole 4 KiB units, whole blocks, and the header section of
	 * the largest DATA record (jrn_record_load reads it in one piece) */
	JRN_INVARIANT(j->buf_bytes % JOURNAL_DISK_ALIGN_BYTES == 0 && j->buf_bytes % bb == 0);
	JRN_INVARIANT(jrn_header_section_bytes(JOURNAL_DISK_RECORD_DATA,
					       JOURNAL_RECORD_BLOCKS_MAX) <= j->buf_bytes);
	/* the superblock describes this journal (jrn_check_identity at open; every
	 * later superblock is written from j->sb) */
	JRN_INVARIANT(j->sb.block_bytes == bb && j->sb.volume_bytes == j->volume_bytes);
	JRN_INVARIANT(j->sb.journal_bytes == j->journal_bytes);
	JRN_INVARIANT(memcmp(j->sb.volume_id, j->volume_id, sizeof(j->volume_id)) == 0);

	/* States: named ones only (jrn_super_decode refused the others). */
	JRN_INVARIANT(j->state >= JOURNAL_EMPTY && j->state <= JOURNAL_APPLIED);
	JRN_INVARIANT(j->found >= JOURNAL_EMPTY && j->found <= JOURNAL_APPLIED);
	JRN_INVARIANT(j->sb.state >= JOURNAL_DISK_STATE_EMPTY &&
		      j->sb.state <= JOURNAL_DISK_STATE_APPLIED);

	/* The pool: every free index is a distinct pool buffer; no buffer is held
	 * between calls (the stream, the walk's window). */
	JRN_INVARIANT(j->pool_count >= JOURNAL_QUEUE_DEPTH_MIN);
	JRN_INVARIANT(j->pool_count <= JOURNAL_QUEUE_DEPTH_MAX);
	JRN_INVARIANT(j->free_count <= j->pool_count);
	for (uint32_t i = 0; i < j->free_count; i++) {
		uint32_t k = j->free_bufs[i] - JOURNAL_BUF_POOL_FIRST;

		JRN_INVARIANT(j->free_bufs[i] >= JOURNAL_BUF_POOL_FIRST && k < j->pool_count);
		JRN_INVARIANT(((seen[k / 64] >> (k % 64)) & 1) == 0);
		seen[k / 64] |= 1ull << (k % 64);
	}
	/* Outside an open epoch nothing is buffered; inside one, a partly filled
	 * buffer of whole 4 KiB units may wait for more records. */
	if (j->state != JOURNAL_OPEN)
		JRN_INVARIANT(j->wbuf == JOURNAL_BUF_NONE && j->wfill == 0);
	JRN_INVARIANT(j->wbuf != JOURNAL_BUF_NONE || j->wfill == 0);
	JRN_INVARIANT(j->wfill % JOURNAL_DISK_ALIGN_BYTES == 0 && j->wfill < j->buf_bytes);
	JRN_INVARIANT(j->win_buf == JOURNAL_BUF_NONE && j->win_len <= j->buf_bytes);

	/* The record stream (invariant 5): 4 KiB-aligned, inside the file. A record
	 * is at least one 4 KiB unit. While an epoch is open, the stream stands at
	 * its tail (a failed record may have moved woff; the epoch was dropped). */
	JRN_INVARIANT(j->tail % JOURNAL_DISK_ALIGN_BYTES == 0 && j->tail <= j->area_bytes);
	JRN_INVARIANT(j->record_count <= j->tail / JOURNAL_DISK_ALIGN_BYTES);
	JRN_INVARIANT(j->woff % JOURNAL_DISK_ALIGN_BYTES == 0);
	JRN_INVARIANT(j->woff >= JOURNAL_DISK_RECORDS_OFFSET && j->woff <= j->journal_bytes);
	JRN_INVARIANT(j->state != JOURNAL_OPEN ||
		      j->woff + j->wfill == JOURNAL_DISK_RECORDS_OFFSET + j->tail);
	JRN_INVARIANT(j->sb.records_bytes % JOURNAL_DISK_ALIGN_BYTES == 0);
	JRN_INVARIANT(j->sb.records_bytes <= j->area_bytes);

	/* Superblock sequence: it only grows; an unflushed one was written here. */
	JRN_INVARIANT(j->sb.sequence >= j->sb_sequence_loaded);
	JRN_INVARIANT(!j->sb_unflushed || j->sb.sequence > j->sb_sequence_loaded);
	/* An epoch open or committed in memory was found so on disk (and waits for
	 * journal_recover) or was begun by this process, which wrote a superblock. */
	JRN_INVARIANT(j->need_recover ||
		      !(j->state == JOURNAL_OPEN || j->state == JOURNAL_COMMITTED) ||
		      (j->sb_epoch_ours && j->sb.sequence > j->sb_sequence_loaded));
	/* An epoch committed here: the superblock names exactly its records. */
	JRN_INVARIANT(j->state != JOURNAL_COMMITTED || j->need_recover ||
		      (j->sb.record_count == j->record_count && j->sb.records_bytes == j->tail));

	/* After an I/O error the superblock in memory may be a step ahead of the
	 * state (written, or only prepared): the disk is known only to recovery. */
	if (j->failed)
		return true;
	JRN_INVARIANT(!j->sb_inflight || j->sb_unflushed);
	/* Between calls nothing is in flight but record writes, each holding one
	 * pool buffer, and the superblock write: flushes, reads and the standby
	 * writes of an apply are waited for. The buffer being filled is held but
	 * not in flight. So no pool buffer leaked. */
	JRN_INVARIANT(kfio_queue_inflight(j->q) + (j->wbuf != JOURNAL_BUF_NONE ? 1u : 0u) ==
		      j->pool_count - j->free_count + (j->sb_inflight ? 1u : 0u));
	/* The state in memory is the superblock's, except an epoch dropped in memory
	 * (journal_abort, an add_* error): EMPTY over an OPEN superblock. */
	JRN_INVARIANT(j->state == (enum journal_state)j->sb.state ||
		      (j->state == JOURNAL_EMPTY && j->sb.state == JOURNAL_DISK_STATE_OPEN));
	if (!j->sb_epoch_ours)
		return true;
	/* The epoch fields as this process set them, per superblock state. */
	switch (j->sb.state) {
	case JOURNAL_DISK_STATE_EMPTY:
		JRN_INVARIANT(j->sb.epoch == 0);
		JRN_INVARIANT(j->sb.record_count == 0 && j->sb.records_bytes == 0);
		JRN_INVARIANT(j->sb.records_checksum == 0);
		break;
	case JOURNAL_DISK_STATE_OPEN:
		/* journal_commit fills the record fields in the COMMITTED one */
		JRN_INVARIANT(j->sb.epoch > 0 && j->sb.base_epoch < j->sb.epoch);
		JRN_INVARIANT(j->sb.record_count == 0 && j->sb.records_bytes == 0);
		JRN_INVARIANT(j->sb.records_checksum == 0);
		break;
	case JOURNAL_DISK_STATE_COMMITTED:
	case JOURNAL_DISK_STATE_APPLIED:
		JRN_INVARIANT(j->sb.epoch > 0 && j->sb.base_epoch < j->sb.epoch);
		JRN_INVARIANT(j->sb.record_count <= j->sb.records_bytes / JOURNAL_DISK_ALIGN_BYTES);
		JRN_INVARIANT(j->sb.state != JOURNAL_DISK_STATE_APPLIED ||
			      j->sb.applied_epoch == j->sb.epoch);
		break;
	}
	return true;
}

/*
 * The body of a public function that changes state, run between two checks of
 * the invariants: on entry and on every way out, errors included.
 */
#define JRN_CHECKED(j, call)                         \
	__extension__({                              \
		int jrn_rc_;                         \
		ASSERT(journal_check_invariants(j)); \
		jrn_rc_ = (call);                    \
		ASSERT(journal_check_invariants(j)); \
		jrn_rc_;                             \
	})

/* ------------------------------------------------------------ superblock */

static uint64_t jrn_super_checksum(const struct journal_disk_super *s)
{
	return delta_hash_seeded(s, offsetof(struct journal_disk_super, checksum),
				 JOURNAL_DISK_SEED_SUPER);
}

/* Encodes s (host order) into a zeroed slot image. */
static void jrn_super_encode(const struct journal_disk_super *s, void *slot)
{
	struct journal_disk_super d;

	memset(&d, 0, sizeof(d));
	d.magic = htole64(JOURNAL_DISK_SUPER_MAGIC);
	d.format_version = htole32(JOURNAL_DISK_VERSION);
	d.block_bytes = htole32(s->block_bytes);
	memcpy(d.volume_id, s->volume_id, sizeof(d.volume_id));
	d.volume_bytes = htole64(s->volume_bytes);
	d.journal_bytes = htole64(s->journal_bytes);
	d.sequence = htole64(s->sequence);
	d.state = htole32(s->state);
	d.epoch = htole64(s->epoch);
	d.generation = htole64(s->generation);
	d.base_epoch = htole64(s->base_epoch);
	d.applied_epoch = htole64(s->applied_epoch);
	d.record_count = htole64(s->record_count);
	d.records_bytes = htole64(s->records_bytes);
	d.records_checksum = htole64(s->records_checksum);
	d.checksum = htole64(jrn_super_checksum(&d));
	memset(slot, 0, JOURNAL_DISK_SLOT_BYTES);
	memcpy(slot, &d, sizeof(d));
}

/*
 * Decodes slot k. Returns 1 for a valid superblock (in *out, host order), 0 for a
 * blank slot (all zero), -EBADMSG for anything else (*why says what).
 */
static int jrn_super_decode(const void *slot, unsigned k, struct journal_disk_super *out,
			    const char **why)
{
	struct journal_disk_super d;

	memcpy(&d, slot, sizeof(d));
	if (delta_is_zero(slot, JOURNAL_DISK_SLOT_BYTES))
		return 0;
	if (le64toh(d.magic) != JOURNAL_DISK_SUPER_MAGIC) {
		*why = "bad magic (not a pvrepl journal superblock)";
		return -EBADMSG;
	}
	if (le64toh(d.checksum) != jrn_super_checksum(&d)) {
		*why = "checksum mismatch (torn or damaged)";
		return -EBADMSG;
	}
	if (le32toh(d.format_version) != JOURNAL_DISK_VERSION) {
		*why = "unknown format version";
		return -EBADMSG;
	}
	memset(out, 0, sizeof(*out));
	out->magic = JOURNAL_DISK_SUPER_MAGIC;
	out->format_version = JOURNAL_DISK_VERSION;
	out->block_bytes = le32toh(d.block_bytes);
	memcpy(out->volume_id, d.volume_id, sizeof(out->volume_id));
	out->volume_bytes = le64toh(d.volume_bytes);
	out->journal_bytes = le64toh(d.journal_bytes);
	out->sequence = le64toh(d.sequence);
	out->state = le32toh(d.state);
	out->epoch = le64toh(d.epoch);
	out->generation = le64toh(d.generation);
	out->base_epoch = le64toh(d.base_epoch);
	out->applied_epoch = le64toh(d.applied_epoch);
	out->record_count = le64toh(d.record_count);
	out->records_bytes = le64toh(d.records_bytes);
	out->records_checksum = le64toh(d.records_checksum);
	if (out->sequence % JOURNAL_DISK_SLOTS != k) {
		*why = "its sequence number belongs to the other slot";
		return -EBADMSG;
	}
	/* +1 per superblock write: no journal lives to half of 2^64 (and the next
	 * write must not wrap to a sequence that loses to this one). */
	if (out->sequence >= JOURNAL_SEQUENCE_MAX) {
		*why = "its sequence number is out of range";
		return -EBADMSG;
	}
	if (out->state < JOURNAL_DISK_STATE_EMPTY || out->state > JOURNAL_DISK_STATE_APPLIED) {
		*why = "unknown state";
		return -EBADMSG;
	}
	if (out->journal_bytes < JOURNAL_BYTES_MIN ||
	    out->journal_bytes % JOURNAL_DISK_ALIGN_BYTES != 0 ||
	    out->records_bytes > out->journal_bytes - JOURNAL_DISK_RECORDS_OFFSET ||
	    out->records_bytes % JOURNAL_DISK_ALIGN_BYTES != 0) {
		*why = "sizes out of range";
		return -EBADMSG;
	}
	return 1;
}

/* ----------------------------------------------------------- queue I/O */

static int jrn_complete(struct journal *j, const struct kfio_cqe *c)
{
	const char *name = c->dev_idx == JOURNAL_DEV_JOURNAL ? j->path : j->standby->path;

	switch (c->op) {
	case KFIO_OP_READ:
		/* the reader keeps its buffer and checks res */
		j->read_done = true;
		j->read_res = c->res;
		return 0;
	case KFIO_OP_WRITE:
		if (c->buf_idx == JOURNAL_BUF_SUPER)
			j->sb_inflight = false;
		if (c->buf_idx >= JOURNAL_BUF_POOL_FIRST) {
			ASSERT(j->free_count < j->pool_count);
			j->free_bufs[j->free_count++] = c->buf_idx;
		}
		if (c->res != (int32_t)c->len)
			return jrn_fail(j, c->res < 0 ? c->res : -EIO,
					"%s: write of %u bytes at offset %" PRIu64 " failed (%s)",
					name, c->len, c->offset,
					c->res < 0 ? strerror(-c->res) : "short write");
		return 0;
	case KFIO_OP_FLUSH:
		if (c->res != 0)
			return jrn_fail(j, c->res < 0 ? c->res : -EIO, "%s: flush failed (%s)",
					name, strerror(c->res < 0 ? -c->res : EIO));
		return 0;
	default:
		return jrn_fail(j, -EIO, "%s: unexpected completion (op %u)", name, c->op);
	}
}

/* Reaps what is there, waiting for at least min_wait completions. */
static int jrn_reap(struct journal *j, unsigned min_wait)
{
	struct kfio_cqe cqes[JOURNAL_REAP_BATCH];
	int n, rc = 0;

	ASSERT(min_wait <= kfio_queue_inflight(j->q));
	n = kfio_queue_reap(j->q, cqes, JOURNAL_REAP_BATCH, min_wait);
	if (n < 0)
		return jrn_fail(j, n, "%s: reaping I/O completions failed: %s", j->path,
				kfio_queue_err(j->q));
	for (int i = 0; i < n; i++) {
		int r = jrn_complete(j, &cqes[i]);

		if (r != 0 && rc == 0)
			rc = r; /* keep reaping: buffers must come back */
	}
	return rc;
}

/* Waits for everything in flight; returns the first error among them. */
static int jrn_drain(struct journal *j)
{
	int rc = 0;

	while (kfio_queue_inflight(j->q) > 0) {
		uint32_t before = kfio_queue_inflight(j->q);
		int r = jrn_reap(j, 1);

		if (r != 0 && rc == 0)
			rc = r;
		if (kfio_queue_inflight(j->q) == before)
			break; /* the queue itself failed: nothing more will complete */
	}
	return rc;
}

/* Waits until the queue can take one more request. */
static int jrn_room(struct journal *j)
{
	while (kfio_queue_inflight(j->q) >= kfio_queue_depth(j->q)) {
		int rc = jrn_reap(j, 1);

		if (rc != 0)
			return rc;
	}
	return 0;
}

static int jrn_submit(struct journal *j)
{
	int rc = kfio_queue_submit(j->q);

	if (rc < 0)
		return jrn_fail(j, rc, "%s: submitting I/O failed: %s", j->path,
				kfio_queue_err(j->q));
	return 0;
}

/* A write or flush is about to be queued: the test hook may cut power here. */
static int jrn_point(struct journal *j, const char *what, unsigned dev_idx, uint64_t offset,
		     uint32_t len)
{
	struct journal_io_point p = {
		.index = j->io_index++,
		.what = what,
		.dev_idx = dev_idx,
		.offset = offset,
		.len = len,
	};
	int rc;

	if (journal_io_hook == NULL)
		return 0;
	rc = journal_io_hook(j->q, &p);
	if (rc != 0)
		return jrn_fail(j, rc, "%s: stopped before I/O %" PRIu64 " (%s) by the test hook",
				j->path, p.index, what);
	return 0;
}

/*
 * Queues a write; it is submitted at once, or (batch) with the next
 * JOURNAL_SUBMIT_BATCH - 1 batched writes: the apply of a scattered epoch is
 * thousands of block writes, one system call each otherwise. Whatever waits
 * for a completion submits what is queued first (kfio_queue_reap).
 */
static int jrn_write_queue(struct journal *j, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
			   uint32_t len, const char *what, bool batch)
{
	int rc;

	if (j->failed)
		return -EIO;
	rc = jrn_point(j, what, dev_idx, offset, len);
	if (rc == 0)
		rc = jrn_room(j);
	if (rc != 0) {
		if (buf_idx >= JOURNAL_BUF_POOL_FIRST)
			j->free_bufs[j->free_count++] = buf_idx;
		return rc;
	}
	if (buf_idx == JOURNAL_BUF_SUPER)
		j->sb_inflight = true;
	rc = kfio_queue_write(j->q, dev_idx, buf_idx, offset, len, offset);
	if (rc != 0) {
		if (buf_idx >= JOURNAL_BUF_POOL_FIRST)
			j->free_bufs[j->free_count++] = buf_idx;
		return jrn_fail(j, rc, "%s", kfio_queue_err(j->q));
	}
	if (batch && ++j->unsubmitted < JOURNAL_SUBMIT_BATCH)
		return 0;
	j->unsubmitted = 0;
	return jrn_submit(j);
}

static int jrn_write(struct journal *j, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		     uint32_t len, const char *what)
{
	return jrn_write_queue(j, dev_idx, buf_idx, offset, len, what, false);
}

/* Flushes dev_idx and waits for it and for everything queued before it. */
static int jrn_flush(struct journal *j, unsigned dev_idx)
{
	int rc;

	if (j->failed)
		return -EIO;
	rc = jrn_point(j, "flush", dev_idx, 0, 0);
	if (rc == 0)
		rc = jrn_room(j);
	if (rc != 0)
		return rc;
	rc = kfio_queue_flush(j->q, dev_idx, 0);
	if (rc != 0)
		return jrn_fail(j, rc, "%s", kfio_queue_err(j->q));
	rc = jrn_submit(j);
	if (rc == 0)
		rc = jrn_drain(j);
	if (rc == 0 && dev_idx == JOURNAL_DEV_JOURNAL)
		j->sb_unflushed = false;
	return rc;
}

/* Reads len bytes at offset into buffer buf_idx and waits for them. */
static int jrn_read(struct journal *j, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		    uint32_t len)
{
	const char *name = dev_idx == JOURNAL_DEV_JOURNAL ? j->path : j->standby->path;
	int rc;

	if (j->failed)
		return -EIO;
	rc = jrn_room(j);
	if (rc != 0)
		return rc;
	j->read_done = false;
	rc = kfio_queue_read(j->q, dev_idx, buf_idx, offset, len, offset);
	if (rc != 0)
		return jrn_fail(j, rc, "%s", kfio_queue_err(j->q));
	rc = jrn_submit(j);
	while (rc == 0 && !j->read_done)
		rc = jrn_reap(j, 1);
	if (rc != 0)
		return rc;
	if (j->read_res != (int32_t)len)
		return jrn_fail(j, j->read_res < 0 ? j->read_res : -EIO,
				"%s: read of %u bytes at offset %" PRIu64 " failed (%s)", name, len,
				offset, j->read_res < 0 ? strerror(-j->read_res) : "short read");
	return 0;
}

/*
 * A read of the record area during a walk: served from the read-ahead window when
 * it lies inside, else the window is refilled from offset (one large read). Large
 * reads (more than half a buffer: the data of long runs) go straight to buf_idx.
 */
static int jrn_read_records(struct journal *j, uint32_t buf_idx, uint64_t offset, uint32_t len)
{
	uint64_t end = JOURNAL_DISK_RECORDS_OFFSET + j->sb.records_bytes;
	uint64_t want;
	int rc;

	if (j->win_buf == JOURNAL_BUF_NONE || len > j->buf_bytes / 2)
		return jrn_read(j, JOURNAL_DEV_JOURNAL, buf_idx, offset, len);
	if (j->win_len == 0 || offset < j->win_off || offset + len > j->win_off + j->win_len) {
		want = end > offset ? jrn_round_up(end - offset, JOURNAL_DISK_ALIGN_BYTES) : 0;
		if (want < len)
			want = len;
		if (want > j->buf_bytes)
			want = j->buf_bytes;
		j->win_len = 0;
		rc = jrn_read(j, JOURNAL_DEV_JOURNAL, j->win_buf, offset, (uint32_t)want);
		if (rc != 0)
			return rc;
		j->win_off = offset;
		j->win_len = (uint32_t)want;
	}
	memcpy(kfio_queue_buf(j->q, buf_idx),
	       (const unsigned char *)kfio_queue_buf(j->q, j->win_buf) + (offset - j->win_off),
	       len);
	return 0;
}

/* Takes a free pool buffer, waiting for a write to complete if there is none. */
static int jrn_buf_get(struct journal *j, uint32_t *idx)
{
	while (j->free_count == 0) {
		int rc;

		ASSERT(kfio_queue_inflight(j->q) > 0);
		rc = jrn_reap(j, 1);
		if (rc != 0)
			return rc;
	}
	*idx = j->free_bufs[--j->free_count];
	return 0;
}

static void jrn_buf_put(struct journal *j, uint32_t *idx)
{
	if (*idx == JOURNAL_BUF_NONE)
		return;
	ASSERT(*idx >= JOURNAL_BUF_POOL_FIRST);
	ASSERT(j->free_count < j->pool_count);
	j->free_bufs[j->free_count++] = *idx;
	*idx = JOURNAL_BUF_NONE;
}

/*
 * Writes j->sb with state to its slot (sequence + 1). Invariant 1: if the last
 * superblock is not yet durable, flush it first, so a torn write of this one
 * can only fall back to a durable state.
 */
static int jrn_super_write(struct journal *j, uint32_t state)
{
	uint64_t slot;
	int rc;

	if (j->sb_unflushed) {
		rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
		if (rc != 0)
			return rc;
	}
	ASSERT(!j->sb_inflight);
	if (j->sb.sequence + 1 >= JOURNAL_SEQUENCE_MAX) /* unreachable: decode refuses it */
		return -EOVERFLOW;
	j->sb.sequence++;
	j->sb.state = state;
	slot = (j->sb.sequence % JOURNAL_DISK_SLOTS) * JOURNAL_DISK_SLOT_BYTES;
	jrn_super_encode(&j->sb, kfio_queue_buf(j->q, JOURNAL_BUF_SUPER));
	rc = jrn_write(j, JOURNAL_DEV_JOURNAL, JOURNAL_BUF_SUPER, slot, JOURNAL_DISK_SLOT_BYTES,
		       "super");
	if (rc == 0)
		j->sb_unflushed = true;
	return rc;
}

/* ------------------------------------------------------- record streaming */

/* Writes out the current buffer (padded to 4 KiB by the caller). */
static int jrn_put_emit(struct journal *j)
{
	uint32_t buf = j->wbuf, len = j->wfill;
	uint64_t off = j->woff;

	if (buf == JOURNAL_BUF_NONE || len == 0)
		return 0;
	ASSERT(len % JOURNAL_DISK_ALIGN_BYTES == 0);
	j->wbuf = JOURNAL_BUF_NONE;
	j->wfill = 0;
	j->woff += len;
	/* the record area ends where the file ends: the engine refuses writes past it */
	ASSERT(off + len <= j->journal_bytes);
	return jrn_write(j, JOURNAL_DEV_JOURNAL, buf, off, len, "record");
}

/* Appends len bytes of src (zeros when src is NULL) to the record stream. */
static int jrn_put(struct journal *j, const void *src, size_t len)
{
	const unsigned char *p = src;

	while (len > 0) {
		uint32_t n;
		unsigned char *dst;
		int rc;

		if (j->wbuf == JOURNAL_BUF_NONE) {
			rc = jrn_buf_get(j, &j->wbuf);
			if (rc != 0)
				return rc;
			j->wfill = 0;
		}
		n = j->buf_bytes - j->wfill;
		if (n > len)
			n = (uint32_t)len;
		dst = (unsigned char *)kfio_queue_buf(j->q, j->wbuf) + j->wfill;
		if (p != NULL) {
			memcpy(dst, p, n);
			p += n;
		} else {
			memset(dst, 0, n);
		}
		j->wfill += n;
		len -= n;
		if (j->wfill == j->buf_bytes) {
			rc = jrn_put_emit(j);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Pads the stream with zeros to the next 4 KiB boundary of the file. */
static int jrn_put_pad(struct journal *j)
{
	uint32_t rem = j->wfill % JOURNAL_DISK_ALIGN_BYTES;

	if (j->wbuf == JOURNAL_BUF_NONE || rem == 0)
		return 0;
	return jrn_put(j, NULL, JOURNAL_DISK_ALIGN_BYTES - rem);
}

/* Checksum of a record's header (checksum field 0) and its hashes as stored. */
static uint64_t jrn_record_checksum(const struct journal_disk_record *le_hdr,
				    const uint64_t *hashes, uint64_t count, bool hashes_le)
{
	struct journal_disk_record h = *le_hdr;
	uint64_t le[JOURNAL_HASH_CHUNK];
	struct delta_stream s;

	h.checksum = 0;
	delta_stream_init(&s, JOURNAL_DISK_SEED_RECORD);
	delta_stream_update(&s, &h, sizeof(h));
	for (uint64_t i = 0; i < count; i += JOURNAL_HASH_CHUNK) {
		uint64_t n = count - i < JOURNAL_HASH_CHUNK ? count - i : JOURNAL_HASH_CHUNK;

		for (uint64_t k = 0; k < n; k++) {
			uint64_t v;

			memcpy(&v, hashes + i + k, sizeof(v));
			le[k] = hashes_le ? v : htole64(v);
		}
		delta_stream_update(&s, le, n * sizeof(le[0]));
	}
	return delta_stream_digest(&s);
}

/* Drops the open epoch in memory: recovery discards what was written of it. */
static void jrn_epoch_drop(struct journal *j)
{
	jrn_buf_put(j, &j->wbuf);
	j->wfill = 0;
	if (j->state == JOURNAL_OPEN)
		j->state = JOURNAL_EMPTY;
}

/* Common entry checks of add_data / add_zero: 0, or the error to return. */
static int jrn_check_open(struct journal *j, const char *what)
{
	if (j->failed)
		return -EIO;
	if (j->state != JOURNAL_OPEN) {
		jrn_errf(j, "%s: %s without an open epoch (state %s)", j->path, what,
			 jrn_state_name(j->state));
		return -EINVAL;
	}
	return 0;
}

/* Bounds of a run; on failure aborts the epoch and returns -EINVAL. */
static int jrn_check_run(struct journal *j, const char *what, uint64_t first_block,
			 uint64_t block_count, uint64_t count_max)
{
	if (block_count == 0 || block_count > count_max || first_block >= j->volume_blocks ||
	    block_count > j->volume_blocks - first_block) {
		jrn_errf(j,
			 "%s: epoch %" PRIu64 ": %s run of blocks %" PRIu64 "+%" PRIu64
			 " is outside the volume's %" PRIu64 " blocks or longer than %" PRIu64
			 "; the epoch is aborted",
			 j->path, j->sb.epoch, what, first_block, block_count, j->volume_blocks,
			 count_max);
		jrn_epoch_drop(j);
		return -EINVAL;
	}
	return 0;
}

static int jrn_check_room(struct journal *j, uint64_t rec_bytes)
{
	if (rec_bytes > j->area_bytes - j->tail) {
		j->full_written = j->tail;
		j->full_needed = rec_bytes;
		jrn_errf(j,
			 "%s: epoch %" PRIu64 " does not fit the journal: %" PRIu64
			 " bytes of records written, the next needs %" PRIu64
			 ", the record area holds %" PRIu64 " (a journal of %" PRIu64
			 " bytes); the epoch is aborted",
			 j->path, j->sb.epoch, j->tail, rec_bytes, j->area_bytes, j->journal_bytes);
		jrn_epoch_drop(j);
		return -ENOSPC;
	}
	return 0;
}

/* The epoch's record is out: account for it in the tail and the chain. */
static void jrn_record_done(struct journal *j, uint64_t rec_bytes, uint64_t checksum)
{
	uint64_t le = htole64(checksum);

	j->tail += rec_bytes;
	j->record_count++;
	delta_stream_update(&j->chain, &le, sizeof(le));
	ASSERT(j->woff + j->wfill == JOURNAL_DISK_RECORDS_OFFSET + j->tail);
	ASSERT(journal_check_invariants(j));
}

static void jrn_record_header(const struct journal *j, struct journal_disk_record *h, uint32_t type,
			      uint64_t first_block, uint32_t block_count, uint32_t plaintext_bytes)
{
	memset(h, 0, sizeof(*h));
	h->magic = htole64(JOURNAL_DISK_RECORD_MAGIC);
	h->type = htole32(type);
	h->block_count = htole32(block_count);
	h->first_block = htole64(first_block);
	h->epoch = htole64(j->sb.epoch);
	h->record_index = htole64(j->record_count);
	h->plaintext_bytes = htole32(plaintext_bytes);
}

/* ----------------------------------------------------------- open/close */

static int jrn_validate_config(const struct journal_config *cfg, struct kfio_dev *standby,
			       char *err, size_t err_len)
{
	uint64_t volume_bytes = cfg->volume_bytes ? cfg->volume_bytes : standby->size_bytes;
	uint32_t bb = cfg->block_bytes;

	if (bb < JOURNAL_BLOCK_BYTES_MIN || bb > JOURNAL_BLOCK_BYTES_MAX || (bb & (bb - 1)) != 0) {
		snprintf(err, err_len, "block size %u is not a power of two in %u..%u", bb,
			 JOURNAL_BLOCK_BYTES_MIN, JOURNAL_BLOCK_BYTES_MAX);
		return -EINVAL;
	}
	if (standby->fd < 0 || standby->read_only) {
		snprintf(err, err_len, "%s: the standby must be open for writing", standby->path);
		return -EBADF;
	}
	if (volume_bytes == 0 || volume_bytes > standby->size_bytes) {
		snprintf(err, err_len,
			 "%s: the standby is %" PRIu64 " bytes, smaller than the volume's %" PRIu64
			 " bytes; give it at least the volume's size",
			 standby->path, standby->size_bytes, volume_bytes);
		return -EINVAL;
	}
	if ((volume_bytes - 1) / bb + 1 > JOURNAL_BLOCK_COUNT_MAX) {
		snprintf(err, err_len,
			 "a volume of %" PRIu64 " bytes has more than 2^32 %u-byte blocks",
			 volume_bytes, bb);
		return -EINVAL;
	}
	/* every standby write starts at a block and ends at a block or the volume's
	 * end: both must suit O_DIRECT on the standby */
	if (standby->dio_offset_align > 1 && (bb % standby->dio_offset_align != 0 ||
					      volume_bytes % standby->dio_offset_align != 0)) {
		snprintf(
			err, err_len,
			"%s: O_DIRECT needs %u-byte alignment, but the block size is %u and the volume %" PRIu64
			" bytes",
			standby->path, standby->dio_offset_align, bb, volume_bytes);
		return -EINVAL;
	}
	if (cfg->queue_depth > JOURNAL_QUEUE_DEPTH_MAX) {
		snprintf(err, err_len, "journal queue depth %u is above the limit of %u",
			 cfg->queue_depth, JOURNAL_QUEUE_DEPTH_MAX);
		return -EINVAL;
	}
	/* the depth is also the pool: one buffer would leave jrn_walk waiting for a
	 * write that is not there (the ASSERT in jrn_buf_get) */
	if (cfg->queue_depth != 0 && cfg->queue_depth < JOURNAL_QUEUE_DEPTH_MIN) {
		snprintf(err, err_len, "journal queue depth %u is below the minimum of %u",
			 cfg->queue_depth, JOURNAL_QUEUE_DEPTH_MIN);
		return -EINVAL;
	}
	if (cfg->buf_bytes != 0 &&
	    (cfg->buf_bytes < JOURNAL_BUF_BYTES_MIN || cfg->buf_bytes > KFIO_BUF_BYTES_MAX ||
	     cfg->buf_bytes % JOURNAL_DISK_ALIGN_BYTES != 0 || cfg->buf_bytes % bb != 0)) {
		snprintf(
			err, err_len,
			"journal buffer size %u must be a multiple of 4096 and of the %u-byte block size, %u..%u bytes",
			cfg->buf_bytes, bb, JOURNAL_BUF_BYTES_MIN, KFIO_BUF_BYTES_MAX);
		return -EINVAL;
	}
	if (cfg->journal_max_bytes != 0 && cfg->journal_max_bytes < JOURNAL_BYTES_MIN) {
		snprintf(err, err_len, "journal_max_bytes %" PRIu64 " is below the minimum of %llu",
			 cfg->journal_max_bytes, (unsigned long long)JOURNAL_BYTES_MIN);
		return -EINVAL;
	}
	return 0;
}

/*
 * Creates `journal`: journal.tmp preallocated to journal_bytes (a fixed file
 * keeps every later write inside it, and fdatasync then has no size or extent
 * metadata to persist), an EMPTY superblock in slot 1, fsync, rename, fsync of
 * the directory. A crash leaves no `journal` or a whole one. These few
 * synchronous writes are outside the queue: they happen once, before any epoch.
 */
static int jrn_create(struct journal *j)
{
	unsigned char *slot = NULL;
	struct journal_disk_super s;
	int dirfd, fd = -1, rc;

	dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = -errno;
		jrn_errf(j, "%s: cannot open the state directory: %s", j->dir, strerror(-rc));
		return rc;
	}
	fd = openat(dirfd, JOURNAL_TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		jrn_errf(j, "%s/%s: cannot create: %s", j->dir, JOURNAL_TMP_FILE, strerror(-rc));
		goto close_dir;
	}
	rc = posix_fallocate(fd, 0, (off_t)j->journal_bytes);
	if (rc != 0) {
		rc = -rc;
		jrn_errf(j, "%s/%s: cannot preallocate %" PRIu64 " bytes: %s", j->dir,
			 JOURNAL_TMP_FILE, j->journal_bytes, strerror(-rc));
		goto close_fd;
	}
	slot = calloc(1, JOURNAL_DISK_SLOT_BYTES);
	if (slot == NULL) {
		rc = -ENOMEM;
		goto close_fd;
	}
	memset(&s, 0, sizeof(s));
	s.block_bytes = j->block_bytes;
	memcpy(s.volume_id, j->volume_id, sizeof(s.volume_id));
	s.volume_bytes = j->volume_bytes;
	s.journal_bytes = j->journal_bytes;
	s.sequence = 1;
	s.state = JOURNAL_DISK_STATE_EMPTY;
	jrn_super_encode(&s, slot);
	if (pwrite(fd, slot, JOURNAL_DISK_SLOT_BYTES, JOURNAL_DISK_SLOT_BYTES) !=
	    (ssize_t)JOURNAL_DISK_SLOT_BYTES) {
		rc = errno ? -errno : -EIO;
		jrn_errf(j, "%s/%s: cannot write the superblock: %s", j->dir, JOURNAL_TMP_FILE,
			 strerror(-rc));
		goto free_slot;
	}
	/* content and allocation durable before the name: else a power cut after
	 * the rename could leave `journal` without its superblock */
	if (fsync(fd) < 0) {
		rc = -errno;
		jrn_errf(j, "%s/%s: fsync failed: %s", j->dir, JOURNAL_TMP_FILE, strerror(-rc));
		goto free_slot;
	}
	if (renameat(dirfd, JOURNAL_TMP_FILE, dirfd, JOURNAL_FILE) < 0) {
		rc = -errno;
		jrn_errf(j, "%s/%s: rename failed: %s", j->dir, JOURNAL_FILE, strerror(-rc));
		goto free_slot;
	}
	/* the name durable before the first epoch relies on the file */
	if (fsync(dirfd) < 0) {
		rc = -errno;
		jrn_errf(j, "%s: fsync of the state directory failed: %s", j->dir, strerror(-rc));
		goto free_slot;
	}
	rc = 0;
free_slot:
	free(slot);
close_fd:
	close(fd);
	/* A partial journal.tmp (a full disk, say) must not keep the space. */
	if (rc != 0)
		unlinkat(dirfd, JOURNAL_TMP_FILE, 0);
close_dir:
	close(dirfd);
	return rc;
}

/* Reads both superblock slots and takes the newest valid one (invariant 1). */
static int jrn_super_load(struct journal *j)
{
	struct journal_disk_super best, cur;
	const char *why[JOURNAL_DISK_SLOTS] = { "", "" };
	int res[JOURNAL_DISK_SLOTS];
	bool have = false;
	int rc;

	memset(&best, 0, sizeof(best));
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++) {
		rc = jrn_read(j, JOURNAL_DEV_JOURNAL, JOURNAL_BUF_SUPER,
			      (uint64_t)k * JOURNAL_DISK_SLOT_BYTES, JOURNAL_DISK_SLOT_BYTES);
		if (rc != 0)
			return rc;
		res[k] =
			jrn_super_decode(kfio_queue_buf(j->q, JOURNAL_BUF_SUPER), k, &cur, &why[k]);
		if (res[k] == 1 && (!have || cur.sequence > best.sequence)) {
			best = cur;
			have = true;
		}
	}
	if (!have) {
		jrn_errf(
			j,
			"%s: no valid superblock: the copy at offset 0 is %s, the copy at offset %u is %s; the journal is damaged and the standby may hold part of an epoch: remove the volume's state directory (the one holding this journal) and it resyncs from scratch",
			j->path, res[0] == 0 ? "blank" : why[0], JOURNAL_DISK_SLOT_BYTES,
			res[1] == 0 ? "blank" : why[1]);
		return -EBADMSG;
	}
	j->sb = best;
	return 0;
}

static int jrn_check_identity(struct journal *j)
{
	char want[2 * JOURNAL_DISK_VOLUME_ID_BYTES + 1], have[2 * JOURNAL_DISK_VOLUME_ID_BYTES + 1];

	if (memcmp(j->sb.volume_id, j->volume_id, sizeof(j->volume_id)) != 0) {
		for (unsigned i = 0; i < JOURNAL_DISK_VOLUME_ID_BYTES; i++) {
			snprintf(want + 2 * i, 3, "%02x", j->volume_id[i]);
			snprintf(have + 2 * i, 3, "%02x", j->sb.volume_id[i]);
		}
		jrn_errf(
			j,
			"%s: the journal belongs to volume id %s, not to this volume (%s); point the receiver at the right state directory",
			j->path, have, want);
		return -EINVAL;
	}
	if (j->sb.block_bytes != j->block_bytes) {
		jrn_errf(
			j,
			"%s: the journal uses %u-byte blocks but %u-byte blocks are configured; configure %u-byte blocks again",
			j->path, j->sb.block_bytes, j->block_bytes, j->sb.block_bytes);
		return -EINVAL;
	}
	if (j->sb.volume_bytes != j->volume_bytes) {
		jrn_errf(j,
			 "%s: the journal is for a %" PRIu64 "-byte volume, this one has %" PRIu64
			 " bytes",
			 j->path, j->sb.volume_bytes, j->volume_bytes);
		return -EINVAL;
	}
	if (j->sb.journal_bytes != j->journal_bytes) {
		jrn_errf(
			j,
			"%s: the file is %" PRIu64 " bytes but its superblock says %" PRIu64
			" (truncated or damaged), and the standby may hold part of an epoch: remove the volume's state directory (the one holding this journal) and it resyncs from scratch",
			j->path, j->journal_bytes, j->sb.journal_bytes);
		return -EBADMSG;
	}
	return 0;
}

int journal_open(struct journal **out, const char *state_dir, const struct journal_config *cfg,
		 struct kfio_dev *standby, char *err, size_t err_len)
{
	struct kfio_queue_config qc;
	struct kfio_dev *devs[2];
	struct journal *j;
	struct stat st;
	char qerr[KFIO_ERR_MSG_MAX] = "";
	uint32_t depth;
	int rc;

	ASSERT(out != NULL);
	ASSERT(state_dir != NULL);
	ASSERT(cfg != NULL);
	ASSERT(standby != NULL);
	*out = NULL;
	if (err == NULL)
		err_len = 0; /* snprintf(NULL, 0, ...) formats nothing */
	else if (err_len > 0)
		err[0] = '\0';
	rc = jrn_validate_config(cfg, standby, err, err_len);
	if (rc != 0)
		return rc;

	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		snprintf(err, err_len, "no memory for the journal");
		return -ENOMEM;
	}
	j->jdev.fd = -1;
	j->wbuf = JOURNAL_BUF_NONE;
	j->win_buf = JOURNAL_BUF_NONE;
	j->standby = standby;
	j->block_bytes = cfg->block_bytes;
	j->volume_bytes = cfg->volume_bytes ? cfg->volume_bytes : standby->size_bytes;
	j->volume_blocks = (j->volume_bytes - 1) / j->block_bytes + 1;
	memcpy(j->volume_id, cfg->volume_id, sizeof(j->volume_id));
	j->journal_bytes = cfg->journal_max_bytes ? cfg->journal_max_bytes : JOURNAL_BYTES_DEFAULT;
	j->journal_bytes -= j->journal_bytes % JOURNAL_DISK_ALIGN_BYTES;
	j->buf_bytes = cfg->buf_bytes;
	if (j->buf_bytes == 0)
		j->buf_bytes = cfg->block_bytes > JOURNAL_BUF_BYTES_DEFAULT
				       ? cfg->block_bytes
				       : JOURNAL_BUF_BYTES_DEFAULT;
	depth = cfg->queue_depth ? cfg->queue_depth : JOURNAL_QUEUE_DEPTH_DEFAULT;
	if (snprintf(j->dir, sizeof(j->dir), "%s", state_dir) >= (int)sizeof(j->dir) ||
	    snprintf(j->path, sizeof(j->path), "%s/%s", state_dir, JOURNAL_FILE) >=
		    (int)sizeof(j->path)) {
		snprintf(err, err_len, "%s: the state directory's path is too long", state_dir);
		rc = -ENAMETOOLONG;
		goto free_j;
	}

	if (stat(j->path, &st) < 0) {
		if (errno != ENOENT) {
			rc = -errno;
			snprintf(err, err_len, "%s: cannot stat: %s", j->path, strerror(-rc));
			goto free_j;
		}
		rc = jrn_create(j);
		if (rc != 0) {
			snprintf(err, err_len, "%s", j->err);
			goto free_j;
		}
	}
	rc = kfio_dev_open(&j->jdev, j->path, KFIO_OPEN_WRITE);
	if (rc != 0) {
		snprintf(err, err_len, "%s", j->jdev.err_msg);
		goto free_j;
	}
	j->jdev_open = true;
	if (j->jdev.is_blockdev) {
		snprintf(err, err_len, "%s: the journal must be a regular file, not a device",
			 j->path);
		rc = -EINVAL;
		goto close_dev;
	}
	/* 4 KiB units are valid O_DIRECT on every file system pvrepl supports; refuse
	 * one that asks for more rather than fail at the first commit */
	if (JOURNAL_DISK_ALIGN_BYTES % j->jdev.dio_offset_align != 0 ||
	    KFIO_MEM_ALIGN % j->jdev.dio_mem_align != 0) {
		snprintf(err, err_len, "%s: O_DIRECT needs %u-byte alignment, above 4096", j->path,
			 j->jdev.dio_offset_align);
		rc = -EINVAL;
		goto close_dev;
	}
	j->journal_bytes = j->jdev.size_bytes;
	if (j->journal_bytes < JOURNAL_BYTES_MIN || j->journal_bytes % JOURNAL_DISK_ALIGN_BYTES) {
		snprintf(
			err, err_len,
			"%s: the file is %" PRIu64
			" bytes; a journal is a multiple of 4096 bytes and at least %llu (truncated or not a journal)",
			j->path, j->journal_bytes, (unsigned long long)JOURNAL_BYTES_MIN);
		rc = -EBADMSG;
		goto close_dev;
	}
	j->area_bytes = j->journal_bytes - JOURNAL_DISK_RECORDS_OFFSET;

	j->pool_count = depth;
	j->free_bufs = calloc(j->pool_count, sizeof(*j->free_bufs));
	if (j->free_bufs == NULL) {
		snprintf(err, err_len, "no memory for the journal's buffer list");
		rc = -ENOMEM;
		goto close_dev;
	}
	for (uint32_t i = 0; i < j->pool_count; i++)
		j->free_bufs[j->free_count++] = JOURNAL_BUF_POOL_FIRST + i;
	memset(&qc, 0, sizeof(qc));
	qc.backend = cfg->backend;
	/* room for every pool buffer in flight plus the superblock and zero writes */
	qc.depth = depth + JOURNAL_BUF_POOL_FIRST;
	qc.buf_count = depth + JOURNAL_BUF_POOL_FIRST;
	qc.buf_bytes = j->buf_bytes;
	devs[JOURNAL_DEV_JOURNAL] = &j->jdev;
	devs[JOURNAL_DEV_STANDBY] = standby;
	rc = kfio_queue_new(&j->q, &qc, devs, 2, qerr, sizeof(qerr));
	if (rc != 0) {
		snprintf(err, err_len, "%s: cannot set up the I/O queue: %s", j->path, qerr);
		goto free_list;
	}
	memset(kfio_queue_buf(j->q, JOURNAL_BUF_ZERO), 0, j->buf_bytes);
	j->zero_hash = delta_hash(kfio_queue_buf(j->q, JOURNAL_BUF_ZERO), j->block_bytes);
	j->zero_tail_hash = delta_hash(kfio_queue_buf(j->q, JOURNAL_BUF_ZERO),
				       jrn_block_len(j, j->volume_blocks - 1));

	rc = jrn_super_load(j);
	if (rc == 0)
		rc = jrn_check_identity(j);
	if (rc != 0) {
		snprintf(err, err_len, "%s", j->err);
		goto free_queue;
	}
	j->sb_sequence_loaded = j->sb.sequence;
	j->found = (enum journal_state)j->sb.state;
	j->state = j->found;
	j->need_recover = j->state == JOURNAL_OPEN || j->state == JOURNAL_COMMITTED;
	j->woff = JOURNAL_DISK_RECORDS_OFFSET;
	ASSERT(journal_check_invariants(j));
	*out = j;
	return 0;

free_queue:
	kfio_queue_free(j->q);
free_list:
	free(j->free_bufs);
close_dev:
	kfio_dev_close(&j->jdev);
free_j:
	free(j);
	return rc;
}

void journal_close(struct journal *j)
{
	if (j == NULL)
		return;
	/* In-flight I/O is cancelled with the queue; an unflushed write may or may
	 * not land, which the invariants allow for any write. */
	kfio_queue_free(j->q);
	free(j->free_bufs);
	if (j->jdev_open)
		kfio_dev_close(&j->jdev);
	free(j);
}

const char *journal_err(const struct journal *j)
{
	return j->err;
}

void journal_status(const struct journal *j, struct journal_status *out)
{
	memset(out, 0, sizeof(*out));
	out->state = j->state;
	out->failed = j->failed;
	out->need_recover = j->need_recover;
	out->epoch = j->state == JOURNAL_EMPTY ? 0 : j->sb.epoch;
	out->generation = j->sb.generation;
	out->applied_epoch = j->sb.applied_epoch;
	out->records_bytes = j->state == JOURNAL_OPEN ? j->tail : j->sb.records_bytes;
	out->area_bytes = j->area_bytes;
	out->journal_bytes = j->journal_bytes;
	out->full_written = j->full_written;
	out->full_needed = j->full_needed;
}

/* ---------------------------------------------------------------- epochs */

static int jrn_begin(struct journal *j, uint64_t epoch, uint64_t generation, uint64_t base_epoch)
{
	int rc;

	ASSERT(epoch > 0);
	ASSERT(base_epoch < epoch);
	if (j->failed)
		return -EIO;
	if (j->need_recover || j->state == JOURNAL_OPEN || j->state == JOURNAL_COMMITTED) {
		jrn_errf(j,
			 "%s: cannot begin epoch %" PRIu64 ": the journal holds %s epoch %" PRIu64
			 "%s",
			 j->path, epoch, jrn_state_name(j->state), j->sb.epoch,
			 j->need_recover
				 ? "; run journal_recover first (or journal_reset for a resync)"
				 : "");
		return -EINVAL;
	}
	/* Invariant 4: the durable state is EMPTY or APPLIED here, so the records
	 * this epoch overwrites are no longer needed by any recovery. */
	j->sb.epoch = epoch;
	j->sb.generation = generation;
	j->sb.base_epoch = base_epoch;
	j->sb.record_count = 0;
	j->sb.records_bytes = 0;
	j->sb.records_checksum = 0;
	j->sb_epoch_ours = true;
	rc = jrn_super_write(j, JOURNAL_DISK_STATE_OPEN);
	if (rc != 0)
		return rc;
	j->state = JOURNAL_OPEN;
	j->tail = 0;
	j->record_count = 0;
	j->woff = JOURNAL_DISK_RECORDS_OFFSET;
	j->wfill = 0;
	delta_stream_init(&j->chain, JOURNAL_DISK_SEED_CHAIN);
	return 0;
}

int journal_begin(struct journal *j, uint64_t epoch, uint64_t generation, uint64_t base_epoch)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_begin(j, epoch, generation, base_epoch));
}

/* Pads and emits a record put with jrn_put (rc: how that went), then counts it;
 * any failure drops the epoch. */
static int jrn_record_end(struct journal *j, int rc, uint64_t rec_bytes, uint64_t checksum)
{
	if (rc == 0)
		rc = jrn_put_pad(j);
	if (rc != 0) {
		jrn_epoch_drop(j);
		return rc;
	}
	jrn_record_done(j, rec_bytes, checksum);
	return 0;
}

static int jrn_add_data(struct journal *j, uint64_t first_block, uint32_t block_count,
			const void *plaintext, uint32_t plaintext_bytes, const uint64_t *hashes)
{
	const unsigned char *p = plaintext;
	struct journal_disk_record h;
	uint64_t rec_bytes, want, checksum;
	uint64_t le[JOURNAL_HASH_CHUNK];
	int rc;

	ASSERT(plaintext != NULL);
	ASSERT(hashes != NULL);
	rc = jrn_check_open(j, "journal_add_data");
	if (rc != 0)
		return rc;
	rc = jrn_check_run(j, "data", first_block, block_count, JOURNAL_RECORD_BLOCKS_MAX);
	if (rc != 0)
		return rc;
	want = jrn_run_bytes(j, first_block, block_count);
	if (plaintext_bytes != want) {
		jrn_errf(j,
			 "%s: epoch %" PRIu64 ": the data run at block %" PRIu64
			 " has %u bytes, its %u blocks need %" PRIu64 "; the epoch is aborted",
			 j->path, j->sb.epoch, first_block, plaintext_bytes, block_count, want);
		jrn_epoch_drop(j);
		return -EINVAL;
	}
	/* Invariant 3 starts here: every block is checked before any byte of the
	 * record is written, so a bad block never reaches even the journal. */
	for (uint32_t i = 0; i < block_count; i++) {
		uint32_t len = jrn_block_len(j, first_block + i);
		uint64_t got = delta_hash(p + (uint64_t)i * j->block_bytes, len);

		if (got != hashes[i]) {
			jrn_errf(j,
				 "%s: epoch %" PRIu64 ": block %" PRIu64
				 " does not match its hash (xxh3 %016" PRIx64
				 ", the sender's %016" PRIx64 "); the epoch is aborted",
				 j->path, j->sb.epoch, first_block + i, got, hashes[i]);
			jrn_epoch_drop(j);
			return -EBADMSG;
		}
	}
	rec_bytes = jrn_record_bytes(j, JOURNAL_DISK_RECORD_DATA, block_count);
	rc = jrn_check_room(j, rec_bytes);
	if (rc != 0)
		return rc;

	jrn_record_header(j, &h, JOURNAL_DISK_RECORD_DATA, first_block, block_count,
			  plaintext_bytes);
	checksum = jrn_record_checksum(&h, hashes, block_count, false);
	h.checksum = htole64(checksum);
	ASSERT(j->woff + j->wfill == JOURNAL_DISK_RECORDS_OFFSET + j->tail);
	rc = jrn_put(j, &h, sizeof(h));
	for (uint32_t i = 0; rc == 0 && i < block_count; i += JOURNAL_HASH_CHUNK) {
		uint32_t n =
			block_count - i < JOURNAL_HASH_CHUNK ? block_count - i : JOURNAL_HASH_CHUNK;

		for (uint32_t k = 0; k < n; k++)
			le[k] = htole64(hashes[i + k]);
		rc = jrn_put(j, le, n * sizeof(le[0]));
	}
	if (rc == 0)
		rc = jrn_put_pad(j);
	for (uint32_t i = 0; rc == 0 && i < block_count; i++) {
		uint32_t len = jrn_block_len(j, first_block + i);

		rc = jrn_put(j, p + (uint64_t)i * j->block_bytes, len);
		if (rc == 0 && len < j->block_bytes)
			rc = jrn_put(j, NULL, j->block_bytes - len);
	}
	return jrn_record_end(j, rc, rec_bytes, checksum);
}

int journal_add_data(struct journal *j, uint64_t first_block, uint32_t block_count,
		     const void *plaintext, uint32_t plaintext_bytes, const uint64_t *hashes)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(
		j, jrn_add_data(j, first_block, block_count, plaintext, plaintext_bytes, hashes));
}

static int jrn_add_zero(struct journal *j, uint64_t first_block, uint32_t block_count)
{
	struct journal_disk_record h;
	uint64_t rec_bytes, checksum;
	int rc;

	rc = jrn_check_open(j, "journal_add_zero");
	if (rc != 0)
		return rc;
	rc = jrn_check_run(j, "zero", first_block, block_count, UINT32_MAX);
	if (rc != 0)
		return rc;
	rec_bytes = jrn_record_bytes(j, JOURNAL_DISK_RECORD_ZERO, block_count);
	rc = jrn_check_room(j, rec_bytes);
	if (rc != 0)
		return rc;
	jrn_record_header(j, &h, JOURNAL_DISK_RECORD_ZERO, first_block, block_count, 0);
	checksum = jrn_record_checksum(&h, NULL, 0, false);
	h.checksum = htole64(checksum);
	rc = jrn_put(j, &h, sizeof(h));
	return jrn_record_end(j, rc, rec_bytes, checksum);
}

int journal_add_zero(struct journal *j, uint64_t first_block, uint32_t block_count)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_add_zero(j, first_block, block_count));
}

/* A barrier has no run (jrn_check_run refuses block_count 0): only the room. */
static int jrn_add_barrier(struct journal *j)
{
	struct journal_disk_record h;
	uint64_t rec_bytes, checksum;
	int rc;

	rc = jrn_check_open(j, "journal_add_barrier");
	if (rc != 0)
		return rc;
	rec_bytes = jrn_record_bytes(j, JOURNAL_DISK_RECORD_BARRIER, 0);
	ASSERT(rec_bytes == JOURNAL_DISK_ALIGN_BYTES);
	rc = jrn_check_room(j, rec_bytes);
	if (rc != 0)
		return rc;
	jrn_record_header(j, &h, JOURNAL_DISK_RECORD_BARRIER, 0, 0, 0);
	checksum = jrn_record_checksum(&h, NULL, 0, false);
	h.checksum = htole64(checksum);
	rc = jrn_put(j, &h, sizeof(h));
	return jrn_record_end(j, rc, rec_bytes, checksum);
}

int journal_add_barrier(struct journal *j)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_add_barrier(j));
}

static int jrn_commit(struct journal *j)
{
	int rc;

	rc = jrn_check_open(j, "journal_commit");
	if (rc != 0)
		return rc;
	/*
	 * 1. Every record (and the OPEN superblock) durable before the commit
	 *    superblock is written: a COMMITTED superblock must never name records
	 *    that a power cut could still lose (invariant 2). The last records go
	 *    out first; the flush drains the queue, so it covers every record
	 *    write queued before it.
	 */
	rc = jrn_put_emit(j);
	if (rc == 0)
		rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
	if (rc != 0)
		goto drop;
	j->sb.record_count = j->record_count;
	j->sb.records_bytes = j->tail;
	j->sb.records_checksum = delta_stream_digest(&j->chain);
	/* 2. The commit: one superblock write into the slot not holding OPEN, so
	 *    a torn commit leaves OPEN (discarded: the epoch was never acked). */
	rc = jrn_super_write(j, JOURNAL_DISK_STATE_COMMITTED);
	if (rc != 0)
		goto drop;
	/* 3. The commit durable: from here the epoch survives any crash, and only
	 *    now may the receiver acknowledge it (invariant 2 of DESIGN.md). */
	rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
	if (rc != 0)
		goto drop;
	j->state = JOURNAL_COMMITTED;
	return 0;
drop:
	jrn_epoch_drop(j);
	return rc;
}

int journal_commit(struct journal *j)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_commit(j));
}

static int jrn_abort(struct journal *j)
{
	/* Nothing to write: an OPEN epoch's records are ignored by recovery, and
	 * the next journal_begin writes a new superblock (after flushing this
	 * epoch's OPEN one, invariant 1). */
	if (j->state == JOURNAL_OPEN)
		jrn_epoch_drop(j);
	return 0;
}

int journal_abort(struct journal *j)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_abort(j));
}

/* ----------------------------------------------------------------- apply */

/*
 * Reads and checks the header section of the record at off (the area's offset)
 * into buffer buf. On success *r is the host-order header, *rec_bytes its size.
 */
static int jrn_record_load(struct journal *j, uint32_t buf, uint64_t off, uint64_t index,
			   struct journal_disk_record *r, uint64_t *rec_bytes)
{
	uint64_t file_off = JOURNAL_DISK_RECORDS_OFFSET + off, hsec;
	const unsigned char *b;
	struct journal_disk_record d;
	const char *why = NULL;
	int rc;

	rc = jrn_read_records(j, buf, file_off, JOURNAL_DISK_ALIGN_BYTES);
	if (rc != 0)
		return rc;
	b = kfio_queue_buf(j->q, buf);
	memcpy(&d, b, sizeof(d));
	memset(r, 0, sizeof(*r));
	r->magic = le64toh(d.magic);
	r->type = le32toh(d.type);
	r->block_count = le32toh(d.block_count);
	r->first_block = le64toh(d.first_block);
	r->epoch = le64toh(d.epoch);
	r->record_index = le64toh(d.record_index);
	r->plaintext_bytes = le32toh(d.plaintext_bytes);
	r->checksum = le64toh(d.checksum);
	if (r->magic != JOURNAL_DISK_RECORD_MAGIC)
		why = "bad magic";
	else if (r->epoch != j->sb.epoch || r->record_index != index)
		why = "it belongs to another epoch or position (a stale record)";
	else if (r->type != JOURNAL_DISK_RECORD_DATA && r->type != JOURNAL_DISK_RECORD_ZERO &&
		 r->type != JOURNAL_DISK_RECORD_BARRIER)
		why = "unknown record type";
	else if (d.reserved0 != 0 || d.reserved1 != 0)
		why = "non-zero reserved field";
	else if (r->type == JOURNAL_DISK_RECORD_BARRIER &&
		 (r->first_block != 0 || r->block_count != 0))
		why = "a barrier with a block run";
	else if (r->type == JOURNAL_DISK_RECORD_BARRIER && r->plaintext_bytes != 0)
		why = "a barrier with plaintext";
	else if (r->type != JOURNAL_DISK_RECORD_BARRIER &&
		 (r->block_count == 0 || r->first_block >= j->volume_blocks ||
		  r->block_count > j->volume_blocks - r->first_block ||
		  (r->type == JOURNAL_DISK_RECORD_DATA &&
		   r->block_count > JOURNAL_RECORD_BLOCKS_MAX)))
		why = "its block run is outside the volume";
	else if (r->type == JOURNAL_DISK_RECORD_DATA &&
		 r->plaintext_bytes != jrn_run_bytes(j, r->first_block, r->block_count))
		why = "its size does not match its block run";
	else if (r->type == JOURNAL_DISK_RECORD_ZERO && r->plaintext_bytes != 0)
		why = "a zero run with plaintext";
	else if (jrn_record_bytes(j, r->type, r->block_count) > j->sb.records_bytes - off)
		why = "it extends past the committed records";
	if (why != NULL) {
		jrn_errf(j,
			 "%s: record %" PRIu64 " at offset %" PRIu64 " of epoch %" PRIu64
			 " is damaged: %s",
			 j->path, index, file_off, j->sb.epoch, why);
		return -EBADMSG;
	}
	*rec_bytes = jrn_record_bytes(j, r->type, r->block_count);
	hsec = jrn_header_section_bytes(r->type, r->block_count);
	ASSERT(hsec <= j->buf_bytes);
	if (hsec > JOURNAL_DISK_ALIGN_BYTES) {
		rc = jrn_read_records(j, buf, file_off, (uint32_t)hsec);
		if (rc != 0)
			return rc;
	}
	if (jrn_record_checksum(&d, (const uint64_t *)(const void *)(b + sizeof(d)),
				r->type == JOURNAL_DISK_RECORD_DATA ? r->block_count : 0,
				true) != r->checksum) {
		jrn_errf(j,
			 "%s: record %" PRIu64 " at offset %" PRIu64 " of epoch %" PRIu64
			 " is damaged: checksum mismatch",
			 j->path, index, file_off, j->sb.epoch);
		return -EBADMSG;
	}
	return 0;
}

/*
 * At a BARRIER record of the apply pass (invariant 6): every standby write queued
 * so far completes before the walk queues another. Batched writes not yet
 * submitted go out first, then the queue drains: a write still in flight could
 * otherwise land after a later record's write of the same block.
 */
static int jrn_walk_barrier(struct journal *j)
{
	int rc = 0;

	if (j->unsubmitted > 0) {
		j->unsubmitted = 0;
		rc = jrn_submit(j);
	}
	if (rc == 0)
		rc = jrn_drain(j);
	if (rc == 0 && kfio_queue_inflight(j->q) != 0)
		rc = jrn_fail(j, -EIO, "%s: the standby writes before a barrier did not complete",
			      j->standby->path);
	return rc;
}

/*
 * One pass over the committed records. verify only (apply false): reads and
 * checks everything, writes nothing (a barrier is only a link of the chain).
 * apply: the same checks, then each chunk is written to the standby and on_block
 * called per block; at a barrier the standby writes before it complete first.
 */
static int jrn_walk(struct journal *j, bool apply, journal_block_fn on_block, void *ctx,
		    uint64_t *blocks)
{
	uint32_t hbuf = JOURNAL_BUF_NONE, dbuf = JOURNAL_BUF_NONE;
	uint32_t per_chunk = j->buf_bytes / j->block_bytes;
	struct delta_stream chain;
	uint64_t off = 0, index = 0;
	int rc = 0;

	delta_stream_init(&chain, JOURNAL_DISK_SEED_CHAIN);
	/* The window takes a buffer only when the walk keeps two (header, data). */
	j->win_len = 0;
	if (j->free_count >= 3)
		j->win_buf = j->free_bufs[--j->free_count];
	while (off < j->sb.records_bytes) {
		struct journal_disk_record r;
		uint64_t rec_bytes, le, data_off;
		const unsigned char *hashes;

		rc = jrn_buf_get(j, &hbuf);
		if (rc == 0)
			rc = jrn_record_load(j, hbuf, off, index, &r, &rec_bytes);
		if (rc != 0)
			goto put_bufs;
		le = htole64(r.checksum);
		delta_stream_update(&chain, &le, sizeof(le));
		hashes = (const unsigned char *)kfio_queue_buf(j->q, hbuf) +
			 sizeof(struct journal_disk_record);
		data_off = JOURNAL_DISK_RECORDS_OFFSET + off +
			   jrn_header_section_bytes(r.type, r.block_count);
		if (apply && r.type == JOURNAL_DISK_RECORD_BARRIER) {
			rc = jrn_walk_barrier(j);
			if (rc != 0)
				goto put_bufs;
		}

		for (uint64_t c = 0; r.type == JOURNAL_DISK_RECORD_DATA && c < r.block_count;
		     c += per_chunk) {
			uint64_t n = r.block_count - c < per_chunk ? r.block_count - c : per_chunk;
			uint64_t first = r.first_block + c;
			uint64_t jlen = jrn_round_up(n * j->block_bytes, JOURNAL_DISK_ALIGN_BYTES);
			const unsigned char *data;

			rc = jrn_buf_get(j, &dbuf);
			if (rc == 0)
				rc = jrn_read_records(j, dbuf, data_off + c * j->block_bytes,
						      (uint32_t)jlen);
			if (rc != 0)
				goto put_bufs;
			data = kfio_queue_buf(j->q, dbuf);
			for (uint64_t i = 0; i < n; i++) {
				uint64_t want;

				memcpy(&want, hashes + (c + i) * sizeof(want), sizeof(want));
				want = le64toh(want);
				if (delta_hash(data + i * j->block_bytes,
					       jrn_block_len(j, first + i)) != want) {
					jrn_errf(j,
						 "%s: block %" PRIu64 " in record %" PRIu64
						 " (data at offset %" PRIu64 ") of epoch %" PRIu64
						 " does not match its hash: the journal is damaged",
						 j->path, first + i, index,
						 data_off + (c + i) * j->block_bytes, j->sb.epoch);
					rc = -EBADMSG;
					goto put_bufs;
				}
				if (apply && on_block != NULL) {
					rc = on_block(first + i, want, ctx);
					if (rc != 0) {
						jrn_errf(
							j,
							"%s: the apply callback failed at block %" PRIu64
							" (%d)",
							j->path, first + i, rc);
						goto put_bufs;
					}
				}
			}
			if (!apply) {
				jrn_buf_put(j, &dbuf);
				continue;
			}
			/* the buffer comes back to the pool when the write completes */
			rc = jrn_write_queue(j, JOURNAL_DEV_STANDBY, dbuf, first * j->block_bytes,
					     (uint32_t)jrn_run_bytes(j, first, n), "standby", true);
			dbuf = JOURNAL_BUF_NONE;
			if (rc != 0)
				goto put_bufs;
		}
		for (uint64_t c = 0;
		     apply && r.type == JOURNAL_DISK_RECORD_ZERO && c < r.block_count;
		     c += per_chunk) {
			uint64_t n = r.block_count - c < per_chunk ? r.block_count - c : per_chunk;
			uint64_t first = r.first_block + c;

			/* zeros through the queue like any data, so the power-loss
			 * simulator covers them (a zero-out ioctl would bypass it) */
			rc = jrn_write(j, JOURNAL_DEV_STANDBY, JOURNAL_BUF_ZERO,
				       first * j->block_bytes, (uint32_t)jrn_run_bytes(j, first, n),
				       "zero");
			if (rc != 0)
				goto put_bufs;
			for (uint64_t i = 0; on_block != NULL && i < n; i++) {
				uint64_t b = first + i;

				rc = on_block(b,
					      jrn_block_len(j, b) == j->block_bytes
						      ? j->zero_hash
						      : j->zero_tail_hash,
					      ctx);
				if (rc != 0) {
					jrn_errf(j,
						 "%s: the apply callback failed at block %" PRIu64
						 " (%d)",
						 j->path, b, rc);
					goto put_bufs;
				}
			}
		}
		if (blocks != NULL)
			*blocks += r.block_count;
		jrn_buf_put(j, &hbuf);
		off += rec_bytes;
		index++;
	}
	if (index != j->sb.record_count || delta_stream_digest(&chain) != j->sb.records_checksum) {
		jrn_errf(j,
			 "%s: epoch %" PRIu64
			 ": the commit checksum in the superblock does not match its %" PRIu64
			 " records (%" PRIu64 " bytes from offset %u): the journal is damaged",
			 j->path, j->sb.epoch, index, j->sb.records_bytes,
			 JOURNAL_DISK_RECORDS_OFFSET);
		rc = -EBADMSG;
	}
put_bufs:
	jrn_buf_put(j, &dbuf);
	jrn_buf_put(j, &hbuf);
	jrn_buf_put(j, &j->win_buf);
	return rc;
}

static int jrn_apply(struct journal *j, journal_block_fn on_block, void *ctx, uint64_t *blocks)
{
	int rc;

	/* Invariant 3: the whole epoch verifies before the first standby write, so
	 * damaged records leave the standby untouched. */
	rc = jrn_walk(j, false, NULL, NULL, NULL);
	if (rc != 0) {
		if (rc == -EBADMSG)
			j->need_recover = true; /* refuse new epochs: resync */
		return rc;
	}
	rc = jrn_walk(j, true, on_block, ctx, blocks);
	if (rc != 0) {
		/* standby writes already queued complete (or fail) before we return;
		 * the journal still says COMMITTED, so applying again is safe */
		(void)jrn_drain(j);
		if (rc == -EBADMSG) /* the journal changed between the two passes */
			j->failed = true;
		return rc;
	}
	/* The standby holds the epoch durably before the journal says APPLIED:
	 * else a crash could leave APPLIED with standby writes lost (invariant 4). */
	rc = jrn_flush(j, JOURNAL_DEV_STANDBY);
	if (rc != 0)
		return rc;
	j->sb.applied_epoch = j->sb.epoch;
	rc = jrn_super_write(j, JOURNAL_DISK_STATE_APPLIED);
	if (rc != 0)
		return rc;
	/* APPLIED durable before the next journal_begin overwrites the records
	 * (invariant 4); a crash before this flush only replays the epoch. */
	rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
	if (rc != 0)
		return rc;
	j->state = JOURNAL_APPLIED;
	return 0;
}

static int jrn_apply_epoch(struct journal *j, journal_block_fn on_block, void *ctx)
{
	if (j->failed)
		return -EIO;
	if (j->state != JOURNAL_COMMITTED && j->state != JOURNAL_APPLIED) {
		jrn_errf(j, "%s: nothing to apply (state %s)", j->path, jrn_state_name(j->state));
		return -EINVAL;
	}
	return jrn_apply(j, on_block, ctx, NULL);
}

int journal_apply(struct journal *j, journal_block_fn on_block, void *ctx)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_apply_epoch(j, on_block, ctx));
}

static int jrn_recover(struct journal *j, struct journal_recovery *out, journal_block_fn on_block,
		       void *ctx)
{
	int rc = 0;

	ASSERT(out != NULL);
	memset(out, 0, sizeof(*out));
	out->found = j->found;
	if (j->failed)
		return -EIO;
	switch (j->state) {
	case JOURNAL_EMPTY:
	case JOURNAL_APPLIED:
		break;
	case JOURNAL_OPEN:
		/* Never committed, so never acknowledged, and the standby was never
		 * written for it: forget it. Durable, so a later crash does not report
		 * the same discard again. */
		out->discarded_epoch = j->sb.epoch;
		j->sb.epoch = 0;
		j->sb.record_count = 0;
		j->sb.records_bytes = 0;
		j->sb.records_checksum = 0;
		j->sb_epoch_ours = true;
		rc = jrn_super_write(j, JOURNAL_DISK_STATE_EMPTY);
		if (rc == 0)
			rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
		if (rc != 0)
			return rc;
		j->state = JOURNAL_EMPTY;
		break;
	case JOURNAL_COMMITTED:
		/* Committed (perhaps acknowledged) but perhaps not on the standby:
		 * apply again; writing the same bytes twice is harmless. */
		rc = jrn_apply(j, on_block, ctx, &out->replayed_blocks);
		if (rc != 0)
			return rc;
		out->replayed_epoch = j->sb.epoch;
		break;
	}
	j->need_recover = false;
	out->applied_epoch = j->sb.applied_epoch;
	return 0;
}

int journal_recover(struct journal *j, struct journal_recovery *out, journal_block_fn on_block,
		    void *ctx)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_recover(j, out, on_block, ctx));
}

static int jrn_reset(struct journal *j)
{
	int rc;

	if (j->failed)
		return -EIO;
	jrn_epoch_drop(j);
	j->sb.epoch = 0;
	j->sb.record_count = 0;
	j->sb.records_bytes = 0;
	j->sb.records_checksum = 0;
	j->sb_epoch_ours = true;
	rc = jrn_super_write(j, JOURNAL_DISK_STATE_EMPTY);
	if (rc == 0)
		rc = jrn_flush(j, JOURNAL_DEV_JOURNAL);
	if (rc != 0)
		return rc;
	j->state = JOURNAL_EMPTY;
	j->need_recover = false;
	return 0;
}

int journal_reset(struct journal *j)
{
	ASSERT(j != NULL);
	return JRN_CHECKED(j, jrn_reset(j));
}
