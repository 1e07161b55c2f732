// SPDX-License-Identifier: Apache-2.0
/*
 * sender — one epoch from the source to the receiver (see sender.h and the
 * sender state machine in docs/PROTOCOL.md):
 *
 *   CONNECTING ─ tls_connect, HELLO ─► WAIT_WELCOME ─ REFUSE ─► report, stop
 *   (open_source, connect_peer,            │ WELCOME: settle_lost_ack, then choose
 *    handshake)                            │ incremental, full or resumed
 *                                          │ (choose_epoch: sender_choose_epoch)
 *                                          ▼
 *                 SENDING: scan_run(ordered) → sink_batch → DATA / ZERO frames
 *                 (send_epoch_begin, stream_round; captured: capture_rounds,
 *                 ROUND frames, the last round under FIFREEZE)
 *                                          │ EPOCH_END (count, root of the scanned map)
 *                                          ▼ (end_epoch: pending_save first)
 *                 WAIT_ACK ─ EPOCH_ACK (epoch, root) ─► map_commit: the map advances
 *                                                       (commit_epoch), then the
 *                                                       tracker's pending bits go
 *                                                       (confirm_tracking)
 *
 * sender_run_epoch is that sequence; each step fills res->message on failure.
 *
 * Any failure before map_commit leaves the confirmed map on disk untouched; the
 * in-memory map is thrown away with the process or reloaded by the caller.
 *
 * Invariants:
 *   1. The confirmed map advances only after an EPOCH_ACK naming this epoch and
 *      the root we computed (DESIGN.md invariant 2 seen from the source).
 *   2. Frames leave in ascending block order (scan ordered mode), so the
 *      receiver's resume cursor is meaningful.
 *   3. A full sync is chosen whenever the two sides are not provably in step
 *      (different epoch, root or generation): never a guess.
 */
#include <errno.h>
#include <inttypes.h>
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
#include "delta.h"
#include "conn.h"
#include "kfio.h"
#include "map.h"
#include "merkle.h"
#include "pending.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "sender.h"
#include "status.h"
#include "tls.h"

#define SENDER_PREFIX_BYTES \
	(PROTO_HEADER_BYTES + PROTO_DATA_FIXED_BYTES + 8u * PROTO_DATA_BLOCKS_MAX)

_Static_assert(MAP_DISK_VOLUME_ID_BYTES == PROTO_VOLUME_ID_BYTES,
	       "the map's volume id is the one on the wire");

struct send_ctx {
	struct conn *conn;
	struct tracking *tracking;
	struct sender_result *res;
	uint64_t epoch;
	uint64_t resume_block;
	uint32_t block_bytes;
	uint64_t size_bytes;
	uint8_t *prefix;  /* SENDER_PREFIX_BYTES */
	uint8_t *scratch; /* plaintext for a resumed run that straddles the cursor */
	/* PAGES (a tracked epoch, granted by the receiver): the tracker's pending
	 * pages; blocks with some pages unmarked go as their marked pages. */
	const uint64_t *pages;
	const struct kfio_track *track; /* its live marks count too */
	uint32_t pages_per_block;
	uint8_t *page_buf;  /* the marked pages of one block, gathered */
	uint8_t *codec_buf; /* codec output: codec_bound(SCAN_BATCH_BYTES_MAX) */
	uint32_t page_index[PROTO_PAGES_MAX];
	uint64_t page_hash[PROTO_PAGES_MAX];
};

