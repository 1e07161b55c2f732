// SPDX-License-Identifier: Apache-2.0
/*
 * standby — one receiving volume's device, map, state, journal and reports (see
 * standby.h). Every transition of the state record goes through here, so the
 * ordering that invariant 1 of DESIGN.md needs is in one file: `syncing` is
 * durable before the device is written outside the journal, and `consistent`
 * only after the map of the epoch is.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "delta.h"
#include "devid.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "pvrepl_assert.h"
#include "scan.h"
#include "standby.h"
#include "status.h"
#include "tls.h"

/* An exclusive open of the standby that finds it busy is tried again for up
 * to 3 s (a previous receiver's io_uring is torn down after it exits). */
#define STANDBY_BUSY_RETRIES  60
#define STANDBY_BUSY_RETRY_US 50000

static uint64_t zero_hash_of(uint32_t len)
{
	static const uint8_t zeros[SCAN_BLOCK_BYTES_MAX];

	return delta_hash(zeros, len);
}

/* The hash of zero block `block`: computed once per block size, not per block
 * (zero runs of a full sync cover a quarter of a typical volume). */
uint64_t standby_zero_hash(struct standby *v, uint64_t block)
{
	uint32_t len = standby_block_len(v, block);

	if (len != v->map.block_bytes)
		return zero_hash_of(len); /* the volume's short last block */
	if (v->zero_hash_bytes != len) {
		v->zero_hash = zero_hash_of(len);
		v->zero_hash_bytes = len;
	}
	return v->zero_hash;
}

uint32_t standby_block_len(const struct standby *v, uint64_t block)
{
	uint64_t off = block * v->map.block_bytes;
	uint64_t left = v->map.size_bytes - off;

	return left < v->map.block_bytes ? (uint32_t)left : v->map.block_bytes;
}

static int on_block_set(uint64_t block, uint64_t hash, void *ctx)
{
	struct standby *v = ctx;

	if (block >= v->map.block_count)
		return -EBADMSG;
	map_set(&v->map, block, hash);
	return 0;
}

void standby_fail(struct standby *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->fail_msg, sizeof(v->fail_msg), fmt, ap);
	va_end(ap);
	v->failed = true;
	log_msg(LOG_ERROR, v->cfg->name, NULL, 0, "FAILED: %s", v->fail_msg);
	/* Status says so at once, not at the end of some later epoch. */
	standby_record(v, NULL, -1, 0, 0, v->fail_msg);
}

static int vol_recover(struct standby *v, char *err, size_t err_len);

int standby_retry(struct standby *v)
{
	char err[STANDBY_ERR_MAX] = "";
	int rc;

	if (!v->failed)
		return 0;
	if (!v->retry_recover)
		return -EIO;
	/* What a restart would do for this volume: the state from disk. */
	if (v->j)
		journal_close(v->j);
	v->j = NULL;
	if (v->have_map)
		map_release(&v->map);
	v->have_map = false;
	rc = vol_recover(v, err, sizeof(err));
	if (rc) {
		log_msg(LOG_WARN, v->cfg->name, NULL, 0, "recovery retried, still failing: %s",
			err);
		snprintf(v->fail_msg, sizeof(v->fail_msg), "%s", err);
		return rc;
	}
	v->failed = false;
	v->retry_recover = false;
	v->fail_msg[0] = '\0';
	log_msg(LOG_INFO, v->cfg->name, NULL, v->vs.epoch,
		"recovered in place: the journal applied again and the map committed");
	standby_record(v, NULL, -1, 0, 0, NULL);
	return 0;
}

void standby_heartbeat(struct standby *v)
{
	pthread_mutex_lock(&v->status_lock);
	status_heartbeat_nosync(v->dir);
	pthread_mutex_unlock(&v->status_lock);
}

int standby_open_journal(struct standby *v, char *err, size_t err_len)
{
	struct journal_config jc = {
		.backend = v->rcfg->backend,
		.journal_max_bytes = v->rcfg->journal_bytes,
		.block_bytes = v->map.block_bytes,
		.queue_depth = 16,
	};

	if (v->j)
		return 0;
	memcpy(jc.volume_id, v->map.volume_id, sizeof(jc.volume_id));
	return journal_open(&v->j, v->dir, &jc, &v->dev, err, err_len);
}

