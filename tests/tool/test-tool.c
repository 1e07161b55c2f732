// SPDX-License-Identifier: Apache-2.0
/*
 * test-tool — exposes internal APIs to the shell tests (git's t/helper/test-tool):
 * things a user never needs but a test must see, such as the exact set of blocks
 * a scan finds changed. Not installed; not a user interface.
 *
 *   test-tool changed-blocks --device DEV --state-dir DIR [--block-size N] [--update]
 *       prints one line per changed run: "FIRST COUNT zero|data"
 *   test-tool map-info --state-dir DIR
 *       prints "epoch E blocks N block_bytes B dirty D"
 *   test-tool lz4-blocks --file F --block-size N --offsets FILE
 *       compresses each block of F whose byte offset is listed in FILE (one per
 *       line) with codec_compress, one block at a time, and prints
 *       "blocks N raw_bytes R codec_bytes C" (a block kept raw counts its raw size)
 *   test-tool map-mem --size BYTES --block-size N
 *       creates a map of that geometry, map_set()s every block so all of it is
 *       resident, then builds the Merkle tree over it, and prints
 *       "blocks N rss_before_bytes A rss_after_bytes B rss_merkle_bytes C"
 *   test-tool bad-sender --peer HOST:PORT --tls-dir DIR --server-name NAME
 *                        --volume NAME --device DEV --state-dir DIR [--hello-block-size N]
 *       a sender that lies: a real handshake with the map in DIR, then the next
 *       epoch with one DATA frame for block 0 whose hash does not match its
 *       plaintext (the block as read, one bit flipped after hashing). Prints the
 *       receiver's answer: "REFUSE REASON: message", "ERROR CODE: message" or
 *       "ACK epoch E"; exit 0 when an ERROR or REFUSE came back, 1 otherwise.
 *       --hello-block-size announces another block size in HELLO (same volume id
 *       and size), to reach the receiver's block size check.
 *   test-tool crash-at STEP N -- receive|send ARGS...
 *       runs `pvrepl receive|send ARGS` with a crash hook on every durable
 *       replace (replace.c) and map commit step: the Nth time STEP (e.g.
 *       "state.rename", "base.fsync") is about to run, the process kills itself
 *       with SIGKILL, as kill -9 at exactly that point would.
 *   test-tool fault-proxy --listen HOST:PORT --port-file FILE --target HOST:PORT
 *                         --seed N --plan FILE
 *       a TCP proxy that breaks connections on purpose. It accepts one connection
 *       at a time and applies line k of the plan to connection k (a missing line,
 *       an empty one or "pass": pass-through), to the client->server stream only:
 *         truncate BYTES    forward BYTES bytes, then close both sides
 *         flip OFFSET       xor the byte at OFFSET with a non-zero value from
 *                           the seed and k
 *         dup OFFSET LEN    send the LEN (<= 64 KiB) bytes at OFFSET twice
 *         drop OFFSET LEN   do not send the LEN bytes at OFFSET
 *         delay MS          after the first 64 KiB, hold all traffic for MS once
 *         rst BYTES         after BYTES bytes, reset both sides (SO_LINGER 0)
 *         stall BYTES       after BYTES bytes, forward nothing more, either way,
 *                           and keep both sockets open for 30 s
 *       Writes the port it listens on to FILE, and one line per connection to
 *       stderr: k, the fault, the bytes each way and how it ended.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "conn.h"
#include "delta.h"
#include "kfio.h"
#include "map.h"
#include "merkle.h"
#include "netwatch.h"
#include "proto.h"
#include "pending.h"
#include "replace.h"
#include "scan.h"
#include "tls.h"
#include "vstate.h"

struct run {
	uint64_t first;
	uint32_t count;
	bool zero;
};

struct collect {
	pthread_mutex_t lock;
	struct run *runs;
	size_t count, cap;
};

static int collect_batch(const struct scan_batch *b, void *ctx)
{
	struct collect *c = ctx;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (c->count == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct run *r = realloc(c->runs, cap * sizeof(*r));

		if (!r) {
			rc = -ENOMEM;
			goto out;
		}
		c->runs = r;
		c->cap = cap;
	}
	c->runs[c->count++] = (struct run){ b->first_block, b->block_count, b->zero };
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cmp_run(const void *a, const void *b)
{
	const struct run *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

static int changed_blocks(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "update", no_argument, NULL, 'u' },
		{ 0 },
	};
	const char *device = NULL, *state_dir = NULL;
	uint64_t bs = SCAN_BLOCK_BYTES_DEFAULT;
	bool update = false;
	struct collect col = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct scan_sink sink = { collect_batch, &col };
	struct scan_config cfg;
	struct scan_stats st;
	struct kfio_dev dev;
	struct map m;
	char err[512] = "";
	int c, rc;

	while ((c = getopt_long(argc, argv, "d:s:b:u", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			device = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'b':
			if (cli_parse_size(optarg, &bs))
				return 2;
			break;
		case 'u':
			update = true;
			break;
		default:
			return 2;
		}
	}
	if (!device || !state_dir)
		return 2;
	rc = kfio_dev_open(&dev, device, 0);
	if (rc) {
		fprintf(stderr, "%s\n", dev.err_msg);
		return 1;
	}
	rc = map_load(&m, state_dir, err, sizeof(err));
	if (rc == -ENOENT)
		rc = map_create(&m, "test", dev.size_bytes, (uint32_t)bs);
	if (rc) {
		fprintf(stderr, "map: %s\n", err);
		return 1;
	}
	scan_config_defaults(&cfg);
	rc = scan_run(&dev, &m, &cfg, &sink, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "scan: %s\n", err);
		return 1;
	}
	qsort(col.runs, col.count, sizeof(*col.runs), cmp_run);
	/* Merge adjacent runs of the same kind split at chunk or batch boundaries. */
	for (size_t i = 0; i < col.count; i++) {
		struct run r = col.runs[i];

		while (i + 1 < col.count && col.runs[i + 1].zero == r.zero &&
		       col.runs[i + 1].first == r.first + r.count)
			r.count += col.runs[++i].count;
		printf("%" PRIu64 " %u %s\n", r.first, r.count, r.zero ? "zero" : "data");
	}
	if (update) {
		mkdir(state_dir, 0700);
		rc = map_commit(&m, state_dir, m.epoch + 1, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "commit: %s\n", err);
			return 1;
		}
	}
	free(col.runs);
	map_release(&m);
	kfio_dev_close(&dev);
	return 0;
}

