// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of tls: certificates made with tls_ca_create / tls_cert_issue into a
 * temp dir, then real handshakes between a server in a thread and a client in the
 * main thread over socketpair(AF_UNIX) (or loopback TCP where the openssl CLI is
 * the client): mutual authentication and 20 MiB both ways with the data checked,
 * peer names and wire byte counters; a client certificate of another CA, a server
 * with the wrong name, a client without a certificate, a TLS 1.2-only client, a
 * plaintext client against TLS and TLS against plaintext, each refused with the
 * reason in the message; read timeouts; certificate reload (the next connection
 * presents the new certificate, broken files keep the old one); load errors
 * naming the file; and the overwrite rules of certificate generation.
 *
 * Assertions run only in the main thread (cmocka is not thread-safe): threads
 * record results, the main thread checks them after the join.
 *
 * PVREPL_TLS_BENCH_BYTES=<n> also times a one-way transfer of n bytes over
 * loopback TCP with TLS and in plaintext (printed, never asserted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pvrepl_assert.h"
#include "testutil.h"
#include "tls.h"
#include "tls_issue.h"

#define BIG_BYTES	(20u << 20)
#define FRAME_BYTES_MAX (8u << 20)
#define IO_TIMEOUT_MS	10000
#define GREETING	"hello-from-server"
#define GREETING_BYTES	(sizeof(GREETING) - 1)
#define REPLY		"reply-from-client"
#define REPLY_BYTES	(sizeof(REPLY) - 1)
#define SEED_TO_SERVER	0x1111
#define SEED_TO_CLIENT	0x2222

static char root[TU_PATH_MAX];
static char dir_ca[TU_PATH_MAX], dir_ca2[TU_PATH_MAX];
static char dir_srv[TU_PATH_MAX], dir_cli[TU_PATH_MAX], dir_other[TU_PATH_MAX];
static char dir_cli_ca2[TU_PATH_MAX];

enum work {
	WORK_NONE = 0,
	WORK_PING,	   /* server sends GREETING, client answers REPLY */
	WORK_BIG,	   /* BIG_BYTES client->server, then server->client */
	WORK_PLAIN_HELLO,  /* client: send protocol-looking bytes, then read */
	WORK_READ,	   /* server: read a few bytes (plaintext server vs TLS client) */
	WORK_SLOW_GREETING /* server: wait, then send GREETING */
};

struct side {
	struct tls_ctx *ctx;
	bool server;
	int fd;
	enum work work;
	size_t big_bytes;
	/* results */
	int hs_rc;
	char hs_err[TLS_ERR_BYTES];
	struct tls_conn *conn;
	int io_rc;
	char io_err[TLS_ERR_BYTES];
	long mismatch;	/* -1 when the received data was right */
	int timeout_rc; /* WORK_SLOW_GREETING, client: the first, timed-out read */
};

/* ------------------------------------------------------------- helpers */

static void set_timeouts(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	ASSERT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	ASSERT(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
}

static void path_join(char *out, const char *a, const char *b)
{
	ASSERT((size_t)snprintf(out, TU_PATH_MAX, "%s/%s", a, b) < TU_PATH_MAX);
}

static struct tls_ctx *make_ctx(const char *dir, bool server, const char *server_name,
				bool insecure)
{
	struct tls_config cfg = { .dir = dir,
				  .server = server,
				  .server_name = server_name,
				  .insecure_plaintext = insecure };
	char err[TLS_ERR_BYTES] = "";
	struct tls_ctx *ctx = NULL;
	int rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));

	if (rc)
		fprintf(stderr, "tls_ctx_new(%s): %s\n", dir ? dir : "-", err);
	assert_int_equal(rc, 0);
	return ctx;
}

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	if (fwrite(data, 1, len, f) != len) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) ? -errno : 0;
}

static int copy_file(const char *from, const char *to)
{
	static char buf[1 << 16];
	FILE *f = fopen(from, "r");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return write_file(to, buf, n);
}

/* Appends file b to file a. */
static int append_file(const char *a, const char *b)
{
	static char buf[1 << 16];
	FILE *f = fopen(b, "r"), *g;
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	g = fopen(a, "a");
	if (!g)
		return -errno;
	fwrite(buf, 1, n, g);
	return fclose(g) ? -errno : 0;
}

/* Copies the three files of a credentials dir into a new dir. */
static void copy_creds(const char *from, const char *to)
{
	static const char *const names[] = { TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE };
	char a[TU_PATH_MAX], b[TU_PATH_MAX];

	assert_int_equal(mkdir(to, 0700), 0);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		path_join(a, from, names[i]);
		path_join(b, to, names[i]);
		assert_int_equal(copy_file(a, b), 0);
	}
}

