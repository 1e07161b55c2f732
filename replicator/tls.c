// SPDX-License-Identifier: Apache-2.0
/*
 * tls — TLS 1.3 with mutual authentication over a blocking socket, and
 * certificate reload. With tls_issue.c (certificate generation for `pvrepl
 * certs`) the only files that include OpenSSL headers (DESIGN.md: one outside
 * library, one module).
 *
 * The socket sits behind our own BIO (tls_bio_*), not BIO_s_socket, for three
 * reasons: it counts every byte that crosses the socket (wire bytes, records and
 * handshake included) without a syscall; it turns the EAGAIN of SO_RCVTIMEO /
 * SO_SNDTIMEO into -ETIMEDOUT and keeps the real errno of a failed send/recv
 * (OpenSSL's error queue loses it); and it sees the first byte the peer sends, so
 * a plaintext peer is named as such rather than as "wrong version number". It
 * does no copy: OpenSSL hands it whole encrypted records.
 *
 * Hot path: one SSL_write_ex per frame (up to 8 MiB) becomes 16 KiB records, each
 * one send(); reads use OpenSSL's read-ahead with a TLS_READ_AHEAD_BYTES buffer, so
 * one recv() brings several records. Decryption lands in the caller's buffer
 * after one copy from the record buffer, which OpenSSL does not let us avoid.
 *
 * Key material: private keys are read into buffers we wipe (OPENSSL_cleanse)
 * before freeing (tls_issue.c writes them through a secure-memory BIO that wipes
 * on free). OpenSSL wipes its own key schedules and EVP_PKEYs when they are freed.
 *
 * It knows nothing of frames, volumes or allow lists.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pvrepl_assert.h"
#include "clock.h"
#include "tls.h"
#include "tls_internal.h"

#define TLS_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* Read-ahead buffer: four 16 KiB records per recv(). Measured on loopback: 64 KiB
 * beats no read-ahead (two recv() per record) and larger buffers (which fall out
 * of L2 between decryption and the copy out). */
#define TLS_READ_AHEAD_BYTES (64u * 1024)
/* First byte of a TLS record: handshake (a ClientHello) and alert. */
#define TLS_RECORD_HANDSHAKE 0x16
#define TLS_RECORD_ALERT     0x15
#define TLS_SERIAL_HEX_BYTES 96

enum tls_file {
	TLS_F_CERT = 0,
	TLS_F_KEY = 1,
	TLS_F_CA = 2,
	TLS_F_COUNT = 3,
};

static const char *const tls_file_names[TLS_F_COUNT] = { TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE };

/* What identifies a file's content for reload: a Secret update swaps the ..data
 * symlink (new inode); an in-place rewrite changes size or mtime. */
struct tls_file_id {
	bool present;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct tls_files_id {
	struct tls_file_id f[TLS_F_COUNT];
};

struct tls_ctx {
	bool server;
	bool insecure_plaintext;
	bool server_name_is_ip;
	char *dir;
	char *server_name;
	char paths[TLS_F_COUNT][TLS_PATH_BYTES];