static int map_info(int argc, char **argv)
{
	struct map m;
	char err[512] = "";

	if (argc != 3 || strcmp(argv[1], "--state-dir"))
		return 2;
	if (map_load(&m, argv[2], err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("epoch %" PRIu64 " blocks %" PRIu64 " block_bytes %u dirty %" PRIu64 "\n", m.epoch,
	       m.block_count, m.block_bytes, map_dirty_count(&m));
	map_release(&m);
	return 0;
}

/* The lz4 size of exactly the listed blocks: the floor a block-granular map
 * at a larger block size is compared with. */
static int lz4_blocks(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "offsets", required_argument, NULL, 'o' },
		{ 0 },
	};
	const char *file = NULL, *offsets = NULL;
	uint64_t bs = 0, off, blocks = 0, raw_bytes = 0, codec_bytes = 0;
	enum codec_kind kind;
	char *buf = NULL, *out = NULL;
	FILE *list = NULL;
	int c, fd = -1, ret = 1;

	while ((c = getopt_long(argc, argv, "f:b:o:", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			file = optarg;
			break;
		case 'b':
			if (cli_parse_size(optarg, &bs))
				return 2;
			break;
		case 'o':
			offsets = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!file || !offsets || bs == 0 || bs > CODEC_LEN_MAX)
		return 2;
	fd = open(file, O_RDONLY);
	list = fopen(offsets, "r");
	buf = malloc(bs);
	out = malloc(codec_bound(bs));
	if (fd < 0 || !list || !buf || !out) {
		fprintf(stderr, "lz4-blocks: %s\n", strerror(errno));
		goto out;
	}
	while (fscanf(list, "%" SCNu64, &off) == 1) {
		ssize_t n = pread(fd, buf, bs, (off_t)off);
		int len;

		if (n != (ssize_t)bs) {
			fprintf(stderr, "lz4-blocks: short read at %" PRIu64 "\n", off);
			goto out;
		}
		len = codec_compress(buf, bs, out, codec_bound(bs), &kind);
		if (len < 0) {
			fprintf(stderr, "lz4-blocks: codec: %s\n", strerror(-len));
			goto out;
		}
		blocks++;
		raw_bytes += bs;
		codec_bytes += (uint64_t)len;
	}
	printf("blocks %" PRIu64 " raw_bytes %" PRIu64 " codec_bytes %" PRIu64 "\n", blocks,
	       raw_bytes, codec_bytes);
	ret = 0;
out:
	free(out);
	free(buf);
	if (list)
		fclose(list);
	if (fd >= 0)
		close(fd);
	return ret;
}

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

/* What a map of this geometry costs in memory once every page of it is used. */
static int map_mem(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "block-size", required_argument, NULL, 'b' },
		{ 0 },
	};
	uint64_t size = 0, bs = 0, before, after;
	struct merkle t;
	struct map m;
	int c, rc;

	while ((c = getopt_long(argc, argv, "s:b:", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (cli_parse_size(optarg, &size))
				return 2;
			break;
		case 'b':
			if (cli_parse_size(optarg, &bs))
				return 2;
			break;
		default:
			return 2;
		}
	}
	if (size == 0 || bs == 0 || bs > UINT32_MAX)
		return 2;
	before = rss_bytes();
	rc = map_create(&m, "map-mem", size, (uint32_t)bs);
	if (rc) {
		fprintf(stderr, "map-mem: map_create: %s\n", strerror(-rc));
		return 1;
	}
	/* A non-zero hash per block, so every page of hashes and dirty is written. */
	for (uint64_t i = 0; i < m.block_count; i++)
		map_set(&m, i, i + 1);
	after = rss_bytes();
	rc = merkle_init(&t, m.hashes, m.block_count);
	if (rc) {
		fprintf(stderr, "map-mem: merkle_init: %s\n", strerror(-rc));
		map_release(&m);
		return 1;
	}
	printf("blocks %" PRIu64 " rss_before_bytes %" PRIu64 " rss_after_bytes %" PRIu64
	       " rss_merkle_bytes %" PRIu64 "\n",
	       m.block_count, before, after, rss_bytes());
	merkle_release(&t);
	map_release(&m);
	return 0;
}

/*
 * wait-applied --state-dir DIR --epoch N [--timeout-ms T]: the receiver acks an
 * epoch once it is durable in the journal and applies it to the standby right
 * after; this waits (bounded) until the volume's state says epoch >= N is
 * applied, then prints "epoch E state S". Exit 1 on timeout.
 */
static int wait_applied(int argc, char **argv)
{
	const char *dir = NULL;
	uint64_t epoch = 0, timeout_ms = 10000;
	struct vstate vs;
	char err[512] = "";

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--state-dir"))
			dir = argv[i + 1];
		else if (!strcmp(argv[i], "--epoch"))
			epoch = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = strtoull(argv[i + 1], NULL, 10);
		else
			return 2;
	}
	if (!dir)
		return 2;
	for (uint64_t waited = 0;; waited += 10) {
		int rc = vstate_load(&vs, dir, err, sizeof(err));

		if (rc == 0 && vs.epoch >= epoch) {
			printf("epoch %" PRIu64 " state %s\n", vs.epoch, vstate_kind_name(vs.kind));
			return 0;
		}
		if (waited >= timeout_ms) {
			fprintf(stderr,
				"test-tool: %s: epoch %" PRIu64 " not applied after %" PRIu64
				" ms (%s)\n",
				dir, epoch, timeout_ms, rc ? err : "older epoch");
			return 1;
		}
		usleep(10000);
	}
}

