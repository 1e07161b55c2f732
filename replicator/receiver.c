// SPDX-License-Identifier: Apache-2.0
/*
 * receiver — the standby side of replication (see receiver.h and the receiver
 * state machine in docs/PROTOCOL.md).
 *
 *   accept ─ tls_accept ─► WAIT_HELLO ─ check_hello fails ─► REFUSE, close
 *                              │ WELCOME
 *                              ▼
 *          ┌──────────────► IDLE ─ EPOCH_BEGIN ─┬─ INITIAL_SYNC ─► sync_epoch: verify,
 *          │                                    │   write the standby directly, cursor
 *          │                                    │   every PROTO_CURSOR_SYNC_BYTES
 *          │                                    └─ delta ─► delta_epoch: verify, journal
 *          │                                        EPOCH_END: root check, journal_commit,
 *          └──────── EPOCH_ACK ◄────────────────────  ack, journal_apply, map_commit
 *
 * Invariants (DESIGN.md 1-3, 6):
 *   1. The standby is written outside the journal only while the volume's state
 *      says `syncing`, and that state is durable before the first such write.
 *   2. EPOCH_ACK is sent only after the epoch is durable: journal_commit returned
 *      (delta), or the standby was flushed and the map and state committed (sync).
 *   3. Every block is checked against the xxh3 the sender computed on its
 *      plaintext before it is journaled or written; a mismatch aborts the epoch.
 *   4. Every field of every frame is checked against the volume before use: runs
 *      inside the volume, ascending, sizes matching the geometry.
 *   5. An I/O error on the journal or standby is sticky for the volume: it refuses
 *      further epochs until the receiver restarts and recovers from disk.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "delta.h"
#include "journal.h"
#include "log.h"
#include "map.h"
#include "merkle.h"
#include "metrics.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "receiver.h"
#include "replace.h"
#include "scan.h"
#include "status.h"
#include "tls.h"
#include "vstate.h"

#define RECV_WRITE_BUFS 8u
#define RECV_ERR_MAX	512
/* How long a new sender waits for a volume whose previous epoch is applying. */
#define RECEIVER_BUSY_WAIT_MS 10000u

