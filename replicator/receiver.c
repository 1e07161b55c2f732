// SPDX-License-Identifier: Apache-2.0
/*
 * receiver — the standby side's daemon (see receiver.h and the receiver state
 * machine in docs/PROTOCOL.md): it opens every volume (standby.c), listens,
 * accepts, authorises, hands each connection's epochs to the epoch module
 * (recv_epoch.c), and applies reloads and stops. It owns the threads and the
 * locks; what a volume holds and how an epoch is received are the other two
 * modules'.
 *
 *   accept ─ tls_accept ─► WAIT_HELLO ─ recv_check_hello fails ─► REFUSE, close
 *                              │ WELCOME (recv_epoch_welcome)
 *                              ▼
 *          ┌──────────────► IDLE ─ EPOCH_BEGIN (recv_check_begin) ─► recv_epoch_run:
 *          │                         INITIAL_SYNC: the sync sink writes the standby
 *          │                           directly, cursor every PROTO_CURSOR_SYNC_BYTES
 *          │                         delta: the journal sink journals
 *          │                         EPOCH_END: recv_check_end, durable, commit tail
 *          └──────── EPOCH_ACK ◄─────  (standby_commit) and ack in the sink's order
 *
 * Invariants (DESIGN.md 1-3, 6), kept by the modules named:
 *   1. The standby is written outside the journal only while the volume's state
 *      says `syncing`, and that state is durable before the first such write
 *      (standby_sync_begin before the sync sink's first write).
 *   2. EPOCH_ACK is sent only after the epoch is durable: journal_commit returned
 *      (delta), or the standby was flushed and the map and state committed (sync)
 *      (recv_epoch.c's rx_commit).
 *   3. Every block is checked against the xxh3 the sender computed on its
 *      plaintext before it is journaled or written; a mismatch aborts the epoch
 *      (recv_check_data).
 *   4. Every field of every frame is checked against the volume before use: runs
 *      inside the volume, ascending, sizes matching the geometry (recv_check.c).
 *   5. An I/O error on the journal or standby is sticky for the volume: it refuses
 *      further epochs until the receiver restarts and recovers from disk
 *      (standby_fail, refused by recv_check_hello).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "devid.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "receiver.h"
#include "recv_check.h"
#include "recv_epoch.h"
#include "replace.h"
#include "standby.h"
#include "status.h"
#include "tls.h"

#define RECV_ERR_MAX 512
/* How long a new sender waits for a volume whose previous epoch is applying. */
#define RECEIVER_BUSY_WAIT_MS 10000u

struct receiver {
	const struct receiver_config *cfg;
	struct tls_ctx *tls;
	struct standby vols[RECEIVER_VOLUMES_MAX];
	unsigned vol_count;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned conns;
	/* Live connection sockets, so a stop can cut them (slot -1: free). The fd is
	 * withdrawn under the lock before it is closed: never a reused fd. A slot
	 * not yet authorised is a handshake, which a newer one may evict. */
	int conn_fds[RECEIVER_CONNS_MAX];
	bool conn_authed[RECEIVER_CONNS_MAX];
	double conn_t0[RECEIVER_CONNS_MAX];
	char conn_host[RECEIVER_CONNS_MAX][INET6_ADDRSTRLEN];
	uint64_t evicted; /* handshakes cut to make room, for the log */
};

struct rconn {
	struct receiver *r;
	int fd;
	int slot; /* index in r->conn_fds, -1 when not registered */
	struct recv_peer p;
};

/* A reload appends volumes and flips retired under r->lock; readers take it too. */
static struct standby *find_volume(struct receiver *r, const char *name, bool *retired)
{
	struct standby *v = NULL;

	ASSERT(r != NULL);
	ASSERT(name != NULL);
	ASSERT(retired != NULL);
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->vol_count; i++)
		if (!strcmp(r->vols[i].cfg->name, name))
			v = &r->vols[i];
	*retired = v && v->retired;
	pthread_mutex_unlock(&r->lock);
	return v;
}