/* Prints a REFUSE or ERROR frame; true when msg is one. */
static bool print_refusal(const struct proto_msg *msg)
{
	if (msg->header.type == PROTO_REFUSE) {
		printf("REFUSE %s: %s\n", proto_refuse_name(msg->u.refuse.reason),
		       msg->u.refuse.message);
		return true;
	}
	if (msg->header.type == PROTO_ERROR) {
		printf("ERROR %s: %s\n", proto_error_name(msg->u.error.code), msg->u.error.message);
		return true;
	}
	return false;
}

/*
 * A sender whose DATA does not verify: the receiver must answer ERROR VERIFY and
 * leave the standby and its state as they were (PROTOCOL.md invariant 3).
 */
static int bad_sender(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "peer", required_argument, NULL, 'p' },
		{ "tls-dir", required_argument, NULL, 't' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "volume", required_argument, NULL, 'v' },
		{ "device", required_argument, NULL, 'd' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "hello-block-size", required_argument, NULL, 'b' },
		{ 0 },
	};
	const char *peer = NULL, *tls_dir = NULL, *server_name = NULL, *volume = NULL;
	const char *device = NULL, *state_dir = NULL;
	uint64_t hello_bs = 0;
	struct tls_config tc = { 0 };
	struct tls_ctx *ctx = NULL;
	struct tls_conn *tls = NULL;
	struct conn c = { 0 };
	struct proto_hello h = { 0 };
	struct proto_epoch_begin eb = { 0 };
	struct proto_data d = { 0 };
	struct proto_msg msg;
	struct merkle t;
	struct map m;
	uint8_t *plain = NULL;
	uint64_t hash;
	uint32_t len;
	char err[512] = "";
	int ch, fd = -1, n, ret = 1;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			peer = optarg;
			break;
		case 't':
			tls_dir = optarg;
			break;
		case 'n':
			server_name = optarg;
			break;
		case 'v':
			volume = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'b':
			if (cli_parse_size(optarg, &hello_bs) || hello_bs > UINT32_MAX)
				return 2;
			break;
		default:
			return 2;
		}
	}
	if (!peer || !tls_dir || !server_name || !volume || !device || !state_dir)
		return 2;
	if (map_load(&m, state_dir, err, sizeof(err))) {
		fprintf(stderr, "bad-sender: %s\n", err);
		return 1;
	}
	if (m.generation == 0)
		m.generation = 1; /* as the sender does */

	/* Block 0 as the source has it, hashed, then damaged "in transit". */
	len = m.size_bytes < m.block_bytes ? (uint32_t)m.size_bytes : m.block_bytes;
	plain = malloc(len);
	fd = open(device, O_RDONLY);
	if (!plain || fd < 0 || pread(fd, plain, len, 0) != (ssize_t)len) {
		fprintf(stderr, "bad-sender: reading block 0 of %s: %s\n", device, strerror(errno));
		goto out;
	}
	hash = delta_hash(plain, len);
	plain[len / 2] ^= 0x01;

	tc.dir = tls_dir;
	tc.server_name = server_name;
	if (tls_ctx_new(&ctx, &tc, err, sizeof(err))) {
		fprintf(stderr, "bad-sender: %s\n", err);
		goto out;
	}
	n = conn_tcp_connect(peer, 10000, NULL, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "bad-sender: %s\n", err);
		goto out;
	}
	if (tls_connect(ctx, n, &tls, err, sizeof(err))) {
		close(n);
		fprintf(stderr, "bad-sender: TLS: %s\n", err);
		goto out;
	}
	if (conn_init(&c, tls)) {
		tls_conn_close(tls);
		goto out;
	}

	h.version_min = PROTO_VERSION_MIN;
	h.version_max = PROTO_VERSION_MAX;
	h.capabilities = PROTO_CAP_LZ4 | PROTO_CAP_RESUME;
	memcpy(h.volume_id, m.volume_id, sizeof(h.volume_id));
	snprintf(h.volume_name, sizeof(h.volume_name), "%s", volume);
	h.size_bytes = m.size_bytes;
	h.block_bytes = hello_bs ? (uint32_t)hello_bs : m.block_bytes;
	h.generation = m.generation;
	h.epoch = m.epoch;
	if (merkle_init(&t, m.hashes, m.block_count))
		goto out;
	h.merkle_root = m.epoch ? merkle_root(&t) : 0;
	merkle_release(&t);
	h.history_count = 1;
	h.history[0].generation = m.generation;
	n = proto_encode_hello(&h, c.tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0 || conn_send(&c, c.tx, (size_t)n) || conn_recv(&c, &msg)) {
		fprintf(stderr, "bad-sender: handshake: %s\n", c.err);
		goto out;
	}
	if (print_refusal(&msg)) {
		ret = 0;
		goto out;
	}
	if (msg.header.type != PROTO_WELCOME) {
		fprintf(stderr, "bad-sender: expected WELCOME, got %s\n",
			proto_type_name(msg.header.type));
		goto out;
	}
	if (msg.u.welcome.state != PROTO_STATE_CONSISTENT || msg.u.welcome.epoch != m.epoch) {
		fprintf(stderr,
			"bad-sender: the receiver is not in step (state %u epoch %" PRIu64
			", map epoch %" PRIu64 ")\n",
			msg.u.welcome.state, msg.u.welcome.epoch, m.epoch);
		goto out;
	}

	eb.epoch = m.epoch + 1;
	eb.base_epoch = m.epoch;
	eb.generation = m.generation;
	eb.flags = PROTO_EPOCH_CRASH_CONSISTENT;
	eb.block_count = 1;
	n = proto_encode_epoch_begin(&eb, c.tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0 || conn_send(&c, c.tx, (size_t)n)) {
		fprintf(stderr, "bad-sender: EPOCH_BEGIN: %s\n", c.err);
		goto out;
	}
	d.first_block = 0;
	d.block_count = 1;
	d.codec = PROTO_CODEC_RAW;
	d.plaintext_bytes = len;
	d.hashes = &hash;
	d.data = plain;
	d.data_bytes = len;
	n = proto_encode_data(&d, c.tx, PROTO_FRAME_BYTES_MAX);
	if (n < 0 || conn_send(&c, c.tx, (size_t)n)) {
		fprintf(stderr, "bad-sender: DATA: %s\n", c.err);
		goto out;
	}
	/* No EPOCH_END: a receiver that verifies every block answers now; one that
	 * does not would wait, and the read below times out (10 s). */
	if (conn_recv(&c, &msg)) {
		fprintf(stderr, "bad-sender: no answer to the damaged DATA: %s\n", c.err);
		goto out;
	}
	if (print_refusal(&msg))
		ret = 0;
	else if (msg.header.type == PROTO_EPOCH_ACK)
		printf("ACK epoch %" PRIu64 "\n", msg.u.epoch_ack.epoch);
	else
		printf("%s\n", proto_type_name(msg.header.type));