static void set_msg(struct sender_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_msg(struct sender_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
}

static int send_zero(struct send_ctx *s, uint64_t first, uint32_t count)
{
	struct proto_zero z = { .first_block = first, .block_count = count };
	int n = proto_encode_zero(&z, s->prefix, SENDER_PREFIX_BYTES);

	if (n < 0)
		return n;
	s->res->blocks_sent += count;
	return conn_send(s->conn, s->prefix, (size_t)n);
}

static int send_data(struct send_ctx *s, uint64_t first, uint32_t count, enum codec_kind codec,
		     const uint64_t *hashes, const void *data, uint32_t data_bytes,
		     uint32_t plaintext_bytes)
{
	struct proto_data d = {
		.first_block = first,
		.block_count = count,
		.codec = codec == CODEC_LZ4 ? PROTO_CODEC_LZ4 : PROTO_CODEC_RAW,
		.plaintext_bytes = plaintext_bytes,
		.hashes = hashes,
		.data = data,
		.data_bytes = data_bytes,
	};
	int n = proto_encode_data_prefix(&d, s->prefix, SENDER_PREFIX_BYTES);
	int rc;

	if (n < 0)
		return n;
	/* Zero-copy: the prefix, then the batch's data where the scan left it. */
	rc = conn_send(s->conn, s->prefix, (size_t)n);
	if (!rc)
		rc = conn_send(s->conn, data, data_bytes);
	if (!rc) {
		s->res->blocks_sent += count;
		s->res->payload_bytes += plaintext_bytes;
		s->res->data_bytes += data_bytes;
	}
	return rc;
}

/*
 * A resumed sync skips what the receiver already holds. A data run that straddles
 * the cursor is decompressed and its tail sent raw: compressed runs cannot be cut.
 */
static int send_straddling(struct send_ctx *s, const struct scan_batch *b)
{
	uint32_t skip = (uint32_t)(s->resume_block - b->first_block);
	uint32_t off = skip * s->block_bytes;
	int rc;

	if (b->zero)
		return send_zero(s, s->resume_block, b->block_count - skip);
	rc = codec_decompress(b->codec, b->data, b->data_bytes, s->scratch, b->payload_bytes);
	if (rc)
		return rc;
	return send_data(s, s->resume_block, b->block_count - skip, CODEC_RAW, b->hashes + skip,
			 s->scratch + off, b->payload_bytes - off, b->payload_bytes - off);
}

/*
 * Page p counts as changed when the harvest found it (pending) or a write to it
 * completed since (live): such a write may be in the block just read, and a
 * page left out would make the block disagree with its hash on the standby. A
 * write still in flight now is the residual race, which the receiver's check
 * of the whole block catches (PROTO_ERR_PAGES, whole blocks on the retry).
 */
static bool page_marked(const struct send_ctx *s, uint64_t p)
{
	return ((s->pages[p / 64] >> (p % 64)) & 1) ||
	       kfio_track_live_any(s->track, p * PROTO_PAGE_BYTES, PROTO_PAGE_BYTES);
}

/* Block b's bytes: block_bytes, less the tail of the volume's last block. */
static uint32_t block_len(const struct send_ctx *s, uint64_t b)
{
	uint64_t left = s->size_bytes - b * s->block_bytes;

	return left < s->block_bytes ? (uint32_t)left : s->block_bytes;
}

/* Marked pages of block b: their count, and the block's page count. */
static uint32_t block_marked_pages(const struct send_ctx *s, uint64_t b, uint32_t *block_pages)
{
	uint32_t n = 0, pages = (block_len(s, b) + PROTO_PAGE_BYTES - 1) / PROTO_PAGE_BYTES;

	for (uint32_t i = 0; i < pages; i++) {
		uint64_t p = b * s->pages_per_block + i;

		n += page_marked(s, p);
	}
	*block_pages = pages;
	return n;
}

static bool batch_has_partial(const struct send_ctx *s, const struct scan_batch *b)
{
	for (uint32_t i = 0; i < b->block_count; i++) {
		uint32_t pages, marked = block_marked_pages(s, b->first_block + i, &pages);

		if (marked < pages)
			return true;
	}
	return false;
}

/* A run of whole blocks from plaintext, compressed here when that pays. */
static int send_plain_run(struct send_ctx *s, uint64_t first, uint32_t count,
			  const uint64_t *hashes, const uint8_t *plain, uint32_t bytes)
{
	enum codec_kind codec;
	int n = codec_compress(plain, bytes, s->codec_buf, codec_bound(SCAN_BATCH_BYTES_MAX),
			       &codec);

	if (n < 0)
		return n;
	return send_data(s, first, count, codec, hashes, codec == CODEC_LZ4 ? s->codec_buf : plain,
			 codec == CODEC_LZ4 ? (uint32_t)n : bytes, bytes);
}

/* The marked pages of block b (plain: the block's bytes), as one PAGES frame. */
static int send_pages(struct send_ctx *s, uint64_t b, uint64_t block_hash, const uint8_t *plain,
		      uint32_t block_len)
{
	struct proto_pages pg = { .block = b, .block_hash = block_hash };
	uint32_t bytes = 0;
	enum codec_kind codec;
	int n, rc;

	for (uint32_t i = 0; i * PROTO_PAGE_BYTES < block_len; i++) {
		uint64_t p = b * s->pages_per_block + i;
		uint32_t len = block_len - i * PROTO_PAGE_BYTES;

		if (!page_marked(s, p))
			continue;
		if (len > PROTO_PAGE_BYTES)
			len = PROTO_PAGE_BYTES;
		memcpy(s->page_buf + bytes, plain + i * PROTO_PAGE_BYTES, len);
		s->page_index[pg.page_count] = i;
		s->page_hash[pg.page_count++] = delta_hash(plain + i * PROTO_PAGE_BYTES, len);
		bytes += len;
	}
	n = codec_compress(s->page_buf, bytes, s->codec_buf, codec_bound(SCAN_BATCH_BYTES_MAX),
			   &codec);
	if (n < 0)
		return n;
	pg.codec = codec == CODEC_LZ4 ? PROTO_CODEC_LZ4 : PROTO_CODEC_RAW;
	pg.plaintext_bytes = bytes;
	pg.page_index = s->page_index;
	pg.page_hashes = s->page_hash;
	pg.data = codec == CODEC_LZ4 ? s->codec_buf : s->page_buf;
	pg.data_bytes = codec == CODEC_LZ4 ? (uint32_t)n : bytes;
	n = proto_encode_pages_prefix(&pg, s->prefix, SENDER_PREFIX_BYTES);
	if (n < 0)
		return n;
	rc = conn_send(s->conn, s->prefix, (size_t)n);
	if (!rc)
		rc = conn_send(s->conn, pg.data, pg.data_bytes);
	if (!rc) {
		s->res->blocks_sent++;
		s->res->blocks_partial++;
		s->res->payload_bytes += bytes;
		s->res->data_bytes += pg.data_bytes;
	}
	return rc;
}

/*
 * A data batch of a tracked epoch with blocks only partly marked: whole blocks
 * go as DATA runs, the others as PAGES of their marked pages. A page the
 * tracker did not mark is, by its guarantee, what the standby holds; the
 * receiver checks that against the block's hash before it keeps anything.
 */
static int send_mixed(struct send_ctx *s, const struct scan_batch *b)
{
	const uint8_t *plain = b->data;
	uint32_t run = 0, run_bytes = 0, run_first = 0, run_off = 0, off = 0;
	int rc;

	if (b->codec == CODEC_LZ4) {
		rc = codec_decompress(b->codec, b->data, b->data_bytes, s->scratch,
				      b->payload_bytes);
		if (rc)
			return rc;
		plain = s->scratch;
	}
	for (uint32_t i = 0; i < b->block_count; i++) {
		uint32_t len = block_len(s, b->first_block + i), pages;
		uint32_t marked = block_marked_pages(s, b->first_block + i, &pages);

		if (marked == pages) {
			if (!run) {
				run_first = i;
				run_off = off;
			}
			run++;
			run_bytes += len;
		} else {
			if (run) {
				rc = send_plain_run(s, b->first_block + run_first, run,
						    b->hashes + run_first, plain + run_off,
						    run_bytes);
				if (rc)
					return rc;
				run = run_bytes = 0;
			}
			rc = send_pages(s, b->first_block + i, b->hashes[i], plain + off, len);
			if (rc)
				return rc;
		}
		off += len;
	}
	if (run)
		return send_plain_run(s, b->first_block + run_first, run, b->hashes + run_first,
				      plain + run_off, run_bytes);
	return 0;
}

/* Scan sink: runs on a worker thread, one call at a time, in block order. */
static int sink_batch(const struct scan_batch *b, void *ctx)
{
	struct send_ctx *s = ctx;

	tracking_note_changed(s->tracking, b->first_block, b->block_count);
	if (b->first_block + b->block_count <= s->resume_block)
		return 0;
	if (b->first_block < s->resume_block)
		return send_straddling(s, b);
	if (b->zero)
		return send_zero(s, b->first_block, b->block_count);
	if (s->pages && batch_has_partial(s, b))
		return send_mixed(s, b);
	return send_data(s, b->first_block, b->block_count, b->codec, b->hashes, b->data,
			 b->data_bytes, b->payload_bytes);
}

static int load_map(const struct sender_config *cfg, const struct kfio_dev *dev, struct map *m,
		    struct sender_result *res)
{
	char err[512] = "";
	int rc = map_load(m, cfg->state_dir, err, sizeof(err));

	if (rc == -ENOENT) {
		rc = map_create(m, cfg->volume, dev->size_bytes,
				cfg->block_bytes ? cfg->block_bytes : SCAN_BLOCK_BYTES_DEFAULT);
		if (rc) {
			set_msg(res, "volume %s: cannot create a map for %s: %s", cfg->volume,
				cfg->device, strerror(-rc));
			return rc;
		}
		m->generation = 1;
		/* The volume's identity (its random id) is recorded before any receiver
		 * can adopt it: a sender that crashed during its first sync must come
		 * back as the same volume, not as a stranger the receiver refuses. */
		if (mkdir(cfg->state_dir, 0700) && errno != EEXIST) {
			rc = -errno;
			set_msg(res, "volume %s: cannot create state directory %s: %s", cfg->volume,
				cfg->state_dir, strerror(-rc));
			map_release(m);
			return rc;
		}
		rc = map_commit(m, cfg->state_dir, 0, err, sizeof(err));
		if (rc) {
			set_msg(res, "volume %s: cannot record a new map in %s: %s", cfg->volume,
				cfg->state_dir, err);
			map_release(m);
			return rc;
		}
		m->empty = true; /* epoch 0: nothing confirmed yet */
		return 0;
	}
	if (rc) {
		set_msg(res, "volume %s: %s", cfg->volume, err);
		return rc;
	}
	if (strcmp(m->volume_name, cfg->volume)) {
		set_msg(res,
			"state directory %s holds volume '%s', not '%s'; give each volume its own --state-dir",
			cfg->state_dir, m->volume_name, cfg->volume);
		map_release(m);
		return -EINVAL;
	}
	rc = map_check_geometry(m, dev->size_bytes,
				cfg->block_bytes ? cfg->block_bytes : m->block_bytes, err,
				sizeof(err));
	if (rc) {
		set_msg(res, "volume %s (%s): %s", cfg->volume, cfg->device, err);
		map_release(m);
		return rc;
	}
	if (m->generation == 0)
		m->generation = 1;
	/* Epoch 0 is the identity-only map recorded before the first sync. */
	if (m->epoch == 0)
		m->empty = true;
	return 0;
}

void sender_abort_init(struct sender_abort *a)
{
	ASSERT(a != NULL);
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	a->fd = -1;
}

void sender_abort_now(struct sender_abort *a, const char *reason)
{
	ASSERT(a != NULL);
	ASSERT(reason != NULL);
	pthread_mutex_lock(&a->lock);
	a->paused = true;
	snprintf(a->reason, sizeof(a->reason), "%s", reason);
	if (a->fd >= 0)
		shutdown(a->fd, SHUT_RDWR);
	pthread_mutex_unlock(&a->lock);
}

void sender_abort_resume(struct sender_abort *a)
{
	ASSERT(a != NULL);
	pthread_mutex_lock(&a->lock);
	a->paused = false;
	pthread_mutex_unlock(&a->lock);
}

bool sender_abort_paused(struct sender_abort *a)
{
	bool p;

	ASSERT(a != NULL);
	pthread_mutex_lock(&a->lock);
	p = a->paused;
	pthread_mutex_unlock(&a->lock);
	return p;
}

/* Publishes the live socket for sender_abort_now; refuses while paused. */
static int abort_publish(struct sender_abort *a, int fd)
{
	int rc = 0;

	if (!a)
		return 0;
	pthread_mutex_lock(&a->lock);
	if (a->paused)
		rc = -ENETUNREACH;
	else
		a->fd = fd;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

static void abort_withdraw(struct sender_abort *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->fd = -1;
	pthread_mutex_unlock(&a->lock);
}

/*
 * The time --max-rate held the epoch back: the time the sender sat blocked on the
 * paced socket, counted only when the stream's average rate came near the cap
 * (85%). Below that the link, the receiver or the scan set the pace, and the
 * cap did not bite.
 */
static double paced_by_cap(const struct sender_config *cfg, const struct conn *c, double seconds)
{
	if (!c->paced || seconds <= 0)
		return 0;
	if ((double)conn_wire_bytes_sent(c) / seconds < 0.85 * (double)cfg->max_rate_bytes_per_s)
		return 0;
	return c->paced_s;
}

static int hook_publish(void *ctx, int fd)
{
	return abort_publish(ctx, fd);
}

static void hook_withdraw(void *ctx)
{
	abort_withdraw(ctx);
}

static int connect_peer(const struct sender_config *cfg, struct tls_ctx **ctx, struct conn *c,
			struct sender_result *res)
{
	/* Published before connect(2): a stop or a lost route cuts a connect to a
	 * peer that drops packets, instead of waiting for --timeout. */
	struct conn_connect_hook hook = { .publish = hook_publish,
					  .withdraw = hook_withdraw,
					  .ctx = cfg->abort };
	struct tls_config tc = {
		.dir = cfg->tls_dir,
		.server = false,
		.server_name = cfg->server_name,
		.insecure_plaintext = cfg->insecure_plaintext,
	};
	struct tls_conn *tls = NULL;
	char err[512] = "";
	int fd, rc;

	if (cfg->tls)
		*ctx = cfg->tls;
	rc = cfg->tls ? 0 : tls_ctx_new(ctx, &tc, err, sizeof(err));
	if (rc) {
		set_msg(res, "volume %s: TLS setup from %s failed: %s", cfg->volume,
			cfg->tls_dir ? cfg->tls_dir : "(none)", err);
		return rc;
	}
	fd = conn_tcp_connect(cfg->peer, cfg->timeout_ms, cfg->abort ? &hook : NULL, err,
			      sizeof(err));
	if (fd < 0) {
		set_msg(res, "volume %s: %s", cfg->volume, err);
		return fd;
	}
	if (cfg->max_rate_bytes_per_s && conn_tcp_pace(fd, cfg->max_rate_bytes_per_s)) {
		rc = -errno;
		set_msg(res, "volume %s: cannot cap the rate with SO_MAX_PACING_RATE: %s",
			cfg->volume, strerror(errno));
		abort_withdraw(cfg->abort);
		close(fd);
		return rc;
	}
	rc = tls_connect(*ctx, fd, &tls, err, sizeof(err));
	if (rc) {
		set_msg(res, "volume %s: TLS handshake with %s failed: %s", cfg->volume, cfg->peer,
			err);
		/* A failed handshake leaves the socket ours to close. */
		abort_withdraw(cfg->abort);
		close(fd);
		return rc;
	}
	rc = conn_init(c, tls);
	if (rc) {
		abort_withdraw(cfg->abort);
		tls_conn_close(tls);
		set_msg(res, "out of memory for frame buffers");
		return rc;
	}
	c->paced = cfg->max_rate_bytes_per_s != 0;
	return 0;
}

/* After a send failed, the receiver may have said why before closing. */
static void explain_send_failure(struct conn *c, struct sender_result *res, const char *volume,
				 const char *what)
{
	struct proto_msg msg;
	char send_err[sizeof(c->err)];

	snprintf(send_err, sizeof(send_err), "%s", c->err);
	/* The ERROR came while streaming: c->err holds it already. */
	if (c->peer_error) {
		set_msg(res, "volume %s: %s", volume, send_err);
		/* A journal too small for the epoch fails every retry alike. */
		res->config_error = c->peer_error == PROTO_ERR_JOURNAL_FULL;
		return;
	}
	c->watch_peer = false;
	if (conn_recv(c, &msg) == 0 && msg.header.type == PROTO_ERROR) {
		res->config_error = msg.u.error.code == PROTO_ERR_JOURNAL_FULL;
		set_msg(res, "volume %s: the receiver aborted the epoch: %s (%s)", volume,
			msg.u.error.message, proto_error_name(msg.u.error.code));
		return;
	}
	set_msg(res, "volume %s: %s: %s", volume, what, send_err);
}

/* *root receives the confirmed map's root sent in HELLO (0 for an empty map). */
static int handshake(const struct sender_config *cfg, struct conn *c, struct map *m,
		     struct proto_welcome *w, uint64_t *root, struct sender_result *res)
{
	struct proto_hello h = {
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.capabilities = PROTO_CAP_LZ4 | PROTO_CAP_RESUME | PROTO_CAP_CAPTURE_TIME |
				PROTO_CAP_PAGES | PROTO_CAP_ROUNDS | PROTO_CAP_CAPTURE_KIND,
		.size_bytes = m->size_bytes,
		.block_bytes = m->block_bytes,
		.generation = m->generation,
		.epoch = m->empty ? 0 : m->epoch,
		.merkle_root = m->empty ? 0 : map_merkle_root(m),
		.history_count = 1,
		.history = { { .generation = m->generation, .start_epoch = 0 } },
	};
	struct proto_msg msg;
	int n, rc;

	*root = h.merkle_root;
	memcpy(h.volume_id, m->volume_id, sizeof(h.volume_id));
	snprintf(h.volume_name, sizeof(h.volume_name), "%s", cfg->volume);
	n = proto_encode_hello(&h, c->tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0) {
		set_msg(res,
			"volume %s: cannot encode HELLO (volume name must be 1..63 printable characters)",
			cfg->volume);
		return n;
	}
	rc = conn_send(c, c->tx, (size_t)n);
	if (!rc)
		rc = conn_recv(c, &msg);
	if (rc) {
		set_msg(res, "volume %s: handshake with %s failed: %s", cfg->volume, cfg->peer,
			c->err);
		return rc;
	}
	if (msg.header.type == PROTO_REFUSE) {
		res->outcome = SENDER_REFUSED;
		res->refuse_reason = msg.u.refuse.reason;
		set_msg(res, "volume %s: the receiver at %s refused (%s): %s", cfg->volume,
			cfg->peer, proto_refuse_name(msg.u.refuse.reason), msg.u.refuse.message);
		return msg.u.refuse.reason == PROTO_REFUSE_CERTIFICATE ? -EACCES : -EINVAL;
	}
	if (msg.header.type == PROTO_ERROR) {
		set_msg(res, "volume %s: the receiver reported an error: %s", cfg->volume,
			msg.u.error.message);
		return -EPROTO;
	}
	if (msg.header.type != PROTO_WELCOME) {
		set_msg(res, "volume %s: expected WELCOME from %s, got %s", cfg->volume, cfg->peer,
			proto_type_name(msg.header.type));
		return -EPROTO;
	}
	*w = msg.u.welcome;
	return 0;
}

static bool same_volume_id(const struct sender_epoch_facts *f)
{
	return !memcmp(f->welcome.volume_id, f->map_volume_id, sizeof(f->map_volume_id));
}

bool sender_lost_ack_candidate(const struct sender_epoch_facts *f)
{
	const struct proto_welcome *w;

	ASSERT(f != NULL);
	w = &f->welcome;
	return w->state == PROTO_STATE_CONSISTENT && w->epoch == f->map_epoch + 1 &&
	       w->generation == f->map_generation && same_volume_id(f);
}

void sender_choose_epoch(const struct sender_epoch_facts *f, struct sender_epoch_choice *c)
{
	const struct proto_welcome *w;
	uint64_t root;

	ASSERT(f != NULL);
	ASSERT(c != NULL);
	w = &f->welcome;
	/* The root covers the whole volume: HELLO's, unless the map just advanced. */
	root = f->recovered_ack ? f->recovered_root : f->hello_root;
	memset(c, 0, sizeof(*c));
	if (!f->map_empty && w->state == PROTO_STATE_CONSISTENT && w->epoch == f->map_epoch &&
	    w->generation == f->map_generation && w->merkle_root == root && same_volume_id(f)) {
		c->epoch = f->map_epoch + 1;
		c->base_epoch = f->map_epoch;
		return;
	}
	c->initial_sync = true;
	c->flags = PROTO_EPOCH_INITIAL_SYNC;
	c->epoch = (f->map_epoch > w->epoch ? f->map_epoch : w->epoch) + 1;
	if (w->state == PROTO_STATE_SYNCING && w->resume_epoch && w->resume_block &&
	    same_volume_id(f)) {
		c->epoch = w->resume_epoch;
		c->flags |= PROTO_EPOCH_RESUMED;
		c->resume_block = w->resume_block;
		c->resumed = true;
	}
}

/* The facts of the epoch choice, as the map and WELCOME hold them now. */
static void epoch_facts(const struct map *m, const struct proto_welcome *w,
			struct sender_epoch_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->map_empty = m->empty;
	f->map_epoch = m->epoch;
	f->map_generation = m->generation;
	memcpy(f->map_volume_id, m->volume_id, sizeof(f->map_volume_id));
	f->welcome = *w;
}

/*
 * The receiver is one epoch ahead of our confirmed map: it committed the epoch we
 * sent last, and the ack never reached us. If we recorded that epoch as pending
 * and applying it makes our root equal the receiver's, record it as confirmed;
 * otherwise go on with the map as it was (the caller then resyncs).
 */
static int settle_lost_ack(const struct sender_config *cfg, struct map *m,
			   const struct proto_welcome *w, struct sender_result *res)
{
	struct sender_epoch_facts f;
	char err[512] = "";
	int rc;

	epoch_facts(m, w, &f);
	if (!sender_lost_ack_candidate(&f))
		return 0;
	rc = pending_apply(m, cfg->state_dir, w->epoch, err, sizeof(err));
	if (rc == -ENOENT)
		return 0;
	if (!rc && map_merkle_root(m) == w->merkle_root) {
		rc = map_commit(m, cfg->state_dir, w->epoch, err, sizeof(err));
		if (rc) {
			set_msg(res,
				"volume %s: recording the acknowledged epoch %" PRIu64
				" failed: %s",
				cfg->volume, w->epoch, err);
			return rc;
		}
		pending_drop(cfg->state_dir);
		res->recovered_ack = true;
		return 0;
	}
	/* Damaged, unreadable, or not what the receiver holds: back to the
	 * confirmed map (pending_apply may have set some hashes). */
	map_release(m);
	rc = map_load(m, cfg->state_dir, err, sizeof(err));
	if (rc) {
		set_msg(res, "volume %s: reloading the map failed: %s", cfg->volume, err);
		return rc;
	}
	if (m->epoch == 0)
		m->empty = true;
	pending_drop(cfg->state_dir);
	return 0;
}

struct epoch_progress {
	struct progress prog;
	const struct sender_config *cfg;
};

static void on_progress(uint64_t done, uint64_t total, void *ctx)
{
	struct epoch_progress *ep = ctx;

	progress_cb(done, total, &ep->prog);
	if (ep->cfg->alive)
		ep->cfg->alive(ep->cfg->alive_ctx);
}

static bool network_error(int err)
{
	switch (-err) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EPIPE:
	case ECONNABORTED:
		return true;
	default:
		return false;
	}
}

/*
 * Records the epoch's outcome for `pvrepl status` in the state directory (when it
 * exists). Reporting only: a failure here is ignored.
 */
static void record_status(const struct sender_config *cfg, const struct sender_result *res,
			  int64_t capture_ms)
{
	struct status_update u;
	struct status_record s;
	int64_t now;

	status_update_begin(&u, &s, cfg->state_dir, STATUS_ROLE_PRIMARY, cfg->volume);
	s.daemon = cfg->daemon;
	now = u.now_unix;
	snprintf(s.peer, sizeof(s.peer), "%s", cfg->peer);
	s.rpo_target_seconds = cfg->rpo_target_seconds;
	if (res->outcome == SENDER_OK) {
		s.tracking = res->tracking ? STATUS_TRACKING_BPF : STATUS_TRACKING_OFF;
		s.last_scan_tracked = res->scan == TRACKING_SCAN_TRACKED;
		s.tracker_missed_blocks = res->tracker_missed_blocks;
		snprintf(s.scan_note, sizeof(s.scan_note), "%.*s", (int)sizeof(s.scan_note) - 1,
			 !res->tracking			   ? res->tracking_off
			 : res->scan == TRACKING_SCAN_FULL ? res->scan_reason
							   : "");
	}
	s.last_attempt_unix = now;
	if (res->outcome == SENDER_OK) {
		s.state = STATUS_REPLICATING;
		s.consistent = true;
		s.crash_consistent = res->crash_consistent;
		s.capture = sender_capture_kind(res);
		s.epoch = res->epoch;
		s.last_success_unix = now;
		s.consistent_point_ms = capture_ms;
		s.last_sync_duration_ms = (uint64_t)(res->seconds * 1e3);
		s.last_sync_bytes = res->wire_bytes;
		s.out_of_sync_bytes = 0;
		s.last_error[0] = '\0';
	} else {
		if (res->paused)
			s.state = STATUS_PAUSED;
		else if (res->outcome == SENDER_REFUSED &&
			 res->refuse_reason == PROTO_REFUSE_SPLIT_BRAIN)
			s.state = STATUS_SPLIT_BRAIN;
		else if (network_error(res->err))
			s.state = STATUS_DISCONNECTED;
		else if (res->initial_sync && res->outcome != SENDER_REFUSED)
			s.state = STATUS_INITIAL_SYNC;
		else
			s.state = STATUS_ERROR;
		if (res->blocks_changed)
			s.out_of_sync_bytes = res->blocks_changed * res->block_bytes;
		snprintf(s.last_error, sizeof(s.last_error), "%.*s", (int)sizeof(s.last_error) - 1,
			 res->message);
	}
	status_update_store_nosync(&u, &s, cfg->state_dir);
}

/*
 * An initial sync can take hours: status says so while it runs (the record
 * is otherwise written when an epoch ends). Reporting only.
 */
static void record_sync_start(const struct sender_config *cfg, const struct sender_result *res)
{
	struct status_update u;
	struct status_record s;

	status_update_begin(&u, &s, cfg->state_dir, STATUS_ROLE_PRIMARY, cfg->volume);
	s.daemon = cfg->daemon;
	snprintf(s.peer, sizeof(s.peer), "%s", cfg->peer);
	s.rpo_target_seconds = cfg->rpo_target_seconds;
	s.size_bytes = res->size_bytes;
	s.state = STATUS_INITIAL_SYNC;
	s.last_attempt_unix = u.now_unix;
	s.out_of_sync_bytes = res->size_bytes;
	status_update_store_nosync(&u, &s, cfg->state_dir);
}

/* The source device and its confirmed map (created on the very first run). */
static int open_source(const struct sender_config *cfg, struct kfio_dev *dev, struct map *m,
		       struct sender_result *res)
{
	int rc = kfio_dev_open(dev, cfg->device, 0);

	if (rc) {
		set_msg(res, "volume %s: %s", cfg->volume, dev->err_msg);
		return rc;
	}
	res->size_bytes = dev->size_bytes;
	rc = load_map(cfg, dev, m, res);
	if (rc) {
		kfio_dev_close(dev);
		return rc;
	}
	res->block_bytes = m->block_bytes;
	return 0;
}

/*
 * Chooses the epoch (sender_choose_epoch) from the map as settle_lost_ack left it
 * and the WELCOME; hello_root is the root HELLO carried. A full sync compares
 * against nothing: the map is marked empty, so every block is sent (zero runs as
 * markers).
 */
static void choose_epoch(struct map *m, const struct proto_welcome *w, uint64_t hello_root,
			 struct proto_epoch_begin *eb, struct sender_result *res)
{
	struct sender_epoch_facts facts;
	struct sender_epoch_choice choice;

	epoch_facts(m, w, &facts);
	facts.hello_root = hello_root;
	if (res->recovered_ack) {
		facts.recovered_ack = true;
		facts.recovered_root = map_merkle_root(m);
	}
	sender_choose_epoch(&facts, &choice);
	if (choice.initial_sync)
		m->empty = true;
	*eb = (struct proto_epoch_begin){
		.epoch = choice.epoch,
		.base_epoch = choice.base_epoch,
		.generation = m->generation,
		.flags = choice.flags,
		.block_count = m->block_count, /* an upper bound; EPOCH_END has the count */
		.resume_block = choice.resume_block,
	};
	res->epoch = choice.epoch;
	res->initial_sync = choice.initial_sync;
	res->resumed = choice.resumed;
	res->resume_block = choice.resume_block;
}

/* The volume's write tracker (or why there is none) and its record. */
static int open_tracking(const struct sender_config *cfg, const struct kfio_dev *dev,
			 struct tracking *tr, struct sender_result *res)
{
	char err[400] = "";
	int rc = tracking_open(tr, &cfg->tracking, dev, cfg->volume, cfg->state_dir, err,
			       sizeof(err));

	if (rc) {
		set_msg(res, "volume %s (%s): %s", cfg->volume, cfg->device, err);
		return rc;
	}
	res->tracking = tr->track != NULL;
	snprintf(res->tracking_off, sizeof(res->tracking_off), "%s", tr->off_reason);
	return 0;
}

/* What the capture can be on this volume (capture.h). */
static int open_capture(const struct sender_config *cfg, const struct tracking *tr,
			struct capture *cap, struct sender_result *res)
{
	char err[CAPTURE_WHY_MAX + 200] = "";
	int rc = capture_open(cap, &cfg->capture, cfg->volume, cfg->device, tr->track != NULL, err,
			      sizeof(err));

	if (rc)
		set_msg(res, "%s", err);
	/* Options that contradict each other do not get better by retrying. */
	res->config_error = rc == -EINVAL;
	return rc;
}

/*
 * This epoch's capture: a freeze at the end of rounds (the flag that says the
 * standby will be one instant), or live reads, saying why. An initial sync ends
 * with the same rounds; a resumed one is read live (what its cut first run
 * read may have changed since, and only the first epoch after it reads that
 * again). Returns 0, or an error for --capture freeze to a receiver that
 * cannot take rounds.
 */
static int choose_capture(const struct sender_config *cfg, struct capture *cap,
			  const struct proto_welcome *w, struct proto_epoch_begin *eb,
			  struct sender_result *res, bool *rounds)
{
	char err[CAPTURE_WHY_MAX + 200] = "";

	*rounds = false;
	res->capture = CAPTURE_NONE;
	if (cap->mode == CAPTURE_NONE) {
		snprintf(res->capture_note, sizeof(res->capture_note), "%s",
			 cfg->capture.mode == CAPTURE_NONE ? "--capture none" : cap->why_none);
		return 0;
	}
	if (eb->flags & PROTO_EPOCH_RESUMED) {
		snprintf(
			res->capture_note, sizeof(res->capture_note),
			"a resumed sync is read live (its first run was cut); the next epoch is captured (%s)",
			capture_mode_name(cap->mode));
		return 0;
	}
	if (!(w->capabilities & PROTO_CAP_ROUNDS)) {
		if (cfg->capture.mode != CAPTURE_AUTO) {
			set_msg(res,
				"volume %s: the receiver at %s does not take epochs in rounds (an older pvrepl), which --capture %s needs: upgrade it, or use --capture none",
				cfg->volume, cfg->peer, capture_mode_name(cfg->capture.mode));
			return -EPROTONOSUPPORT;
		}
		snprintf(
			res->capture_note, sizeof(res->capture_note),
			"the receiver does not take epochs in rounds (an older pvrepl): live reads");
		return 0;
	}
	/* Round 1 starts with the harvest: what the page cache holds goes to the
	 * device first, so it is read now rather than in a later round. */
	if (capture_sync(cap, err, sizeof(err))) {
		set_msg(res, "volume %s: %s", cfg->volume, err);
		return -EIO;
	}
	*rounds = true;
	res->capture = cap->mode;
	eb->flags |= PROTO_EPOCH_CRASH_CONSISTENT;
	return 0;
}

/* Full or tracked: harvested just before the reads start. */
static int plan_scan(const struct sender_config *cfg, struct tracking *tr, const struct map *m,
		     struct sender_result *res)
{
	char err[400] = "";
	int rc = tracking_plan(tr, m, res->initial_sync, err, sizeof(err));

	if (rc) {
		set_msg(res, "volume %s: write tracker: %s", cfg->volume, err);
		return rc;
	}
	res->scan = tr->scan;
	res->full_scan_reason = tr->full_reason;
	snprintf(res->scan_reason, sizeof(res->scan_reason), "%s", tr->reason);
	res->tracked_bytes = tr->tracked_bytes;
	return 0;
}

/* After the map advanced: the tracker's record and its pending bits. */
static void confirm_tracking(const struct sender_config *cfg, struct tracking *tr, uint64_t epoch,
			     struct sender_result *res)
{
	char err[400] = "";

	if (tracking_confirmed(tr, epoch, err, sizeof(err)))
		snprintf(
			res->warning, sizeof(res->warning),
			"volume %s: epoch %" PRIu64
			" is confirmed, but the write tracker could not record it (%.200s): the next epoch may scan everything",
			cfg->volume, epoch, err);
	if (res->tracker_missed_blocks && !res->warning[0])
		snprintf(
			res->warning, sizeof(res->warning),
			"volume %s: the full scan found %" PRIu64
			" changed blocks the write tracker did not mark (written behind the block layer's back?); they were sent",
			cfg->volume, res->tracker_missed_blocks);
}

/* capture_ms: when the live reads start (sent only to a peer that expects it). */
static int send_epoch_begin(const struct sender_config *cfg, struct conn *c,
			    const struct proto_welcome *w, struct proto_epoch_begin *eb,
			    int64_t capture_ms, struct sender_result *res)
{
	int n, rc;

	if (w->capabilities & PROTO_CAP_CAPTURE_TIME) /* else the peer expects 48 bytes */
		eb->capture_unix_ms = (uint64_t)capture_ms;
	n = proto_encode_epoch_begin(eb, c->tx, PROTO_FRAME_BYTES_MAX);
	rc = n < 0 ? n : conn_send(c, c->tx, (size_t)n);
	if (rc)
		set_msg(res, "volume %s: sending EPOCH_BEGIN failed: %s", cfg->volume, c->err);
	/* Until EPOCH_END the receiver says nothing unless it stops the epoch. */
	c->watch_peer = true;
	return rc;
}

/*
 * One round of the scan, streaming DATA and ZERO frames in block order as it
 * goes: every block, or those of only_pages (planned bytes of them). PAGES
 * only where allowed (the first round of a tracked epoch). Adds to res.
 */
static int stream_round(const struct sender_config *cfg, struct kfio_dev *dev, struct map *m,
			struct conn *c, const struct proto_epoch_begin *eb, struct tracking *tr,
			const uint64_t *only_pages, uint64_t planned, bool pages_granted,
			struct sender_result *res, struct scan_stats *out)
{
	struct send_ctx s = { .conn = c,
			      .tracking = tr,
			      .res = res,
			      .epoch = eb->epoch,
			      .resume_block = eb->resume_block,
			      .block_bytes = m->block_bytes,
			      .size_bytes = m->size_bytes };
	struct scan_sink sink = { .batch = sink_batch, .ctx = &s };
	struct scan_config scfg = cfg->scan;
	struct scan_stats st;
	struct epoch_progress ep;
	char err[512] = "";
	int rc;

	s.prefix = malloc(SENDER_PREFIX_BYTES);
	s.scratch = malloc(SCAN_BATCH_BYTES_MAX);
	scfg.only_pages = only_pages;
	/* Partial blocks only in a tracked epoch (its pending bits say which pages
	 * changed), and only to a receiver that completes them. */
	if (scfg.only_pages && pages_granted && m->block_bytes > PROTO_PAGE_BYTES &&
	    tracking_pages_allowed(tr)) {
		s.pages = scfg.only_pages;
		s.track = tr->track;
		s.pages_per_block = m->block_bytes / PROTO_PAGE_BYTES;
		s.page_buf = malloc(m->block_bytes);
		s.codec_buf = malloc(codec_bound(SCAN_BATCH_BYTES_MAX));
	}
	if (!s.prefix || !s.scratch || (s.pages && (!s.page_buf || !s.codec_buf))) {
		rc = -ENOMEM;
		set_msg(res, "out of memory");
		goto free_s;
	}
	scfg.ordered = true;
	scfg.page_bytes = KFIO_TRACK_PAGE_BYTES;
	ep.cfg = cfg;
	progress_init(&ep.prog, cfg->progress, res->initial_sync ? "sync" : "epoch", cfg->volume,
		      scfg.only_pages ? planned : dev->size_bytes);
	scfg.progress = on_progress;
	scfg.progress_ctx = &ep;
	rc = scan_run(dev, m, &scfg, &sink, &st, err, sizeof(err));
	progress_finish(&ep.prog, st.bytes_read);
	res->blocks_scanned += st.blocks_scanned;
	res->read_bytes += st.bytes_read;
	res->blocks_changed += st.blocks_changed;
	res->blocks_zero += st.blocks_zero;
	res->scan_seconds += st.seconds;
	res->throttled_seconds += st.throttled_seconds + paced_by_cap(cfg, c, st.seconds);
	*out = st;
	if (!rc && res->rounds == 0)
		res->tracker_missed_blocks = tracking_missed_blocks(tr);
	if (rc) {
		if (c->err[0])
			explain_send_failure(c, res, cfg->volume, "streaming the epoch failed");
		else
			set_msg(res, "volume %s: scan failed: %s", cfg->volume, err);
	}
free_s:
	free(s.prefix);
	free(s.scratch);
	free(s.page_buf);
	free(s.codec_buf);
	return rc;
}

/* Rounds after the first, before the final one, at most (then it is final). */
#define SENDER_ROUNDS_MAX 8u
/* A harvested set whose reads should take at most this long is read frozen
 * (else it is read live, and the next harvest is what was written meanwhile). */
#define SENDER_FREEZE_TARGET_MS 20.0
/* The read rate assumed before a round measured one, and the least believed. */
#define SENDER_RATE_GUESS (200.0 * 1e6)
#define SENDER_RATE_FLOOR (20.0 * 1e6)
/* The final round's frames are kept in memory, up to this much, and sent
 * after the thaw: the freeze lasts the reads, not the network. */
#define SENDER_HOLD_BYTES (64u << 20)

/* flags: 0, or the final round's (PROTO_ROUND_FINAL and the capture kind). */
static int send_round(const struct sender_config *cfg, struct conn *c, uint32_t round,
		      uint32_t flags, int64_t capture_ms, struct sender_result *res)
{
	bool final = flags & PROTO_ROUND_FINAL;
	struct proto_round r = { .round = round,
				 .flags = flags,
				 .capture_unix_ms = final ? (uint64_t)capture_ms : 0 };
	int n = proto_encode_round(&r, c->tx, PROTO_FRAME_BYTES_MAX);
	int rc = n < 0 ? n : conn_send(c, c->tx, (size_t)n);

	if (rc)
		set_msg(res, "volume %s: sending ROUND %u failed: %s", cfg->volume, round, c->err);
	return rc;
}

/* The bytes a scan of set reads: its marked blocks, whole. */
static uint64_t set_read_bytes(const uint64_t *set, uint64_t words, uint32_t block_bytes)
{
	uint32_t ppb = block_bytes / KFIO_TRACK_PAGE_BYTES;
	uint64_t blocks = 0, last = UINT64_MAX;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t w = set[i];

		while (w) {
			uint64_t b = (i * 64 + (uint64_t)__builtin_ctzll(w)) / ppb;

			if (b != last)
				blocks++;
			last = b;
			w &= w - 1;
		}
	}
	return blocks * block_bytes;
}