/*
 * A journal made under another journal_size is made again at the configured
 * size, once recovery left nothing in it (EMPTY, or APPLIED: the standby and
 * the map hold its epoch). A crash between the two leaves no journal, which
 * is made again when needed, or the old one, resized at the next start.
 */
static int resize_journal(struct standby *v, const char *jpath, char *err, size_t err_len)
{
	struct journal_status js;
	uint64_t want = v->rcfg->journal_bytes ? v->rcfg->journal_bytes : JOURNAL_BYTES_DEFAULT;
	int rc;

	want -= want % JOURNAL_DISK_ALIGN_BYTES;
	journal_status(v->j, &js);
	if (js.journal_bytes == want || (js.state != JOURNAL_EMPTY && js.state != JOURNAL_APPLIED))
		return 0;
	journal_close(v->j);
	v->j = NULL;
	if (unlink(jpath)) {
		rc = -errno;
		snprintf(err, err_len, "volume %s: cannot remove %s to resize it: %s", v->cfg->name,
			 jpath, strerror(-rc));
		return rc;
	}
	rc = standby_open_journal(v, err, err_len);
	if (rc)
		return rc;
	log_msg(LOG_INFO, v->cfg->name, NULL, 0,
		"journal resized from %" PRIu64 " to %" PRIu64 " bytes (journal_size)",
		js.journal_bytes, want);
	return 0;
}

/* Brings a volume to a known state after a restart (crash included). */
static int vol_recover(struct standby *v, char *err, size_t err_len)
{
	struct journal_recovery jr;
	struct journal_status js;
	char jpath[KFIO_PATH_MAX + 16];
	struct stat st;
	int rc;

	rc = vstate_load(&v->vs, v->dir, err, err_len);
	if (rc == -ENOENT)
		memset(&v->vs, 0, sizeof(v->vs));
	else if (rc)
		return rc;
	rc = map_load(&v->map, v->dir, err, err_len);
	if (rc && rc != -ENOENT)
		return rc;
	v->have_map = rc == 0;
	if (v->have_map) {
		rc = map_check_geometry(&v->map, v->dev.size_bytes, v->map.block_bytes, err,
					err_len);
		if (rc)
			return rc;
	}

	snprintf(jpath, sizeof(jpath), "%s/journal", v->dir);
	if (v->have_map && stat(jpath, &st) == 0) {
		rc = standby_open_journal(v, err, err_len);
		if (rc)
			return rc;
		/* A committed epoch older than the map's would roll the standby
		 * back: refused before any replay (only damage makes one). The
		 * map's own epoch is replayed again harmlessly (the newest
		 * superblock was unreadable, the older one names it committed). */
		journal_status(v->j, &js);
		if (js.state == JOURNAL_COMMITTED && !v->map.empty && js.epoch < v->map.epoch) {
			snprintf(
				err, err_len,
				"volume %s: the journal %s names epoch %" PRIu64
				" committed, but the standby's map already holds epoch %" PRIu64
				": replaying it would roll the standby back; the state directory %s is inconsistent (damaged?): remove it and the volume resyncs from scratch",
				v->cfg->name, jpath, js.epoch, v->map.epoch, v->dir);
			return -EBADMSG;
		}
		memset(&jr, 0, sizeof(jr));
		rc = journal_recover(v->j, &jr, on_block_set, v);
		if (rc) {
			snprintf(err, err_len, "volume %s: journal recovery failed: %s",
				 v->cfg->name, journal_err(v->j));
			return rc;
		}
		/* Applied, but the map's commit after it failed (a full disk):
		 * the epoch is applied again and the map committed now, rather
		 * than a durable epoch being lost to a full resync. */
		journal_status(v->j, &js);
		if (!jr.replayed_epoch && js.state == JOURNAL_APPLIED && !v->map.empty &&
		    js.epoch > v->map.epoch) {
			rc = journal_apply(v->j, on_block_set, v);
			if (rc) {
				snprintf(err, err_len,
					 "volume %s: applying epoch %" PRIu64
					 " again (its map was not committed) failed: %s",
					 v->cfg->name, js.epoch, journal_err(v->j));
				return rc;
			}
			jr.replayed_epoch = js.epoch;
		}
		if (jr.replayed_epoch && !v->map.empty && jr.replayed_epoch == v->map.epoch) {
			log_msg(LOG_INFO, v->cfg->name, NULL, jr.replayed_epoch,
				"recovered: replayed committed epoch, which the map already held (the journal's newest superblock was unreadable)");
		} else if (jr.replayed_epoch) {
			rc = map_commit(&v->map, v->dir, jr.replayed_epoch, err, err_len);
			if (rc)
				return rc;
			log_msg(LOG_INFO, v->cfg->name, NULL, jr.replayed_epoch,
				"recovered: replayed committed epoch");
		}
		if (jr.discarded_epoch)
			log_msg(LOG_INFO, v->cfg->name, NULL, jr.discarded_epoch,
				"recovered: discarded uncommitted epoch");
		rc = resize_journal(v, jpath, err, err_len);
		if (rc)
			return rc;
	}
	/* The map is the authority on the committed epoch; the state follows it. */
	if (v->have_map && v->vs.kind == VSTATE_CONSISTENT && v->vs.epoch != v->map.epoch) {
		/* A replayed epoch's capture time is not in the journal: keep the
		 * previous consistent point, which is older (never overstates). */
		v->vs.epoch = v->map.epoch;
		v->vs.committed_unix = time(NULL);
		rc = vstate_store(&v->vs, v->dir, err, err_len);
		if (rc)
			return rc;
	}
	return 0;
}