out:
	conn_release(&c);
	tls_ctx_free(ctx);
	if (fd >= 0)
		close(fd);
	free(plain);
	map_release(&m);
	return ret;
}

/*
 * pending-save --device DEV --state-dir DIR --epoch N: what a sender records
 * before asking for the ack of epoch N (scan DEV against the map in DIR, save
 * the changed hashes as map.pending), without sending anything. Lets a test
 * recreate "the receiver committed N but the ack was lost" deterministically.
 */
static int pending_save_cmd(int argc, char **argv)
{
	const char *device = NULL, *dir = NULL;
	uint64_t epoch = 0;
	struct scan_config cfg;
	struct scan_stats st;
	struct kfio_dev dev;
	struct map m;
	char err[512] = "";
	int rc;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--device"))
			device = argv[i + 1];
		else if (!strcmp(argv[i], "--state-dir"))
			dir = argv[i + 1];
		else if (!strcmp(argv[i], "--epoch"))
			epoch = strtoull(argv[i + 1], NULL, 10);
		else
			return 2;
	}
	if (!device || !dir || !epoch)
		return 2;
	if (kfio_dev_open(&dev, device, 0)) {
		fprintf(stderr, "%s\n", dev.err_msg);
		return 1;
	}
	rc = map_load(&m, dir, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "map: %s\n", err);
		return 1;
	}
	if (m.epoch == 0)
		m.empty = true;
	scan_config_defaults(&cfg);
	rc = scan_run(&dev, &m, &cfg, NULL, &st, err, sizeof(err));
	if (!rc)
		rc = pending_save(&m, dir, epoch, err, sizeof(err));
	if (rc)
		fprintf(stderr, "pending-save: %s\n", err);
	map_release(&m);
	kfio_dev_close(&dev);
	return rc ? 1 : 0;
}

