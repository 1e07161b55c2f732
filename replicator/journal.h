/* SPDX-License-Identifier: Apache-2.0 */
/*
 * journal — the receiver's epoch journal: what makes an epoch atomic on the
 * standby (DESIGN.md invariants 1-3).
 *
 * An epoch's blocks are verified against their xxh3 and appended to the
 * volume's journal file (`journal` in its state directory, preallocated to a
 * fixed size); journal_commit makes the records, then a commit superblock,
 * durable; only then may the epoch be acknowledged. journal_apply copies the
 * records to the standby device, flushes it, and marks the journal applied. After
 * a crash, journal_recover replays a committed epoch or discards an open one, so
 * the standby only ever holds a committed epoch's content. The format and its
 * crash analysis are in docs/FORMATS.md and include/journal_format.h.
 *
 * All journal and standby I/O goes through one kfio queue (registered buffers,
 * O_DIRECT) whose backend the caller picks: io_uring in production, the
 * power-loss simulator in tests. Memory is fixed at journal_open: a pool of
 * registered buffers, nothing per block.
 *
 * It knows nothing of frames, codecs, maps or Merkle trees: the receiver checks
 * the protocol, decompresses, and updates its map from journal_apply's callback.
 * One thread uses a journal at a time.
 */
#ifndef PVREPL_JOURNAL_H
#define PVREPL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal_format.h"
#include "kfio.h"

#define JOURNAL_FILE	 "journal"
#define JOURNAL_TMP_FILE "journal.tmp"

#define JOURNAL_ERR_MAX	      512u
#define JOURNAL_BYTES_DEFAULT (256ull << 20)
/* Two superblock slots and one smallest record (8 KiB of records). */
#define JOURNAL_BYTES_MIN	(JOURNAL_DISK_RECORDS_OFFSET + 2ull * JOURNAL_DISK_ALIGN_BYTES)
#define JOURNAL_BLOCK_BYTES_MIN 512u
#define JOURNAL_BLOCK_BYTES_MAX (4u << 20) /* PROTO_BLOCK_BYTES_MAX */
/* Blocks per DATA record: PROTO_DATA_BLOCKS_MAX, so a record's hash table fits
 * in one buffer of at least JOURNAL_BUF_BYTES_MIN. */
#define JOURNAL_RECORD_BLOCKS_MAX   8192u
#define JOURNAL_QUEUE_DEPTH_DEFAULT 32u
/* An apply holds a record's header section and a chunk of its data at once. */
#define JOURNAL_QUEUE_DEPTH_MIN	  2u
#define JOURNAL_QUEUE_DEPTH_MAX	  256u
#define JOURNAL_BUF_BYTES_DEFAULT (1u << 20)
#define JOURNAL_BUF_BYTES_MIN	  (128u << 10)

/* The two devices of the journal's queue, as journal_io_point.dev_idx names them. */
#define JOURNAL_DEV_JOURNAL 0u
#define JOURNAL_DEV_STANDBY 1u

enum journal_state {
	JOURNAL_EMPTY = JOURNAL_DISK_STATE_EMPTY,
	JOURNAL_OPEN = JOURNAL_DISK_STATE_OPEN,
	JOURNAL_COMMITTED = JOURNAL_DISK_STATE_COMMITTED,
	JOURNAL_APPLIED = JOURNAL_DISK_STATE_APPLIED,
};

struct journal_config {
	enum kfio_backend_kind backend; /* KFIO_BACKEND_URING; KFIO_BACKEND_SIM in tests */
	uint64_t journal_max_bytes;	/* file size at creation; 0: JOURNAL_BYTES_DEFAULT */
	uint32_t block_bytes;		/* the volume's block size, a power of two */
	uint64_t volume_bytes;		/* the volume's size; 0: the standby's size */
	uint8_t volume_id[JOURNAL_DISK_VOLUME_ID_BYTES];
	uint32_t queue_depth; /* 0: JOURNAL_QUEUE_DEPTH_DEFAULT; also the data buffer count
			       * (JOURNAL_QUEUE_DEPTH_MIN..JOURNAL_QUEUE_DEPTH_MAX) */
	uint32_t buf_bytes;   /* per buffer, 0: JOURNAL_BUF_BYTES_DEFAULT (or block_bytes) */
};

/* What journal_recover found and did, for the logs. */
struct journal_recovery {
	enum journal_state found; /* the state on disk at open */
	uint64_t replayed_epoch;  /* a committed epoch applied again (0: none) */
	uint64_t replayed_blocks; /* blocks it wrote to the standby */
	uint64_t discarded_epoch; /* an open (uncommitted) epoch dropped (0: none) */
	uint64_t applied_epoch;	  /* the last epoch the standby holds through the journal */
};

struct journal_status {
	enum journal_state state;
	bool failed;	   /* an I/O error: reopen the journal */
	bool need_recover; /* journal_recover has not run yet (or found corruption) */
	uint64_t epoch;	   /* the open, committed or applied epoch (0: none) */
	uint64_t generation;
	uint64_t applied_epoch;
	uint64_t records_bytes; /* record bytes of the epoch (so far, while open) */
	uint64_t area_bytes;	/* room for records: the file size less the superblocks */
	uint64_t journal_bytes; /* the file size */
	/* The last epoch that did not fit (-ENOSPC): its record bytes written,
	 * and what the next record needed. 0 when none did. */
	uint64_t full_written, full_needed;
};

struct journal;

/* Called for each block of an applied epoch: the receiver updates its map. */
typedef int (*journal_block_fn)(uint64_t block, uint64_t hash, void *ctx);