/*
 * The capture (capture.h): after the first round, rounds of what was written
 * meanwhile, each after a syncfs, until a harvest is small enough to read in
 * SENDER_FREEZE_TARGET_MS at the rate the rounds measured (or after
 * SENDER_ROUNDS_MAX rounds); then freeze, harvest again, read both sets, thaw.
 * A harvest that finds nothing ends it without a freeze: nothing was written
 * since the harvest before it, so everything read is the source as of that
 * moment. Returns 0, or -errno with res->message (a freeze the watchdog ended
 * is -ETIMEDOUT: the epoch must not commit).
 */
static int capture_rounds(const struct sender_config *cfg, struct kfio_dev *dev, struct map *m,
			  struct conn *c, const struct proto_epoch_begin *eb, struct tracking *tr,
			  struct capture *cap, uint32_t final_flags, struct sender_result *res)
{
	uint64_t words = kfio_track_words(tr->track);
	uint64_t *set = calloc(words, sizeof(uint64_t)), *more = calloc(words, sizeof(uint64_t));
	double held_ms = 0;
	char err[CAPTURE_WHY_MAX + 200] = "";
	struct scan_stats st = { 0 };
	int rc = 0;

	if (!set || !more) {
		set_msg(res, "volume %s: out of memory for a round's bitmap", cfg->volume);
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t round = 2;; round++) {
		int64_t instant = clock_unix_ms();
		uint64_t bytes = 0, more_bytes = 0;
		double rate = res->scan_seconds > 0.01 ? (double)res->read_bytes / res->scan_seconds
						       : SENDER_RATE_GUESS;
		bool final;

		res->rounds = round;
		/* The page cache reaches the device now, while writes still flow:
		 * the freeze then has little left to write. */
		rc = capture_sync(cap, err, sizeof(err));
		if (!rc)
			rc = tracking_round(tr, set, &bytes, err, sizeof(err));
		if (rc) {
			set_msg(res, "volume %s: %s", cfg->volume, err);
			break;
		}
		/* Nothing written since the last harvest: the source as of then,
		 * without a freeze. Not after partial blocks: a page read new while
		 * its write was still in flight is marked only at its completion,
		 * and the receiver completes the block without it; a freeze waits
		 * for the file system's writes, so its harvest finds that page. */
		if (bytes == 0 && !res->blocks_partial) {
			rc = send_round(cfg, c, round, final_flags, instant, res);
			break;
		}
		if (rate < SENDER_RATE_FLOOR)
			rate = SENDER_RATE_FLOOR;
		/* Frozen now when small enough. Rounds that stop shrinking (writes
		 * as fast as the reads) go on to the cap all the same: freezing
		 * then, measured in 26-capture, froze larger sets for longer. */
		final = bytes == 0 || round >= SENDER_ROUNDS_MAX ||
			(double)set_read_bytes(set, words, m->block_bytes) / rate * 1e3 <=
				SENDER_FREEZE_TARGET_MS;
		if (!final) {
			rc = send_round(cfg, c, round, 0, 0, res);
			if (!rc)
				rc = stream_round(cfg, dev, m, c, eb, tr, set, bytes, false, res,
						  &st);
			if (rc)
				break;
			continue;
		}
		/* The final round: this set and whatever was written since, read
		 * with the file system frozen, sent after the thaw. */
		rc = conn_hold(c, SENDER_HOLD_BYTES);
		if (rc) {
			set_msg(res, "volume %s: out of memory for the final round", cfg->volume);
			break;
		}
		rc = capture_freeze(cap, err, sizeof(err));
		if (rc) {
			set_msg(res, "volume %s: %s", cfg->volume, err);
			break;
		}
		rc = tracking_round(tr, more, &more_bytes, err, sizeof(err));
		if (rc)
			set_msg(res, "volume %s: write tracker: %s", cfg->volume, err);
		for (uint64_t i = 0; !rc && i < words; i++)
			set[i] |= more[i];
		if (!rc)
			rc = send_round(cfg, c, round, final_flags, cap->freeze_unix_ms, res);
		if (!rc)
			rc = stream_round(cfg, dev, m, c, eb, tr, set, bytes + more_bytes, false,
					  res, &st);
		int t = capture_thaw(cap, &held_ms, err, sizeof(err));

		res->freeze_ms = held_ms;
		res->freeze_read_bytes = rc ? 0 : st.bytes_read;
		if (t && !rc) {
			rc = t;
			set_msg(res, "volume %s: %s", cfg->volume, err);
		}
		/* A freeze the watchdog ended sends nothing more: the epoch dies
		 * with the connection, never committed. */
		if (!rc) {
			rc = conn_release_hold(c);
			if (rc)
				explain_send_failure(c, res, cfg->volume,
						     "sending the final round failed");
		}
		break;
	}
out:
	free(set);
	free(more);
	return rc;
}