	pthread_mutex_t lock; /* guards everything below */
	SSL_CTX *ssl_ctx;     /* current; connections hold their own reference */
	struct tls_files_id loaded;
	bool failed_valid; /* the files as in `failed` were tried and refused */
	struct tls_files_id failed;
	int failed_rc;
	char failed_err[TLS_ERR_BYTES];
};

struct tls_conn {
	int fd;
	bool server;
	bool insecure;
	bool handshake_done;
	bool fatal;	 /* no more I/O, no close_notify */
	int fatal_rc;	 /* returned by every call after a fatal error */
	int io_errno;	 /* errno of the last failed send/recv; ETIMEDOUT for EAGAIN */
	bool eof;	 /* recv returned 0 */
	bool first_seen; /* the first byte from the peer arrived */
	uint8_t first_byte;
	SSL *ssl;
	const struct tls_ctx *hs_ctx; /* during the handshake only, for messages */
	uint64_t wire_sent_bytes;
	uint64_t wire_received_bytes;
	uint64_t since_key_update_bytes;
	char peer_name[TLS_PEER_NAME_BYTES];
	char peer_serial[TLS_SERIAL_HEX_BYTES];
	char err[TLS_ERR_BYTES];
};

void tls_errf(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

const char *tls_ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r;

	if (!e) {
		tls_errf(buf, len, "no details from OpenSSL");
	} else {
		r = ERR_reason_error_string(e);
		if (r)
			tls_errf(buf, len, "%s", r);
		else
			ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

void tls_time_str(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		tls_errf(buf, len, "(unreadable date)");
}

/* ------------------------------------------------------------ socket BIO */

static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *tls_bio_method;

/* send() with the conventions of this module: n >= 0, or -errno (-ETIMEDOUT for
 * the EAGAIN of SO_SNDTIMEO). MSG_NOSIGNAL: a closed peer is -EPIPE, not SIGPIPE. */
static ssize_t tls_sock_send(struct tls_conn *c, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		c->io_errno = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
		return -c->io_errno;
	}
	/* One writer (the thread using conn); metrics may read from another. */
	__atomic_store_n(&c->wire_sent_bytes, c->wire_sent_bytes + (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

static ssize_t tls_sock_recv(struct tls_conn *c, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(c->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		c->io_errno = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
		return -c->io_errno;
	}
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	if (!c->first_seen) {
		c->first_seen = true;
		c->first_byte = *(const uint8_t *)buf;
	}
	__atomic_store_n(&c->wire_received_bytes, c->wire_received_bytes + (uint64_t)n,
			 __ATOMIC_RELAXED);
	return n;
}

static int tls_bio_write(BIO *b, const char *buf, size_t len, size_t *written)
{
	struct tls_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = tls_sock_send(c, buf, len);
	if (n < 0) {
		/* A timeout is a retryable condition for OpenSSL (SSL_ERROR_WANT_WRITE);
		 * we report it as -ETIMEDOUT. Anything else is a hard error. */
		if (n == -ETIMEDOUT)
			BIO_set_retry_write(b);
		return 0;
	}
	*written = (size_t)n;
	return 1;
}

static int tls_bio_read(BIO *b, char *buf, size_t len, size_t *readbytes)
{
	struct tls_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = tls_sock_recv(c, buf, len);
	if (n <= 0) {
		if (n == -ETIMEDOUT)
			BIO_set_retry_read(b);
		return 0;
	}
	*readbytes = (size_t)n;
	return 1;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	/* Writes are unbuffered; everything else (kTLS queries, pending) is "no". */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int tls_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pvrepl socket");

	if (!m)
		return;
	if (!BIO_meth_set_write_ex(m, tls_bio_write) || !BIO_meth_set_read_ex(m, tls_bio_read) ||
	    !BIO_meth_set_ctrl(m, tls_bio_ctrl) || !BIO_meth_set_create(m, tls_bio_create)) {
		BIO_meth_free(m);
		return;
	}
	tls_bio_method = m;
}

/* ----------------------------------------------------------- file reading */

static void tls_free_secret(char *buf, size_t len)
{
	if (!buf)
		return;
	OPENSSL_cleanse(buf, len);
	free(buf);
}

/* Hint for a missing or unreadable file of a credentials directory. */
static const char *tls_file_hint(const char *name)
{
	if (!strcmp(name, TLS_CA_FILE))
		return "put the CA bundle that signs the peers there (`pvrepl certs ca` makes a "
		       "CA)";
	if (!strcmp(name, TLS_CA_KEY_FILE))
		return "give the directory made by `pvrepl certs ca`";
	return "mount the node's TLS Secret there, or make one with "
	       "`pvrepl certs issue --ca CADIR --name NAME --out DIR`";
}

int tls_read_file(const char *path, const char *name, char **out, size_t *len, char *err,
		  size_t err_len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			tls_errf(err, err_len, "%s does not exist; %s", path, tls_file_hint(name));
		else if (rc == -EACCES)
			tls_errf(err, err_len,
				 "cannot read %s: permission denied; make it readable by uid %u",
				 path, (unsigned)geteuid());
		else
			tls_errf(err, err_len, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		tls_errf(err, err_len, "cannot stat %s: %s", path, strerror(-rc));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		tls_errf(err, err_len, "%s is not a regular file; %s", path, tls_file_hint(name));
		goto close_fd;
	}
	if (st.st_size > (off_t)TLS_FILE_BYTES_MAX) {
		rc = -EINVAL;
		tls_errf(err, err_len, "%s is larger than %u bytes; is it really a PEM file?", path,
			 TLS_FILE_BYTES_MAX);
		goto close_fd;
	}
	/* Size from fstat, plus room to notice a file that grew meanwhile. */
	buf = malloc((size_t)st.st_size + 2);
	if (!buf) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "out of memory reading %s", path);
		goto close_fd;
	}
	for (;;) {
		n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			tls_errf(err, err_len, "cannot read %s: %s", path, strerror(-rc));
			goto free_buf;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > (size_t)st.st_size) {
			rc = -EAGAIN;
			tls_errf(err, err_len, "%s changed while being read; try again", path);
			goto free_buf;
		}
	}
	buf[got] = '\0';
	close(fd);
	*out = buf;
	*len = got;
	return 0;

free_buf:
	tls_free_secret(buf, (size_t)st.st_size + 2);
close_fd:
	close(fd);
	return rc;
}

int tls_parse_certs(const char *buf, size_t len, const char *path, STACK_OF(X509) * *out, char *err,
		    size_t err_len)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	char why[160];
	X509 *x;
	int rc = 0;

	if (!sk || !bio) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "out of memory parsing %s", path);
		goto out;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			rc = -ENOMEM;
			tls_errf(err, err_len, "out of memory parsing %s", path);
			goto out;
		}
	}
	/* The loop ends on "no start line" after the last certificate: that is EOF. */
	if (ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE)
		ERR_clear_error();
	if (ERR_peek_last_error()) {
		rc = -EINVAL;
		tls_errf(err, err_len, "%s holds a damaged PEM certificate (%s)", path,
			 tls_ossl_reason(why, sizeof(why)));
		goto out;
	}
	if (sk_X509_num(sk) == 0) {
		rc = -EINVAL;
		tls_errf(err, err_len,
			 "%s holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)",
			 path);
		goto out;
	}