/*
 * netwatch --peer ADDR --seconds N: watches reachability of ADDR (netwatch.h) for
 * N seconds and prints one line at start and one per change:
 * "MONO_MS REALTIME_MS reachable=0|1 REASON", MONO_MS counted from the start,
 * REALTIME_MS since the epoch (to compare with `date +%s%3N` in a test).
 */
static int netwatch_cmd(int argc, char **argv)
{
	const char *peer = NULL;
	struct netwatch *nw = NULL;
	struct timespec t0, now, rt;
	long long seconds = -1, elapsed_ms;
	char err[512] = "";
	int rc, ret = 1;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--peer"))
			peer = argv[i + 1];
		else if (!strcmp(argv[i], "--seconds"))
			seconds = strtoll(argv[i + 1], NULL, 10);
		else
			return 2;
	}
	if (!peer || seconds < 0 || argc % 2 == 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = netwatch_new(&nw, peer, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "netwatch: %s\n", err);
		return 1;
	}
	for (bool changed = true;;) {
		struct pollfd pfd = { .fd = netwatch_fd(nw), .events = POLLIN };
		long long left_ms;

		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed_ms =
			(now.tv_sec - t0.tv_sec) * 1000LL + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (changed) {
			clock_gettime(CLOCK_REALTIME, &rt);
			printf("%lld %lld reachable=%d %s\n", elapsed_ms,
			       rt.tv_sec * 1000LL + rt.tv_nsec / 1000000, netwatch_reachable(nw),
			       netwatch_reason(nw));
		}
		left_ms = seconds * 1000 - elapsed_ms;
		if (left_ms <= 0)
			break;
		rc = poll(&pfd, 1, left_ms > 1000 ? 1000 : (int)left_ms);
		if (rc < 0 && errno != EINTR) {
			perror("netwatch: poll");
			goto out;
		}
		changed = false;
		if (rc > 0) {
			rc = netwatch_process(nw, &changed);
			if (rc) {
				fprintf(stderr, "netwatch: %s\n", strerror(-rc));
				goto out;
			}
		}
	}
	ret = 0;
out:
	netwatch_free(nw);
	return ret;
}

static const char *crash_step;
static unsigned long crash_nth;
static unsigned long crash_seen;

static int crash_hook(const char *step)
{
	if (strcmp(step, crash_step))
		return 0;
	if (__atomic_add_fetch(&crash_seen, 1, __ATOMIC_ACQ_REL) == crash_nth) {
		fprintf(stderr, "test-tool: crash-at: SIGKILL before %s #%lu\n", step, crash_nth);
		raise(SIGKILL);
	}
	return 0;
}

static int crash_at(int argc, char **argv)
{
	char *end;

	if (argc < 5 || strcmp(argv[3], "--")) {
		fprintf(stderr, "usage: test-tool crash-at STEP N -- receive|send ARGS...\n");
		return 2;
	}
	crash_step = argv[1];
	crash_nth = strtoul(argv[2], &end, 10);
	if (*end || !crash_nth) {
		fprintf(stderr, "test-tool crash-at: N must be a positive count\n");
		return 2;
	}
	replace_crash_hook = crash_hook;
	map_crash_hook = crash_hook;
	/* cli_main expects argv[0] to be the program, then the subcommand. */
	argv[3] = "pvrepl";
	return cli_main(argc - 3, argv + 3);
}