/* The source time a committed epoch stands for: the sender's capture time. A
 * sender that did not say (an older one): the previous point when there is one
 * (older: the lag is never understated), else the commit time. */
static int64_t consistent_point_of(const struct standby *v, const struct proto_epoch_begin *eb)
{
	if (eb->capture_unix_ms)
		return (int64_t)eb->capture_unix_ms;
	return v->vs.consistent_point_ms ? v->vs.consistent_point_ms : clock_unix_ms();
}

/* The receiver's own certificate's expiry, on each volume's series (0 with
 * --insecure-plaintext or an unreadable certificate: the TLS setup says why). */
static void vol_tls_expiry(struct standby *v)
{
	int64_t not_after;

	if (v->mv && !tls_dir_cert_expiry(v->rcfg->tls_dir, &not_after))
		metrics_set(&v->mv->tls_certificate_expiry_timestamp_seconds, (double)not_after);
}

/* The same per-epoch outcome as standby_record() records, into the registry. */
static void vol_metrics(struct standby *v, const struct status_record *s, int ok, double seconds,
			uint64_t wire_bytes)
{
	struct metrics_volume *mv = v->mv;

	if (!mv)
		return;
	vol_tls_expiry(v); /* certificates rotate: read it again at each event */
	metrics_set(&mv->volume_size_bytes, (double)v->dev.size_bytes);
	metrics_set_state(mv, s->state == STATUS_ERROR		? METRICS_STATE_ERROR
			      : s->state == STATUS_INITIAL_SYNC ? METRICS_STATE_INITIAL_SYNC
								: METRICS_STATE_REPLICATING);
	metrics_set(&mv->consistent_point_timestamp_seconds, (double)s->consistent_point_ms / 1e3);
	/* What the standby's epoch is: one instant (a freeze) or live reads. */
	if (s->consistent)
		metrics_set_capture(mv, metrics_capture_of(s->capture));
	if (s->consistent)
		metrics_set(&mv->initial_sync_progress_ratio, 1);
	if (ok < 0)
		return;
	metrics_add(&mv->received_bytes_total, wire_bytes);
	if (ok > 0) {
		metrics_count_sync(mv, METRICS_SYNC_SUCCESS);
		metrics_observe(&mv->sync_duration_seconds, seconds);
		metrics_set(&mv->last_sync_success_timestamp_seconds, (double)time(NULL));
		return;
	}
	metrics_count_sync(mv, v->failed ? METRICS_SYNC_FAILURE : METRICS_SYNC_ABORTED);
	metrics_count_error(mv, v->failed ? METRICS_ERROR_IO : METRICS_ERROR_NETWORK);
}