/* While a snapshot command runs: the receiver keeps waiting (its read timeout
 * is per frame). A failure here surfaces at the next send. */
static void keep_alive(void *ctx)
{
	struct conn *c = ctx;
	int n = proto_encode_keepalive(c->tx, PROTO_FRAME_BYTES_MAX);

	if (n > 0)
		conn_send(c, c->tx, (size_t)n);
}

_Static_assert(STATUS_CAPTURE_FREEZE == PROTO_CAPTURE_FREEZE &&
		       STATUS_CAPTURE_REFLINK == PROTO_CAPTURE_REFLINK &&
		       STATUS_CAPTURE_SNAPSHOT == PROTO_CAPTURE_SNAPSHOT,
	       "one numbering of capture kinds, on the wire and on disk");

/* The kind of a capture that made one instant (a STATUS_CAPTURE_* value,
 * which is the PROTO_CAPTURE_* one). */
static uint8_t capture_kind(enum capture_mode m)
{
	return m == CAPTURE_REFLINK    ? STATUS_CAPTURE_REFLINK
	       : m == CAPTURE_SNAPSHOT ? STATUS_CAPTURE_SNAPSHOT
				       : STATUS_CAPTURE_FREEZE;
}

/* The final ROUND's flags: FINAL, and how the source was captured where the
 * receiver takes it. */
