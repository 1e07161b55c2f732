// SPDX-License-Identifier: Apache-2.0
/*
 * kfio-bench — measures the kfio engine's read path on a file or block device,
 * the same way fio would: a sequential read of the whole target, or random aligned
 * reads for a fixed time, always through kfio_queue on the io_uring backend with
 * one registered buffer per queue slot, keeping the queue full.
 *
 * It prints one JSON object on stdout and nothing else, so bench/engine.sh can set
 * it side by side with fio. It is a benchmark, not a test: it has no thresholds and
 * knows nothing of hashing, frames or replication; it only reads and counts bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kfio.h"
#include "pvrepl_assert.h"

#define BENCH_EXIT_ERR	 1
#define BENCH_EXIT_USAGE 2
/* Fixed so that two runs read the same offsets (fio's randrepeat=1 does the same). */
#define BENCH_RAND_SEED	  0x9e3779b97f4a7c15ull
#define BENCH_SECONDS_MAX 86400u

struct bench_opts {
	const char *path;
	uint32_t bs_bytes;
	uint32_t depth;
	uint32_t seconds;
};

struct bench {
	const struct bench_opts *opts;
	struct kfio_dev dev;
	struct kfio_queue *q;
	struct kfio_cqe *cqes; /* depth entries, reaped into */
	uint32_t *free_bufs;   /* stack of buffer indexes not in flight */
	uint32_t free_count;
	uint64_t bytes;
	uint64_t ios;
	double seconds;
};

/* Produces the next request; returns false when the mode has nothing more to ask. */
typedef bool (*bench_next_fn)(struct bench *b, void *state, uint64_t *offset, uint32_t *len);

static double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_open(struct bench *b, const struct bench_opts *opts)
{
	struct kfio_queue_config cfg = {
		.backend = KFIO_BACKEND_URING,
		.depth = opts->depth,
		/* One buffer per slot: a full queue never waits for a buffer. */
		.buf_count = opts->depth,
		.buf_bytes = opts->bs_bytes,
	};
	struct kfio_dev *devs[1];
	char err[KFIO_ERR_MSG_MAX];
	uint32_t i;
	int ret;

	memset(b, 0, sizeof(*b));
	b->opts = opts;
	b->dev.fd = -1;

	ret = kfio_dev_open(&b->dev, opts->path, 0);
	if (ret < 0) {
		fprintf(stderr, "kfio-bench: %s: %s\n", opts->path, b->dev.err_msg);
		return ret;
	}
	if (!b->dev.direct) {
		fprintf(stderr, "kfio-bench: %s: not opened with O_DIRECT\n", opts->path);
		ret = -EINVAL;
		goto close_dev;
	}
	if (b->dev.dio_offset_align && opts->bs_bytes % b->dev.dio_offset_align) {
		fprintf(stderr,
			"kfio-bench: %s: --bs %" PRIu32
			" is not a multiple of the device's %" PRIu32 "-byte O_DIRECT alignment\n",
			opts->path, opts->bs_bytes, b->dev.dio_offset_align);
		ret = -EINVAL;
		goto close_dev;
	}

	devs[0] = &b->dev;
	err[0] = '\0';
	ret = kfio_queue_new(&b->q, &cfg, devs, 1, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "kfio-bench: %s: %s\n", opts->path, err[0] ? err : strerror(-ret));
		goto close_dev;
	}

	b->cqes = calloc(opts->depth, sizeof(*b->cqes));
	b->free_bufs = calloc(opts->depth, sizeof(*b->free_bufs));
	if (!b->cqes || !b->free_bufs) {
		fprintf(stderr, "kfio-bench: %s: out of memory\n", opts->path);
		ret = -ENOMEM;
		goto free_arrays;
	}
	for (i = 0; i < opts->depth; i++)
		b->free_bufs[b->free_count++] = opts->depth - 1 - i;
	return 0;

free_arrays:
	free(b->free_bufs);
	free(b->cqes);
	kfio_queue_free(b->q);
close_dev:
	kfio_dev_close(&b->dev);
	return ret;
}

static void bench_close(struct bench *b)
{
	free(b->free_bufs);
	free(b->cqes);
	kfio_queue_free(b->q);
	kfio_dev_close(&b->dev);
}

/*
 * Keeps the queue full: queue a request on every free buffer, submit them in one
 * call, then reap whatever has completed (waiting for at least one) and refill.
 * The batching is the engine's intended use (one submit per refill); fio by
 * default submits each request on its own, one syscall per request.
 */
