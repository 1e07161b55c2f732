/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recv_check — every check the receiver makes of what a sender says, as
 * functions that decide and do nothing else: a check returns 0, or fills a
 * verdict (REFUSE or ERROR, the code, a sentence naming the volume and the fix)
 * and returns its -errno. recv_epoch_reply() is the one place a verdict becomes
 * a frame on the wire and a log line. The checks see the volume (struct
 * standby) and the frames, never a socket, so they are unit-tested as a table.
 *
 * The order of the HELLO checks is the documented one (docs/PROTOCOL.md).
 * Frames are untrusted: every count, index and size is checked against the
 * volume's geometry here before the epoch module uses it (invariants 3 and 4 of
 * receiver.c).
 */
#ifndef PVREPL_RECV_CHECK_H
#define PVREPL_RECV_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "standby.h"

#define RECV_VERDICT_MESSAGE_MAX 512u

enum recv_verdict_kind {
	RECV_VERDICT_NONE = 0, /* nothing to tell the sender (the connection is gone) */
	RECV_VERDICT_ERROR,    /* an ERROR frame: the epoch is aborted */
	RECV_VERDICT_REFUSE,   /* a REFUSE frame: the volume is not served to this sender */
};

struct recv_verdict {
	enum recv_verdict_kind kind;
	uint16_t code; /* PROTO_ERR_* (ERROR) or PROTO_REFUSE_* (REFUSE) */
	char message[RECV_VERDICT_MESSAGE_MAX];
};

/* Fills vd; returns -EPROTO for an ERROR, -EACCES for a REFUSE. */
int recv_verdict_set(struct recv_verdict *vd, enum recv_verdict_kind kind, uint16_t code,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The epoch's progress through its runs: ascending, never overlapping. */
struct recv_runs {
	uint64_t next_block; /* runs must start at or after it */
	uint64_t blocks;     /* blocks received */
	uint32_t round;	     /* the round (PROTO_CAP_ROUNDS) minus one: 0 in the first */
	bool final;	     /* the final round (read at the capture instant) started */
};

/* HELLO against the volume: version, sticky failure, identity, size, block size,
 * generation, in that order. */
int recv_check_hello(const struct standby *v, const struct proto_hello *h, struct recv_verdict *vd);
/* The frame after WELCOME or an ack must be an EPOCH_BEGIN of HELLO's generation. */
int recv_check_begin(const struct standby *v, const struct proto_hello *h,
		     const struct proto_msg *msg, struct recv_verdict *vd);
/* A delta must build on the standby's committed epoch and generation. */
int recv_check_delta(const struct standby *v, const struct proto_epoch_begin *eb,
		     struct recv_verdict *vd);
/* A resumed sync must continue the one this side has, of the same volume, at or
 * below its cursor, at an epoch after the committed map's (if any). */
int recv_check_resume(const struct standby *v, const struct proto_hello *h,
		      const struct proto_epoch_begin *eb, struct recv_verdict *vd);
/* A DATA or ZERO run: inside the volume and after the previous run; advances runs. */
int recv_check_run(const struct standby *v, struct recv_runs *runs, uint64_t first, uint32_t count,
		   struct recv_verdict *vd);
/*
 * A DATA frame's payload: its plaintext size matches the geometry, it
 * decompresses into dst (PROTO_DATA_PLAINTEXT_MAX bytes), and every block's xxh3
 * equals the sender's (DESIGN.md invariant 3); the hashes go to hashes[]
 * (PROTO_DATA_BLOCKS_MAX entries). Returns the plaintext length or -errno.
 */
int recv_check_data(const struct standby *v, const struct proto_data *d, void *dst,
		    uint64_t *hashes, struct recv_verdict *vd);

/*
 * PAGES for one block (after recv_check_run for it): every page index inside
 * the block, the plaintext size the geometry gives, the data decompressed into
 * dst (PROTO_BLOCK_BYTES_MAX bytes), every page's xxh3. 0 or a verdict.
 */
int recv_check_pages(const struct standby *v, const struct proto_pages *pg, void *dst,
		     struct recv_verdict *vd);
/* EPOCH_END: the epoch and block count it names, then the Merkle root of the
 * standby's map against the source's; *root gets the map's root. */
int recv_check_end(const struct standby *v, const struct proto_epoch_begin *eb,
		   const struct recv_runs *runs, const struct proto_epoch_end *ee, uint64_t *root,
		   struct recv_verdict *vd);
/*
 * ROUND: the next round in sequence, in an epoch that says it is one instant
 * (PROTO_EPOCH_CRASH_CONSISTENT; not a resumed sync), none after the final. Starts the round in runs (ascending order again). 0 or
 * a verdict.
 */
int recv_check_round(const struct standby *v, const struct proto_epoch_begin *eb,
		     struct recv_runs *runs, const struct proto_round *r, struct recv_verdict *vd);
/* Any other frame inside an epoch. */
int recv_check_unexpected(const struct standby *v, const struct proto_epoch_begin *eb,
			  uint16_t type, struct recv_verdict *vd);

#endif