static bool authorised(struct receiver *r, const struct standby *v, const char *peer_name)
{
	bool ok;

	ASSERT(r != NULL);
	ASSERT(v != NULL);
	ASSERT(peer_name != NULL);
	pthread_mutex_lock(&r->lock);
	ok = v->cfg->allow_count == 0;
	for (unsigned i = 0; i < v->cfg->allow_count && !ok; i++)
		ok = !strcmp(v->cfg->allow[i], peer_name);
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* ------------------------------------------------------------ connections */

static int serve_volume(struct rconn *rc, struct standby *v, const struct proto_hello *h)
{
	struct recv_verdict vd = { 0 };
	struct proto_msg msg;
	int r;

	ASSERT(rc != NULL);
	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(v->busy);  /* ours alone: conn_main set it */
	standby_retry(v); /* a volume failed for want of space: try again */
	r = recv_check_hello(v, h, &vd);
	if (r)
		return recv_epoch_reply(&rc->p, &vd);
	r = recv_epoch_welcome(&rc->p, v, h);
	if (r)
		return r;
	for (;;) {
		r = conn_recv(&rc->p.c, &msg);
		if (r == -ECONNRESET)
			return 0; /* the sender is done */
		if (r) {
			log_msg(LOG_WARN, v->cfg->name, rc->p.addr, 0, "no EPOCH_BEGIN: %s",
				rc->p.c.err);
			if (r != -EBADMSG)
				return r;
			recv_verdict_set(&vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					 "volume %s: %s before EPOCH_BEGIN", v->cfg->name,
					 rc->p.c.err);
			return recv_epoch_reply(&rc->p, &vd);
		}
		r = recv_check_begin(v, h, &msg, &vd);
		if (r)
			return recv_epoch_reply(&rc->p, &vd);
		struct proto_epoch_begin eb = msg.u.epoch_begin;
		double t0 = clock_mono_s();
		uint64_t rx0 = conn_wire_bytes_received(&rc->p.c);
		char who[sizeof(rc->p.addr) + sizeof(rc->p.name) + 4];

		snprintf(who, sizeof(who), "%s (%s)", rc->p.addr,
			 rc->p.name[0] ? rc->p.name : "no certificate");
		if (eb.flags & PROTO_EPOCH_INITIAL_SYNC)
			standby_record(v, who, -1, 0, 0, NULL);
		r = recv_epoch_run(&rc->p, v, h, &eb);
		standby_record(v, who, r == 0, clock_mono_s() - t0,
			       conn_wire_bytes_received(&rc->p.c) - rx0,
			       r ? (v->failed	     ? v->fail_msg
				    : rc->p.c.err[0] ? rc->p.c.err
						     : "epoch aborted")
				 : NULL);
		if (r)
			return r;
	}
}

static void conn_unregister(struct receiver *r, struct rconn *rc)
{
	ASSERT(r != NULL);
	ASSERT(rc != NULL);
	ASSERT(rc->slot < (int)RECEIVER_CONNS_MAX);
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
	struct recv_verdict vd = { 0 };
	struct standby *v;
	char err[RECV_ERR_MAX] = "";
	bool dummy;

	tls_ctx_maybe_reload(r->tls, &dummy, err, sizeof(err));
	if (tls_accept(r->tls, rc->fd, &tls, err, sizeof(err))) {
		log_msg(LOG_WARN, NULL, rc->p.addr, 0, "%s",
			err); /* it says "TLS handshake failed" */
		goto done;
	}
	snprintf(rc->p.name, sizeof(rc->p.name), "%s",
		 tls_conn_peer_name(tls) ? tls_conn_peer_name(tls) : "");
	if (conn_init(&rc->p.c, tls)) {
		tls_conn_close(tls);
		goto done;
	}
	if (conn_recv(&rc->p.c, &msg)) {
		log_msg(LOG_WARN, NULL, rc->p.addr, 0, "no HELLO: %s", rc->p.c.err);
		goto release;
	}
	if (msg.header.type != PROTO_HELLO) {
		recv_verdict_set(&vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
				 "expected HELLO, got %s", proto_type_name(msg.header.type));
		goto reply;
	}
	struct proto_hello h = msg.u.hello;

	bool retired;

	v = find_volume(r, h.volume_name, &retired);
	if (!v || retired) {
		recv_verdict_set(
			&vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_VOLUME_ID,
			retired ? "volume '%s' was removed from this receiver's configuration; add it back (--volume %s=DEVICE or a [volume] section) and reload"
				: "this receiver serves no volume named '%s'; add --volume %s=DEVICE",
			h.volume_name, h.volume_name);
		goto reply;
	}
	if (!authorised(r, v, rc->p.name)) {
		recv_verdict_set(
			&vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_CERTIFICATE,
			"certificate '%s' is not allowed to replicate volume %s; add --allow %s=%s",
			rc->p.name, v->cfg->name, v->cfg->name, rc->p.name);
		goto reply;
	}
	/* Authorised: no longer a handshake anyone may evict, and the epoch's
	 * own timeout from here. */
	pthread_mutex_lock(&r->lock);
	if (rc->slot >= 0)
		r->conn_authed[rc->slot] = true;
	pthread_mutex_unlock(&r->lock);
	conn_tcp_tune(rc->fd, r->cfg->timeout_ms);
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
		recv_verdict_set(&vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_BUSY,
				 "volume %s is being replicated by another sender", v->cfg->name);
		goto reply;
	}
	v->busy = true;
	pthread_mutex_unlock(&v->lock);
	/* The volume is ours alone now (busy); no lock is held across network waits. */
	serve_volume(rc, v, &h);
	pthread_mutex_lock(&v->lock);
	v->busy = false;
	pthread_cond_broadcast(&v->idle);
	pthread_mutex_unlock(&v->lock);
	goto release;
reply:
	recv_epoch_reply(&rc->p, &vd);
release:
	conn_unregister(r, rc);
	conn_release(&rc->p.c);
	rc->fd = -1;
done:
	conn_unregister(r, rc);
	if (rc->fd >= 0)
		close(rc->fd);
	free(rc->p.hashes);
	kfio_buf_free(rc->p.plain, PROTO_DATA_PLAINTEXT_MAX);
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

/*
 * Under r->lock, before a connection from host is admitted: past the limits of
 * handshakes (in all, or from host), the oldest one (from host, else any) is
 * cut; so is the oldest handshake when every slot is taken. Never an
 * authorised connection. Its thread sees the socket shut down and ends.
 */
static void make_room(struct receiver *r, const char *host)
{
	unsigned all = 0, mine = 0;
	int oldest = -1, oldest_mine = -1;

	for (int i = 0; i < (int)RECEIVER_CONNS_MAX; i++) {
		if (r->conn_fds[i] < 0 || r->conn_authed[i])
			continue;
		all++;
		if (oldest < 0 || r->conn_t0[i] < r->conn_t0[oldest])
			oldest = i;
		if (strcmp(r->conn_host[i], host))
			continue;
		mine++;
		if (oldest_mine < 0 || r->conn_t0[i] < r->conn_t0[oldest_mine])
			oldest_mine = i;
	}
	if (mine >= RECEIVER_HANDSHAKES_PER_HOST_MAX)
		oldest = oldest_mine;
	else if (all < RECEIVER_HANDSHAKES_MAX && r->conns < RECEIVER_CONNS_MAX)
		return;
	if (oldest < 0)
		return;
	shutdown(r->conn_fds[oldest], SHUT_RDWR);
	r->conn_authed[oldest] = true; /* cut once: not chosen again while it ends */
	if (r->evicted++ % 100 == 0)
		log_msg(LOG_WARN, NULL, r->conn_host[oldest], 0,
			"cut a connection still unauthorised after %.1f s to make room (%" PRIu64
			" so far): too many handshakes at once%s",
			clock_mono_s() - r->conn_t0[oldest], r->evicted,
			mine >= RECEIVER_HANDSHAKES_PER_HOST_MAX ? " from this address" : "");
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
	make_room(r, host);
	if (r->conns >= RECEIVER_CONNS_MAX) {
		pthread_mutex_unlock(&r->lock);
		log_msg(LOG_WARN, NULL, host, 0, "refused: %u authorised connections already",
			RECEIVER_CONNS_MAX);
		close(fd);
		return;
	}
	r->conns++;
	pthread_mutex_unlock(&r->lock);

	rc = calloc(1, sizeof(*rc));
	if (rc) {
		rc->p.hashes = calloc(PROTO_DATA_BLOCKS_MAX, sizeof(*rc->p.hashes));
		rc->p.plain = kfio_buf_alloc(PROTO_DATA_PLAINTEXT_MAX);
	}
	if (!rc || !rc->p.hashes || !rc->p.plain) {
		if (rc) {
			free(rc->p.hashes);
			kfio_buf_free(rc->p.plain, PROTO_DATA_PLAINTEXT_MAX);
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
			r->conn_authed[i] = false;
			r->conn_t0[i] = clock_mono_s();
			snprintf(r->conn_host[i], sizeof(r->conn_host[i]), "%s", host);
			rc->slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	snprintf(rc->p.addr, sizeof(rc->p.addr), "%s", host);
	/* The handshake and HELLO within RECEIVER_HANDSHAKE_MS (or the timeout,
	 * when shorter); then the configured timeout. */
	conn_tcp_tune(fd, r->cfg->timeout_ms < RECEIVER_HANDSHAKE_MS ? r->cfg->timeout_ms
								     : RECEIVER_HANDSHAKE_MS);
	if (pthread_create(&t, NULL, conn_main, rc)) {
		close(fd);
		free(rc->p.hashes);
		kfio_buf_free(rc->p.plain, PROTO_DATA_PLAINTEXT_MAX);
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
	const char *slash;
	unsigned port = 0;
	int n;

	ASSERT(path != NULL);
	ASSERT(lfd >= 0);
	slash = strrchr(path, '/');
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

	ASSERT(next != NULL);
	ASSERT(next->vol_count <= RECEIVER_VOLUMES_MAX);

	if (str_differs(cur->listen, next->listen) || str_differs(cur->tls_dir, next->tls_dir) ||
	    str_differs(cur->state_dir, next->state_dir) ||
	    cur->journal_bytes != next->journal_bytes || cur->timeout_ms != next->timeout_ms ||
	    cur->insecure_plaintext != next->insecure_plaintext)
		log_msg(LOG_WARN, NULL, NULL, 0,
			"reload: the listen address, TLS or state directory, journal size, timeout and plaintext mode apply only after a restart; kept the running ones");
	for (unsigned i = 0; i < next->vol_count; i++) {
		const struct receiver_volume_cfg *nv = &next->vols[i];
		bool retired;
		struct standby *v = find_volume(r, nv->name, &retired);

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
		const char *names[RECEIVER_VOLUMES_MAX + 1], *paths[RECEIVER_VOLUMES_MAX + 1];

		for (unsigned k = 0; k < r->vol_count; k++) {
			names[k] = r->vols[k].cfg->name;
			paths[k] = r->vols[k].cfg->device;
		}
		names[r->vol_count] = nv->name;
		paths[r->vol_count] = nv->device;
		if (devid_find_conflict(names, paths, r->vol_count + 1, err, sizeof(err))) {
			log_msg(LOG_ERROR, nv->name, NULL, 0,
				"reload: not added: %s (a renamed volume needs a restart)", err);
			continue;
		}
		/* The slot past vol_count is invisible to connections until counted. */
		err[0] = '\0';
		if (standby_open(&r->vols[r->vol_count], cur, nv, err, sizeof(err))) {
			log_msg(LOG_ERROR, nv->name, NULL, 0, "reload: not added: %s", err);
			standby_close(&r->vols[r->vol_count]);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		r->vol_count++;
		pthread_mutex_unlock(&r->lock);
		added++;
	}
	for (unsigned i = 0; i < r->vol_count; i++) {
		struct standby *v = &r->vols[i];
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

/* No two volumes over one storage (devid.h): refused before anything opens. */
static int receiver_check_devices(const struct receiver_config *cfg, char *err, size_t err_len)
{
	const char *names[RECEIVER_VOLUMES_MAX], *paths[RECEIVER_VOLUMES_MAX];

	for (unsigned i = 0; i < cfg->vol_count; i++) {
		names[i] = cfg->vols[i].name;
		paths[i] = cfg->vols[i].device;
	}
	return devid_find_conflict(names, paths, cfg->vol_count, err, err_len);
}

int receiver_run(const struct receiver_config *cfg, volatile sig_atomic_t *stop, char *err,
		 size_t err_len)
{
	struct tls_config tc = { .server = true };
	struct receiver *r;
	int lfd = -1, rc;
	unsigned failed = 0;
	double last_beat;

	ASSERT(cfg != NULL);
	ASSERT(stop != NULL);
	ASSERT(cfg->listen != NULL);
	ASSERT(cfg->state_dir != NULL);
	ASSERT(cfg->vol_count <= RECEIVER_VOLUMES_MAX);
	tc.dir = cfg->tls_dir;
	tc.insecure_plaintext = cfg->insecure_plaintext;
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
	rc = receiver_check_devices(cfg, err, err_len);
	if (rc)
		goto close_vols;
	/* One volume that cannot be served (a damaged map, a resized standby)
	 * is failed alone, with its fix in its status; the others are served.
	 * Only when none can be does the receiver not start. */
	for (unsigned i = 0; i < cfg->vol_count; i++) {
		char why[RECV_ERR_MAX] = "";
		int vrc = standby_open(&r->vols[i], cfg, &cfg->vols[i], why, sizeof(why));

		r->vol_count = i + 1;
		if (!vrc)
			continue;
		if (!failed++) {
			rc = vrc;
			snprintf(err, err_len, "%s", why);
		}
		standby_fail(&r->vols[i], "%s", why);
	}
	if (failed == cfg->vol_count && failed)
		goto close_vols;
	if (failed)
		log_msg(LOG_ERROR, NULL, NULL, 0,
			"%u of %u volume(s) cannot be served (each logged above, with its fix); serving the others",
			failed, cfg->vol_count);
	rc = 0;
	err[0] = '\0';
	lfd = conn_tcp_listen(cfg->listen, err, err_len);
	if (lfd < 0) {
		rc = lfd;
		goto close_vols;
	}
	if (cfg->ready_file) {
		char why[REPLACE_ERR_MAX] = "";

		rc = write_ready_file(cfg->ready_file, lfd, why, sizeof(why));
		if (rc) {
			snprintf(err, err_len, "cannot write %s: %s", cfg->ready_file,
				 why[0] ? why : strerror(-rc));
			rc = -EIO; /* the exit code of an unwritable ready file */
			goto close_vols;
		}
	}
	/* Volumes recovered and listening: ready, whether or not a sender comes. */
	if (cfg->metrics)
		metrics_set_ready(cfg->metrics, true);
	log_msg(LOG_INFO, NULL, NULL, 0, "listening on %s, %u volume(s), %s", cfg->listen,
		r->vol_count, cfg->insecure_plaintext ? "INSECURE PLAINTEXT" : "mutual TLS 1.3");
	last_beat = clock_mono_s();
	while (!*stop) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };

		if (poll(&p, 1, 250) > 0)
			accept_one(r, lfd);
		/* Every record says the receiver runs (status tells a stale one). */
		if (clock_mono_s() - last_beat >= STATUS_HEARTBEAT_S) {
			unsigned n;

			last_beat = clock_mono_s();
			pthread_mutex_lock(&r->lock);
			n = r->vol_count;
			pthread_mutex_unlock(&r->lock);
			for (unsigned i = 0; i < n; i++)
				standby_heartbeat(&r->vols[i]);
		}
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
		standby_close(&r->vols[i]);
	tls_ctx_free(r->tls);
free_r:
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->idle);
	free(r);
	return rc;
}