/* Replaces dir/name by src the way a Secret update does: a new inode, renamed in. */
static void replace_file(const char *dir, const char *name, const char *src)
{
	char tmp[TU_PATH_MAX], dst[TU_PATH_MAX];

	path_join(tmp, dir, ".replace.tmp");
	path_join(dst, dir, name);
	assert_int_equal(copy_file(src, tmp), 0);
	assert_int_equal(rename(tmp, dst), 0);
}

static void issue(const char *name, const char *ca, const char *out)
{
	char err[TLS_ERR_BYTES] = "";
	int rc = tls_cert_issue(ca, name, out, TLS_CERT_DAYS_DEFAULT, false, err, sizeof(err));

	if (rc)
		fprintf(stderr, "tls_cert_issue: %s\n", err);
	assert_int_equal(rc, 0);
}

static void side_work(struct side *s)
{
	char buf[64];
	uint8_t *big;
	size_t n = s->big_bytes, off;

	switch (s->work) {
	case WORK_NONE:
		break;
	case WORK_PING:
		if (s->server) {
			s->io_rc = tls_conn_write_all(s->conn, GREETING, GREETING_BYTES);
			if (!s->io_rc)
				s->io_rc = tls_conn_read_full(s->conn, buf, REPLY_BYTES);
			if (!s->io_rc)
				s->mismatch = memcmp(buf, REPLY, REPLY_BYTES) ? 0 : -1;
		} else {
			s->io_rc = tls_conn_read_full(s->conn, buf, GREETING_BYTES);
			if (!s->io_rc)
				s->mismatch = memcmp(buf, GREETING, GREETING_BYTES) ? 0 : -1;
			if (!s->io_rc)
				s->io_rc = tls_conn_write_all(s->conn, REPLY, REPLY_BYTES);
		}
		break;
	case WORK_BIG:
		big = malloc(n);
		ASSERT(big);
		s->mismatch = -1;
		if (s->server) {
			/* Odd read sizes: records and reads need not line up. */
			for (off = 0; off < n && !s->io_rc;) {
				size_t len = n - off < 777777 ? n - off : 777777;

				s->io_rc = tls_conn_read_full(s->conn, big + off, len);
				off += len;
			}
			if (!s->io_rc)
				s->mismatch = tu_pattern_mismatch(big, n, 0, SEED_TO_SERVER);
			tu_pattern_fill(big, n, 0, SEED_TO_CLIENT);
			for (off = 0; off < n && !s->io_rc;) {
				size_t len = n - off < FRAME_BYTES_MAX ? n - off : FRAME_BYTES_MAX;

				s->io_rc = tls_conn_write_all(s->conn, big + off, len);
				off += len;
			}
		} else {
			tu_pattern_fill(big, n, 0, SEED_TO_SERVER);
			for (off = 0; off < n && !s->io_rc;) {
				size_t len = n - off < FRAME_BYTES_MAX ? n - off : FRAME_BYTES_MAX;

				s->io_rc = tls_conn_write_all(s->conn, big + off, len);
				off += len;
			}
			memset(big, 0, n);
			for (off = 0; off < n && !s->io_rc;) {
				ssize_t got = tls_conn_read_some(s->conn, big + off, n - off);

				if (got <= 0)
					s->io_rc = got ? (int)got : -ECONNRESET;
				else
					off += (size_t)got;
			}
			if (!s->io_rc)
				s->mismatch = tu_pattern_mismatch(big, n, 0, SEED_TO_CLIENT);
		}
		free(big);
		break;
	case WORK_PLAIN_HELLO:
		memset(buf, 0, sizeof(buf));
		memcpy(buf, "PVRP", 4);
		s->io_rc = tls_conn_write_all(s->conn, buf, sizeof(buf));
		if (!s->io_rc)
			s->io_rc = tls_conn_read_full(s->conn, buf, 32);
		break;
	case WORK_READ:
		s->io_rc = tls_conn_read_full(s->conn, buf, 16);
		break;
	case WORK_SLOW_GREETING:
		if (s->server) {
			usleep(600 * 1000);
			s->io_rc = tls_conn_write_all(s->conn, GREETING, GREETING_BYTES);
		}
		break;
	}
	if (s->io_rc)
		snprintf(s->io_err, sizeof(s->io_err), "%s", tls_conn_err(s->conn));
}

