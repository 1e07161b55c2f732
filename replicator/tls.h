/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls — mutually authenticated TLS 1.3 over a connected blocking socket, and the
 * certificates it runs on. The only module that includes OpenSSL headers.
 *
 * Credentials come only from files in one directory, laid out as Kubernetes mounts
 * a TLS Secret: DIR/tls.crt (leaf, optionally followed by intermediates),
 * DIR/tls.key (unencrypted PEM), DIR/ca.crt (the private CA bundle that signs the
 * peers). Both sides present a certificate; the server (receiver) requires one and
 * exposes its identity (first DNS SAN, else CN) for the per-volume allow list; the
 * client (sender) checks the receiver's certificate against --server-name. TLS 1.3
 * only, AES-128-GCM first, no session tickets or resumption.
 *
 * Rotation: every tls_accept/tls_connect (and tls_ctx_maybe_reload) stats the
 * three files; when one changed (inode, size or mtime: a Secret update swaps a
 * symlink) the context is rebuilt, so new connections use the new files and live
 * ones keep theirs. Broken new files are refused and the previous context stays.
 *
 * With insecure_plaintext the same API runs over the raw socket (tests, benchmarks,
 * links already encrypted below); a mismatch of modes between the sides is
 * detected from the first bytes and reported as such.
 *
 * It knows nothing of frames, volumes or the allow list: bytes in, bytes out. It
 * never prints; errors come back as -errno plus a message naming the file or the
 * peer and the fix. `pvrepl certs` makes a CA and node certificates for tests and
 * the demo through tls_issue.h, the module's other header.
 */
#ifndef PVREPL_TLS_H
#define PVREPL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_CERT_FILE	"tls.crt"
#define TLS_KEY_FILE	"tls.key"
#define TLS_CA_FILE	"ca.crt"
#define TLS_CA_KEY_FILE "ca.key"

/* A good size for the err buffers below; messages are truncated to fit. */
#define TLS_ERR_BYTES 512
/* A certificate, key or bundle file larger than this is refused. */
#define TLS_FILE_BYTES_MAX (1u << 20)
/* Longest peer name kept (DNS names are at most 253 bytes). */
#define TLS_PEER_NAME_BYTES 256
/* A connection rekeys its sending direction after this much data (AES-GCM limits). */
#define TLS_KEY_UPDATE_BYTES (1ull << 36)

struct tls_config {
	const char *dir; /* holds tls.crt, tls.key, ca.crt; unused with insecure_plaintext */
	bool server;	 /* accept side (receiver): requires a client certificate */
	/* Client only: SNI and the name (DNS SAN, or IP SAN if an address) the
	 * receiver's certificate must carry. Required for a TLS client. */
	const char *server_name;
	bool insecure_plaintext; /* no TLS at all: same API over the raw socket */
};

struct tls_ctx;
struct tls_conn;

/*
 * Loads and checks the files of cfg->dir (see the top of this file) and makes a
 * context. Strings of cfg are copied. Returns 0, or -ENOENT / -EACCES (a file is
 * missing or unreadable), -EINVAL (not PEM, key does not match the certificate,
 * not signed by the CA bundle, wrong key usage), -EKEYEXPIRED (expired or not yet
 * valid), -ENOMEM, with a message in err naming the file and the fix.
 * Thread-safe to use from several threads once made.
 */
int tls_ctx_new(struct tls_ctx **out, const struct tls_config *cfg, char *err, size_t err_len);
/* Frees ctx (NULL is fine). Connections made from it stay valid. */
void tls_ctx_free(struct tls_ctx *ctx);
/*
 * Rebuilds the context if tls.crt, tls.key or ca.crt changed since it was built.
 * *reloaded (may be NULL) says whether it did. If the changed files are broken,
 * the previous context stays in use and the error is returned (again on each call
 * until the files change), for the caller to log.
 */
int tls_ctx_maybe_reload(struct tls_ctx *ctx, bool *reloaded, char *err, size_t err_len);

