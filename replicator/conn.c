// SPDX-License-Identifier: Apache-2.0
/*
 * conn — frame I/O over a tls_conn and the TCP socket helpers (see conn.h).
 * Knows the frame header and nothing about what the messages mean.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "pvrepl_assert.h"
#include "tls.h"

int conn_init(struct conn *c, struct tls_conn *tls)
{
	ASSERT(c != NULL);
	ASSERT(tls != NULL);
	memset(c, 0, sizeof(*c));
	c->tls = tls;
	c->rx = malloc(PROTO_FRAME_BYTES_MAX);
	c->tx = malloc(PROTO_FRAME_BYTES_MAX);
	if (!c->rx || !c->tx) {
		free(c->rx);
		free(c->tx);
		c->rx = c->tx = NULL;
		return -ENOMEM;
	}
	return 0;
}

void conn_release(struct conn *c)
{
	ASSERT(c != NULL);
	if (c->tls)
		tls_conn_close(c->tls);
	free(c->rx);
	free(c->tx);
	free(c->hold);
	memset(c, 0, sizeof(*c));
}

int conn_hold(struct conn *c, size_t cap)
{
	ASSERT(c != NULL);
	ASSERT(c->hold == NULL);
	c->hold = malloc(cap);
	if (!c->hold)
		return -ENOMEM;
	c->hold_len = 0;
	c->hold_cap = cap;
	return 0;
}

static int conn_write(struct conn *c, const void *buf, size_t len);

int conn_release_hold(struct conn *c)
{
	uint8_t *held = c->hold;
	size_t len = c->hold_len;
	int rc = 0;

	ASSERT(c != NULL);
	c->hold = NULL;
	c->hold_len = c->hold_cap = 0;
	if (held && len)
		rc = conn_write(c, held, len);
	free(held);
	return rc;
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int conn_send(struct conn *c, const void *buf, size_t len)
{
	ASSERT(c != NULL);
	ASSERT(c->tls != NULL);
	ASSERT(buf != NULL);
	ASSERT(len > 0);
	ASSERT(len <= PROTO_FRAME_BYTES_MAX);
	if (c->hold) {
		if (len <= c->hold_cap - c->hold_len) {
			memcpy(c->hold + c->hold_len, buf, len);
			c->hold_len += len;
			return 0;
		}
		/* Too much to hold: in order, what was held, then the rest as usual. */
		int rc = conn_release_hold(c);

		if (rc)
			return rc;
	}
	return conn_write(c, buf, len);
}

static int conn_write(struct conn *c, const void *buf, size_t len)
{
	double t0 = 0, cpu0 = 0;
	int rc;

	if (c->paced) {
		t0 = clock_mono_s();
		cpu0 = thread_cpu_s();
	}
	rc = tls_conn_write_all(c->tls, buf, len);
	if (c->paced) {
		double blocked = (clock_mono_s() - t0) - (thread_cpu_s() - cpu0);

		if (blocked > 0)
			c->paced_s += blocked;
	}

	if (rc) {
		snprintf(c->err, sizeof(c->err), "send failed: %s", tls_conn_err(c->tls));
		return rc;
	}
	/* A frame the peer sent while we stream (its ERROR) ends the stream at
	 * once: it says why, where a write into a closed connection would not. */
	if (c->watch_peer && tls_conn_readable(c->tls)) {
		struct proto_msg msg;

		rc = conn_recv(c, &msg);
		if (rc)
			return rc;
		if (msg.header.type == PROTO_ERROR) {
			c->peer_error = msg.u.error.code;
			snprintf(c->err, sizeof(c->err),
				 "the receiver stopped the epoch: %.*s (%s)",
				 (int)sizeof(c->err) - 80, msg.u.error.message,
				 proto_error_name(msg.u.error.code));
		} else {
			snprintf(c->err, sizeof(c->err),
				 "unexpected %s from the receiver mid-epoch",
				 proto_type_name(msg.header.type));
		}
		return -EPROTO;
	}
	return 0;
}

void conn_linger(struct conn *c, unsigned ms)
{
	ASSERT(c != NULL);
	if (c->tls)
		tls_conn_linger(c->tls, ms);
}