static void side_run(struct side *s)
{
	s->mismatch = 0;
	s->hs_rc = s->server ? tls_accept(s->ctx, s->fd, &s->conn, s->hs_err, sizeof(s->hs_err))
			     : tls_connect(s->ctx, s->fd, &s->conn, s->hs_err, sizeof(s->hs_err));
	if (s->hs_rc) {
		/* The fd stays ours on failure: close it so the peer sees the end. */
		close(s->fd);
		s->fd = -1;
		return;
	}
	side_work(s);
	if (s->io_rc && s->server) {
		/* Let a client blocked on us see the end. */
		tls_conn_close(s->conn);
		s->conn = NULL;
	}
}

static void *side_thread(void *arg)
{
	side_run(arg);
	return NULL;
}

/* Runs srv in a thread and cli here over a socketpair; both conns stay open. */
static void run_pair(struct side *srv, struct side *cli)
{
	int sv[2];
	pthread_t th;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	set_timeouts(sv[0], IO_TIMEOUT_MS);
	set_timeouts(sv[1], IO_TIMEOUT_MS);
	srv->server = true;
	srv->fd = sv[0];
	cli->server = false;
	cli->fd = sv[1];
	assert_int_equal(pthread_create(&th, NULL, side_thread, srv), 0);
	side_run(cli);
	if (!cli->hs_rc && cli->io_rc) {
		/* Let a server blocked on us see the end. */
		tls_conn_close(cli->conn);
		cli->conn = NULL;
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	fprintf(stderr, "server: hs %d '%s' io %d '%s'\nclient: hs %d '%s' io %d '%s'\n",
		srv->hs_rc, srv->hs_err, srv->io_rc, srv->io_err, cli->hs_rc, cli->hs_err,
		cli->io_rc, cli->io_err);
}

static void close_pair(struct side *srv, struct side *cli)
{
	tls_conn_close(cli->conn);
	tls_conn_close(srv->conn);
	cli->conn = srv->conn = NULL;
}

/* Connects and returns the serial the client saw of the server's certificate. */
static void connect_serial(struct tls_ctx *srv_ctx, struct tls_ctx *cli_ctx, char *serial,
			   size_t len)
{
	struct side srv = { .ctx = srv_ctx, .work = WORK_PING };
	struct side cli = { .ctx = cli_ctx, .work = WORK_PING };

	run_pair(&srv, &cli);
	assert_int_equal(srv.hs_rc, 0);
	assert_int_equal(cli.hs_rc, 0);
	assert_int_equal(cli.io_rc, 0);
	assert_int_equal(srv.io_rc, 0);
	assert_string_equal(tls_conn_peer_name(cli.conn), "receiver");
	snprintf(serial, len, "%s", tls_conn_peer_serial(cli.conn));
	close_pair(&srv, &cli);
}

/* ---------------------------------------------------------- TCP helpers */

static int tcp_listen(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ASSERT(fd >= 0);
	ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ASSERT(listen(fd, 4) == 0);
	ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

struct tcp_server {
	int listen_fd;
	struct side side;
};

static void *tcp_server_thread(void *arg)
{
	struct tcp_server *t = arg;
	int fd = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		t->side.hs_rc = -errno;
		return NULL;
	}
	set_timeouts(fd, IO_TIMEOUT_MS);
	t->side.server = true;
	t->side.fd = fd;
	side_run(&t->side);
	return NULL;
}

/* The openssl CLI as client against our server; returns the server's side. */
static void run_s_client(struct tls_ctx *srv_ctx, const char *client_args, struct side *out)
{
	struct tcp_server t = { .side = { .ctx = srv_ctx, .work = WORK_NONE } };
	pthread_t th;
	int port, rc;
	char ca[TU_PATH_MAX];

	tu_require_prog("openssl");
	path_join(ca, dir_ca, TLS_CA_FILE);
	t.listen_fd = tcp_listen(&port);
	assert_int_equal(pthread_create(&th, NULL, tcp_server_thread, &t), 0);
	rc = tu_run("openssl s_client -connect 127.0.0.1:%d -servername receiver -CAfile %s %s "
		    "</dev/null",
		    port, ca, client_args);
	(void)rc; /* the server's view is what we check */
	assert_int_equal(pthread_join(th, NULL), 0);
	close(t.listen_fd);
	fprintf(stderr, "server: hs %d '%s'\n", t.side.hs_rc, t.side.hs_err);
	*out = t.side;
}

/* ----------------------------------------------------------------- tests */

static int setup(void **state)
{
	char err[TLS_ERR_BYTES] = "";
	char a[TU_PATH_MAX], b[TU_PATH_MAX];

	(void)state;
	if (tu_tmpdir(root, sizeof(root)))
		return -1;
	path_join(dir_ca, root, "ca");
	path_join(dir_ca2, root, "ca2");
	path_join(dir_srv, root, "srv");
	path_join(dir_cli, root, "cli");
	path_join(dir_other, root, "other");
	path_join(dir_cli_ca2, root, "cli-ca2");
	if (tls_ca_create(dir_ca, false, err, sizeof(err)) ||
	    tls_ca_create(dir_ca2, false, err, sizeof(err)) ||
	    tls_cert_issue(dir_ca, "receiver", dir_srv, 30, false, err, sizeof(err)) ||
	    tls_cert_issue(dir_ca, "sender", dir_cli, 30, false, err, sizeof(err)) ||
	    tls_cert_issue(dir_ca, "other", dir_other, 30, false, err, sizeof(err)) ||
	    tls_cert_issue(dir_ca2, "sender", dir_cli_ca2, 30, false, err, sizeof(err))) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	/* The other-CA client trusts the right CA (so it accepts the server) and its
	 * own (so its certificate passes the load check): a bundle. */
	path_join(a, dir_cli_ca2, TLS_CA_FILE);
	path_join(b, dir_ca, TLS_CA_FILE);
	return append_file(a, b) ? -1 : 0;
}

static void test_handshake_and_transfer(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	struct tls_ctx *cctx = make_ctx(dir_cli, false, "receiver", false);
	struct side srv = { .ctx = sctx, .work = WORK_BIG, .big_bytes = BIG_BYTES };
	struct side cli = { .ctx = cctx, .work = WORK_BIG, .big_bytes = BIG_BYTES };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(srv.hs_rc, 0);
	assert_int_equal(cli.hs_rc, 0);
	assert_int_equal(srv.io_rc, 0);
	assert_int_equal(cli.io_rc, 0);
	assert_int_equal(srv.mismatch, -1);
	assert_int_equal(cli.mismatch, -1);
	assert_string_equal(tls_conn_peer_name(srv.conn), "sender");
	assert_string_equal(tls_conn_peer_name(cli.conn), "receiver");
	assert_string_equal(tls_conn_cipher(cli.conn), "TLS_AES_128_GCM_SHA256");
	assert_true(strlen(tls_conn_peer_serial(srv.conn)) >= 30);
	/* Wire bytes: payload plus records and handshake, and both ends agree. */
	assert_true(tls_conn_wire_bytes_sent(cli.conn) > BIG_BYTES);
	assert_true(tls_conn_wire_bytes_received(cli.conn) > BIG_BYTES);
	assert_true(tls_conn_wire_bytes_sent(srv.conn) > BIG_BYTES);
	assert_true(tls_conn_wire_bytes_sent(cli.conn) < BIG_BYTES + BIG_BYTES / 50);
	assert_int_equal(tls_conn_wire_bytes_sent(cli.conn),
			 tls_conn_wire_bytes_received(srv.conn));
	assert_int_equal(tls_conn_wire_bytes_sent(srv.conn),
			 tls_conn_wire_bytes_received(cli.conn));
	/* After the client's close_notify the server reads a clean end. */
	{
		char b;

		tls_conn_close(cli.conn);
		cli.conn = NULL;
		assert_int_equal(tls_conn_read_some(srv.conn, &b, 1), 0);
		assert_int_equal(tls_conn_read_full(srv.conn, &b, 1), -ECONNRESET);
		assert_non_null(strstr(tls_conn_err(srv.conn), "after 0 of 1 bytes"));
	}
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_plaintext_both(void **state)
{
	struct tls_ctx *sctx = make_ctx(NULL, true, NULL, true);
	struct tls_ctx *cctx = make_ctx(NULL, false, NULL, true);
	struct side srv = { .ctx = sctx, .work = WORK_BIG, .big_bytes = 3u << 20 };
	struct side cli = { .ctx = cctx, .work = WORK_BIG, .big_bytes = 3u << 20 };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(srv.io_rc, 0);
	assert_int_equal(cli.io_rc, 0);
	assert_int_equal(srv.mismatch, -1);
	assert_int_equal(cli.mismatch, -1);
	assert_null(tls_conn_peer_name(srv.conn));
	assert_string_equal(tls_conn_cipher(srv.conn), "plaintext");
	assert_int_equal(tls_conn_wire_bytes_sent(cli.conn), 3u << 20);
	assert_int_equal(tls_conn_wire_bytes_received(srv.conn), 3u << 20);
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_client_of_other_ca_refused(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	struct tls_ctx *cctx = make_ctx(dir_cli_ca2, false, "receiver", false);
	struct side srv = { .ctx = sctx, .work = WORK_PING };
	struct side cli = { .ctx = cctx, .work = WORK_PING };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(srv.hs_rc, -EPROTO);
	assert_non_null(strstr(srv.hs_err, "certificate ('sender') is not issued by a CA in"));
	assert_non_null(strstr(srv.hs_err, dir_srv));
	/* TLS 1.3: the client learns it on its first read, from the alert. */
	if (!cli.hs_rc) {
		/* Our certificate refused: a permission problem (exit 77). */
		assert_int_equal(cli.io_rc, -EACCES);
		assert_non_null(strstr(cli.io_err, "the peer refused our certificate"));
	}
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_server_name_mismatch_refused(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_other, true, NULL, false);
	struct tls_ctx *cctx = make_ctx(dir_cli, false, "receiver", false);
	struct side srv = { .ctx = sctx, .work = WORK_PING };
	struct side cli = { .ctx = cctx, .work = WORK_PING };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(cli.hs_rc, -EPROTO);
	assert_non_null(strstr(cli.hs_err, "is for 'other', not 'receiver' (--server-name)"));
	/* The server learns from the client's alert that its certificate was refused. */
	assert_int_equal(srv.hs_rc, -EACCES);
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_no_client_cert_refused(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	struct side srv;

	(void)state;
	run_s_client(sctx, "", &srv);
	assert_int_equal(srv.hs_rc, -EPROTO);
	assert_non_null(strstr(srv.hs_err, "the peer sent no certificate"));
	tls_ctx_free(sctx);
}

static void test_tls12_client_refused(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	char args[3 * TU_PATH_MAX], crt[TU_PATH_MAX], key[TU_PATH_MAX];
	struct side srv;

	(void)state;
	path_join(crt, dir_cli, TLS_CERT_FILE);
	path_join(key, dir_cli, TLS_KEY_FILE);
	snprintf(args, sizeof(args), "-tls1_2 -cert %s -key %s", crt, key);
	run_s_client(sctx, args, &srv);
	assert_int_equal(srv.hs_rc, -EPROTO);
	assert_non_null(strstr(srv.hs_err, "does not speak TLS 1.3"));
	tls_ctx_free(sctx);
}

static void test_s_client_with_cert_accepted(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	char args[3 * TU_PATH_MAX], crt[TU_PATH_MAX], key[TU_PATH_MAX];
	struct side srv;

	(void)state;
	/* The control for the two tests above: the same client with a good certificate
	 * gets through the handshake (then stdin ends and it leaves). */
	path_join(crt, dir_cli, TLS_CERT_FILE);
	path_join(key, dir_cli, TLS_KEY_FILE);
	snprintf(args, sizeof(args), "-cert %s -key %s", crt, key);
	run_s_client(sctx, args, &srv);
	assert_int_equal(srv.hs_rc, 0);
	assert_string_equal(tls_conn_peer_name(srv.conn), "sender");
	tls_conn_close(srv.conn);
	tls_ctx_free(sctx);
}

static void test_plaintext_client_vs_tls_server(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	struct tls_ctx *cctx = make_ctx(NULL, false, NULL, true);
	struct side srv = { .ctx = sctx, .work = WORK_PING };
	struct side cli = { .ctx = cctx, .work = WORK_PLAIN_HELLO };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(srv.hs_rc, -EPROTO);
	assert_non_null(
		strstr(srv.hs_err,
		       "the peer is not speaking TLS; is it running with --insecure-plaintext?"));
	assert_int_equal(cli.hs_rc, 0);
	assert_int_not_equal(cli.io_rc, 0);
	assert_non_null(strstr(cli.io_err, "TLS"));
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_tls_client_vs_plaintext_server(void **state)
{
	struct tls_ctx *sctx = make_ctx(NULL, true, NULL, true);
	struct tls_ctx *cctx = make_ctx(dir_cli, false, "receiver", false);
	struct side srv = { .ctx = sctx, .work = WORK_READ };
	struct side cli = { .ctx = cctx, .work = WORK_PING };

	(void)state;
	run_pair(&srv, &cli);
	assert_int_equal(srv.hs_rc, 0);
	assert_int_equal(srv.io_rc, -EPROTO);
	assert_non_null(strstr(srv.io_err, "the peer is speaking TLS"));
	assert_int_equal(cli.hs_rc, -ECONNRESET);
	assert_non_null(strstr(cli.hs_err, "--insecure-plaintext"));
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_read_timeout(void **state)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, false);
	struct tls_ctx *cctx = make_ctx(dir_cli, false, "receiver", false);
	struct side srv = { .ctx = sctx, .work = WORK_SLOW_GREETING };
	struct side cli = { .ctx = cctx, .work = WORK_NONE };
	char buf[GREETING_BYTES];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200 * 1000 };
	int sv[2];
	pthread_t th;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	set_timeouts(sv[0], IO_TIMEOUT_MS);
	set_timeouts(sv[1], IO_TIMEOUT_MS);
	srv.server = true;
	srv.fd = sv[0];
	cli.fd = sv[1];
	assert_int_equal(pthread_create(&th, NULL, side_thread, &srv), 0);
	side_run(&cli);
	assert_int_equal(cli.hs_rc, 0);
	/* The server waits 600 ms before writing: a 200 ms read times out, consumes
	 * nothing, and the connection still works. */
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(tls_conn_read_some(cli.conn, buf, sizeof(buf)), -ETIMEDOUT);
	assert_non_null(strstr(tls_conn_err(cli.conn), "timed out"));
	set_timeouts(sv[1], IO_TIMEOUT_MS);
	assert_int_equal(tls_conn_read_full(cli.conn, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, GREETING, GREETING_BYTES);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(srv.io_rc, 0);
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

static void test_reload(void **state)
{
	char dir[TU_PATH_MAX], fresh[TU_PATH_MAX], fresh2[TU_PATH_MAX], p[TU_PATH_MAX];
	char s1[128], s2[128], s3[128], err[TLS_ERR_BYTES];
	struct tls_ctx *sctx, *cctx = make_ctx(dir_cli, false, "receiver", false);
	bool reloaded = true;
	int rc;

	(void)state;
	path_join(dir, root, "srv-reload");
	path_join(fresh, root, "srv-fresh");
	path_join(fresh2, root, "srv-fresh2");
	copy_creds(dir_srv, dir);
	sctx = make_ctx(dir, true, NULL, false);
	connect_serial(sctx, cctx, s1, sizeof(s1));
	assert_int_equal(tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err)), 0);
	assert_false(reloaded);

	/* A new pair, swapped in: the next accept picks it up by itself. */
	issue("receiver", dir_ca, fresh);
	path_join(p, fresh, TLS_CERT_FILE);
	replace_file(dir, TLS_CERT_FILE, p);
	path_join(p, fresh, TLS_KEY_FILE);
	replace_file(dir, TLS_KEY_FILE, p);
	connect_serial(sctx, cctx, s2, sizeof(s2));
	assert_string_not_equal(s1, s2);
	assert_int_equal(tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err)), 0);
	assert_false(reloaded);

	/* Garbage for a key: refused, reported on every check, old context serves. */
	assert_int_equal(write_file(fresh2, "not a key\n", 10), 0);
	replace_file(dir, TLS_KEY_FILE, fresh2);
	rc = tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err));
	fprintf(stderr, "reload: %s\n", err);
	assert_int_equal(rc, -EINVAL);
	assert_false(reloaded);
	assert_non_null(strstr(err, "still using"));
	assert_non_null(strstr(err, "tls.key"));
	connect_serial(sctx, cctx, s3, sizeof(s3));
	assert_string_equal(s2, s3);
	assert_int_equal(tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err)), -EINVAL);

	/* A key of another certificate: refused as a mismatch. */
	path_join(p, dir_other, TLS_KEY_FILE);
	replace_file(dir, TLS_KEY_FILE, p);
	rc = tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err));
	fprintf(stderr, "reload: %s\n", err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "does not match the certificate"));
	connect_serial(sctx, cctx, s3, sizeof(s3));
	assert_string_equal(s2, s3);

	/* The right key again: reloaded explicitly. */
	path_join(p, fresh, TLS_KEY_FILE);
	replace_file(dir, TLS_KEY_FILE, p);
	assert_int_equal(tls_ctx_maybe_reload(sctx, &reloaded, err, sizeof(err)), 0);
	assert_true(reloaded);
	connect_serial(sctx, cctx, s3, sizeof(s3));
	assert_string_equal(s2, s3);
	tls_ctx_free(sctx);
	tls_ctx_free(cctx);
}