/*
 * Records the volume's state for `pvrepl status` (reporting only; a failure to
 * write it is ignored). ok < 0: no epoch ended (start-up, connection events).
 */
void standby_record(struct standby *v, const char *peer, int ok, double seconds,
		    uint64_t wire_bytes, const char *error)
{
	struct status_update u;
	struct status_record s;
	int64_t now;

	pthread_mutex_lock(&v->status_lock);
	status_update_begin(&u, &s, v->dir, STATUS_ROLE_SECONDARY, v->cfg->name);
	s.daemon = true;
	now = u.now_unix;
	if (peer)
		snprintf(s.peer, sizeof(s.peer), "%s", peer);
	s.size_bytes = v->dev.size_bytes;
	s.epoch = v->vs.kind == VSTATE_CONSISTENT ? v->vs.epoch : 0;
	s.consistent = v->vs.kind == VSTATE_CONSISTENT;
	s.crash_consistent = v->vs.crash_consistent;
	s.capture = v->vs.capture;
	s.consistent_point_ms = s.consistent ? v->vs.consistent_point_ms : 0;
	s.state = v->failed					  ? STATUS_ERROR
		  : !s.consistent || v->vs.kind == VSTATE_SYNCING ? STATUS_INITIAL_SYNC
								  : STATUS_REPLICATING;
	if (ok >= 0)
		s.last_attempt_unix = now;
	if (ok > 0) {
		s.last_success_unix = now;
		s.last_sync_duration_ms = (uint64_t)(seconds * 1e3);
		s.last_sync_bytes = wire_bytes;
		s.last_error[0] = '\0';
	} else if (error) {
		snprintf(s.last_error, sizeof(s.last_error), "%.*s", (int)sizeof(s.last_error) - 1,
			 error);
	}
	status_update_store_nosync(&u, &s, v->dir);
	pthread_mutex_unlock(&v->status_lock);
	vol_metrics(v, &s, ok, seconds, wire_bytes);
}