static uint32_t final_flags(const struct proto_welcome *w, const struct sender_result *res)
{
	if (!(w->capabilities & PROTO_CAP_CAPTURE_KIND))
		return PROTO_ROUND_FINAL;
	return PROTO_ROUND_FINAL | (uint32_t)capture_kind(res->capture)
					   << PROTO_ROUND_CAPTURE_SHIFT;
}

uint8_t sender_capture_kind(const struct sender_result *res)
{
	return status_capture_byte(res->crash_consistent, capture_kind(res->capture));
}

/*
 * An epoch read from an image (reflink, snapshot; capture.h): after the harvest
 * of plan_scan, the image, then a second harvest, read from the image too and
 * marked again for the next epoch (a write that completed while the image was
 * made may be missing from it). One round from the image, then the final
 * ROUND with its instant, which *capture_ms receives. The image is dropped
 * before the ack is awaited; a failed release is a warning.
 */
static int image_epoch(const struct sender_config *cfg, const struct kfio_dev *dev, struct map *m,
		       struct conn *c, const struct proto_welcome *w, struct proto_epoch_begin *eb,
		       struct tracking *tr, struct capture *cap, uint32_t final_flags,
		       struct sender_result *res, int64_t *capture_ms)
{
	char err[CAPTURE_WHY_MAX + 600] = "";
	struct kfio_dev img = { .fd = -1 };
	struct scan_stats st;
	uint64_t *more = NULL, more_bytes = 0;
	int rc;