static void test_load_errors(void **state)
{
	struct tls_config cfg = { .server = true };
	char dir[TU_PATH_MAX], p[TU_PATH_MAX], q[TU_PATH_MAX], err[TLS_ERR_BYTES];
	struct tls_ctx *ctx = NULL;
	int rc;

	(void)state;
	path_join(dir, root, "broken");
	copy_creds(dir_srv, dir);
	cfg.dir = dir;

	/* Missing file: named, with the fix. */
	path_join(p, dir, TLS_KEY_FILE);
	assert_int_equal(unlink(p), 0);
	rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
	fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "pvrepl certs issue"));
	assert_null(ctx);

	/* Key of another certificate. */
	path_join(q, dir_other, TLS_KEY_FILE);
	assert_int_equal(copy_file(q, p), 0);
	rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
	fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "does not match the certificate in"));

	/* Certificate not signed by the bundle. */
	path_join(q, dir_srv, TLS_KEY_FILE);
	assert_int_equal(copy_file(q, p), 0);
	path_join(p, dir, TLS_CA_FILE);
	path_join(q, dir_ca2, TLS_CA_FILE);
	assert_int_equal(copy_file(q, p), 0);
	rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
	fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "is not signed by the CA in"));

	/* Not PEM. */
	assert_int_equal(write_file(p, "hello\n", 6), 0);
	rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
	fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "holds no PEM certificate"));

	/* Unreadable (only meaningful when not root: root reads anything). */
	if (geteuid() != 0) {
		path_join(q, dir_ca, TLS_CA_FILE);
		assert_int_equal(copy_file(q, p), 0);
		assert_int_equal(chmod(p, 0), 0);
		rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
		assert_int_equal(rc, -EACCES);
		assert_non_null(strstr(err, "permission denied"));
	}

	/* A client without --server-name. */
	cfg.server = false;
	cfg.dir = dir_cli;
	rc = tls_ctx_new(&ctx, &cfg, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "--server-name"));
}