int standby_open(struct standby *v, const struct receiver_config *rcfg,
		 const struct receiver_volume_cfg *vc, char *err, size_t err_len)
{
	struct kfio_queue_config qc = {
		.backend = rcfg->backend,
		.depth = STANDBY_WRITE_BUFS,
		.buf_count = STANDBY_WRITE_BUFS,
		.buf_bytes = PROTO_DATA_PLAINTEXT_MAX,
	};
	struct kfio_dev *devs[1];
	int rc;

	memset(v, 0, sizeof(*v));
	v->own = *vc;
	v->cfg = &v->own;
	v->rcfg = rcfg;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->status_lock, NULL);
	pthread_cond_init(&v->idle, NULL);
	snprintf(v->dir, sizeof(v->dir), "%s/%s", rcfg->state_dir, vc->name);
	if (mkdir(rcfg->state_dir, 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, err_len, "cannot create state directory %s: %s", rcfg->state_dir,
			 strerror(-rc));
		return rc;
	}
	if (mkdir(v->dir, 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, err_len, "cannot create %s: %s", v->dir, strerror(-rc));
		return rc;
	}
	/* Exclusive while served (a block device): nothing else may mount or
	 * claim the standby, whose writes the receiver would never know of. A
	 * file cannot be claimed: one behind a loop device is refused. */
	{
		char loop[256];

		if (devid_loop_over(vc->device, loop, sizeof(loop)) == 1) {
			snprintf(
				err, err_len,
				"volume %s: the standby %s is the backing file of %s, through which it can be mounted or written behind the receiver's back: detach it (losetup -d %s), or make %s the volume's device instead of the file",
				vc->name, vc->device, loop, loop, loop);
			return -EBUSY;
		}
	}
	/* A receiver that just stopped may still hold it for a moment: the
	 * kernel drops an io_uring's files after the process is gone. */
	for (int i = 0;; i++) {
		rc = kfio_dev_open(&v->dev, vc->device, KFIO_OPEN_WRITE | KFIO_OPEN_EXCL);
		if (rc != -EBUSY || i >= STANDBY_BUSY_RETRIES)
			break;
		usleep(STANDBY_BUSY_RETRY_US);
	}
	if (rc == -EBUSY) {
		snprintf(
			err, err_len,
			"volume %s: the standby %s is mounted or held by another program; nothing may write a standby while it is served (a mount changes it behind the receiver's back): unmount it. For a read-only look, stop the receiver first and mount it with -o ro,noload (ext4) or -o ro,norecovery (xfs)",
			vc->name, vc->device);
		return rc;
	}
	if (rc) {
		snprintf(err, err_len, "volume %s: %s", vc->name, v->dev.err_msg);
		return rc;
	}
	devs[0] = &v->dev;
	rc = kfio_queue_new(&v->q, &qc, devs, 1, err, err_len);
	if (rc)
		return rc;
	rc = vol_recover(v, err, err_len);
	if (rc)
		return rc;
	if (rcfg->metrics) {
		v->mv = metrics_volume(rcfg->metrics, vc->name, "secondary", "");
		if (!v->mv) {
			snprintf(err, err_len, "volume %s: name too long for a metrics label",
				 vc->name);
			return -EINVAL;
		}
		vol_tls_expiry(v);
	}
	log_msg(LOG_INFO, vc->name, NULL, v->vs.epoch, "device=%s state=%s size=%" PRIu64,
		vc->device, vstate_kind_name(v->vs.kind), v->dev.size_bytes);
	standby_record(v, NULL, -1, 0, 0, NULL);
	return 0;
}

void standby_close(struct standby *v)
{
	if (v->j)
		journal_close(v->j);
	if (v->have_map)
		map_release(&v->map);
	kfio_queue_free(v->q);
	kfio_dev_close(&v->dev);
	pthread_cond_destroy(&v->idle);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->status_lock);
}

/* After an aborted epoch the in-memory map holds hashes that were never
 * committed: reload the committed one from disk. */
int standby_reload_map(struct standby *v)
{
	char err[STANDBY_ERR_MAX];
	int rc;

	if (v->have_map)
		map_release(&v->map);
	rc = map_load(&v->map, v->dir, err, sizeof(err));
	v->have_map = rc == 0;
	if (rc && rc != -ENOENT) {
		standby_fail(v, "reloading the map failed: %s", err);
		return rc;
	}
	return 0;
}

/* A fresh map for the sync's identity and geometry: the map in memory after a
 * restart is the last committed one (another epoch, maybe another generation),
 * or none at all when the first sync was interrupted. */
static int standby_sync_map(struct standby *v, const struct proto_hello *h, char *err,
			    size_t err_len)
{
	int r;

	if (v->have_map)
		map_release(&v->map);
	v->have_map = false;
	r = map_create(&v->map, v->cfg->name, h->size_bytes, h->block_bytes);
	if (r) {
		snprintf(err, err_len, "cannot create a map: %s", strerror(-r));
		return r;
	}
	v->have_map = true;
	memcpy(v->map.volume_id, h->volume_id, 16);
	v->map.generation = h->generation;
	return 0;
}

