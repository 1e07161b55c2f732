/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vstate — a receiver volume's small persistent state: whether the standby is
 * empty, syncing (an initial or full sync is writing it directly: never offered
 * as consistent) or consistent at an epoch, and the sync's resume cursor. The
 * map (map.c) holds the hashes and the committed epoch; the journal holds an
 * epoch in flight; this file holds what neither says.
 *
 * Stored as one checksummed 128-byte record, replaced by write-tmp, fsync, rename,
 * fsync-dir, so after a crash it is the old record or the new one.
 */
#ifndef PVREPL_VSTATE_H
#define PVREPL_VSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSTATE_FILE	"state"
#define VSTATE_TMP_FILE "state.tmp"
#define VSTATE_MAGIC	0x54535650u /* "PVST" */
#define VSTATE_VERSION	1u

enum vstate_kind {
	VSTATE_EMPTY = 0,
	VSTATE_SYNCING = 1,
	VSTATE_CONSISTENT = 2,
};

struct vstate {
	enum vstate_kind kind;
	bool crash_consistent; /* the last committed epoch came from a point-in-time capture */
	uint8_t capture;       /* how (enum status_capture); 0 when not */
	uint64_t epoch;	       /* last committed epoch (0: none) */
	uint64_t generation;
	uint64_t sync_epoch;	/* SYNCING: the epoch being synced */
	uint64_t sync_cursor;	/* SYNCING: every block below it is durably written */
	int64_t committed_unix; /* wall-clock time the last epoch was committed */
	/* The source's time (Unix ms) the last committed epoch's reads began: what the
	 * standby holds. 0 if never known (records from before this field). */
	int64_t consistent_point_ms;
	/* SYNCING: the capture time of the sync's first run; a resumed sync holds
	 * blocks read then, so the sync stands for this time (0: unknown). */
	int64_t sync_capture_ms;
	uint8_t volume_id[16];
};

/* Loads DIR/state; -ENOENT when absent (an empty standby), -EBADMSG when damaged. */
int vstate_load(struct vstate *s, const char *dir, char *err, size_t err_len);
/* Replaces DIR/state atomically and durably. */
int vstate_store(const struct vstate *s, const char *dir, char *err, size_t err_len);
const char *vstate_kind_name(enum vstate_kind k);

#endif