/*
 * fault-proxy: a TCP proxy that damages the client->server stream of each
 * connection as the plan says, to see what the receiver and the sender make of
 * a broken link. One connection at a time; line k of the plan is connection
 * k's fault; server->client traffic passes unchanged.
 */
enum fp_kind { FP_PASS, FP_TRUNCATE, FP_FLIP, FP_DUP, FP_DROP, FP_DELAY, FP_RST, FP_STALL };

struct fp_fault {
	enum fp_kind kind;
	uint64_t a, b; /* BYTES, OFFSET or MS; LEN */
	char text[128];
};

#define FP_CHUNK       (64u * 1024) /* one read */
#define FP_DUP_MAX     (64u * 1024) /* the longest dup range */
#define FP_DELAY_AFTER (64u * 1024) /* delay: client->server bytes before the hold */
#define FP_STALL_MS    30000
#define FP_IDLE_MS     60000 /* a connection with no traffic this long is closed */
#define FP_PLAN_MAX    4096

static int fp_parse(const char *line, struct fp_fault *f)
{
	static const struct {
		const char *name;
		enum fp_kind kind;
		int args;
	} kinds[] = { { "pass", FP_PASS, 0 }, { "truncate", FP_TRUNCATE, 1 },
		      { "flip", FP_FLIP, 1 }, { "dup", FP_DUP, 2 },
		      { "drop", FP_DROP, 2 }, { "delay", FP_DELAY, 1 },
		      { "rst", FP_RST, 1 },   { "stall", FP_STALL, 1 } };
	char copy[128], *save = NULL, *tok, *end;
	uint64_t v[3];
	int n = 0;

	memset(f, 0, sizeof(*f));
	snprintf(copy, sizeof(copy), "%s", line);
	tok = strtok_r(copy, " \t\r\n", &save);
	if (!tok) { /* an empty line is pass-through */
		snprintf(f->text, sizeof(f->text), "pass");
		return 0;
	}
	for (char *t; n < 3 && (t = strtok_r(NULL, " \t\r\n", &save)); n++) {
		errno = 0;
		v[n] = strtoull(t, &end, 10);
		if (errno || end == t || *end || t[0] == '-')
			return -1;
	}
	if (strtok_r(NULL, " \t\r\n", &save))
		return -1;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(tok, kinds[i].name) || n != kinds[i].args)
			continue;
		f->kind = kinds[i].kind;
		f->a = n > 0 ? v[0] : 0;
		f->b = n > 1 ? v[1] : 0;
		if ((f->kind == FP_DUP && (f->b == 0 || f->b > FP_DUP_MAX)) ||
		    (f->kind == FP_DROP && f->b == 0) || (f->kind == FP_DELAY && f->a > 600000))
			return -1;
		snprintf(f->text, sizeof(f->text), "%s", line);
		f->text[strcspn(f->text, "\r\n")] = '\0';
		return 0;
	}
	return -1;
}

static uint64_t fp_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Holds everything for ms (no fd is read or written meanwhile). */
static void fp_hold(uint64_t ms)
{
	for (uint64_t until = fp_mono_ms() + ms, now; (now = fp_mono_ms()) < until;)
		poll(NULL, 0, (int)(until - now)); /* EINTR: the loop goes on */
}

static void fp_close(int fd, bool reset)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	if (reset)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

