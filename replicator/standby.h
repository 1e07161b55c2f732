/* SPDX-License-Identifier: Apache-2.0 */
/*
 * standby — one volume on the receiving side, and everything it keeps: the
 * standby device and its write queue, the map, the state record (vstate), the
 * journal, the sticky failure, and what it reports (status record, metrics).
 * It brings a volume to a known state after a restart (standby_open recovers a
 * committed journal), and it performs the state transitions an epoch makes:
 *
 *   empty | consistent ── standby_sync_begin ──► syncing (durable before the
 *        ▲                                          first write to the device)
 *        │                 standby_sync_cursor ──► syncing, cursor advanced
 *        └──────────────── standby_commit ◄──────── syncing | consistent
 *                          (map, then state: the volume is consistent at the epoch)
 *
 * It does not know the network: the epoch module (recv_epoch.c) drives it, the
 * daemon (receiver.c) owns its lifetime and the lock. An I/O error on the journal
 * or the device is sticky (standby_fail): the volume refuses epochs until the
 * receiver restarts and recovers from disk.
 */
#ifndef PVREPL_STANDBY_H
#define PVREPL_STANDBY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kfio.h"
#include "map.h"
#include "proto.h"
#include "receiver.h"
#include "vstate.h"

#define STANDBY_WRITE_BUFS 8u /* standby writes in flight during a sync */
#define STANDBY_ERR_MAX	   512u

struct journal;
struct metrics_volume;

struct standby {
	/* Points at own; the allow list in it changes on reload, under the
	 * receiver's lock. */
	const struct receiver_volume_cfg *cfg;
	struct receiver_volume_cfg own;
	bool retired; /* removed from the configuration by a reload: refuse senders */
	const struct receiver_config *rcfg;
	char dir[KFIO_PATH_MAX];
	pthread_mutex_t lock;
	pthread_cond_t idle;	     /* signalled when busy clears */
	pthread_mutex_t status_lock; /* one writer of DIR/status at a time (heartbeats) */
	bool busy;		     /* a sender is connected */
	bool failed;		     /* sticky I/O error: refuse until restart */
	bool retry_recover;	     /* failed for want of space: recovery is tried again */
	char fail_msg[STANDBY_ERR_MAX];
	struct kfio_dev dev;
	struct kfio_queue *q; /* standby writes during a sync */
	struct map map;
	bool have_map;
	struct vstate vs;
	struct journal *j;
	struct metrics_volume *mv; /* NULL without --metrics-addr */
	uint32_t zero_hash_bytes;  /* the block size zero_hash was computed for */
	uint64_t zero_hash;	   /* xxh3 of a whole zero block */
};

/* Opens the device, its queue and state directory, and recovers (a committed
 * journal is replayed). On failure v is half-open: standby_close() it. */
int standby_open(struct standby *v, const struct receiver_config *rcfg,
		 const struct receiver_volume_cfg *vc, char *err, size_t err_len);
void standby_close(struct standby *v);

/*
 * A volume failed for want of space (its map could not be committed) recovers
 * in place when a sender comes back, as a restart would: the journal replays
 * what it holds and the map is committed. 0 when it serves again (or was not
 * failed), else -errno with the volume still failed. The caller owns v (busy).
 */
int standby_retry(struct standby *v);

/* Refreshes the heartbeat of the volume's status record (the receiver's loop,
 * every STATUS_HEARTBEAT_S): a reader knows the receiver still runs. */
void standby_heartbeat(struct standby *v);

/* The sticky failure: logged once, recorded in status, refuses further epochs. */
void standby_fail(struct standby *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After an aborted epoch: the committed map from disk (a failure is sticky). */
int standby_reload_map(struct standby *v);
int standby_open_journal(struct standby *v, char *err, size_t err_len);

/* Bytes of block `block` (the last one may be short). */
uint32_t standby_block_len(const struct standby *v, uint64_t block);
/* The xxh3 of zero block `block`, computed once per block size. */
uint64_t standby_zero_hash(struct standby *v, uint64_t block);

/* syncing: a fresh map with the sender's identity, and the state says so
 * durably before the caller writes the device (DESIGN.md invariant 1). */
int standby_sync_begin(struct standby *v, const struct proto_hello *h,
		       const struct proto_epoch_begin *eb, char *err, size_t err_len);
/* syncing: every block below cursor is durably written. */
int standby_sync_cursor(struct standby *v, uint64_t cursor);
/* syncing, resumed: a fresh map with the sender's identity, rebuilt from what
 * the interrupted sync already wrote (the state is unchanged). */
int standby_sync_resume(struct standby *v, const struct proto_hello *h, char *err, size_t err_len);
/*
 * The commit tail of every epoch: the map at eb's epoch, then the state
 * (consistent, the epoch, its consistent point). A failure is sticky (-EIO).
 */
int standby_commit(struct standby *v, const struct proto_epoch_begin *eb);

/*
 * Records the volume's state for `pvrepl status` and the metrics (reporting
 * only: a failure to write the record is ignored). ok < 0: no epoch ended
 * (start-up, connection events); 1: an epoch committed; 0: one was aborted.
 */
void standby_record(struct standby *v, const char *peer, int ok, double seconds,
		    uint64_t wire_bytes, const char *error);

#endif