static void test_certs(void **state)
{
	char dir[TU_PATH_MAX], p[TU_PATH_MAX], err[TLS_ERR_BYTES];
	int64_t not_after;
	struct stat st;
	int rc;

	(void)state;
	path_join(dir, root, "ip/nested");
	issue("127.0.0.1", dir_ca, dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	path_join(p, dir, TLS_KEY_FILE);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	path_join(p, dir, TLS_CERT_FILE);
	assert_int_equal(tls_cert_expiry(p, &not_after, err, sizeof(err)), 0);
	assert_true(llabs((long long)(not_after - (int64_t)time(NULL) -
				      (int64_t)TLS_CERT_DAYS_DEFAULT * 86400)) < 120);

	/* No overwrite without force; with force, a new certificate. */
	rc = tls_cert_issue(dir_ca, "127.0.0.1", dir, 10, false, err, sizeof(err));
	assert_int_equal(rc, -EEXIST);
	assert_non_null(strstr(err, "--force"));
	assert_int_equal(tls_cert_issue(dir_ca, "127.0.0.1", dir, 10, true, err, sizeof(err)), 0);
	assert_int_equal(tls_cert_expiry(p, &not_after, err, sizeof(err)), 0);
	assert_true(not_after < (int64_t)time(NULL) + 11 * 86400);
	assert_int_equal(tls_ca_create(dir_ca, false, err, sizeof(err)), -EEXIST);

	/* Names that could inject other SANs, and impossible lifetimes. */
	assert_int_equal(tls_cert_issue(dir_ca, "a,DNS:evil", dir, 10, true, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(tls_cert_issue(dir_ca, "", dir, 10, true, err, sizeof(err)), -EINVAL);
	assert_int_equal(tls_cert_issue(dir_ca, "x", dir, 0, true, err, sizeof(err)), -EINVAL);
	assert_int_equal(tls_cert_issue(dir_srv, "x", dir, 10, true, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "ca.key"));
}

/* A certificate for an IP address: the client checks the IP SAN. */
static void test_ip_server_name(void **state)
{
	char dir[TU_PATH_MAX];
	struct tls_ctx *sctx, *cctx;
	struct side srv = { .work = WORK_PING }, cli = { .work = WORK_PING };

	(void)state;
	path_join(dir, root, "ip-srv");
	issue("127.0.0.1", dir_ca, dir);
	sctx = make_ctx(dir, true, NULL, false);
	cctx = make_ctx(dir_cli, false, "127.0.0.1", false);
	srv.ctx = sctx;
	cli.ctx = cctx;
	run_pair(&srv, &cli);
	assert_int_equal(cli.hs_rc, 0);
	assert_int_equal(cli.io_rc, 0);
	assert_string_equal(tls_conn_peer_name(cli.conn), "127.0.0.1");
	close_pair(&srv, &cli);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
}

/* ------------------------------------------------------------ benchmark */

/* CPU time (user + system) of the calling thread. */
static double thread_cpu_s(void)
{
	struct rusage ru;

	ASSERT(getrusage(RUSAGE_THREAD, &ru) == 0);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct bench_rx {
	struct tls_ctx *ctx;
	int listen_fd;
	uint64_t bytes;
	double cpu_s;
	int rc;
	char err[TLS_ERR_BYTES];
};

static void *bench_rx_thread(void *arg)
{
	struct bench_rx *b = arg;
	struct tls_conn *conn;
	uint8_t *buf = malloc(FRAME_BYTES_MAX);
	uint64_t left = b->bytes;
	int fd = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	ASSERT(buf && fd >= 0);
	set_timeouts(fd, IO_TIMEOUT_MS);
	b->rc = tls_accept(b->ctx, fd, &conn, b->err, sizeof(b->err));
	if (b->rc) {
		close(fd);
		free(buf);
		return NULL;
	}
	while (left && !b->rc) {
		size_t n = left < FRAME_BYTES_MAX ? left : FRAME_BYTES_MAX;

		b->rc = tls_conn_read_full(conn, buf, n);
		left -= n;
	}
	tls_conn_close(conn);
	free(buf);
	b->cpu_s = thread_cpu_s();
	return NULL;
}

static double bench_one(bool insecure, uint64_t bytes, uint64_t *wire, double *tx_cpu_s,
			double *rx_cpu_s)
{
	struct tls_ctx *sctx = make_ctx(dir_srv, true, NULL, insecure);
	struct tls_ctx *cctx = make_ctx(dir_cli, false, "receiver", insecure);
	struct bench_rx rx = { .ctx = sctx, .bytes = bytes };
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint8_t *buf = malloc(FRAME_BYTES_MAX);
	char err[TLS_ERR_BYTES];
	struct tls_conn *conn;
	uint64_t left = bytes;
	struct timespec t0, t1;
	pthread_t th;
	int port, fd;

	ASSERT(buf);
	tu_pattern_fill(buf, FRAME_BYTES_MAX, 0, 7);
	rx.listen_fd = tcp_listen(&port);
	sa.sin_port = htons((uint16_t)port);
	assert_int_equal(pthread_create(&th, NULL, bench_rx_thread, &rx), 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	set_timeouts(fd, IO_TIMEOUT_MS);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*tx_cpu_s = thread_cpu_s();
	assert_int_equal(tls_connect(cctx, fd, &conn, err, sizeof(err)), 0);
	while (left) {
		size_t n = left < FRAME_BYTES_MAX ? left : FRAME_BYTES_MAX;

		assert_int_equal(tls_conn_write_all(conn, buf, n), 0);
		left -= n;
	}
	*tx_cpu_s = thread_cpu_s() - *tx_cpu_s;
	assert_int_equal(pthread_join(th, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(rx.rc, 0);
	*rx_cpu_s = rx.cpu_s;
	*wire = tls_conn_wire_bytes_sent(conn);
	tls_conn_close(conn);
	close(rx.listen_fd);
	free(buf);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
	return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

static void test_bench(void **state)
{
	const char *env = getenv("PVREPL_TLS_BENCH_BYTES");
	uint64_t bytes, wire;
	double s, tx, rx;

	(void)state;
	if (!env) {
		printf("bench: set PVREPL_TLS_BENCH_BYTES to time a loopback transfer\n");
		return;
	}
	bytes = strtoull(env, NULL, 0);
	for (int i = 0; i < 2; i++) {
		s = bench_one(i == 1, bytes, &wire, &tx, &rx);
		printf("bench: %s one-way loopback TCP, %" PRIu64 " bytes in 8 MiB writes: "
		       "%.3f s, %.2f GB/s payload (%.2f%% wire overhead); CPU sender %.3f s "
		       "(%.2f GB/s per core), receiver %.3f s (%.2f GB/s per core)\n",
		       i ? "plaintext" : "TLS 1.3 AES-128-GCM", bytes, s, (double)bytes / s / 1e9,
		       100.0 * (double)(wire - bytes) / (double)bytes, tx, (double)bytes / tx / 1e9,
		       rx, (double)bytes / rx / 1e9);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_transfer),
		cmocka_unit_test(test_plaintext_both),
		cmocka_unit_test(test_client_of_other_ca_refused),
		cmocka_unit_test(test_server_name_mismatch_refused),
		cmocka_unit_test(test_no_client_cert_refused),
		cmocka_unit_test(test_tls12_client_refused),
		cmocka_unit_test(test_s_client_with_cert_accepted),
		cmocka_unit_test(test_plaintext_client_vs_tls_server),
		cmocka_unit_test(test_tls_client_vs_plaintext_server),
		cmocka_unit_test(test_read_timeout),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_certs),
		cmocka_unit_test(test_ip_server_name),
		cmocka_unit_test(test_bench),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