	/* A write-back layer under the tracked device (a buffered loop device)
	 * is flushed first: a write the harvest saw complete is in the snapshot. */
	if (cap->mode == CAPTURE_SNAPSHOT && fsync(dev->fd)) {
		rc = -errno;
		set_msg(res, "volume %s: flushing %s before its snapshot failed: %s", cfg->volume,
			cfg->device, strerror(-rc));
		goto out;
	}
	rc = capture_image(cap, eb->epoch, keep_alive, c, err, sizeof(err));
	res->clone_ms = cap->image_ms;
	if (rc) {
		set_msg(res, "%s", err);
		goto out;
	}
	if (tr->track) {
		more = calloc(kfio_track_words(tr->track), sizeof(uint64_t));
		rc = more ? tracking_round(tr, more, &more_bytes, err, sizeof(err)) : -ENOMEM;
		if (rc) {
			set_msg(res, "volume %s: write tracker: %s", cfg->volume,
				more ? err : "out of memory");
			goto out;
		}
		tracking_carry(tr, more);
	}
	rc = kfio_dev_open(&img, cap->image, 0);
	if (rc) {
		set_msg(res, "volume %s: cannot read %s: %s", cfg->volume, cap->image_name,
			img.err_msg);
		goto out;
	}
	/* A loop device can be shorter than its file (whole sectors); a
	 * snapshot is the volume's size exactly. */
	if (img.size_bytes < dev->size_bytes ||
	    (cap->mode == CAPTURE_SNAPSHOT && img.size_bytes != dev->size_bytes)) {
		set_msg(res,
			"volume %s: %s is %" PRIu64 " bytes, and the volume %s is %" PRIu64
			" bytes: it is not an image of this volume",
			cfg->volume, cap->image_name, img.size_bytes, cfg->device, dev->size_bytes);
		rc = -EINVAL;
		goto out;
	}
	img.size_bytes = dev->size_bytes;
	snprintf(img.path, sizeof(img.path), "%.*s", (int)sizeof(img.path) - 1, cap->image_name);
	if (cap->mode == CAPTURE_REFLINK && cap->image_ms > CAPTURE_CLONE_WARN_MS)
		snprintf(
			res->warning, sizeof(res->warning),
			"volume %s: cloning %.200s took %.0f ms, and all I/O to the file waited for it: a fragmented file clones slowly (defragment it, or use --capture freeze)",
			cfg->volume, cap->clone_src, cap->image_ms);
	*capture_ms = cap->image_unix_ms;
	rc = send_epoch_begin(cfg, c, w, eb, *capture_ms, res);
	if (rc)
		goto out;
	rc = stream_round(cfg, &img, m, c, eb, tr, tracking_only_pages(tr),
			  tr->tracked_bytes + more_bytes, false, res, &st);
	res->rounds = 1;
	if (!rc)
		rc = send_round(cfg, c, 2, final_flags, cap->image_unix_ms, res);
	if (!rc)
		res->rounds = 2;
out:
	if (img.fd >= 0)
		kfio_dev_close(&img);
	if (capture_image_release(cap, eb->epoch, err, sizeof(err)) && !res->warning[0])
		snprintf(res->warning, sizeof(res->warning), "%.*s", (int)sizeof(res->warning) - 1,
			 err);
	free(more);
	return rc;
}