struct rvol {
	/* Points at own; the allow list in it changes on reload, under the
	 * receiver's lock. */
	const struct receiver_volume_cfg *cfg;
	struct receiver_volume_cfg own;
	bool retired; /* removed from the configuration by a reload: refuse senders */
	const struct receiver_config *rcfg;
	char dir[KFIO_PATH_MAX];
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when busy clears */
	bool busy;	     /* a sender is connected */
	bool failed;	     /* sticky I/O error: refuse until restart */
	char fail_msg[RECV_ERR_MAX];
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

struct receiver {
	const struct receiver_config *cfg;
	struct tls_ctx *tls;
	struct rvol vols[RECEIVER_VOLUMES_MAX];
	unsigned vol_count;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned conns;
	/* Live connection sockets, so a stop can cut them (slot -1: free). The fd is
	 * withdrawn under the lock before it is closed: never a reused fd. */
	int conn_fds[RECEIVER_CONNS_MAX];
};

struct rconn {
	struct receiver *r;
	int fd;
	int slot; /* index in r->conn_fds, -1 when not registered */
	char peer_addr[64];
	char peer_name[256];
	struct conn c;
	uint64_t *hashes; /* PROTO_DATA_BLOCKS_MAX scratch */
	uint8_t *plain;	  /* PROTO_DATA_PLAINTEXT_MAX, aligned */
};

static uint64_t zero_hash_of(uint32_t len)
{
	static const uint8_t zeros[SCAN_BLOCK_BYTES_MAX];

	return delta_hash(zeros, len);
}

static uint32_t block_len(const struct rvol *v, uint64_t block);

/* The hash of zero block `block`: computed once per block size, not per block
 * (zero runs of a full sync cover a quarter of a typical volume). */
static uint64_t vol_zero_hash(struct rvol *v, uint64_t block)
{
	uint32_t len = block_len(v, block);

	if (len != v->map.block_bytes)
		return zero_hash_of(len); /* the volume's short last block */
	if (v->zero_hash_bytes != len) {
		v->zero_hash = zero_hash_of(len);
		v->zero_hash_bytes = len;
	}
	return v->zero_hash;
}

static uint32_t block_len(const struct rvol *v, uint64_t block)
{
	uint64_t off = block * v->map.block_bytes;
	uint64_t left = v->map.size_bytes - off;

	return left < v->map.block_bytes ? (uint32_t)left : v->map.block_bytes;
}

/* ------------------------------------------------------------ frame helpers */

static int send_error(struct rconn *rc, uint16_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int send_error(struct rconn *rc, uint16_t code, const char *fmt, ...)
{
	struct proto_error e = { .code = code };
	char msg[RECV_ERR_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	proto_message_format(e.message, "%s", msg);
	log_msg(LOG_WARN, NULL, rc->peer_addr, 0, "%s: %s", proto_error_name(code), msg);
	n = proto_encode_error(&e, rc->c.tx, PROTO_FRAME_BYTES_MAX);
	if (n > 0)
		conn_send(&rc->c, rc->c.tx, (size_t)n);
	return -EPROTO;
}

static int send_refuse(struct rconn *rc, uint16_t reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int send_refuse(struct rconn *rc, uint16_t reason, const char *fmt, ...)
{
	struct proto_refuse f = {
		.reason = reason,
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
	};
	char msg[RECV_ERR_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	proto_message_format(f.message, "%s", msg);
	log_msg(LOG_WARN, NULL, rc->peer_addr, 0, "cert=%s refused (%s): %s", rc->peer_name,
		proto_refuse_name(reason), msg);
	n = proto_encode_refuse(&f, rc->c.tx, PROTO_FRAME_BYTES_MAX);
	if (n > 0)
		conn_send(&rc->c, rc->c.tx, (size_t)n);
	return -EACCES;
}

/* ---------------------------------------------------------- volume state */

static int on_block_set(uint64_t block, uint64_t hash, void *ctx)
{
	struct rvol *v = ctx;

	if (block >= v->map.block_count)
		return -EBADMSG;
	map_set(&v->map, block, hash);
	return 0;
}

static void vol_fail(struct rvol *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void vol_fail(struct rvol *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->fail_msg, sizeof(v->fail_msg), fmt, ap);
	va_end(ap);
	v->failed = true;
	log_msg(LOG_ERROR, v->cfg->name, NULL, 0, "FAILED: %s", v->fail_msg);
}

static int vol_open_journal(struct rvol *v, char *err, size_t err_len)
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

/* Brings a volume to a known state after a restart (crash included). */
static int vol_recover(struct rvol *v, char *err, size_t err_len)
{
	struct journal_recovery jr;
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
		rc = vol_open_journal(v, err, err_len);
		if (rc)
			return rc;
		memset(&jr, 0, sizeof(jr));
		rc = journal_recover(v->j, &jr, on_block_set, v);
		if (rc) {
			snprintf(err, err_len, "volume %s: journal recovery failed: %s",
				 v->cfg->name, journal_err(v->j));
			return rc;
		}
		if (jr.replayed_epoch) {
			rc = map_commit(&v->map, v->dir, jr.replayed_epoch, err, err_len);
			if (rc)
				return rc;
			log_msg(LOG_INFO, v->cfg->name, NULL, jr.replayed_epoch,
				"recovered: replayed committed epoch");
		}
		if (jr.discarded_epoch)
			log_msg(LOG_INFO, v->cfg->name, NULL, jr.discarded_epoch,
				"recovered: discarded uncommitted epoch");
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
static int64_t consistent_point_of(const struct rvol *v, const struct proto_epoch_begin *eb)
{
	if (eb->capture_unix_ms)
		return (int64_t)eb->capture_unix_ms;
	return v->vs.consistent_point_ms ? v->vs.consistent_point_ms : clock_unix_ms();
}

/* The receiver's own certificate's expiry, on each volume's series (0 with
 * --insecure-plaintext or an unreadable certificate: the TLS setup says why). */
static void vol_tls_expiry(struct rvol *v)
{
	int64_t not_after;

	if (v->mv && !tls_dir_cert_expiry(v->rcfg->tls_dir, &not_after))
		metrics_set(&v->mv->tls_certificate_expiry_timestamp_seconds, (double)not_after);
}

/* The same per-epoch outcome as vol_status() records, into the registry. */
static void vol_metrics(struct rvol *v, const struct status_record *s, int ok, double seconds,
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
static void vol_status(struct rvol *v, const char *peer, int ok, double seconds,
		       uint64_t wire_bytes, const char *error)
{
	struct status_record prev, s;
	int64_t now = time(NULL);
	bool have_prev = status_load(&prev, v->dir) == 0;

	memset(&s, 0, sizeof(s));
	if (have_prev)
		s = prev;
	s.role = STATUS_ROLE_SECONDARY;
	snprintf(s.volume, sizeof(s.volume), "%s", v->cfg->name);
	if (peer)
		snprintf(s.peer, sizeof(s.peer), "%s", peer);
	s.size_bytes = v->dev.size_bytes;
	s.epoch = v->vs.kind == VSTATE_CONSISTENT ? v->vs.epoch : 0;
	s.consistent = v->vs.kind == VSTATE_CONSISTENT;
	s.crash_consistent = v->vs.crash_consistent;
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
	if (!have_prev || prev.state != s.state)
		s.state_since_unix = now;
	status_store_nosync(&s, v->dir);
	vol_metrics(v, &s, ok, seconds, wire_bytes);
}

static int vol_open(struct rvol *v, const struct receiver_config *rcfg,
		    const struct receiver_volume_cfg *vc, char *err, size_t err_len)
{
	struct kfio_queue_config qc = {
		.backend = rcfg->backend,
		.depth = RECV_WRITE_BUFS,
		.buf_count = RECV_WRITE_BUFS,
		.buf_bytes = PROTO_DATA_PLAINTEXT_MAX,
	};
	struct kfio_dev *devs[1];
	int rc;

	memset(v, 0, sizeof(*v));
	v->own = *vc;
	v->cfg = &v->own;
	v->rcfg = rcfg;
	pthread_mutex_init(&v->lock, NULL);
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
	rc = kfio_dev_open(&v->dev, vc->device, KFIO_OPEN_WRITE);
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
	vol_status(v, NULL, -1, 0, 0, NULL);
	return 0;
}

static void vol_close(struct rvol *v)
{
	if (v->j)
		journal_close(v->j);
	if (v->have_map)
		map_release(&v->map);
	kfio_queue_free(v->q);
	kfio_dev_close(&v->dev);
	pthread_cond_destroy(&v->idle);
	pthread_mutex_destroy(&v->lock);
}

/* After an aborted epoch the in-memory map holds hashes that were never
 * committed: reload the committed one from disk. */
static int vol_reload_map(struct rvol *v)
{
	char err[RECV_ERR_MAX];
	int rc;

	if (v->have_map)
		map_release(&v->map);
	rc = map_load(&v->map, v->dir, err, sizeof(err));
	v->have_map = rc == 0;
	if (rc && rc != -ENOENT) {
		vol_fail(v, "reloading the map failed: %s", err);
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ handshake */

/* A reload appends volumes and flips retired under r->lock; readers take it too. */
static struct rvol *find_volume(struct receiver *r, const char *name, bool *retired)
{
	struct rvol *v = NULL;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->vol_count; i++)
		if (!strcmp(r->vols[i].cfg->name, name))
			v = &r->vols[i];
	*retired = v && v->retired;
	pthread_mutex_unlock(&r->lock);
	return v;
}

static bool authorised(struct receiver *r, const struct rvol *v, const char *peer_name)
{
	bool ok;

	pthread_mutex_lock(&r->lock);
	ok = v->cfg->allow_count == 0;
	for (unsigned i = 0; i < v->cfg->allow_count && !ok; i++)
		ok = !strcmp(v->cfg->allow[i], peer_name);
	pthread_mutex_unlock(&r->lock);
	return ok;
}

static void hex_id(const uint8_t id[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* Checks HELLO against the volume in the documented order; REFUSE on failure. */
static int check_hello(struct rconn *rc, struct rvol *v, const struct proto_hello *h)
{
	char a[33], b[33];

	if (!proto_version_choose(h->version_min, h->version_max, PROTO_VERSION_MIN,
				  PROTO_VERSION_MAX))
		return send_refuse(
			rc, PROTO_REFUSE_VERSION,
			"no common protocol version: sender speaks %u..%u, receiver %u..%u",
			h->version_min, h->version_max, PROTO_VERSION_MIN, PROTO_VERSION_MAX);
	if (v->failed)
		return send_error(
			rc, PROTO_ERR_IO,
			"volume %s is stopped after an I/O error (%s); restart the receiver to recover",
			v->cfg->name, v->fail_msg);
	if (v->have_map && memcmp(h->volume_id, v->map.volume_id, 16)) {
		hex_id(h->volume_id, a);
		hex_id(v->map.volume_id, b);
		return send_refuse(
			rc, PROTO_REFUSE_VOLUME_ID,
			"volume %s here has id %s but the sender's has id %s; point the sender at the right receiver or reinitialise the standby",
			v->cfg->name, b, a);
	}
	if (h->size_bytes != v->dev.size_bytes)
		return send_refuse(rc, PROTO_REFUSE_SIZE,
				   "volume %s: the source is %" PRIu64
				   " bytes but the standby %s is %" PRIu64
				   " bytes; resize the standby to match",
				   v->cfg->name, h->size_bytes, v->cfg->device, v->dev.size_bytes);
	if (v->have_map && h->block_bytes != v->map.block_bytes)
		return send_refuse(
			rc, PROTO_REFUSE_BLOCK_SIZE,
			"volume %s: the sender uses %u-byte blocks, the standby's map %u-byte blocks",
			v->cfg->name, h->block_bytes, v->map.block_bytes);
	if (h->block_bytes < SCAN_BLOCK_BYTES_MIN || h->block_bytes > SCAN_BLOCK_BYTES_MAX)
		return send_refuse(rc, PROTO_REFUSE_BLOCK_SIZE,
				   "volume %s: block size %u is outside %u..%u", v->cfg->name,
				   h->block_bytes, SCAN_BLOCK_BYTES_MIN, SCAN_BLOCK_BYTES_MAX);
	if (v->have_map && v->map.generation > h->generation)
		return send_refuse(
			rc, PROTO_REFUSE_GENERATION,
			"volume %s: the standby is at generation %" PRIu64
			", newer than the sender's %" PRIu64
			"; the sender is the stale side: demote it or reverse the direction",
			v->cfg->name, v->map.generation, h->generation);
	return 0;
}

static int send_welcome(struct rconn *rc, struct rvol *v, const struct proto_hello *h)
{
	struct proto_welcome w = {
		.version = PROTO_VERSION_MAX,
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.capabilities = h->capabilities &
				(PROTO_CAP_LZ4 | PROTO_CAP_RESUME | PROTO_CAP_CAPTURE_TIME),
	};
	int n;

	if (v->vs.kind == VSTATE_CONSISTENT && v->have_map) {
		w.state = PROTO_STATE_CONSISTENT;
		w.generation = v->map.generation;
		w.epoch = v->map.epoch;
		w.merkle_root = map_merkle_root(&v->map);
		memcpy(w.volume_id, v->map.volume_id, 16);
	} else if (v->vs.kind == VSTATE_SYNCING) {
		w.state = PROTO_STATE_SYNCING;
		w.generation = v->vs.generation;
		w.epoch = v->have_map ? v->map.epoch : 0;
		if (!memcmp(v->vs.volume_id, h->volume_id, 16) && v->vs.sync_cursor &&
		    v->vs.sync_epoch > w.epoch) {
			w.resume_epoch = v->vs.sync_epoch;
			w.resume_block = v->vs.sync_cursor;
		}
		memcpy(w.volume_id, v->vs.volume_id, 16);
	} else {
		w.state = PROTO_STATE_EMPTY;
		memcpy(w.volume_id, h->volume_id, 16);
	}
	n = proto_encode_welcome(&w, rc->c.tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0)
		return n;
	return conn_send(&rc->c, rc->c.tx, (size_t)n);
}

/* ----------------------------------------------------------------- epochs */

struct epoch_rx {
	const struct proto_epoch_begin *eb;
	uint64_t next_block; /* runs must start at or after it (ascending, no overlap) */
	uint64_t blocks;     /* blocks received */
};

/* Checks a run against the volume and the epoch's order (invariant 4). */
static int check_run(struct rconn *rc, struct rvol *v, struct epoch_rx *ex, uint64_t first,
		     uint32_t count)
{
	if (count == 0 || first >= v->map.block_count || count > v->map.block_count - first)
		return send_error(rc, PROTO_ERR_PROTOCOL,
				  "volume %s: run %" PRIu64 "+%u is outside the volume's %" PRIu64
				  " blocks",
				  v->cfg->name, first, count, v->map.block_count);
	if (first < ex->next_block)
		return send_error(rc, PROTO_ERR_PROTOCOL,
				  "volume %s: run at block %" PRIu64
				  " is out of order (expected >= %" PRIu64 ")",
				  v->cfg->name, first, ex->next_block);
	ex->next_block = first + count;
	ex->blocks += count;
	return 0;
}

/*
 * Decodes a DATA frame's blocks into dst and checks each block's xxh3 against the
 * sender's (invariant 3). Fills rc->hashes. Returns the plaintext length or <0.
 */
static int verify_data(struct rconn *rc, struct rvol *v, const struct proto_data *d, void *dst)
{
	uint64_t expect = 0;
	uint32_t off = 0;

	for (uint32_t i = 0; i < d->block_count; i++)
		expect += block_len(v, d->first_block + i);
	if (expect != d->plaintext_bytes || expect > PROTO_DATA_PLAINTEXT_MAX)
		return send_error(rc, PROTO_ERR_PROTOCOL,
				  "volume %s: DATA at block %" PRIu64
				  " carries %u plaintext bytes, the geometry says %" PRIu64,
				  v->cfg->name, d->first_block, d->plaintext_bytes, expect);
	if (codec_decompress(d->codec == PROTO_CODEC_LZ4 ? CODEC_LZ4 : CODEC_RAW, d->data,
			     d->data_bytes, dst, d->plaintext_bytes))
		return send_error(rc, PROTO_ERR_VERIFY,
				  "volume %s: DATA at block %" PRIu64 " does not decompress",
				  v->cfg->name, d->first_block);
	for (uint32_t i = 0; i < d->block_count; i++) {
		uint32_t len = block_len(v, d->first_block + i);
		uint64_t want = proto_data_hash(d, i);

		if (delta_hash((const char *)dst + off, len) != want)
			return send_error(
				rc, PROTO_ERR_VERIFY,
				"volume %s: block %" PRIu64
				" does not match the sender's xxh3; epoch aborted, nothing applied",
				v->cfg->name, d->first_block + i);
		rc->hashes[i] = want;
		off += len;
	}
	return (int)d->plaintext_bytes;
}

/* Sync writes: up to RECV_WRITE_BUFS in flight on the standby queue. */
struct sync_io {
	uint32_t next_buf;
	uint32_t inflight;
	uint64_t bytes_since_cursor;
};

static int sync_reap(struct rvol *v, struct sync_io *io, unsigned min_wait)
{
	struct kfio_cqe cqes[RECV_WRITE_BUFS];
	int n;

	while (min_wait > 0 || io->inflight) {
		n = kfio_queue_reap(v->q, cqes, RECV_WRITE_BUFS, min_wait ? 1 : 0);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		for (int i = 0; i < n; i++) {
			if (cqes[i].res < 0 || (uint32_t)cqes[i].res != cqes[i].len) {
				vol_fail(v, "%s: standby write at offset %" PRIu64 " failed: %s",
					 v->cfg->device, cqes[i].offset,
					 cqes[i].res < 0 ? strerror(-cqes[i].res) : "short write");
				return -EIO;
			}
		}
		io->inflight -= (uint32_t)n;
		min_wait = min_wait > (unsigned)n ? min_wait - (unsigned)n : 0;
		if (!min_wait)
			break;
	}
	return 0;
}

/* Waits for every write, then flushes the standby (the writes are durable). */
static int sync_flush(struct rvol *v, struct sync_io *io)
{
	struct kfio_cqe cqe;
	int rc;

	rc = sync_reap(v, io, io->inflight);
	if (rc)
		return rc;
	rc = kfio_queue_flush(v->q, 0, 0);
	if (!rc)
		rc = kfio_queue_submit(v->q);
	if (rc >= 0)
		rc = kfio_queue_reap(v->q, &cqe, 1, 1);
	if (rc < 0 || cqe.res < 0) {
		vol_fail(v, "%s: flush failed: %s", v->cfg->device,
			 strerror(rc < 0 ? -rc : -cqe.res));
		return -EIO;
	}
	return 0;
}

/* Gets a free registered buffer for the next write (reaping one if all are busy). */
static int sync_buf(struct rvol *v, struct sync_io *io, uint32_t *idx)
{
	if (io->inflight >= RECV_WRITE_BUFS) {
		int rc = sync_reap(v, io, 1);

		if (rc)
			return rc;
	}
	/* Buffers are used round-robin and writes complete in any order, so wait
	 * until the one we are about to reuse is free: drain fully when wrapping. */
	if (io->next_buf == RECV_WRITE_BUFS) {
		int rc = sync_reap(v, io, io->inflight);

		if (rc)
			return rc;
		io->next_buf = 0;
	}
	*idx = io->next_buf++;
	return 0;
}

static int sync_write(struct rvol *v, struct sync_io *io, uint32_t buf, uint64_t first,
		      uint32_t bytes)
{
	uint32_t a = v->dev.dio_offset_align > 1 ? v->dev.dio_offset_align : 1;
	uint32_t len = (bytes + a - 1) / a * a; /* the volume's tail is aligned on devices */
	int rc;

	if ((uint64_t)first * v->map.block_bytes + len > v->dev.size_bytes)
		len = bytes;
	rc = kfio_queue_write(v->q, 0, buf, first * v->map.block_bytes, len, first);
	if (!rc)
		rc = kfio_queue_submit(v->q);
	if (rc < 0) {
		vol_fail(v, "%s", kfio_queue_err(v->q));
		return rc;
	}
	io->inflight++;
	io->bytes_since_cursor += bytes;
	return 0;
}

static int persist_cursor(struct rvol *v, struct sync_io *io, uint64_t cursor)
{
	char err[RECV_ERR_MAX];
	int rc = sync_flush(v, io);

	if (rc)
		return rc;
	v->vs.sync_cursor = cursor;
	rc = vstate_store(&v->vs, v->dir, err, sizeof(err));
	if (rc)
		vol_fail(v, "%s", err);
	else if (v->mv && v->map.block_count)
		metrics_set(&v->mv->initial_sync_progress_ratio,
			    (double)cursor / (double)v->map.block_count);
	io->bytes_since_cursor = 0;
	return rc;
}

/* Rebuilds the hashes of what an interrupted sync already wrote. */
static int rehash_standby(struct rvol *v, char *err, size_t err_len)
{
	struct scan_config sc;
	struct scan_stats st;

	scan_config_defaults(&sc);
	sc.compress = false;
	sc.backend = v->rcfg->backend;
	v->map.empty = true;
	return scan_run(&v->dev, &v->map, &sc, NULL, &st, err, err_len);
}

static int sync_start(struct rconn *rc, struct rvol *v, const struct proto_hello *h,
		      const struct proto_epoch_begin *eb)
{
	char err[RECV_ERR_MAX];
	int r;

	if (eb->flags & PROTO_EPOCH_RESUMED) {
		if (v->vs.kind != VSTATE_SYNCING || eb->epoch != v->vs.sync_epoch ||
		    eb->resume_block > v->vs.sync_cursor || !v->have_map)
			return send_error(
				rc, PROTO_ERR_EPOCH,
				"volume %s: cannot resume epoch %" PRIu64 " at block %" PRIu64
				" (this side: %s epoch %" PRIu64 " cursor %" PRIu64 ")",
				v->cfg->name, eb->epoch, eb->resume_block,
				vstate_kind_name(v->vs.kind), v->vs.sync_epoch, v->vs.sync_cursor);
		r = rehash_standby(v, err, sizeof(err));
		if (r)
			return send_error(rc, PROTO_ERR_IO,
					  "volume %s: rehashing the standby failed: %s",
					  v->cfg->name, err);
		log_msg(LOG_INFO, v->cfg->name, rc->peer_addr, eb->epoch,
			"resuming the sync at block %" PRIu64, eb->resume_block);
		return 0;
	}
	/* A fresh map for the new content, with the sender's identity. The state says
	 * `syncing` durably before the first write to the standby (invariant 1). A
	 * journal from before is moot: the sync rewrites every block. */
	if (v->j) {
		journal_close(v->j);
		v->j = NULL;
	}
	{
		char jpath[KFIO_PATH_MAX + 16];

		snprintf(jpath, sizeof(jpath), "%s/journal", v->dir);
		unlink(jpath);
	}
	if (v->have_map)
		map_release(&v->map);
	v->have_map = false;
	r = map_create(&v->map, v->cfg->name, h->size_bytes, h->block_bytes);
	if (r)
		return send_error(rc, PROTO_ERR_INTERNAL, "volume %s: cannot create a map: %s",
				  v->cfg->name, strerror(-r));
	v->have_map = true;
	memcpy(v->map.volume_id, h->volume_id, 16);
	v->map.generation = h->generation;
	v->vs.kind = VSTATE_SYNCING;
	v->vs.sync_epoch = eb->epoch;
	v->vs.sync_cursor = 0;
	v->vs.sync_capture_ms = (int64_t)eb->capture_unix_ms;
	v->vs.generation = h->generation;
	memcpy(v->vs.volume_id, h->volume_id, 16);
	r = vstate_store(&v->vs, v->dir, err, sizeof(err));
	if (r) {
		vol_fail(v, "%s", err);
		return send_error(rc, PROTO_ERR_IO, "volume %s: %s", v->cfg->name, err);
	}
	log_msg(LOG_INFO, v->cfg->name, rc->peer_addr, eb->epoch, "full sync started");
	return 0;
}

static int finish_epoch_checks(struct rconn *rc, struct rvol *v, struct epoch_rx *ex,
			       const struct proto_epoch_end *ee)
{
	uint64_t root;

	if (ee->epoch != ex->eb->epoch || ee->block_count != ex->blocks)
		return send_error(rc, PROTO_ERR_EPOCH,
				  "volume %s: EPOCH_END for epoch %" PRIu64 " with %" PRIu64
				  " blocks, but epoch %" PRIu64 " carried %" PRIu64,
				  v->cfg->name, ee->epoch, ee->block_count, ex->eb->epoch,
				  ex->blocks);
	root = map_merkle_root(&v->map);
	if (root != ee->merkle_root)
		return send_error(rc, PROTO_ERR_VERIFY,
				  "volume %s: after epoch %" PRIu64
				  " the standby's Merkle root %016" PRIx64
				  " differs from the source's %016" PRIx64,
				  v->cfg->name, ex->eb->epoch, root, ee->merkle_root);
	return 0;
}

/* root: the map's root, already computed and checked against the sender's in
 * finish_epoch_checks (the tree covers the whole volume: build it once). */
static int send_ack(struct rconn *rc, struct rvol *v, uint64_t epoch, uint64_t root)
{
	struct proto_epoch_ack a = {
		.epoch = epoch,
		.generation = v->map.generation,
		.merkle_root = root,
	};
	int n = proto_encode_epoch_ack(&a, rc->c.tx, PROTO_FRAME_BYTES_MAX);

	return n < 0 ? n : conn_send(&rc->c, rc->c.tx, (size_t)n);
}

static int sync_epoch(struct rconn *rc, struct rvol *v, const struct proto_hello *h,
		      const struct proto_epoch_begin *eb)
{
	struct epoch_rx ex = { .eb = eb, .next_block = eb->resume_block };
	struct sync_io io = { 0 };
	struct proto_msg msg;
	char err[RECV_ERR_MAX];
	int r;

	r = sync_start(rc, v, h, eb);
	if (r)
		return r;
	for (;;) {
		r = conn_recv(&rc->c, &msg);
		if (r)
			goto lost;
		switch (msg.header.type) {
		case PROTO_DATA: {
			const struct proto_data *d = &msg.u.data;
			uint32_t buf = 0;

			r = check_run(rc, v, &ex, d->first_block, d->block_count);
			if (!r)
				r = sync_buf(v, &io, &buf);
			if (!r)
				r = verify_data(rc, v, d, kfio_queue_buf(v->q, buf));
			if (r < 0)
				goto abort;
			r = sync_write(v, &io, buf, d->first_block, d->plaintext_bytes);
			if (r)
				goto io_error;
			for (uint32_t i = 0; i < d->block_count; i++)
				map_set(&v->map, d->first_block + i, rc->hashes[i]);
			break;
		}
		case PROTO_ZERO: {
			const struct proto_zero *z = &msg.u.zero;

			r = check_run(rc, v, &ex, z->first_block, z->block_count);
			if (r)
				goto abort;
			for (uint64_t b = z->first_block; b < z->first_block + z->block_count;) {
				uint32_t n = PROTO_DATA_PLAINTEXT_MAX / v->map.block_bytes, buf;
				uint32_t bytes = 0;

				if (n > z->first_block + z->block_count - b)
					n = (uint32_t)(z->first_block + z->block_count - b);
				r = sync_buf(v, &io, &buf);
				if (r)
					goto io_error;
				for (uint32_t i = 0; i < n; i++) {
					uint32_t len = block_len(v, b + i);

					map_set(&v->map, b + i, vol_zero_hash(v, b + i));
					bytes += len;
				}
				memset(kfio_queue_buf(v->q, buf), 0, bytes);
				r = sync_write(v, &io, buf, b, bytes);
				if (r)
					goto io_error;
				b += n;
			}
			break;
		}
		case PROTO_EPOCH_END:
			r = sync_flush(v, &io);
			if (r)
				goto io_error;
			r = finish_epoch_checks(rc, v, &ex, &msg.u.epoch_end);
			if (r)
				goto abort;
			/* Durable: data flushed above; now the map, then the state. */
			r = map_commit(&v->map, v->dir, eb->epoch, err, sizeof(err));
			if (r) {
				vol_fail(v, "%s", err);
				goto io_error;
			}
			v->vs.kind = VSTATE_CONSISTENT;
			v->vs.epoch = eb->epoch;
			v->vs.sync_epoch = 0;
			v->vs.sync_cursor = 0;
			v->vs.crash_consistent = eb->flags & PROTO_EPOCH_CRASH_CONSISTENT;
			v->vs.committed_unix = time(NULL);
			/* A resumed sync holds blocks read in its first run: it stands
			 * for that run's time. */
			v->vs.consistent_point_ms = v->vs.sync_capture_ms
							    ? v->vs.sync_capture_ms
							    : consistent_point_of(v, eb);
			v->vs.sync_capture_ms = 0;
			r = vstate_store(&v->vs, v->dir, err, sizeof(err));
			if (r) {
				vol_fail(v, "%s", err);
				goto io_error;
			}
			log_msg(LOG_INFO, v->cfg->name, rc->peer_addr, eb->epoch,
				"full sync complete: %" PRIu64 " blocks, standby consistent",
				ex.blocks);
			if (v->mv)
				metrics_add(&v->mv->applied_bytes_total,
					    ex.blocks * v->map.block_bytes);
			return send_ack(rc, v, eb->epoch, msg.u.epoch_end.merkle_root);
		default:
			r = send_error(rc, PROTO_ERR_PROTOCOL,
				       "volume %s: unexpected %s during epoch %" PRIu64,
				       v->cfg->name, proto_type_name(msg.header.type), eb->epoch);
			goto abort;
		}
		/* The cursor: everything below it is durable and need not be resent. */
		if (io.bytes_since_cursor >= PROTO_CURSOR_SYNC_BYTES) {
			r = persist_cursor(v, &io, ex.next_block);
			if (r)
				goto io_error;
		}
	}
io_error:
	sync_reap(v, &io, io.inflight);
	return send_error(rc, PROTO_ERR_IO, "volume %s: %s", v->cfg->name, v->fail_msg);
lost:
	log_msg(LOG_WARN, v->cfg->name, rc->peer_addr, eb->epoch,
		"sync interrupted: %s (cursor %" PRIu64 ")", rc->c.err, v->vs.sync_cursor);
abort:
	sync_reap(v, &io, io.inflight);
	/* Keep what is durable (the cursor); the in-memory map is rebuilt on resume. */
	return r ? r : -EPROTO;
}

static int delta_epoch(struct rconn *rc, struct rvol *v, const struct proto_epoch_begin *eb)
{
	struct epoch_rx ex = { .eb = eb };
	struct proto_msg msg;
	char err[RECV_ERR_MAX];
	int r;

	if (v->vs.kind != VSTATE_CONSISTENT || !v->have_map || eb->base_epoch != v->map.epoch ||
	    eb->generation != v->map.generation)
		return send_error(rc, PROTO_ERR_EPOCH,
				  "volume %s: epoch %" PRIu64 " is a delta against epoch %" PRIu64
				  " but the standby is %s at epoch %" PRIu64
				  "; the sender must resync",
				  v->cfg->name, eb->epoch, eb->base_epoch,
				  vstate_kind_name(v->vs.kind), v->have_map ? v->map.epoch : 0);
	r = vol_open_journal(v, err, sizeof(err));
	if (r) {
		vol_fail(v, "%s", err);
		return send_error(rc, PROTO_ERR_IO, "volume %s: %s", v->cfg->name, err);
	}
	r = journal_begin(v->j, eb->epoch, eb->generation, eb->base_epoch);
	if (r)
		goto journal_error;
	for (;;) {
		r = conn_recv(&rc->c, &msg);
		if (r) {
			log_msg(LOG_WARN, v->cfg->name, rc->peer_addr, eb->epoch,
				"interrupted: %s; discarded", rc->c.err);
			goto abort;
		}
		switch (msg.header.type) {
		case PROTO_DATA: {
			const struct proto_data *d = &msg.u.data;

			r = check_run(rc, v, &ex, d->first_block, d->block_count);
			if (!r)
				r = verify_data(rc, v, d, rc->plain);
			if (r < 0)
				goto abort;
			r = journal_add_data(v->j, d->first_block, d->block_count, rc->plain,
					     d->plaintext_bytes, rc->hashes);
			if (r)
				goto journal_error;
			for (uint32_t i = 0; i < d->block_count; i++)
				map_set(&v->map, d->first_block + i, rc->hashes[i]);
			break;
		}
		case PROTO_ZERO: {
			const struct proto_zero *z = &msg.u.zero;

			r = check_run(rc, v, &ex, z->first_block, z->block_count);
			if (r)
				goto abort;
			r = journal_add_zero(v->j, z->first_block, z->block_count);
			if (r)
				goto journal_error;
			for (uint64_t b = z->first_block; b < z->first_block + z->block_count; b++)
				map_set(&v->map, b, vol_zero_hash(v, b));
			break;
		}
		case PROTO_EPOCH_END:
			r = finish_epoch_checks(rc, v, &ex, &msg.u.epoch_end);
			if (r)
				goto abort;
			/* Durable once journal_commit returns: only then the ack. */
			r = journal_commit(v->j);
			if (r)
				goto journal_error;
			r = send_ack(rc, v, eb->epoch, msg.u.epoch_end.merkle_root);
			/* Apply whatever happens to the connection: the epoch is committed. */
			if (journal_apply(v->j, NULL, NULL)) {
				vol_fail(v, "applying epoch %" PRIu64 ": %s", eb->epoch,
					 journal_err(v->j));
				return -EIO;
			}
			if (map_commit(&v->map, v->dir, eb->epoch, err, sizeof(err))) {
				vol_fail(v, "%s", err);
				return -EIO;
			}
			v->vs.epoch = eb->epoch;
			v->vs.crash_consistent = eb->flags & PROTO_EPOCH_CRASH_CONSISTENT;
			v->vs.committed_unix = time(NULL);
			v->vs.consistent_point_ms = consistent_point_of(v, eb);
			if (vstate_store(&v->vs, v->dir, err, sizeof(err))) {
				vol_fail(v, "%s", err);
				return -EIO;
			}
			log_msg(LOG_INFO, v->cfg->name, rc->peer_addr, eb->epoch,
				"committed and applied: %" PRIu64 " blocks", ex.blocks);
			if (v->mv)
				metrics_add(&v->mv->applied_bytes_total,
					    ex.blocks * v->map.block_bytes);
			return r;
		default:
			r = send_error(rc, PROTO_ERR_PROTOCOL,
				       "volume %s: unexpected %s during epoch %" PRIu64,
				       v->cfg->name, proto_type_name(msg.header.type), eb->epoch);
			goto abort;
		}
	}
journal_error:
	if (r == -ENOSPC) {
		send_error(rc, PROTO_ERR_IO,
			   "volume %s: epoch %" PRIu64 " does not fit the %" PRIu64
			   "-byte journal; raise --journal-size",
			   v->cfg->name, eb->epoch, v->rcfg->journal_bytes);
		goto abort;
	}
	if (r == -EBADMSG) {
		send_error(rc, PROTO_ERR_VERIFY, "volume %s: %s", v->cfg->name, journal_err(v->j));
		goto abort;
	}
	vol_fail(v, "journal: %s", journal_err(v->j));
	send_error(rc, PROTO_ERR_IO, "volume %s: %s", v->cfg->name, v->fail_msg);
abort:
	if (v->j && !v->failed)
		journal_abort(v->j);
	vol_reload_map(v);
	return r ? r : -EPROTO;
}

/* ------------------------------------------------------------ connections */

static int serve_volume(struct rconn *rc, struct rvol *v, const struct proto_hello *h)
{
	struct proto_msg msg;
	int r;

	r = check_hello(rc, v, h);
	if (r)
		return r;
	r = send_welcome(rc, v, h);
	if (r)
		return r;
	for (;;) {
		r = conn_recv(&rc->c, &msg);
		if (r == -ECONNRESET)
			return 0; /* the sender is done */
		if (r)
			return r;
		if (msg.header.type != PROTO_EPOCH_BEGIN)
			return send_error(rc, PROTO_ERR_PROTOCOL,
					  "volume %s: expected EPOCH_BEGIN, got %s", v->cfg->name,
					  proto_type_name(msg.header.type));
		struct proto_epoch_begin eb = msg.u.epoch_begin;

		if (eb.generation != h->generation)
			return send_error(rc, PROTO_ERR_EPOCH,
					  "volume %s: EPOCH_BEGIN generation %" PRIu64
					  " differs from HELLO's %" PRIu64,
					  v->cfg->name, eb.generation, h->generation);
		double t0 = clock_mono_s();
		uint64_t rx0 = conn_wire_bytes_received(&rc->c);
		char who[sizeof(rc->peer_addr) + sizeof(rc->peer_name) + 4];

		snprintf(who, sizeof(who), "%s (%s)", rc->peer_addr,
			 rc->peer_name[0] ? rc->peer_name : "no certificate");
		if (eb.flags & PROTO_EPOCH_INITIAL_SYNC)
			vol_status(v, who, -1, 0, 0, NULL);
		if (eb.flags & PROTO_EPOCH_INITIAL_SYNC)
			r = sync_epoch(rc, v, h, &eb);
		else
			r = delta_epoch(rc, v, &eb);
		vol_status(v, who, r == 0, clock_mono_s() - t0,
			   conn_wire_bytes_received(&rc->c) - rx0,
			   r ? (v->failed      ? v->fail_msg
				: rc->c.err[0] ? rc->c.err
					       : "epoch aborted")
			     : NULL);
		if (r)
			return r;
	}
}

static void conn_unregister(struct receiver *r, struct rconn *rc)
{
	pthread_mutex_lock(&r->lock);
	if (rc->slot >= 0)
		r->conn_fds[rc->slot] = -1;
	rc->slot = -1;
	pthread_mutex_unlock(&r->lock);
}

static void *conn_main(void *arg)
{
	struct rconn *rc = arg;
	struct receiver *r = rc->r;
	struct tls_conn *tls = NULL;
	struct proto_msg msg;
	struct rvol *v;
	char err[RECV_ERR_MAX] = "";
	bool dummy;

	tls_ctx_maybe_reload(r->tls, &dummy, err, sizeof(err));
	if (tls_accept(r->tls, rc->fd, &tls, err, sizeof(err))) {
		log_msg(LOG_WARN, NULL, rc->peer_addr, 0, "TLS handshake failed: %s", err);
		goto done;
	}
	snprintf(rc->peer_name, sizeof(rc->peer_name), "%s",
		 tls_conn_peer_name(tls) ? tls_conn_peer_name(tls) : "");
	if (conn_init(&rc->c, tls)) {
		tls_conn_close(tls);
		goto done;
	}
	if (conn_recv(&rc->c, &msg)) {
		log_msg(LOG_WARN, NULL, rc->peer_addr, 0, "no HELLO: %s", rc->c.err);
		goto release;
	}
	if (msg.header.type != PROTO_HELLO) {
		send_error(rc, PROTO_ERR_PROTOCOL, "expected HELLO, got %s",
			   proto_type_name(msg.header.type));
		goto release;
	}
	struct proto_hello h = msg.u.hello;

	bool retired;

	v = find_volume(r, h.volume_name, &retired);
	if (!v || retired) {
		send_refuse(
			rc, PROTO_REFUSE_VOLUME_ID,
			retired ? "volume '%s' was removed from this receiver's configuration; add it back (--volume %s=DEVICE or a [volume] section) and reload"
				: "this receiver serves no volume named '%s'; add --volume %s=DEVICE",
			h.volume_name, h.volume_name);
		goto release;
	}
	if (!authorised(r, v, rc->peer_name)) {
		send_refuse(
			rc, PROTO_REFUSE_CERTIFICATE,
			"certificate '%s' is not allowed to replicate volume %s; add --allow %s=%s",
			rc->peer_name, v->cfg->name, v->cfg->name, rc->peer_name);
		goto release;
	}
	pthread_mutex_lock(&v->lock);
	/* The previous sender's connection may still be applying the epoch it just
	 * acked: wait for it (bounded) rather than refuse a sender that is on time. */
	if (v->busy) {
		struct timespec until;
		unsigned wait_ms = r->cfg->timeout_ms < RECEIVER_BUSY_WAIT_MS
					   ? r->cfg->timeout_ms
					   : RECEIVER_BUSY_WAIT_MS;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (v->busy && pthread_cond_timedwait(&v->idle, &v->lock, &until) == 0)
			;
	}
	if (v->busy) {
		pthread_mutex_unlock(&v->lock);
		send_refuse(rc, PROTO_REFUSE_BUSY,
			    "volume %s is being replicated by another sender", v->cfg->name);
		goto release;
	}
	v->busy = true;
	pthread_mutex_unlock(&v->lock);
	/* The volume is ours alone now (busy); no lock is held across network waits. */
	serve_volume(rc, v, &h);
	pthread_mutex_lock(&v->lock);
	v->busy = false;
	pthread_cond_broadcast(&v->idle);
	pthread_mutex_unlock(&v->lock);
release:
	conn_unregister(r, rc);
	conn_release(&rc->c);
	rc->fd = -1;
done:
	conn_unregister(r, rc);
	if (rc->fd >= 0)
		close(rc->fd);
	free(rc->hashes);
	kfio_buf_free(rc->plain, PROTO_DATA_PLAINTEXT_MAX);
	/* Free OpenSSL's per-thread state (its random generators) now: once conns
	 * reaches 0 the process may exit before this detached thread's destructors
	 * run. */
	tls_thread_stop();
	pthread_mutex_lock(&r->lock);
	r->conns--;
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
	free(rc);
	return NULL;
}

static void accept_one(struct receiver *r, int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct rconn *rc;
	pthread_t t;
	char host[INET6_ADDRSTRLEN] = "?";
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
	pthread_mutex_lock(&r->lock);
	if (r->conns >= RECEIVER_CONNS_MAX) {
		pthread_mutex_unlock(&r->lock);
		log_msg(LOG_WARN, NULL, host, 0, "refused: %u connections already",
			RECEIVER_CONNS_MAX);
		close(fd);
		return;
	}
	r->conns++;
	pthread_mutex_unlock(&r->lock);

	rc = calloc(1, sizeof(*rc));
	if (rc) {
		rc->hashes = calloc(PROTO_DATA_BLOCKS_MAX, sizeof(*rc->hashes));
		rc->plain = kfio_buf_alloc(PROTO_DATA_PLAINTEXT_MAX);
	}
	if (!rc || !rc->hashes || !rc->plain) {
		if (rc) {
			free(rc->hashes);
			kfio_buf_free(rc->plain, PROTO_DATA_PLAINTEXT_MAX);
		}
		free(rc);
		close(fd);
		pthread_mutex_lock(&r->lock);
		r->conns--;
		pthread_mutex_unlock(&r->lock);
		return;
	}
	rc->r = r;
	rc->fd = fd;
	rc->slot = -1;
	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < (int)RECEIVER_CONNS_MAX; i++) {
		if (r->conn_fds[i] < 0) {
			r->conn_fds[i] = fd;
			rc->slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	snprintf(rc->peer_addr, sizeof(rc->peer_addr), "%s", host);
	conn_tcp_tune(fd, r->cfg->timeout_ms);
	if (pthread_create(&t, NULL, conn_main, rc)) {
		close(fd);
		free(rc->hashes);
		kfio_buf_free(rc->plain, PROTO_DATA_PLAINTEXT_MAX);
		free(rc);
		pthread_mutex_lock(&r->lock);
		r->conns--;
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pthread_detach(t);
}

/* The bound address, for tests and orchestration that listen on port 0: a
 * signal, not state, so rename-atomic and deliberately not fsynced. */
static int write_ready_file(const char *path, int lfd, char *err, size_t err_len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "", line[INET6_ADDRSTRLEN + 16];
	char dir[KFIO_PATH_MAX], name[KFIO_PATH_MAX];
	struct replace_spec spec = { .dirfd = -1, .mode = 0644, .flags = REPLACE_NOSYNC };
	const char *slash = strrchr(path, '/');
	unsigned port = 0;
	int n;

	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	n = snprintf(line, sizeof(line), ss.ss_family == AF_INET6 ? "[%s]:%u\n" : "%s:%u\n", host,
		     port);
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	snprintf(name, sizeof(name), "%s", slash ? slash + 1 : path);
	if (!dir[0])
		snprintf(dir, sizeof(dir), "/");
	spec.dir = dir;
	spec.name = name;
	return replace_file(&spec, line, (size_t)n, err, err_len);
}

static bool same_allow(const struct receiver_volume_cfg *a, const struct receiver_volume_cfg *b)
{
	if (a->allow_count != b->allow_count)
		return false;
	for (unsigned i = 0; i < a->allow_count; i++)
		if (strcmp(a->allow[i], b->allow[i]))
			return false;
	return true;
}

static bool str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

/*
 * Applies a reloaded configuration (SIGHUP): allow lists change at once (they are
 * checked at HELLO, so from the next connection), new volumes are opened and
 * served, removed ones refuse new senders (an epoch in flight finishes). What
 * needs a restart (listen address, directories, journal size, timeouts, a
 * volume's device) is kept as it was, with a warning naming it. All or nothing
 * per volume: a new volume that fails to open is logged and left out.
 */
static void receiver_apply(struct receiver *r, const struct receiver_config *next)
{
	const struct receiver_config *cur = r->cfg;
	unsigned added = 0, removed = 0, changed = 0;
	char err[RECV_ERR_MAX];

	if (str_differs(cur->listen, next->listen) || str_differs(cur->tls_dir, next->tls_dir) ||
	    str_differs(cur->state_dir, next->state_dir) ||
	    cur->journal_bytes != next->journal_bytes || cur->timeout_ms != next->timeout_ms ||
	    cur->insecure_plaintext != next->insecure_plaintext)
		log_msg(LOG_WARN, NULL, NULL, 0,
			"reload: the listen address, TLS or state directory, journal size, timeout and plaintext mode apply only after a restart; kept the running ones");
	for (unsigned i = 0; i < next->vol_count; i++) {
		const struct receiver_volume_cfg *nv = &next->vols[i];
		bool retired;
		struct rvol *v = find_volume(r, nv->name, &retired);

		if (v) {
			if (strcmp(v->cfg->device, nv->device)) {
				log_msg(LOG_WARN, nv->name, NULL, 0,
					"reload: device %s -> %s needs a restart; still serving %s",
					v->cfg->device, nv->device, v->cfg->device);
			}
			pthread_mutex_lock(&r->lock);
			if (retired || !same_allow(v->cfg, nv)) {
				memcpy(v->own.allow, nv->allow, sizeof(v->own.allow));
				v->own.allow_count = nv->allow_count;
				changed++;
				if (!nv->allow_count && !cur->insecure_plaintext)
					log_msg(LOG_WARN, nv->name, NULL, 0,
						"reload: no allow list: any certificate signed by the CA may replicate it");
			}
			if (retired) {
				v->retired = false;
				added++;
			}
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		if (r->vol_count >= RECEIVER_VOLUMES_MAX) {
			log_msg(LOG_ERROR, nv->name, NULL, 0,
				"reload: not added, already serving %u volumes",
				RECEIVER_VOLUMES_MAX);
			continue;
		}
		/* One device, one volume: a volume renamed in the file keeps its old
		 * name (retired) and device until a restart. */
		bool taken = false;

		for (unsigned k = 0; k < r->vol_count && !taken; k++)
			taken = !strcmp(r->vols[k].cfg->device, nv->device);
		if (taken) {
			log_msg(LOG_ERROR, nv->name, NULL, 0,
				"reload: not added: device %s is already served by another volume of this receiver (a renamed volume needs a restart)",
				nv->device);
			continue;
		}
		/* The slot past vol_count is invisible to connections until counted. */
		err[0] = '\0';
		if (vol_open(&r->vols[r->vol_count], cur, nv, err, sizeof(err))) {
			log_msg(LOG_ERROR, nv->name, NULL, 0, "reload: not added: %s", err);
			vol_close(&r->vols[r->vol_count]);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		r->vol_count++;
		pthread_mutex_unlock(&r->lock);
		added++;
	}
	for (unsigned i = 0; i < r->vol_count; i++) {
		struct rvol *v = &r->vols[i];
		bool keep = false;

		for (unsigned j = 0; j < next->vol_count && !keep; j++)
			keep = !strcmp(next->vols[j].name, v->cfg->name);
		pthread_mutex_lock(&r->lock);
		if (!keep && !v->retired) {
			v->retired = true;
			removed++;
			log_msg(LOG_INFO, v->cfg->name, NULL, 0,
				"reload: removed from the configuration; new senders are refused, an epoch in flight finishes");
		}
		pthread_mutex_unlock(&r->lock);
	}
	log_msg(LOG_INFO, NULL, NULL, 0,
		"reloaded the configuration: %u volume(s) added, %u removed, %u allow list(s) changed",
		added, removed, changed);
}

int receiver_run(const struct receiver_config *cfg, volatile sig_atomic_t *stop, char *err,
		 size_t err_len)
{
	struct tls_config tc = {
		.dir = cfg->tls_dir,
		.server = true,
		.insecure_plaintext = cfg->insecure_plaintext,
	};
	struct receiver *r;
	int lfd = -1, rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = cfg;
	for (unsigned i = 0; i < RECEIVER_CONNS_MAX; i++)
		r->conn_fds[i] = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->idle, NULL);
	rc = tls_ctx_new(&r->tls, &tc, err, err_len);
	if (rc)
		goto free_r;
	for (unsigned i = 0; i < cfg->vol_count; i++) {
		rc = vol_open(&r->vols[i], cfg, &cfg->vols[i], err, err_len);
		if (rc) {
			r->vol_count = i + 1;
			goto close_vols;
		}
		r->vol_count = i + 1;
	}
	lfd = conn_tcp_listen(cfg->listen, err, err_len);
	if (lfd < 0) {
		rc = lfd;
		goto close_vols;
	}
	if (cfg->ready_file) {
		char why[RECV_ERR_MAX] = "";

		rc = write_ready_file(cfg->ready_file, lfd, why, sizeof(why));
		if (rc) {
			snprintf(err, err_len, "cannot write %s: %s", cfg->ready_file,
				 why[0] ? why : strerror(-rc));
			goto close_vols;
		}
	}
	/* Volumes recovered and listening: ready, whether or not a sender comes. */
	if (cfg->metrics)
		metrics_set_ready(cfg->metrics, true);
	log_msg(LOG_INFO, NULL, NULL, 0, "listening on %s, %u volume(s), %s", cfg->listen,
		r->vol_count, cfg->insecure_plaintext ? "INSECURE PLAINTEXT" : "mutual TLS 1.3");
	while (!*stop) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };

		if (poll(&p, 1, 250) > 0)
			accept_one(r, lfd);
		if (cfg->reload_requested && *cfg->reload_requested) {
			const struct receiver_config *next = NULL;
			char rerr[RECV_ERR_MAX] = "";

			*cfg->reload_requested = 0;
			if (cfg->reload(cfg->reload_ctx, &next, rerr, sizeof(rerr)))
				log_msg(LOG_ERROR, NULL, NULL, 0,
					"reload refused, still running the previous configuration: %s",
					rerr);
			else
				receiver_apply(r, next);
		}
		if (cfg->metrics)
			metrics_heartbeat(cfg->metrics);
	}
	/* Cut every connection: an epoch not yet committed is aborted (its journal
	 * discarded, a sync keeps its cursor); one already acked finishes applying,
	 * since apply does not need the socket. Then wait for the threads. */
	pthread_mutex_lock(&r->lock);
	log_msg(LOG_INFO, NULL, NULL, 0,
		"stopping: aborting %u connection(s); committed epochs finish applying", r->conns);
	for (unsigned i = 0; i < RECEIVER_CONNS_MAX; i++)
		if (r->conn_fds[i] >= 0)
			shutdown(r->conn_fds[i], SHUT_RDWR);
	while (r->conns) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&r->idle, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	rc = 0;
close_vols:
	if (lfd >= 0)
		close(lfd);
	for (unsigned i = 0; i < r->vol_count; i++)
		vol_close(&r->vols[i]);
	tls_ctx_free(r->tls);
free_r:
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->idle);
	free(r);
	return rc;
}
