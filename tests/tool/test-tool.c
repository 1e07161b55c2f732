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
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "kfio.h"
#include "map.h"
#include "merkle.h"
#include "scan.h"
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
			fprintf(stderr, "test-tool: %s: epoch %" PRIu64 " not applied after %" PRIu64
					" ms (%s)\n",
				dir, epoch, timeout_ms, rc ? err : "older epoch");
			return 1;
		}
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
			"usage: test-tool changed-blocks|map-info|lz4-blocks|map-mem ...\n");
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
	if (!strcmp(argv[1], "wait-applied"))
		return wait_applied(argc - 1, argv + 1);
	fprintf(stderr, "test-tool: unknown command %s\n", argv[1]);
	return 2;
}