out:
	BIO_free(bio);
	if (rc)
		sk_X509_pop_free(sk, X509_free);
	else
		*out = sk;
	return rc;
}

static int tls_no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int tls_load_certs(const char *path, const char *name, STACK_OF(X509) * *out, char *err,
			  size_t err_len)
{
	char *buf;
	size_t len;
	int rc;

	rc = tls_read_file(path, name, &buf, &len, err, err_len);
	if (rc)
		return rc;
	rc = tls_parse_certs(buf, len, path, out, err, err_len);
	free(buf);
	return rc;
}

int tls_load_key(const char *path, const char *name, EVP_PKEY **out, char *err, size_t err_len)
{
	char why[160];
	char *buf;
	size_t len;
	BIO *bio;
	int rc;

	rc = tls_read_file(path, name, &buf, &len, err, err_len);
	if (rc)
		return rc;
	bio = BIO_new_mem_buf(buf, (int)len);
	if (!bio) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "out of memory parsing %s", path);
		goto wipe;
	}
	*out = PEM_read_bio_PrivateKey(bio, NULL, tls_no_password, NULL);
	if (!*out) {
		rc = -EINVAL;
		if (!strstr(buf, "-----BEGIN ") || !strstr(buf, "PRIVATE KEY-----"))
			tls_errf(err, err_len,
				 "%s holds no PEM private key (no '-----BEGIN PRIVATE KEY-----' "
				 "line); %s",
				 path, tls_file_hint(name));
		else if (strstr(buf, "ENCRYPTED"))
			tls_errf(err, err_len,
				 "%s is encrypted; pvrepl needs an unencrypted PEM key "
				 "(the Secret's tls.key)",
				 path);
		else
			tls_errf(err, err_len, "%s holds no usable PEM private key (%s)", path,
				 tls_ossl_reason(why, sizeof(why)));
	}
	BIO_free(bio);
wipe:
	tls_free_secret(buf, len + 1);
	ERR_clear_error();
	return rc;
}

/* ------------------------------------------------------ certificate names */

/* Copies an ASN1 string if it is printable text without NULs. */
static bool tls_copy_name(const ASN1_STRING *s, char *buf, size_t len)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	if (!p || n <= 0 || (size_t)n >= len)
		return false;
	for (int i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	memcpy(buf, p, (size_t)n);
	buf[n] = '\0';
	return true;
}

/* The identity of a certificate: its first DNS SAN, else its CN; "" if neither. */
static void tls_cert_name(X509 *x, char *buf, size_t len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	X509_NAME *subj;
	X509_NAME_ENTRY *ent;
	int i;

	buf[0] = '\0';
	for (i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_DNS && tls_copy_name(g->d.dNSName, buf, len))
			break;
	}
	GENERAL_NAMES_free(gens);
	if (buf[0])
		return;
	subj = X509_get_subject_name(x);
	i = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	ent = i >= 0 ? X509_NAME_get_entry(subj, i) : NULL;
	if (!ent || !tls_copy_name(X509_NAME_ENTRY_get_data(ent), buf, len))
		buf[0] = '\0';
}

static void tls_cert_serial_hex(X509 *x, char *buf, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	tls_errf(buf, len, "%s", hex ? hex : "");
	OPENSSL_free(hex);
	BN_free(bn);
}

/* ------------------------------------------------------------- contexts */

static void tls_files_stat(const struct tls_ctx *t, struct tls_files_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	for (int i = 0; i < TLS_F_COUNT; i++) {
		if (stat(t->paths[i], &st))
			continue;
		id->f[i].present = true;
		id->f[i].dev = st.st_dev;
		id->f[i].ino = st.st_ino;
		id->f[i].size = st.st_size;
		id->f[i].mtime = st.st_mtim;
	}
}

static bool tls_files_equal(const struct tls_files_id *a, const struct tls_files_id *b)
{
	for (int i = 0; i < TLS_F_COUNT; i++) {
		const struct tls_file_id *x = &a->f[i], *y = &b->f[i];

		if (x->present != y->present || x->dev != y->dev || x->ino != y->ino ||
		    x->size != y->size || x->mtime.tv_sec != y->mtime.tv_sec ||
		    x->mtime.tv_nsec != y->mtime.tv_nsec)
			return false;
	}
	return true;
}

static int tls_verify_cb(int preverify_ok, X509_STORE_CTX *sc)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(sc);

	/* Remember whose certificate failed, for the message; on success the name
	 * is taken again from the verified certificate. */
	if (!preverify_ok && c && leaf)
		tls_cert_name(leaf, c->peer_name, sizeof(c->peer_name));
	return preverify_ok;
}