/*
 * Test-only I/O points. When set, the journal calls it before queueing each
 * write and flush (reads are not points: they change nothing on disk), with the
 * queue and a description; a non-zero return makes the journal stop there, as if
 * that I/O had failed: it returns that value and refuses further work (sticky),
 * like after a real I/O error. A crash test calls kfio_queue_sim_crash(q, ...)
 * inside the hook and returns -EIO. NULL (the default) in production.
 */
struct journal_io_point {
	uint64_t index;	  /* writes and flushes issued by this journal since open */
	const char *what; /* "super", "record", "standby", "zero", "flush" */
	unsigned dev_idx; /* JOURNAL_DEV_* */
	uint64_t offset;  /* bytes; 0 for a flush */
	uint32_t len;	  /* bytes; 0 for a flush */
};
extern int (*journal_io_hook)(struct kfio_queue *q, const struct journal_io_point *p);

/*
 * Opens (creating and preallocating it when missing, with an fsync of the file
 * and of state_dir) the journal of state_dir, over standby, which must be open
 * for writing and stay open until journal_close (the journal borrows it). A
 * journal of another volume id, block size or volume size is refused with
 * -EINVAL and a sentence saying what differs; a damaged superblock pair is
 * -EBADMSG naming the file and offset. Nothing is written to the standby here.
 * Call journal_recover next. *out is owned by the caller (journal_close); on
 * failure it is NULL and err (may be NULL) holds a sentence.
 */
int journal_open(struct journal **out, const char *state_dir, const struct journal_config *cfg,
		 struct kfio_dev *standby, char *err, size_t err_len);
void journal_close(struct journal *j);

/* The last error sentence (or ""). Owned by j. */
const char *journal_err(const struct journal *j);
void journal_status(const struct journal *j, struct journal_status *out);

/*
 * At start-up, once: a COMMITTED epoch is applied again (replay, calling on_block
 * for each block, as journal_apply does); an OPEN one is discarded (the standby
 * was never touched for it); EMPTY and APPLIED need nothing. Returns 0, -EBADMSG
 * when a committed epoch's records are damaged (nothing written to the standby:
 * the caller resyncs, after journal_reset), or -EIO (sticky).
 */
int journal_recover(struct journal *j, struct journal_recovery *out, journal_block_fn on_block,
		    void *ctx);

/*
 * Opens an epoch. The journal must be recovered and hold no open or unapplied
 * epoch (else -EINVAL with a sentence). Writes the OPEN superblock (not waited
 * for: journal_commit flushes it with the records).
 */
int journal_begin(struct journal *j, uint64_t epoch, uint64_t generation, uint64_t base_epoch);

/*
 * Appends a DATA record: blocks first_block .. first_block + block_count - 1,
 * plaintext_bytes of plaintext (block_count * block_bytes, less the short tail
 * of the volume's last block), hashes[i] the xxh3-64 (delta_hash) of block i's
 * plaintext. Every hash is checked BEFORE anything is written: a mismatch is
 * -EBADMSG and the epoch is aborted. A run that does not fit the journal is
 * -ENOSPC (epoch aborted; the caller falls back to a resync), a run outside the
 * volume or of the wrong size -EINVAL (epoch aborted). The caller keeps
 * ownership of plaintext and hashes (copied before return).
 */
int journal_add_data(struct journal *j, uint64_t first_block, uint32_t block_count,
		     const void *plaintext, uint32_t plaintext_bytes, const uint64_t *hashes);
/* Appends a ZERO record (a run of all-zero blocks); errors as journal_add_data. */
int journal_add_zero(struct journal *j, uint64_t first_block, uint32_t block_count);
/*
 * Appends a BARRIER record (a header, no blocks): the apply and the replay let
 * every standby write of the records before it complete before they write any
 * block of the records after it, so a block written again after a barrier (a
 * later round of the epoch) ends up with the later bytes. Records between two
 * barriers may reach the standby in any order: they must not repeat a block.
 * -ENOSPC when it does not fit (epoch aborted), -EINVAL without an open epoch.
 */
int journal_add_barrier(struct journal *j);

/*
 * Makes the epoch durable: flush the records, write the COMMITTED superblock with
 * the commit checksum, flush again. Only after it returns 0 may the epoch be
 * acknowledged (invariant 2). Any error leaves no open epoch; -EIO is sticky and
 * only journal_recover after a reopen knows whether the epoch committed.
 */
int journal_commit(struct journal *j);

/*
 * Applies the committed (or, again, the applied) epoch: verifies every record
 * and block read back from the journal before the first standby write, writes
 * the blocks (zero runs as zeros; every write before a barrier completes before
 * one after it is queued) to the standby, calls on_block(block, hash) for each
 * in record order (before the standby flush: the caller persists its map only
 * after 0 is returned), flushes the standby, then writes and flushes the APPLIED
 * superblock. Idempotent. on_block may be NULL; its non-zero return stops the
 * apply with that value (the journal stays COMMITTED: apply again). -EBADMSG for
 * damaged records (standby untouched), -EIO sticky.
 */
int journal_apply(struct journal *j, journal_block_fn on_block, void *ctx);

/* Drops an open epoch (in memory; recovery discards its records). No-op when none. */
int journal_abort(struct journal *j);

/*
 * Forgets whatever the journal holds (writes an EMPTY superblock and flushes):
 * for a full resync after journal_recover found damaged records. It discards a
 * committed epoch: never call it otherwise. -EIO when the journal failed.
 */
int journal_reset(struct journal *j);

#endif