static int bench_run(struct bench *b, bench_next_fn next, void *state)
{
	const char *path = b->opts->path;
	bool more = true;
	double start;
	int ret, n, i;

	start = bench_now_s();
	for (;;) {
		while (more && b->free_count) {
			uint64_t offset;
			uint32_t len, buf_idx;

			more = next(b, state, &offset, &len);
			if (!more)
				break;
			buf_idx = b->free_bufs[b->free_count - 1];
			ret = kfio_queue_read(b->q, 0, buf_idx, offset, len, offset);
			if (ret < 0) {
				fprintf(stderr, "kfio-bench: %s: %s\n", path, kfio_queue_err(b->q));
				return ret;
			}
			b->free_count--;
		}
		ret = kfio_queue_submit(b->q);
		if (ret < 0) {
			fprintf(stderr, "kfio-bench: %s: %s\n", path, kfio_queue_err(b->q));
			return ret;
		}
		if (!kfio_queue_inflight(b->q))
			break;

		n = kfio_queue_reap(b->q, b->cqes, b->opts->depth, 1);
		if (n < 0) {
			fprintf(stderr, "kfio-bench: %s: %s\n", path, kfio_queue_err(b->q));
			return n;
		}
		for (i = 0; i < n; i++) {
			const struct kfio_cqe *c = &b->cqes[i];

			if (c->res < 0) {
				fprintf(stderr,
					"kfio-bench: %s: read of %" PRIu32
					" bytes at offset %" PRIu64 " failed: %s\n",
					path, c->len, c->offset, strerror(-c->res));
				return c->res;
			}
			/* Short only at the end of the device, where len was rounded up. */
			if ((uint32_t)c->res < c->len &&
			    c->offset + (uint64_t)c->res < b->dev.size_bytes) {
				fprintf(stderr,
					"kfio-bench: %s: short read at offset %" PRIu64 ": %" PRId32
					" of %" PRIu32 " bytes\n",
					path, c->offset, c->res, c->len);
				return -EIO;
			}
			ASSERT(b->free_count < b->opts->depth);
			b->free_bufs[b->free_count++] = c->buf_idx;
			b->bytes += (uint64_t)c->res;
			b->ios++;
		}
	}
	b->seconds = bench_now_s() - start;
	return 0;
}

/* ----------------------------------------------------------------- modes */

struct seq_state {
	uint64_t cursor;
	uint32_t align;
};

static bool seq_next(struct bench *b, void *state, uint64_t *offset, uint32_t *len)
{
	struct seq_state *s = state;
	uint64_t left;

	if (s->cursor >= b->dev.size_bytes)
		return false;
	left = b->dev.size_bytes - s->cursor;
	*offset = s->cursor;
	*len = left < b->opts->bs_bytes ? (uint32_t)left : b->opts->bs_bytes;
	/* O_DIRECT needs an aligned length: the last read may reach past the end of an
	 * unaligned file and completes short, which bench_run accepts there. */
	*len = (*len + s->align - 1) / s->align * s->align;
	s->cursor += *len;
	return true;
}

struct rand_state {
	uint64_t x;
	uint64_t blocks;
	double deadline_s;
};

static bool rand_next(struct bench *b, void *state, uint64_t *offset, uint32_t *len)
{
	struct rand_state *s = state;

	if (bench_now_s() >= s->deadline_s)
		return false;
	/* xorshift64*: cheap and good enough to spread offsets. */
	s->x ^= s->x >> 12;
	s->x ^= s->x << 25;
	s->x ^= s->x >> 27;
	*offset = (s->x * 0x2545f4914f6cdd1dull) % s->blocks * b->opts->bs_bytes;
	*len = b->opts->bs_bytes;
	return true;
}

static void bench_print(const struct bench *b, const char *mode)
{
	double secs = b->seconds > 0 ? b->seconds : 1e-9;

	printf("{\"mode\":\"%s\",\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"gbps\":%.4f,"
	       "\"iops\":%.1f,\"bs\":%" PRIu32 ",\"depth\":%" PRIu32 "}\n",
	       mode, b->bytes, b->seconds, (double)b->bytes / secs / 1e9, (double)b->ios / secs,
	       b->opts->bs_bytes, b->opts->depth);
}

static int cmd_seqread(const struct bench_opts *opts)
{
	struct seq_state s = { 0 };
	struct bench b;
	int ret;

	if (bench_open(&b, opts) < 0)
		return BENCH_EXIT_ERR;
	s.align = b.dev.dio_offset_align ? b.dev.dio_offset_align : b.dev.logical_block_bytes;
	if (!s.align)
		s.align = 512;
	ret = bench_run(&b, seq_next, &s);
	if (ret == 0)
		bench_print(&b, "seqread");
	bench_close(&b);
	return ret < 0 ? BENCH_EXIT_ERR : 0;
}