/* Checks our own certificate before we use it, so a bad file is named at load. */
static int tls_check_own_cert(const struct tls_ctx *t, SSL_CTX *ctx, X509 *leaf,
			      STACK_OF(X509) * chain, char *err, size_t err_len)
{
	const char *crt = t->paths[TLS_F_CERT], *ca = t->paths[TLS_F_CA];
	X509_STORE_CTX *sc;
	char when[64];
	int rc = 0, v;

	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
		tls_time_str(X509_get0_notAfter(leaf), when, sizeof(when));
		tls_errf(err, err_len,
			 "%s expired on %s; issue a new one (`pvrepl certs issue`) and update "
			 "the Secret",
			 crt, when);
		return -EKEYEXPIRED;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
		tls_time_str(X509_get0_notBefore(leaf), when, sizeof(when));
		tls_errf(err, err_len,
			 "%s is not valid before %s; check this machine's clock (or the issuer's)",
			 crt, when);
		return -EKEYEXPIRED;
	}
	sc = X509_STORE_CTX_new();
	if (!sc || !X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx), leaf, chain)) {
		X509_STORE_CTX_free(sc);
		tls_errf(err, err_len, "out of memory checking %s", crt);
		return -ENOMEM;
	}
	/* Our certificate must be fit for our role (extendedKeyUsage). */
	X509_STORE_CTX_set_purpose(sc,
				   t->server ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(sc) <= 0) {
		v = X509_STORE_CTX_get_error(sc);
		rc = v == X509_V_ERR_CERT_HAS_EXPIRED || v == X509_V_ERR_CERT_NOT_YET_VALID
			     ? -EKEYEXPIRED
			     : -EINVAL;
		if (v == X509_V_ERR_INVALID_PURPOSE)
			tls_errf(err, err_len,
				 "%s may not be used for TLS %s authentication (its "
				 "extendedKeyUsage lacks %s); issue it with `pvrepl certs issue`",
				 crt, t->server ? "server" : "client",
				 t->server ? "serverAuth" : "clientAuth");
		else
			tls_errf(err, err_len,
				 "%s is not signed by the CA in %s: %s (at depth %d); issue it "
				 "from that CA, or add its issuing CA to %s",
				 crt, ca, X509_verify_cert_error_string(v),
				 X509_STORE_CTX_get_error_depth(sc), ca);
	}
	X509_STORE_CTX_free(sc);
	ERR_clear_error();
	return rc;
}

/* Builds a fresh SSL_CTX from the files; *out is set only on success. */
static int tls_ctx_build(const struct tls_ctx *t, SSL_CTX **out, char *err, size_t err_len)
{
	STACK_OF(X509) *cas = NULL, *certs = NULL;
	EVP_PKEY *key = NULL;
	X509_STORE *store;
	SSL_CTX *ctx;
	char why[160];
	X509 *leaf;
	int rc, i;

	ctx = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		tls_errf(err, err_len, "cannot make a TLS context: %s",
			 tls_ossl_reason(why, sizeof(why)));
		return -ENOMEM;
	}
	/* Load and check the three files first: their messages matter most. */
	rc = tls_load_certs(t->paths[TLS_F_CA], TLS_CA_FILE, &cas, err, err_len);
	if (rc)
		goto free_ctx;
	rc = tls_load_certs(t->paths[TLS_F_CERT], TLS_CERT_FILE, &certs, err, err_len);
	if (rc)
		goto free_cas;
	rc = tls_load_key(t->paths[TLS_F_KEY], TLS_KEY_FILE, &key, err, err_len);
	if (rc)
		goto free_certs;
	leaf = sk_X509_value(certs, 0);
	if (X509_check_private_key(leaf, key) != 1) {
		rc = -EINVAL;
		tls_errf(err, err_len,
			 "%s does not match the certificate in %s; install the key and the "
			 "certificate of the same `pvrepl certs issue` (or Secret) together",
			 t->paths[TLS_F_KEY], t->paths[TLS_F_CERT]);
		goto free_key;
	}
	store = SSL_CTX_get_cert_store(ctx);
	for (i = 0; i < sk_X509_num(cas); i++) {
		if (!X509_STORE_add_cert(store, sk_X509_value(cas, i))) {
			rc = -EINVAL;
			tls_errf(err, err_len, "cannot use certificate %d of %s: %s", i + 1,
				 t->paths[TLS_F_CA], tls_ossl_reason(why, sizeof(why)));
			goto free_key;
		}
	}
	if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		rc = -EINVAL;
		tls_errf(err, err_len, "cannot use %s with %s: %s", t->paths[TLS_F_CERT],
			 t->paths[TLS_F_KEY], tls_ossl_reason(why, sizeof(why)));
		goto free_key;
	}
	for (i = 1; i < sk_X509_num(certs); i++) {
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i)) != 1) {
			rc = -ENOMEM;
			tls_errf(err, err_len, "cannot use the chain in %s: %s",
				 t->paths[TLS_F_CERT], tls_ossl_reason(why, sizeof(why)));
			goto free_key;
		}
	}
	rc = tls_check_own_cert(t, ctx, leaf, certs, err, err_len);
	if (rc)
		goto free_key;

	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERSUITES) != 1) {
		rc = -EINVAL;
		tls_errf(err, err_len, "this OpenSSL cannot do TLS 1.3 with AES-GCM: %s",
			 tls_ossl_reason(why, sizeof(why)));
		goto free_key;
	}
	/* No tickets, no resumption: every connection verifies a certificate against
	 * the CA loaded now, and a reload cannot be bypassed by an old session. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (t->server)
		SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_AHEAD_BYTES);
	SSL_CTX_set_verify(ctx,
			   t->server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
				     : SSL_VERIFY_PEER,
			   tls_verify_cb);
	*out = ctx;
	ctx = NULL;
	rc = 0;
free_key:
	EVP_PKEY_free(key);
free_certs:
	sk_X509_pop_free(certs, X509_free);
free_cas:
	sk_X509_pop_free(cas, X509_free);
free_ctx:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int tls_ctx_new(struct tls_ctx **out, const struct tls_config *cfg, char *err, size_t err_len)
{
	unsigned char addr[sizeof(struct in6_addr)];
	struct tls_ctx *t;
	int rc;

	ASSERT(out);
	ASSERT(cfg);
	*out = NULL;
	pthread_once(&tls_bio_once, tls_bio_method_init);
	if (!tls_bio_method) {
		tls_errf(err, err_len, "cannot initialise OpenSSL");
		return -ENOMEM;
	}
	if (!cfg->insecure_plaintext && (!cfg->dir || !*cfg->dir)) {
		tls_errf(err, err_len,
			 "TLS needs a directory with tls.crt, tls.key and ca.crt "
			 "(or --insecure-plaintext)");
		return -EINVAL;
	}
	if (!cfg->insecure_plaintext && !cfg->server && (!cfg->server_name || !*cfg->server_name)) {
		tls_errf(err, err_len,
			 "a TLS client needs the receiver's name (--server-name) to check its "
			 "certificate");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto oom;
	t->server = cfg->server;
	t->insecure_plaintext = cfg->insecure_plaintext;
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		goto oom;
	}
	if (cfg->dir && !(t->dir = strdup(cfg->dir)))
		goto oom_free;
	if (!cfg->server && cfg->server_name && !(t->server_name = strdup(cfg->server_name)))
		goto oom_free;
	if (t->server_name)
		t->server_name_is_ip = inet_pton(AF_INET, t->server_name, addr) == 1 ||
				       inet_pton(AF_INET6, t->server_name, addr) == 1;
	if (t->insecure_plaintext) {
		*out = t;
		return 0;
	}
	for (int i = 0; i < TLS_F_COUNT; i++) {
		if ((size_t)snprintf(t->paths[i], sizeof(t->paths[i]), "%s/%s", t->dir,
				     tls_file_names[i]) >= sizeof(t->paths[i])) {
			tls_errf(err, err_len, "the directory name %s is too long", t->dir);
			rc = -ENAMETOOLONG;
			goto free_t;
		}
	}
	/* Stat before reading: a change during the load is seen by the next check. */
	tls_files_stat(t, &t->loaded);
	rc = tls_ctx_build(t, &t->ssl_ctx, err, err_len);
	if (rc)
		goto free_t;
	*out = t;
	return 0;

