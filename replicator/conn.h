/* SPDX-License-Identifier: Apache-2.0 */
/*
 * conn — frames over a TLS (or explicitly insecure plaintext) connection: send one
 * encoded frame, receive and decode the next one into a buffer the conn owns. The
 * bytes are untrusted until proto_decode accepted them; a frame is read whole
 * (header first, its length checked before the payload is read), so a hostile
 * length can never make us allocate or read more than PROTO_FRAME_BYTES_MAX.
 * Also the TCP helpers both sides share: connect to HOST:PORT, listen, timeouts.
 */
#ifndef PVREPL_CONN_H
#define PVREPL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct tls_conn;

struct conn {
	struct tls_conn *tls;
	uint8_t *rx; /* PROTO_FRAME_BYTES_MAX; decoded pointers point in here */
	uint8_t *tx; /* PROTO_FRAME_BYTES_MAX scratch for small frames */
	/* Set when the socket is paced (--max-rate): conn_send then adds the time it
	 * sat blocked on a full socket (wall time minus its own CPU) to paced_s. */
	bool paced;
	double paced_s;
	/* conn_hold: frames kept in memory instead of sent (up to hold_cap bytes;
	 * past that everything held is sent and the rest goes straight out). */
	uint8_t *hold;
	size_t hold_len, hold_cap;
	/* The sender while it streams an epoch: after each write, a frame the
	 * receiver sent (an ERROR) is read and ends the send with -EPROTO, its
	 * message in err and its code in peer_error. */
	bool watch_peer;
	uint16_t peer_error;
	char err[320];
};

/* Takes ownership of tls; allocates the frame buffers. */
int conn_init(struct conn *c, struct tls_conn *tls);
void conn_release(struct conn *c);
/* Sends buf[0..len) (one or more whole frames). */
int conn_send(struct conn *c, const void *buf, size_t len);
/*
 * From now on conn_send keeps frames in memory (up to cap bytes; more are sent
 * as they come), until conn_release_hold sends them: what is read while a file
 * system is frozen does not wait for the network. 0 or -ENOMEM.
 */
int conn_hold(struct conn *c, size_t cap);
/* After an ERROR that ends the conversation: see tls_conn_linger. */
void conn_linger(struct conn *c, unsigned ms);
/* Sends what is held and stops holding. 0 or the send's error. */
int conn_release_hold(struct conn *c);
/*
 * Receives the next frame other than KEEPALIVE into msg (pointers into c->rx,
 * valid until the next call). -ECONNRESET on EOF, -ETIMEDOUT, -EBADMSG with c->err.
 */
int conn_recv(struct conn *c, struct proto_msg *msg);
uint64_t conn_wire_bytes_sent(const struct conn *c);
uint64_t conn_wire_bytes_received(const struct conn *c);

/* "host:port", "[v6]:port" -> a connected TCP socket with timeouts set. */
/*
 * Lets another thread cut a connect(2) in progress (shutdown(2) on the socket):
 * publish is called with each socket before its connect (0 to go on, -errno to
 * give up: conn_tcp_connect returns that), withdraw when that socket is closed
 * again after a failed connect. A connected socket stays published.
 */
struct conn_connect_hook {
	int (*publish)(void *ctx, int fd);
	void (*withdraw)(void *ctx);
	void *ctx;
};

/* hook may be NULL. */
int conn_tcp_connect(const char *hostport, unsigned timeout_ms,
		     const struct conn_connect_hook *hook, char *err, size_t err_len);
/* Listening TCP socket on "host:port" (SO_REUSEADDR). */
int conn_tcp_listen(const char *hostport, char *err, size_t err_len);
/* Caps what the socket sends (bytes/s, TLS included) with the kernel's TCP
 * pacing (SO_MAX_PACING_RATE): no user-space token bucket on the data path. */
int conn_tcp_pace(int fd, uint64_t bytes_per_s);
/* SO_RCVTIMEO / SO_SNDTIMEO, TCP_NODELAY and keepalive on a connected socket. */
int conn_tcp_tune(int fd, unsigned timeout_ms);

#endif