/* Writes what it can of buf[*off..len): 0, or -errno of a broken socket. */
static int fp_flush(int fd, const uint8_t *buf, size_t len, size_t *off, uint64_t *count)
{
	while (*off < len) {
		ssize_t n = send(fd, buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
			return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -errno;
		*off += (size_t)n;
		*count += (uint64_t)n;
	}
	return 0;
}

static const char fp_stalled[] = "stalled: forwarding nothing more, both sockets held open 30 s";

/* Relays one connection with fault f and closes it, except when it returns
 * fp_stalled; returns why it ended (for the log). */
static const char *fp_relay(int cfd, int sfd, const struct fp_fault *f, uint8_t mask, uint8_t *cbuf,
			    uint8_t *in, uint8_t *sbuf, uint8_t *dbuf, uint64_t cnt[4])
{
	size_t clen = 0, coff = 0, slen = 0, soff = 0, dlen = 0;
	bool c_eof = false, s_eof = false, shut_c = false, shut_s = false, delayed = false;
	uint64_t limit = UINT64_MAX; /* client->server bytes read before the fault fires */
	static char why[128];

	if (f->kind == FP_TRUNCATE || f->kind == FP_RST || f->kind == FP_STALL)
		limit = f->a;
	for (;;) {
		struct pollfd p[2] = { { .fd = cfd }, { .fd = sfd } };
		ssize_t n;
		int rc;

		if (f->kind == FP_DELAY && !delayed)
			limit = FP_DELAY_AFTER;
		if (coff == clen && cnt[0] >= limit) { /* all before the fault is forwarded */
			if (f->kind == FP_DELAY) {
				fp_hold(f->a);
				delayed = true;
				limit = UINT64_MAX;
				continue;
			}
			if (f->kind == FP_STALL) /* logged, then held open by the caller */
				return fp_stalled;
			fp_close(cfd, f->kind == FP_RST);
			fp_close(sfd, f->kind == FP_RST);
			return f->kind == FP_RST ? "reset both sides" : "closed both sides";
		}
		if (c_eof && coff == clen && !shut_s) {
			shutdown(sfd, SHUT_WR);
			shut_s = true;
		}
		if (s_eof && soff == slen && !shut_c) {
			shutdown(cfd, SHUT_WR);
			shut_c = true;
		}
		if (shut_c && shut_s) {
			snprintf(why, sizeof(why), "both sides closed");
			break;
		}
		if (!c_eof && coff == clen)
			p[0].events |= POLLIN;
		if (coff < clen)
			p[1].events |= POLLOUT;
		if (!s_eof && soff == slen)
			p[1].events |= POLLIN;
		if (soff < slen)
			p[0].events |= POLLOUT;
		rc = poll(p, 2, FP_IDLE_MS);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0) {
			snprintf(why, sizeof(why), "%s", rc ? strerror(errno) : "idle 60 s");
			break;
		}
		/* A hang-up or error on a side that is not read: nothing will come. */
		for (int i = 0; i < 2; i++) {
			if ((p[i].revents & (POLLERR | POLLHUP)) && !(p[i].events & POLLIN) &&
			    !(p[i].revents & POLLOUT)) {
				snprintf(why, sizeof(why), "%s hung up", i ? "server" : "client");
				goto out;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && (p[0].events & POLLIN)) {
			size_t want = FP_CHUNK;

			if (limit - cnt[0] < want)
				want = (size_t)(limit - cnt[0]);
			n = recv(cfd, in, want, MSG_DONTWAIT);
			if (n == 0) {
				c_eof = true;
			} else if (n < 0 && errno != EINTR && errno != EAGAIN) {
				snprintf(why, sizeof(why), "client: %s", strerror(errno));
				break;
			}
			clen = coff = 0;
			for (ssize_t i = 0; i < n; i++) {
				uint64_t o = cnt[0] + (uint64_t)i;
				bool in_range = o >= f->a && o - f->a < f->b;
				uint8_t b = in[i];

				if (f->kind == FP_FLIP && o == f->a)
					b ^= mask;
				if (f->kind == FP_DROP && in_range)
					continue;
				cbuf[clen++] = b;
				/* The copy comes once: cbuf holds FP_CHUNK + FP_DUP_MAX. */
				if (f->kind == FP_DUP && in_range) {
					dbuf[dlen++] = b;
					if (dlen == f->b) {
						memcpy(cbuf + clen, dbuf, dlen);
						clen += dlen;
					}
				}
			}
			if (n > 0)
				cnt[0] += (uint64_t)n;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && (p[1].events & POLLIN)) {
			n = recv(sfd, sbuf, FP_CHUNK, MSG_DONTWAIT);
			if (n == 0) {
				s_eof = true;
			} else if (n < 0 && errno != EINTR && errno != EAGAIN) {
				snprintf(why, sizeof(why), "server: %s", strerror(errno));
				break;
			}
			soff = 0;
			slen = n > 0 ? (size_t)n : 0;
			cnt[2] += slen;
		}
		rc = fp_flush(sfd, cbuf, clen, &coff, &cnt[1]);
		if (rc) {
			snprintf(why, sizeof(why), "server: %s", strerror(-rc));
			break;
		}
		rc = fp_flush(cfd, sbuf, slen, &soff, &cnt[3]);
		if (rc) {
			snprintf(why, sizeof(why), "client: %s", strerror(-rc));
			break;
		}
	}
out:
	close(cfd);
	close(sfd);
	return why;
}

static int fault_proxy(int argc, char **argv)
{
	const char *listen_at = NULL, *port_file = NULL, *target = NULL, *plan = NULL;
	static struct fp_fault faults[FP_PLAN_MAX];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint64_t seed = 0;
	size_t nfaults = 0;
	uint8_t *cbuf, *in, *sbuf, *dbuf;
	char line[128], err[512] = "", tmp[4096];
	char port[NI_MAXSERV];
	FILE *fp;
	int lfd;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen"))
			listen_at = argv[i + 1];
		else if (!strcmp(argv[i], "--port-file"))
			port_file = argv[i + 1];
		else if (!strcmp(argv[i], "--target"))
			target = argv[i + 1];
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--plan"))
			plan = argv[i + 1];
		else
			return 2;
	}
	if (!listen_at || !port_file || !target || !plan || argc % 2 == 0)
		return 2;
	fp = fopen(plan, "r");
	if (!fp) {
		fprintf(stderr, "fault-proxy: %s: %s\n", plan, strerror(errno));
		return 2;
	}
	while (nfaults < FP_PLAN_MAX && fgets(line, sizeof(line), fp)) {
		if (fp_parse(line, &faults[nfaults])) {
			line[strcspn(line, "\r\n")] = '\0';
			fprintf(stderr, "fault-proxy: %s line %zu: bad fault '%s'\n", plan,
				nfaults + 1, line);
			fclose(fp);
			return 2;
		}
		nfaults++;
	}
	fclose(fp);
	signal(SIGPIPE, SIG_IGN);
	lfd = conn_tcp_listen(listen_at, err, sizeof(err));
	if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&ss, &sl) ||
	    getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, port, sizeof(port), NI_NUMERICSERV)) {
		fprintf(stderr, "fault-proxy: %s\n", err[0] ? err : strerror(errno));
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	fp = fopen(tmp, "w");
	if (!fp || fprintf(fp, "%s\n", port) < 0 || fclose(fp) || rename(tmp, port_file)) {
		fprintf(stderr, "fault-proxy: %s: %s\n", port_file, strerror(errno));
		return 1;
	}
	cbuf = malloc(FP_CHUNK + FP_DUP_MAX);
	in = malloc(FP_CHUNK);
	sbuf = malloc(FP_CHUNK);
	dbuf = malloc(FP_DUP_MAX);
	if (!cbuf || !in || !sbuf || !dbuf)
		return 1;
	for (uint64_t k = 1;; k++) {
		static const struct fp_fault pass = { .kind = FP_PASS, .text = "pass" };
		const struct fp_fault *f = k <= nfaults ? &faults[k - 1] : &pass;
		uint64_t x = seed + k * 0x9e3779b97f4a7c15ull, cnt[4] = { 0 };
		const char *why;
		char what[160];
		uint8_t mask;
		int cfd, sfd;

		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64 */
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		mask = (uint8_t)(1 + (x ^ (x >> 31)) % 255);
		do
			cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		while (cfd < 0 && (errno == EINTR || errno == ECONNABORTED));
		if (cfd < 0) {
			perror("fault-proxy: accept");
			return 1;
		}
		sfd = conn_tcp_connect(target, 5000, NULL, err, sizeof(err));
		if (sfd < 0) {
			fprintf(stderr, "fault-proxy: conn %" PRIu64 " fault '%s': %s\n", k,
				f->text, err);
			close(cfd);
			continue;
		}
		fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);
		fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) | O_NONBLOCK);
		why = fp_relay(cfd, sfd, f, mask, cbuf, in, sbuf, dbuf, cnt);
		snprintf(what, sizeof(what), f->kind == FP_FLIP ? "'%s' (xor 0x%02x)" : "'%s'",
			 f->text, mask);
		fprintf(stderr,
			"fault-proxy: conn %" PRIu64 " fault %s: client->server %" PRIu64
			" bytes read, %" PRIu64 " sent; server->client %" PRIu64 " read, %" PRIu64
			" sent; %s\n",
			k, what, cnt[0], cnt[1], cnt[2], cnt[3], why);
		if (why == fp_stalled) {
			fp_hold(FP_STALL_MS);
			close(cfd);
			close(sfd);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
			"usage: test-tool changed-blocks|map-info|lz4-blocks|map-mem|wait-applied|bad-sender|netwatch|crash-at|fault-proxy ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "changed-blocks"))
		return changed_blocks(argc - 1, argv + 1);
	if (!strcmp(argv[1], "map-info"))
		return map_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "lz4-blocks"))
		return lz4_blocks(argc - 1, argv + 1);
	if (!strcmp(argv[1], "map-mem"))
		return map_mem(argc - 1, argv + 1);
	if (!strcmp(argv[1], "pending-save"))
		return pending_save_cmd(argc - 1, argv + 1);
	if (!strcmp(argv[1], "wait-applied"))
		return wait_applied(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bad-sender"))
		return bad_sender(argc - 1, argv + 1);
	if (!strcmp(argv[1], "netwatch"))
		return netwatch_cmd(argc - 1, argv + 1);
	if (!strcmp(argv[1], "crash-at"))
		return crash_at(argc - 1, argv + 1);
	if (!strcmp(argv[1], "fault-proxy"))
		return fault_proxy(argc - 1, argv + 1);
	fprintf(stderr, "test-tool: unknown command %s\n", argv[1]);
	return 2;
}