oom_free:
	rc = -ENOMEM;
	tls_errf(err, err_len, "out of memory");
free_t:
	tls_ctx_free(t);
	return rc;
oom:
	tls_errf(err, err_len, "out of memory");
	return -ENOMEM;
}

void tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ssl_ctx);
	pthread_mutex_destroy(&t->lock);
	free(t->dir);
	free(t->server_name);
	free(t);
}

int tls_ctx_maybe_reload(struct tls_ctx *t, bool *reloaded, char *err, size_t err_len)
{
	struct tls_files_id now;
	char msg[TLS_ERR_BYTES];
	SSL_CTX *fresh = NULL;
	int rc = 0;

	ASSERT(t);
	if (reloaded)
		*reloaded = false;
	if (t->insecure_plaintext)
		return 0;
	pthread_mutex_lock(&t->lock);
	tls_files_stat(t, &now);
	if (tls_files_equal(&now, &t->loaded))
		goto unlock;
	if (t->failed_valid && tls_files_equal(&now, &t->failed)) {
		rc = t->failed_rc;
		tls_errf(err, err_len, "%s", t->failed_err);
		goto unlock;
	}
	rc = tls_ctx_build(t, &fresh, msg, sizeof(msg));
	if (rc) {
		t->failed = now;
		t->failed_valid = true;
		t->failed_rc = rc;
		tls_errf(t->failed_err, sizeof(t->failed_err),
			 "new TLS files refused, still using the ones loaded before: %s", msg);
		tls_errf(err, err_len, "%s", t->failed_err);
		goto unlock;
	}
	/* Live connections hold their own reference to the old SSL_CTX. */
	SSL_CTX_free(t->ssl_ctx);
	t->ssl_ctx = fresh;
	t->loaded = now;
	t->failed_valid = false;
	if (reloaded)
		*reloaded = true;
unlock:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* ---------------------------------------------------------- connections */

/* Why the handshake or the stream failed, for an OpenSSL reason code. */
static void tls_describe_reason(struct tls_conn *c, int reason, char *buf, size_t len)
{
	const struct tls_ctx *t = c->hs_ctx;
	const char *ca = t ? t->paths[TLS_F_CA] : "ca.crt";
	const char *r = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason));
	long v;

	if (!r)
		r = "unknown TLS error";
	switch (reason) {
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		v = SSL_get_verify_result(c->ssl);
		if (!c->server && t &&
		    (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH))
			tls_errf(
				buf, len,
				"the receiver's certificate is for '%s', not '%s' (--server-name): "
				"%s",
				c->peer_name, t->server_name, X509_verify_cert_error_string(v));
		else if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
			 v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
			 v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
			 v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
			 v == X509_V_ERR_CERT_SIGNATURE_FAILURE)
			tls_errf(buf, len,
				 "the peer's certificate ('%s') is not issued by a CA in %s (%s); "
				 "issue it from that CA or add its CA to the bundle",
				 c->peer_name, ca, X509_verify_cert_error_string(v));
		else if (v == X509_V_ERR_INVALID_PURPOSE)
			tls_errf(
				buf, len,
				"the peer's certificate ('%s') may not be used for this side of TLS "
				"(%s): a sender's needs clientAuth in its extendedKeyUsage, a "
				"receiver's serverAuth; issue it with `pvrepl certs issue`",
				c->peer_name, X509_verify_cert_error_string(v));
		else
			tls_errf(buf, len,
				 "the peer's certificate ('%s') was refused: %s; it must be issued "
				 "by a CA in %s and be valid now",
				 c->peer_name, X509_verify_cert_error_string(v), ca);
		break;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		tls_errf(buf, len,
			 "the peer sent no certificate; pvrepl requires mutual TLS (the sender "
			 "needs its own tls.crt and tls.key)");
		break;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		tls_errf(buf, len, "the peer does not speak TLS 1.3, which pvrepl requires (%s)",
			 r);
		break;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
		tls_errf(buf, len,
			 "the peer is not speaking TLS; is it running with --insecure-plaintext? "
			 "(%s)",
			 r);
		break;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		tls_errf(buf, len,
			 "the peer requires a client certificate and got none (%s); give this "
			 "side a tls.crt and tls.key",
			 r);
		break;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
		tls_errf(buf, len,
			 "the peer refused our certificate (%s); is our tls.crt issued by the CA "
			 "the peer trusts, valid now, and named as the peer expects?",
			 r);
		break;
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
		tls_errf(buf, len,
			 "the peer aborted the handshake (%s); its log says why (often: our "
			 "certificate's name is not the one it expects)",
			 r);
		break;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		tls_errf(buf, len, "the peer closed the connection without a TLS close_notify");
		break;
	default:
		tls_errf(buf, len, "%s", r);
		break;
	}
}