int conn_recv(struct conn *c, struct proto_msg *msg)
{
	ASSERT(c != NULL);
	ASSERT(c->tls != NULL);
	ASSERT(c->rx != NULL);
	ASSERT(msg != NULL);
	for (;;) {
		struct proto_header h;
		int rc = tls_conn_read_full(c->tls, c->rx, PROTO_HEADER_BYTES);

		if (rc) {
			const char *why = tls_conn_err(c->tls);

			snprintf(c->err, sizeof(c->err), "%s",
				 why && *why ? why : "the peer closed the connection");
			return rc;
		}
		/* The header is checked (magic, checksum, type, length bounds) before its
		 * length is trusted for the payload read. */
		rc = proto_decode_header(c->rx, PROTO_HEADER_BYTES, &h);
		if (rc) {
			snprintf(c->err, sizeof(c->err),
				 "received a bad frame header (not a pvrepl peer, or corrupted)");
			return -EBADMSG;
		}
		rc = tls_conn_read_full(c->tls, c->rx + PROTO_HEADER_BYTES, h.payload_bytes);
		if (rc) {
			snprintf(c->err, sizeof(c->err), "reading a %s frame: %s",
				 proto_type_name(h.type), tls_conn_err(c->tls));
			return rc;
		}
		rc = proto_decode(c->rx, PROTO_HEADER_BYTES + h.payload_bytes, msg);
		if (rc < 0) {
			snprintf(c->err, sizeof(c->err), "received a malformed %s frame",
				 proto_type_name(h.type));
			return -EBADMSG;
		}
		if (msg->header.type != PROTO_KEEPALIVE)
			return 0;
	}
}

uint64_t conn_wire_bytes_sent(const struct conn *c)
{
	ASSERT(c != NULL);
	ASSERT(c->tls != NULL);
	return tls_conn_wire_bytes_sent(c->tls);
}

uint64_t conn_wire_bytes_received(const struct conn *c)
{
	ASSERT(c != NULL);
	ASSERT(c->tls != NULL);
	return tls_conn_wire_bytes_received(c->tls);
}

static int split_hostport(const char *hostport, char *host, size_t host_len, char *port,
			  size_t port_len)
{
	const char *colon;

	if (hostport[0] == '[') {
		const char *end = strchr(hostport, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		snprintf(host, host_len, "%.*s", (int)(end - hostport - 1), hostport + 1);
		snprintf(port, port_len, "%s", end + 2);
		return 0;
	}
	colon = strrchr(hostport, ':');
	if (!colon || colon == hostport || !colon[1])
		return -EINVAL;
	snprintf(host, host_len, "%.*s", (int)(colon - hostport), hostport);
	snprintf(port, port_len, "%s", colon + 1);
	return 0;
}

int conn_tcp_pace(int fd, uint64_t bytes_per_s)
{
	ASSERT(fd >= 0);
	ASSERT(bytes_per_s > 0);
	/* The kernel takes a u64 since 4.13; TCP paces by itself without the fq qdisc. */
	if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &bytes_per_s, sizeof(bytes_per_s)) < 0)
		return -errno;
	return 0;
}

int conn_tcp_tune(int fd, unsigned timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	int one = 1;

	unsigned user_timeout_ms = timeout_ms;

	ASSERT(fd >= 0);
	/*
	 * SO_SNDTIMEO alone does not bound a write to a dead link: each send(2) that
	 * moves a few bytes restarts it. TCP_USER_TIMEOUT aborts the connection once
	 * sent data stays unacknowledged that long, so a cut link fails the epoch
	 * within the timeout.
	 */
	if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
		       sizeof(user_timeout_ms)) < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

int conn_tcp_connect(const char *hostport, unsigned timeout_ms,
		     const struct conn_connect_hook *hook, char *err, size_t err_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char host[256], port[32];
	int fd = -1, rc;

	ASSERT(hostport != NULL);
	ASSERT(err != NULL);
	ASSERT(err_len > 0);
	if (hook) {
		ASSERT(hook->publish != NULL);
		ASSERT(hook->withdraw != NULL);
	}
	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, err_len, "peer '%s' is not HOST:PORT", hostport);
		return -EINVAL;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(err, err_len, "cannot resolve %s: %s", hostport, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	rc = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		/* The send timeout also bounds connect(2). */
		conn_tcp_tune(fd, timeout_ms);
		if (hook) {
			rc = hook->publish(hook->ctx, fd);
			if (rc) {
				close(fd);
				freeaddrinfo(res);
				snprintf(err, err_len, "connecting to %s was cancelled", hostport);
				return rc;
			}
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		if (hook)
			hook->withdraw(hook->ctx);
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, err_len, "cannot connect to %s: %s", hostport, strerror(-rc));
		return rc;
	}
	return fd;
}

int conn_tcp_listen(const char *hostport, char *err, size_t err_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	char host[256], port[32];
	int fd, rc, one = 1;

	ASSERT(hostport != NULL);
	ASSERT(err != NULL);
	ASSERT(err_len > 0);
	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, err_len, "--listen '%s' is not HOST:PORT", hostport);
		return -EINVAL;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, err_len, "cannot resolve %s: %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot listen on %s: %s", hostport, strerror(-rc));
		close(fd);
		fd = rc;
	}
out:
	freeaddrinfo(res);
	return fd;
}