/*
 * Records the epoch as pending, sends EPOCH_END and waits for the receiver's ack
 * of exactly this epoch and root. Pending first: if the ack is lost after the
 * receiver committed, the next attempt can confirm it (settle_lost_ack).
 */
static int end_epoch(const struct sender_config *cfg, struct conn *c, const struct map *m,
		     uint64_t epoch, struct sender_result *res)
{
	struct proto_epoch_end ee;
	struct proto_msg msg;
	char err[512] = "";
	int n, rc;

	rc = pending_save(m, cfg->state_dir, epoch, err, sizeof(err));
	if (rc) {
		set_msg(res, "volume %s: %s", cfg->volume, err);
		return rc;
	}
	c->watch_peer = false; /* its ack is awaited below */
	ee = (struct proto_epoch_end){ .epoch = epoch,
				       .block_count = res->blocks_sent,
				       .merkle_root = map_merkle_root(m) };
	n = proto_encode_epoch_end(&ee, c->tx, PROTO_FRAME_BYTES_MAX);
	rc = n < 0 ? n : conn_send(c, c->tx, (size_t)n);
	if (!rc)
		rc = conn_recv(c, &msg);
	if (rc) {
		set_msg(res, "volume %s: waiting for the ack of epoch %" PRIu64 " failed: %s",
			cfg->volume, epoch, c->err);
		return rc;
	}
	if (msg.header.type == PROTO_ERROR) {
		res->config_error = msg.u.error.code == PROTO_ERR_JOURNAL_FULL;
		set_msg(res, "volume %s: the receiver refused epoch %" PRIu64 ": %s (%s)",
			cfg->volume, epoch, msg.u.error.message,
			proto_error_name(msg.u.error.code));
		return -EPROTO;
	}
	if (msg.header.type != PROTO_EPOCH_ACK || msg.u.epoch_ack.epoch != epoch ||
	    msg.u.epoch_ack.merkle_root != ee.merkle_root) {
		set_msg(res, "volume %s: expected the ack of epoch %" PRIu64 ", got %s",
			cfg->volume, epoch, proto_type_name(msg.header.type));
		return -EPROTO;
	}
	return 0;
}