static bool tls_reason_is_cert_refusal(int reason)
{
	switch (reason) {
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		return true;
	default:
		return false;
	}
}

/* Marks c broken for good; later calls return rc. */
static int tls_conn_fatal(struct tls_conn *c, int rc)
{
	c->fatal = true;
	c->fatal_rc = rc;
	return rc;
}

/*
 * Turns a failed SSL call into -errno and a message in c->err. op names what was
 * being done ("TLS handshake", "read", "write").
 */
static int tls_conn_ssl_fail(struct tls_conn *c, int ret, const char *op)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long code;
	char why[TLS_ERR_BYTES - 64];
	const char *mode_hint = !c->handshake_done
					? "; if the peer runs with --insecure-plaintext, so "
					  "must this side (or neither)"
					: "";

	if (c->server && !c->handshake_done && c->first_seen &&
	    c->first_byte != TLS_RECORD_HANDSHAKE) {
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err),
			 "%s failed: the peer is not speaking TLS; is it running with "
			 "--insecure-plaintext?",
			 op);
		return tls_conn_fatal(c, -EPROTO);
	}
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		/* Blocking socket: only SO_RCVTIMEO/SO_SNDTIMEO gets us here. */
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err), "%s timed out waiting for the peer", op);
		/* A read that timed out consumed nothing: the stream stays usable. A
		 * timed-out write or handshake left a record half-sent. */
		if (e == SSL_ERROR_WANT_WRITE || !c->handshake_done)
			return tls_conn_fatal(c, -ETIMEDOUT);
		return -ETIMEDOUT;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err), "%s: the peer closed the connection", op);
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
	case SSL_ERROR_SSL:
		break;
	default:
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err), "%s failed: OpenSSL error %d", op, e);
		return tls_conn_fatal(c, -EPROTO);
	}
	if (c->io_errno && c->io_errno != ETIMEDOUT) {
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err), "%s failed: %s%s", op, strerror(c->io_errno),
			 c->io_errno == ECONNRESET || c->io_errno == EPIPE ? mode_hint : "");
		return tls_conn_fatal(c, -c->io_errno);
	}
	code = ERR_peek_last_error();
	if (e == SSL_ERROR_SYSCALL || ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err),
			 "%s failed: the peer closed the connection without a TLS close_notify%s",
			 op, mode_hint);
		return tls_conn_fatal(c, -ECONNRESET);
	}
	tls_describe_reason(c, ERR_GET_REASON(code), why, sizeof(why));
	ERR_clear_error();
	tls_errf(c->err, sizeof(c->err), "%s failed: %s", op, why);
	/* The peer refused our certificate: a permission problem (exit 77), not a
	 * protocol one. */
	return tls_conn_fatal(c,
			      tls_reason_is_cert_refusal(ERR_GET_REASON(code)) ? -EACCES : -EPROTO);
}