int standby_sync_begin(struct standby *v, const struct proto_hello *h,
		       const struct proto_epoch_begin *eb, char *err, size_t err_len)
{
	char jpath[KFIO_PATH_MAX + 16];
	int r;

	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(eb != NULL);
	/* A fresh map for the new content, with the sender's identity. The state says
	 * `syncing` durably before the first write to the standby (invariant 1). A
	 * journal from before is moot: the sync rewrites every block. */
	if (v->j) {
		journal_close(v->j);
		v->j = NULL;
	}
	snprintf(jpath, sizeof(jpath), "%s/journal", v->dir);
	unlink(jpath);
	r = standby_sync_map(v, h, err, err_len);
	if (r)
		return r;
	v->vs.kind = VSTATE_SYNCING;
	v->vs.sync_epoch = eb->epoch;
	v->vs.sync_cursor = 0;
	v->vs.sync_capture_ms = (int64_t)eb->capture_unix_ms;
	v->vs.generation = h->generation;
	memcpy(v->vs.volume_id, h->volume_id, 16);
	r = vstate_store(&v->vs, v->dir, err, err_len);
	if (r)
		standby_fail(v, "%s", err);
	return r;
}

int standby_sync_resume(struct standby *v, const struct proto_hello *h, char *err, size_t err_len)
{
	struct scan_config sc;
	struct scan_stats st;
	int r;

	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(v->vs.kind == VSTATE_SYNCING);
	r = standby_sync_map(v, h, err, err_len);
	if (r)
		return r;
	/* Every block is hashed; those at and past the cursor are rewritten by the
	 * sync and set again. */
	scan_config_defaults(&sc);
	sc.compress = false;
	sc.backend = v->rcfg->backend;
	v->map.empty = true;
	return scan_run(&v->dev, &v->map, &sc, NULL, &st, err, err_len);
}

int standby_sync_cursor(struct standby *v, uint64_t cursor)
{
	char err[STANDBY_ERR_MAX];
	int rc;

	ASSERT(v != NULL);
	ASSERT(v->vs.kind == VSTATE_SYNCING);
	ASSERT(cursor <= v->map.block_count);
	v->vs.sync_cursor = cursor;
	rc = vstate_store(&v->vs, v->dir, err, sizeof(err));
	if (rc)
		standby_fail(v, "%s", err);
	else if (v->mv && v->map.block_count)
		metrics_set(&v->mv->initial_sync_progress_ratio,
			    (double)cursor / (double)v->map.block_count);
	return rc;
}

int standby_commit(struct standby *v, const struct proto_epoch_begin *eb)
{
	int rc;

	char err[STANDBY_ERR_MAX];
	bool was_syncing;

	ASSERT(v != NULL);
	ASSERT(eb != NULL);
	ASSERT(v->have_map);
	ASSERT(v->vs.kind != VSTATE_EMPTY);
	was_syncing = v->vs.kind == VSTATE_SYNCING;
	/* The map first, then the state. A crash between them leaves the map ahead
	 * of the state: recovery gives a consistent volume the map's epoch, and a
	 * syncing one stays syncing (never offered as consistent; the sync is
	 * redone). */
	if ((rc = map_commit(&v->map, v->dir, eb->epoch, err, sizeof(err)))) {
		v->retry_recover = rc == -ENOSPC || rc == -EDQUOT;
		standby_fail(
			v,
			"epoch %" PRIu64
			" is durable in the journal, but committing its map failed (%s): the volume is stopped until there is room; then the next sender to connect (or a restart) applies the epoch again and commits its map (no resync)",
			eb->epoch, err);
		return -EIO;
	}
	v->vs.kind = VSTATE_CONSISTENT;
	v->vs.epoch = eb->epoch;
	v->vs.sync_epoch = 0;
	v->vs.sync_cursor = 0;
	v->vs.crash_consistent = eb->flags & PROTO_EPOCH_CRASH_CONSISTENT;
	v->vs.capture = status_capture_byte(v->vs.crash_consistent, eb->capture_kind);
	v->vs.committed_unix = time(NULL);
	/* A resumed sync holds blocks read in its first run: it stands for that
	 * run's time. */
	v->vs.consistent_point_ms = was_syncing && v->vs.sync_capture_ms
					    ? v->vs.sync_capture_ms
					    : consistent_point_of(v, eb);
	v->vs.sync_capture_ms = 0;
	if (vstate_store(&v->vs, v->dir, err, sizeof(err))) {
		standby_fail(v, "%s", err);
		return -EIO;
	}
	return 0;
}