static int cmd_randread(const struct bench_opts *opts)
{
	struct rand_state s = { .x = BENCH_RAND_SEED };
	struct bench b;
	int ret;

	if (bench_open(&b, opts) < 0)
		return BENCH_EXIT_ERR;
	s.blocks = b.dev.size_bytes / opts->bs_bytes;
	if (!s.blocks) {
		fprintf(stderr, "kfio-bench: %s: smaller than one %" PRIu32 "-byte block\n",
			opts->path, opts->bs_bytes);
		bench_close(&b);
		return BENCH_EXIT_ERR;
	}
	s.deadline_s = bench_now_s() + opts->seconds;
	ret = bench_run(&b, rand_next, &s);
	if (ret == 0)
		bench_print(&b, "randread");
	bench_close(&b);
	return ret < 0 ? BENCH_EXIT_ERR : 0;
}

/* -------------------------------------------------------------- commands */

struct bench_cmd {
	const char *name;
	int (*fn)(const struct bench_opts *opts);
	const char *help;
	struct bench_opts defaults;
};

static const struct bench_cmd bench_cmds[] = {
	{ "seqread",
	  cmd_seqread,
	  "read the whole target sequentially",
	  { .bs_bytes = 1u << 20, .depth = 16, .seconds = 0 } },
	{ "randread",
	  cmd_randread,
	  "random aligned reads for a fixed time",
	  { .bs_bytes = 4096, .depth = 64, .seconds = 10 } },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: kfio-bench <mode> --file PATH [--bs SIZE] [--depth N] [--seconds N]\n"
		   "Reads PATH with O_DIRECT through the kfio io_uring queue and prints one JSON\n"
		   "object: mode, bytes, seconds, gbps (1e9 bytes/s), iops, bs, depth.\n"
		   "SIZE takes k, m, g suffixes (powers of 1024).\n\nmodes:\n");
	for (i = 0; i < ARRAY_SIZE(bench_cmds); i++) {
		const struct bench_cmd *c = &bench_cmds[i];

		fprintf(f, "  %-9s %s (default --bs %" PRIu32 " --depth %" PRIu32, c->name, c->help,
			c->defaults.bs_bytes, c->defaults.depth);
		if (c->defaults.seconds)
			fprintf(f, " --seconds %" PRIu32, c->defaults.seconds);
		fprintf(f, ")\n");
	}
}

/* Parses "4096", "4k", "1M", "1g"; returns false on anything else or overflow. */
static bool parse_size(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		break;
	default:
		return false;
	}
	if (*end && end[1] != '\0' && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
		return false;
	if (v > max / mult)
		return false;
	*out = v * mult;
	return true;
}

/* Parses a plain decimal number in 1..max. */
static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0 || v > max)
		return false;
	*out = v;
	return true;
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kfio-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'kfio-bench --help'.\n");
	return BENCH_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "bs", required_argument, NULL, 'b' },
		{ "depth", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct bench_cmd *cmd = NULL;
	struct bench_opts opts;
	uint64_t v;
	size_t i;
	int c;

	if (argc < 2)
		return usage_error("%s", "missing mode");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(bench_cmds); i++)
		if (!strcmp(argv[1], bench_cmds[i].name))
			cmd = &bench_cmds[i];
	if (!cmd)
		return usage_error("unknown mode '%s'", argv[1]);
	opts = cmd->defaults;
	opts.path = NULL;

	/* Parse after the mode word. */
	optind = 2;
	while ((c = getopt_long(argc, argv, "f:b:d:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts.path = optarg;
			break;
		case 'b':
			if (!parse_size(optarg, KFIO_BUF_BYTES_MAX, &v) || !v || v % KFIO_MEM_ALIGN)
				return usage_error("--bs '%s': want a multiple of 4096 up to 64M",
						   optarg);
			opts.bs_bytes = (uint32_t)v;
			break;
		case 'd':
			if (!parse_uint(optarg, KFIO_QUEUE_DEPTH_MAX, &v))
				return usage_error("--depth '%s': want 1..4096", optarg);
			opts.depth = (uint32_t)v;
			break;
		case 's':
			if (!parse_uint(optarg, BENCH_SECONDS_MAX, &v))
				return usage_error("--seconds '%s': want 1..86400", optarg);
			opts.seconds = (uint32_t)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'kfio-bench --help'.\n");
			return BENCH_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!opts.path)
		return usage_error("%s", "--file is required");
	return cmd->fn(&opts);
}