/*
 * TLS handshake as server / client on fd, a connected blocking socket (the caller
 * sets SO_RCVTIMEO/SO_SNDTIMEO; a timeout returns -ETIMEDOUT). Both first call
 * tls_ctx_maybe_reload (a failure there is not an error of the handshake: the
 * previous context serves it). On success *out owns fd (tls_conn_close closes it);
 * on failure fd stays the caller's and err says why: -EPROTO (TLS refused: bad or
 * missing peer certificate, wrong name, not TLS 1.3, the peer not speaking TLS),
 * -ECONNRESET (the peer went away), -ETIMEDOUT, -errno of the socket.
 * In TLS 1.3 the client finishes first: a server refusing the client's certificate
 * shows up on the client's first read, as -EPROTO with the peer's alert.
 */
int tls_accept(struct tls_ctx *ctx, int fd, struct tls_conn **out, char *err, size_t err_len);
int tls_connect(struct tls_ctx *ctx, int fd, struct tls_conn **out, char *err, size_t err_len);

/*
 * The verified peer certificate's identity: its first DNS SAN, else its CN.
 * NULL with insecure_plaintext (no identity: authorise nothing by name).
 * Owned by conn.
 */
const char *tls_conn_peer_name(const struct tls_conn *conn);
/* The peer certificate's serial number in hex (for logs); NULL in plaintext. */
const char *tls_conn_peer_serial(const struct tls_conn *conn);
/* The negotiated ciphersuite name, "plaintext" without TLS. */
const char *tls_conn_cipher(const struct tls_conn *conn);

/*
 * Sends all len bytes (any size; no copy beyond TLS record encryption). Returns 0
 * or -errno: -ETIMEDOUT, -EPIPE / -ECONNRESET, -EPROTO (TLS error, reason in
 * tls_conn_err). After an error the connection can only be closed.
 */
int tls_conn_write_all(struct tls_conn *conn, const void *buf, size_t len);
/*
 * Reads exactly len bytes. Returns 0, -ECONNRESET if the stream ends first (the
 * message says after how many bytes and whether the peer closed cleanly),
 * -ETIMEDOUT, -EPROTO (TLS error or alert, reason in tls_conn_err), -errno.
 * After an error the stream position is lost: close the connection.
 */
int tls_conn_read_full(struct tls_conn *conn, void *buf, size_t len);
/*
 * Reads what is available, at least 1 byte (blocking). Returns the count, 0 when
 * the peer closed cleanly (close_notify, or EOF in plaintext), or -errno as
 * tls_conn_read_full. -ETIMEDOUT here consumed nothing: the caller may retry.
 */
ssize_t tls_conn_read_some(struct tls_conn *conn, void *buf, size_t len);
/* Whether the peer sent something not read yet (decrypted and buffered, or on
 * the socket): never blocks. */
bool tls_conn_readable(struct tls_conn *conn);
/*
 * After a last frame that ends the conversation (an ERROR): no more writes
 * (the socket's write side is shut), then what the peer still sends is read
 * and dropped for up to ms, or until it closes, so our last frame reaches it
 * rather than being lost to a reset. The connection can only be closed after.
 */
void tls_conn_linger(struct tls_conn *conn, unsigned ms);
/* The message of the last error on conn ("" if none). Owned by conn. */
const char *tls_conn_err(const struct tls_conn *conn);
/* Bytes written to / read from the socket, TLS records and handshake included.
 * Safe to call from another thread (metrics) while conn is open. */
uint64_t tls_conn_wire_bytes_sent(const struct tls_conn *conn);
uint64_t tls_conn_wire_bytes_received(const struct tls_conn *conn);
/* Sends close_notify (best effort, bounded by SO_SNDTIMEO), frees conn, closes
 * the fd. NULL is fine. */
void tls_conn_close(struct tls_conn *conn);

/* notAfter of the first certificate in cert_path, as Unix seconds. */
int tls_cert_expiry(const char *cert_path, int64_t *not_after_unix, char *err, size_t err_len);
/* The same for TLS_CERT_FILE in a --tls-dir; -ENOENT when tls_dir is NULL. */
int tls_dir_cert_expiry(const char *tls_dir, int64_t *not_after_unix);

/* Frees OpenSSL's state for the calling thread (call before a thread ends when
 * the process may exit without waiting for it). */
void tls_thread_stop(void);

#endif
