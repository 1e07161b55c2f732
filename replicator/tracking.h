/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tracking — what one epoch of the sender reads: every block (a full scan) or
 * only the blocks the write tracker (kfio_track_*) marked since the confirmed
 * epoch (a tracked scan), and why. It owns the volume's tracker for the epoch
 * and the state directory's `track` record, and decides (tracking_plan):
 *
 *   full  when tracking is off (with the reason), on an initial sync, when the
 *         tracker owes a loss (attached since, skipped by the kernel,
 *         passthrough writes, an oversized request), when the record does not
 *         name this tracker instance (a reboot, removed pins, a changed device,
 *         a new state directory), or when the last full scan is older than the
 *         full-scan interval (the safety net);
 *   tracked otherwise: the pending bitmap of the harvest is what the scan reads.
 *
 * After the epoch is confirmed (tracking_confirmed): the record names the
 * instance that covers the map from now on (written only when it changes, or
 * after a full scan), then the pending bits are settled. A crash between the
 * two leaves pending bits that are read again, never lost.
 *
 * Invariant: while the record names instance I and the map holds epoch N, every
 * block that may differ from the map since N has a bit in I's pending or live
 * bitmap (or will, when its write completes).
 *
 * It knows nothing of the wire: the sender owns control flow and calls it.
 */
#ifndef PVREPL_TRACKING_H
#define PVREPL_TRACKING_H

#include <stdbool.h>
#include <stdint.h>

#include "kfio.h"
#include "map.h"

#define TRACKING_FILE			       "track"
#define TRACKING_WHOLE_FILE		       "track.whole" /* the next epoch sends whole blocks */
#define TRACKING_FULL_SCAN_INTERVAL_MS_DEFAULT (24ull * 3600 * 1000)
/* Blocks a full scan checks again at its end before it calls them missed. */
#define TRACKING_MISSED_CANDIDATES_MAX 4096u

enum tracking_mode {
	TRACKING_AUTO = 0, /* the tracker where it can run, else full scans (reason logged) */
	TRACKING_BPF = 1,  /* the tracker or an error */
	TRACKING_OFF = 2,  /* full scans every epoch */
};

struct tracking_config {
	enum tracking_mode mode;
	const char *pin_root;		/* NULL: KFIO_TRACK_PIN_ROOT_DEFAULT */
	uint64_t full_scan_interval_ms; /* 0: the default */
	bool force_full;		/* this epoch scans everything (send --full-scan) */
};

enum tracking_scan {
	TRACKING_SCAN_NONE = 0, /* the epoch ended before it chose (no scan ran) */
	TRACKING_SCAN_FULL = 1,
	TRACKING_SCAN_TRACKED = 2,
};

/* Why a full scan, for logs and the metric label (tracking_reason_label). */
enum tracking_full_reason {
	TRACKING_FULL_NONE = 0,
	TRACKING_FULL_OFF,	 /* --track off, or auto where the tracker cannot run */
	TRACKING_FULL_INITIAL,	 /* an initial (or resumed) sync */
	TRACKING_FULL_NEW,	 /* a new tracker instance or state dir: nothing to trust */
	TRACKING_FULL_LOSS,	 /* the tracker owes a loss */
	TRACKING_FULL_PERIODIC,	 /* the safety net */
	TRACKING_FULL_REQUESTED, /* send --full-scan */
};

struct tracking {
	struct tracking_config cfg;
	const char *state_dir;
	struct kfio_track *track; /* NULL when off */
	struct kfio_track_info info;
	char off_reason[320]; /* why there is no tracker */
	/* the record read at open */
	bool record_valid;
	uint64_t record_instance;
	uint64_t record_epoch;
	int64_t record_full_unix;
	/* the plan of this epoch */
	enum tracking_scan scan;
	enum tracking_full_reason full_reason;
	char reason[400];
	uint64_t tracked_bytes; /* pending pages x 4 KiB at the harvest */
	struct kfio_track_harvest harvest;
	/* full scans with a trusted tracker: blocks that changed unmarked */
	bool count_missed;
	uint32_t candidate_count;
	uint64_t candidates[TRACKING_MISSED_CANDIDATES_MAX];
	uint64_t candidates_dropped; /* past the array: counted as missed */
	uint32_t block_bytes;
};

/*
 * Opens the tracker of the volume (named from volume and state_dir) and reads
 * the record. TRACKING_AUTO never fails for want of a tracker: it leaves
 * t->track NULL with off_reason. Returns 0, or -errno with a sentence in err
 * (TRACKING_BPF without a usable tracker; a record that cannot be read).
 */
int tracking_open(struct tracking *t, const struct tracking_config *cfg, const struct kfio_dev *dev,
		  const char *volume, const char *state_dir, char *err, size_t err_len);
void tracking_close(struct tracking *t);

/*
 * Harvests and decides this epoch's scan against the map m (its epoch and
 * block size) and whether the epoch is an initial sync. Fills t->scan, reason,
 * tracked_bytes. Returns 0 or -errno with err.
 */
int tracking_plan(struct tracking *t, const struct map *m, bool initial_sync, char *err,
		  size_t err_len);

/*
 * A further round of the epoch (an epoch read in rounds, capture.h): harvests
 * again; set (kfio_track_words() words) receives exactly what was marked since
 * the previous harvest, *bytes its size. Returns 0, -EAGAIN with err when the
 * tracker saw a loss since the epoch's plan (the rounds cannot be trusted), or
 * -errno with err.
 */
int tracking_round(struct tracking *t, uint64_t *set, uint64_t *bytes, char *err, size_t err_len);
/*
 * Marks set (a tracking_round's) live again: the next epoch reads it too. For
 * an epoch read from an image made between two harvests, whose second set may
 * hold writes the image missed.
 */
void tracking_carry(struct tracking *t, const uint64_t *set);
/* The pending bitmap a tracked scan reads (scan_config.only_pages), else NULL. */
const uint64_t *tracking_only_pages(const struct tracking *t);

/*
 * A full scan found blocks [first, first + count) changed: with a trusted
 * tracker, those none of whose pages were marked are candidates for "missed".
 * Called from the scan's sink, one call at a time (ordered mode).
 */
void tracking_note_changed(struct tracking *t, uint64_t first, uint32_t count);

/* After the scan: the candidates still unmarked are the tracker's misses. */
uint64_t tracking_missed_blocks(struct tracking *t);

/*
 * The epoch is confirmed (map committed at epoch): record the instance when
 * needed, then settle the pending bits. Returns 0 or -errno with err (the
 * epoch stays confirmed; the next one may scan everything).
 */
int tracking_confirmed(struct tracking *t, uint64_t epoch, char *err, size_t err_len);

/*
 * Whether this epoch may send PAGES (false after an epoch that sent some and
 * failed: the next sends whole blocks), and the outcome that decides the next:
 * an epoch that succeeded allows PAGES again.
 */
bool tracking_pages_allowed(const struct tracking *t);
void tracking_pages_outcome(const struct tracking *t, bool epoch_ok, bool sent_pages);

/* "tracked", "full" or "none". */
const char *tracking_scan_name(enum tracking_scan s);
/* A short label for the metric: off, initial, new, loss, periodic, requested. */
const char *tracking_reason_label(enum tracking_full_reason r);
/* "auto", "bpf" or "off"; parse returns 0 or -EINVAL. */
const char *tracking_mode_name(enum tracking_mode m);
int tracking_mode_parse(const char *s, enum tracking_mode *m);

#endif
