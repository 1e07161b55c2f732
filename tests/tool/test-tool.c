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
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "kfio.h"
#include "map.h"
#include "scan.h"

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

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test-tool changed-blocks|map-info ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "changed-blocks"))
		return changed_blocks(argc - 1, argv + 1);
	if (!strcmp(argv[1], "map-info"))
		return map_info(argc - 1, argv + 1);
	fprintf(stderr, "test-tool: unknown command %s\n", argv[1]);
	return 2;
}