/* Durable on the standby: now, and only now, the confirmed map advances. */
static int commit_epoch(const struct sender_config *cfg, struct map *m, uint64_t epoch,
			struct sender_result *res)
{
	char err[512] = "";
	int rc = map_commit(m, cfg->state_dir, epoch, err, sizeof(err));

	if (rc) {
		set_msg(res,
			"volume %s: epoch %" PRIu64
			" is on the standby but recording it in %s failed: %s (the next epoch resyncs)",
			cfg->volume, epoch, cfg->state_dir, err);
		return rc;
	}
	pending_drop(cfg->state_dir);
	res->outcome = SENDER_OK;
	set_msg(res, "volume %s: epoch %" PRIu64 " replicated%s", cfg->volume, epoch,
		res->recovered_ack ? " (the previous epoch's lost ack was recovered)" : "");
	return 0;
}

int sender_run_epoch(const struct sender_config *cfg, struct sender_result *res)
{
	int64_t capture_ms = clock_unix_ms();
	struct tls_ctx *ctx = NULL;
	struct conn c = { 0 };
	struct kfio_dev dev;
	struct map m;
	struct proto_welcome w;
	struct proto_epoch_begin eb;
	struct tracking tr;
	struct capture cap;
	struct scan_stats st;
	bool tracking_open = false, rounds = false;
	double t0 = clock_mono_s(), cpu0 = clock_cpu_s();
	uint64_t hello_root;
	int rc;

	ASSERT(cfg != NULL);
	ASSERT(res != NULL);
	ASSERT(cfg->volume != NULL);
	ASSERT(cfg->device != NULL);
	ASSERT(cfg->state_dir != NULL);
	ASSERT(cfg->peer != NULL);
	ASSERT(cfg->timeout_ms > 0);
	memset(res, 0, sizeof(*res));
	capture_init(&cap);
	res->outcome = SENDER_FAILED;
	res->capture = CAPTURE_NONE; /* until one is chosen */
	rc = open_source(cfg, &dev, &m, res);
	if (rc)
		goto out;
	rc = open_tracking(cfg, &dev, &tr, res);
	if (rc)
		goto release;
	tracking_open = true;
	rc = open_capture(cfg, &tr, &cap, res);
	if (rc)
		goto release;
	rc = connect_peer(cfg, &ctx, &c, res);
	if (rc)
		goto release;
	rc = handshake(cfg, &c, &m, &w, &hello_root, res);
	if (rc)
		goto release;
	rc = settle_lost_ack(cfg, &m, &w, res);
	if (rc)
		goto release;
	choose_epoch(&m, &w, hello_root, &eb, res);
	if (res->initial_sync)
		record_sync_start(cfg, res);
	rc = choose_capture(cfg, &cap, &w, &eb, res, &rounds);
	if (rc)
		goto release;
	rc = plan_scan(cfg, &tr, &m, res);
	if (rc)
		goto release;
	if (rounds && capture_reads_image(&cap)) {
		rc = image_epoch(cfg, &dev, &m, &c, &w, &eb, &tr, &cap, final_flags(&w, res), res,
				 &capture_ms);
		if (rc)
			goto release;
	} else {
		/* Live reads start now: the standby will hold the source as of
		 * this time (a conservative point: blocks read later may be
		 * newer), or as of the freeze at the end of the rounds. */
		capture_ms = clock_unix_ms();
		rc = send_epoch_begin(cfg, &c, &w, &eb, capture_ms, res);
		if (rc)
			goto release;
		rc = stream_round(cfg, &dev, &m, &c, &eb, &tr, tracking_only_pages(&tr),
				  tr.tracked_bytes, w.capabilities & PROTO_CAP_PAGES, res, &st);
		res->rounds = 1;
		if (!rc && rounds)
			rc = capture_rounds(cfg, &dev, &m, &c, &eb, &tr, &cap, final_flags(&w, res),
					    res);
		if (rc)
			goto release;
	}
	res->crash_consistent = rounds;
	rc = end_epoch(cfg, &c, &m, eb.epoch, res);
	if (rc)
		goto release;
	rc = commit_epoch(cfg, &m, eb.epoch, res);
	if (!rc)
		confirm_tracking(cfg, &tr, eb.epoch, res);
release:
	if (c.tls)
		res->wire_bytes = conn_wire_bytes_sent(&c);
	/* Withdrawn before the close, so a shutdown cannot reach a reused fd. */
	abort_withdraw(cfg->abort);
	conn_release(&c);
	if (ctx && ctx != cfg->tls)
		tls_ctx_free(ctx);
	if (tracking_open) {
		tracking_pages_outcome(&tr, res->outcome == SENDER_OK, res->blocks_partial > 0);
		if (res->outcome != SENDER_OK && res->blocks_partial && !res->warning[0])
			snprintf(
				res->warning, sizeof(res->warning),
				"volume %s: the epoch failed after it sent partial blocks: the next attempt sends whole blocks",
				cfg->volume);
		tracking_close(&tr);
	}
	capture_close(&cap);
	map_release(&m);
	kfio_dev_close(&dev);
out:
	res->err = rc;
	res->seconds = clock_mono_s() - t0;
	res->cpu_seconds = clock_cpu_s() - cpu0;
	if (res->outcome != SENDER_OK && cfg->abort && sender_abort_paused(cfg->abort)) {
		res->paused = true;
		set_msg(res, "volume %s: paused: %s", cfg->volume, cfg->abort->reason);
	}
	res->disconnected = res->outcome != SENDER_OK && !res->paused && network_error(rc);
	record_status(cfg, res, capture_ms);
	return rc;
}