static int tls_conn_open(struct tls_ctx *t, int fd, bool server, struct tls_conn **out, char *err,
			 size_t err_len)
{
	char reload_err[TLS_ERR_BYTES];
	struct tls_conn *c;
	SSL_CTX *ssl_ctx;
	BIO *bio;
	int rc, ret;

	ASSERT(t);
	ASSERT(out);
	ASSERT(fd >= 0);
	ASSERT(t->server == server);
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		tls_errf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	c->server = server;
	c->insecure = t->insecure_plaintext;
	if (c->insecure) {
		c->handshake_done = true;
		*out = c;
		return 0;
	}
	/* A failed reload keeps the previous context; the caller's periodic
	 * tls_ctx_maybe_reload reports it. */
	(void)tls_ctx_maybe_reload(t, NULL, reload_err, sizeof(reload_err));
	pthread_mutex_lock(&t->lock);
	ssl_ctx = t->ssl_ctx;
	SSL_CTX_up_ref(ssl_ctx);
	pthread_mutex_unlock(&t->lock);
	c->ssl = SSL_new(ssl_ctx);
	SSL_CTX_free(ssl_ctx); /* the SSL holds its own reference */
	bio = c->ssl ? BIO_new(tls_bio_method) : NULL;
	if (!bio) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "out of memory");
		goto free_c;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	if (!server) {
		if (t->server_name_is_ip)
			ret = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), t->server_name);
		else
			ret = SSL_set_tlsext_host_name(c->ssl, t->server_name) == 1 &&
			      SSL_set1_host(c->ssl, t->server_name) == 1;
		if (!ret) {
			rc = -EINVAL;
			tls_errf(err, err_len, "cannot use '%s' as the server name",
				 t->server_name);
			goto free_c;
		}
	}
	c->hs_ctx = t;
	ERR_clear_error();
	ret = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
	if (ret != 1) {
		rc = tls_conn_ssl_fail(c, ret, "TLS handshake");
		tls_errf(err, err_len, "%s", c->err);
		goto free_c;
	}
	c->hs_ctx = NULL;
	c->handshake_done = true;
	c->err[0] = '\0';
	{
		X509 *peer = SSL_get0_peer_certificate(c->ssl);

		/* Both sides require a verified certificate, so this holds. */
		ASSERT(peer);
		tls_cert_name(peer, c->peer_name, sizeof(c->peer_name));
		tls_cert_serial_hex(peer, c->peer_serial, sizeof(c->peer_serial));
	}
	*out = c;
	return 0;

free_c:
	/* The fd stays the caller's on failure. */
	SSL_free(c->ssl);
	free(c);
	ERR_clear_error();
	return rc;
}

int tls_accept(struct tls_ctx *t, int fd, struct tls_conn **out, char *err, size_t err_len)
{
	return tls_conn_open(t, fd, true, out, err, err_len);
}

int tls_connect(struct tls_ctx *t, int fd, struct tls_conn **out, char *err, size_t err_len)
{
	return tls_conn_open(t, fd, false, out, err, err_len);
}

const char *tls_conn_peer_name(const struct tls_conn *c)
{
	ASSERT(c);
	return c->insecure ? NULL : c->peer_name;
}

const char *tls_conn_peer_serial(const struct tls_conn *c)
{
	ASSERT(c);
	return c->insecure ? NULL : c->peer_serial;
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	ASSERT(c);
	return c->insecure ? "plaintext" : SSL_get_cipher_name(c->ssl);
}

bool tls_conn_readable(struct tls_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	ASSERT(c);
	if (c->fatal)
		return false;
	if (!c->insecure && SSL_pending(c->ssl) > 0)
		return true;
	return poll(&p, 1, 0) == 1;
}

void tls_conn_linger(struct tls_conn *c, unsigned ms)
{
	double until = clock_mono_s() + ms / 1e3;
	char buf[16384];

	ASSERT(c);
	if (c->fd < 0)
		return;
	shutdown(c->fd, SHUT_WR);
	for (;;) {
		double left = until - clock_mono_s();
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)(left * 1e3) + 1) <= 0)
			break;
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
	/* The TLS stream is out of step now: nothing more through it. */
	c->fatal = true;
	c->fatal_rc = -EPIPE;
}

const char *tls_conn_err(const struct tls_conn *c)
{
	ASSERT(c);
	return c->err;
}

uint64_t tls_conn_wire_bytes_sent(const struct tls_conn *c)
{
	ASSERT(c);
	return __atomic_load_n(&c->wire_sent_bytes, __ATOMIC_RELAXED);
}

uint64_t tls_conn_wire_bytes_received(const struct tls_conn *c)
{
	ASSERT(c);
	return __atomic_load_n(&c->wire_received_bytes, __ATOMIC_RELAXED);
}

static int tls_plain_write_all(struct tls_conn *c, const uint8_t *p, size_t len)
{
	ssize_t n;

	while (len) {
		n = tls_sock_send(c, p, len);
		if (n < 0) {
			tls_errf(c->err, sizeof(c->err), "write failed: %s",
				 n == -ETIMEDOUT ? "timed out waiting for the peer"
						 : strerror((int)-n));
			return tls_conn_fatal(c, (int)n);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Plaintext read: the first bytes tell a TLS peer from a plaintext one. */
static ssize_t tls_plain_read_some(struct tls_conn *c, void *buf, size_t len)
{
	bool first = !c->first_seen;
	ssize_t n = tls_sock_recv(c, buf, len);

	if (n == -ETIMEDOUT) {
		tls_errf(c->err, sizeof(c->err), "read timed out waiting for the peer");
		return n;
	}
	if (n < 0) {
		tls_errf(c->err, sizeof(c->err), "read failed: %s%s", strerror((int)-n),
			 first ? "; if the peer requires TLS, drop --insecure-plaintext here" : "");
		return tls_conn_fatal(c, (int)n);
	}
	if (n == 0 && first) {
		tls_errf(c->err, sizeof(c->err),
			 "the peer closed the connection before sending anything; if it requires "
			 "TLS, drop --insecure-plaintext here");
		return tls_conn_fatal(c, -ECONNRESET);
	}
	if (n > 0 && first &&
	    (c->first_byte == TLS_RECORD_HANDSHAKE || c->first_byte == TLS_RECORD_ALERT) &&
	    (n < 2 || ((const uint8_t *)buf)[1] == 0x03)) {
		tls_errf(c->err, sizeof(c->err),
			 "the peer is speaking TLS but this side runs with --insecure-plaintext; "
			 "use the same mode on both sides");
		return tls_conn_fatal(c, -EPROTO);
	}
	return n;
}

int tls_conn_write_all(struct tls_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n;
	int ret;

	ASSERT(c);
	ASSERT(buf || !len);
	if (c->fatal)
		return c->fatal_rc;
	if (c->insecure)
		return tls_plain_write_all(c, p, len);
	while (len) {
		c->io_errno = 0;
		ERR_clear_error();
		/* One call per frame: OpenSSL cuts it into 16 KiB records and loops. */
		ret = SSL_write_ex(c->ssl, p, len, &n);
		if (ret != 1)
			return tls_conn_ssl_fail(c, ret, "write");
		p += n;
		len -= n;
		c->since_key_update_bytes += n;
	}
	/* Rekey well before the AES-GCM record limit of one key (RFC 8446 5.5); the
	 * KeyUpdate goes out with the next record. */
	if (c->since_key_update_bytes >= TLS_KEY_UPDATE_BYTES) {
		if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1)
			c->since_key_update_bytes = 0;
		ERR_clear_error();
	}
	return 0;
}

ssize_t tls_conn_read_some(struct tls_conn *c, void *buf, size_t len)
{
	size_t n;
	int ret;

	ASSERT(c);
	ASSERT(buf);
	ASSERT(len > 0);
	if (c->fatal)
		return c->fatal_rc;
	if (len > INT_MAX)
		len = INT_MAX;
	if (c->insecure)
		return tls_plain_read_some(c, buf, len);
	c->io_errno = 0;
	ERR_clear_error();
	ret = SSL_read_ex(c->ssl, buf, len, &n);
	if (ret == 1)
		return (ssize_t)n;
	if (SSL_get_error(c->ssl, ret) == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		tls_errf(c->err, sizeof(c->err), "the peer closed the connection (close_notify)");
		return 0;
	}
	return tls_conn_ssl_fail(c, ret, "read");
}

int tls_conn_read_full(struct tls_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t n;

	ASSERT(c);
	ASSERT(buf || !len);
	while (got < len) {
		n = tls_conn_read_some(c, p + got, len - got);
		if (n == 0) {
			tls_errf(c->err, sizeof(c->err),
				 "the peer closed the connection cleanly after %zu of %zu bytes",
				 got, len);
			return tls_conn_fatal(c, -ECONNRESET);
		}
		if (n < 0) {
			/* Part of the message is gone: the stream cannot be resumed. */
			if (got && !c->fatal)
				tls_conn_fatal(c, (int)n);
			return (int)n;
		}
		got += (size_t)n;
	}
	return 0;
}

void tls_conn_close(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* One close_notify, not waiting for the peer's: the stream is done. */
		if (c->handshake_done && !c->fatal) {
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	close(c->fd);
	free(c);
}

/* --------------------------------------------------- certificate files */

int tls_cert_expiry(const char *cert_path, int64_t *not_after_unix, char *err, size_t err_len)
{
	STACK_OF(X509) * certs;
	struct tm tm;
	int rc;

	ASSERT(cert_path);
	ASSERT(not_after_unix);
	rc = tls_load_certs(cert_path, TLS_CERT_FILE, &certs, err, err_len);
	if (rc)
		return rc;
	if (!ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(certs, 0)), &tm)) {
		tls_errf(err, err_len, "%s has an unreadable expiry date", cert_path);
		rc = -EINVAL;
	} else {
		*not_after_unix = (int64_t)timegm(&tm);
	}
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return rc;
}

void tls_thread_stop(void)
{
	OPENSSL_thread_stop();
}

int tls_dir_cert_expiry(const char *tls_dir, int64_t *not_after_unix)
{
	char path[4096], err[256];

	if (!tls_dir)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/%s", tls_dir, TLS_CERT_FILE);
	return tls_cert_expiry(path, not_after_unix, err, sizeof(err));
}
