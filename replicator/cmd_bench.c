// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl bench`: measures what limits replication of one device on this machine
 * and projects the initial sync and the epochs from it. Three parts:
 *
 *   1. scan: the real scan pipeline (scan_run: io_uring O_DIRECT reads, xxh3 and
 *      zero recognition on every worker) over the device for at most --duration,
 *      against an in-memory map that is never persisted. lz4 is off, so this is
 *      the work of a rescan, which every epoch does in full;
 *   2. sample: --sample bytes of the device's own data, read in --block-size
 *      pieces spread evenly over it, timed through delta (xxh3) and codec (lz4
 *      compress and decompress, per block, one core), zero blocks counted apart
 *      since they travel as markers;
 *   3. projections from both and the assumed --link-rate, --change-rate and
 *      --interval (the model is in the help text).
 *
 * The device is opened read-only with O_DIRECT (no page cache pollution) and
 * never written; no state directory is read or made. It knows nothing of the
 * wire beyond "a block costs its lz4 size" and does not measure TLS.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "delta.h"
#include "kfio.h"
#include "map.h"
#include "out.h"
#include "progress.h"
#include "pvrepl_assert.h"
#include "scan.h"

#define BENCH_DURATION_MS_DEFAULT  10000u
#define BENCH_DURATION_MS_MIN	   100u
#define BENCH_DURATION_MS_MAX	   (3600u * 1000u)
#define BENCH_INTERVAL_MS_DEFAULT  30000u
#define BENCH_SAMPLE_BYTES_DEFAULT (256ull << 20)
#define BENCH_SAMPLE_BYTES_MAX	   (64ull << 30)
/* 1 Gbit/s: the link most clusters start from. */
#define BENCH_LINK_BYTES_PER_S_DEFAULT	 125000000ull
#define BENCH_CHANGE_BYTES_PER_S_DEFAULT (1ull << 20)
#define BENCH_DEVICE_BYTES_MIN		 (1ull << 20)
/* The scan's map costs 8 bytes a block (touched as the scan goes): at most 64 MiB,
 * a region of 128 GiB at the default block size. Past it the rate is
 * extrapolated, as it is past --duration. */
#define BENCH_SCAN_BLOCKS_MAX (8ull << 20)
/* The sample is read and timed in rounds of this many bytes: large enough that
 * the timers' cost vanishes, small enough to stay in the last-level cache
 * between the stages, as a block does in the scan workers. */
#define BENCH_ROUND_BYTES	 (4u << 20)
#define BENCH_SAMPLE_QUEUE_DEPTH 32u
#define BENCH_GIB		 1073741824.0

static void bench_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl bench --device DEV [options]\n\n"
		"Measures how fast this machine can replicate DEV and projects the initial sync\n"
		"and the epochs. Read-only: DEV is opened O_RDONLY with O_DIRECT and never\n"
		"written; no state directory is used. Safe on a production device (it adds\n"
		"read load for --duration; the workload's I/O competes with it).\n\n"
		"  -d, --device DEV          block device or image file to measure\n"
		"  -c, --change-rate RATE    distinct bytes the workload changes per second,\n"
		"                            counted in whole blocks (default 1M)\n"
		"  -l, --link-rate RATE      bandwidth to the standby (default 1Gbit)\n"
		"  -i, --interval DURATION   time between epoch starts, as replicate (default %us)\n"
		"  -t, --duration DURATION   stop the scan after this long (default %us)\n"
		"  -b, --block-size N        map block size: a power of two from 4k to 1M\n"
		"                            (default %uk)\n"
		"  -s, --sample N            bytes sampled for the xxh3 and lz4 rates (default 256M)\n"
		"      --progress MODE       auto, tty, log or none (default auto)\n"
		"  -o, --output FMT          text (default) or json\n"
		"  -h, --help                this help\n\n"
		"RATE is bytes per second with k/M/G/T suffixes in powers of 1024 (\"100M\" is\n"
		"100 MiB/s, as --max-rate), or bits per second with a bit, bit/s or bps suffix\n"
		"in powers of 1000, as links are sold (\"100Mbit\" is 12.5 MB/s, \"2.5Gbit\").\n\n"
		"What it measures:\n"
		"  scan    the scan pipeline over DEV (io_uring reads, xxh3 and zero check on\n"
		"          every CPU), without lz4: the work of a rescan. It stops at --duration;\n"
		"          on a larger device the full-scan time is extrapolated, and says so.\n"
		"  sample  --sample bytes in --block-size pieces spread evenly over DEV: the\n"
		"          share of zero blocks (sent as markers), and xxh3, lz4 compress and\n"
		"          decompress rates on one core with lz4's ratio on the other blocks.\n"
		"          lz4 runs per block, as for scattered changes; a block that lz4\n"
		"          shrinks by less than 1/16 is sent raw (ratio 1), as replication does.\n\n"
		"The model (payload only; framing adds under 0.1%%, TLS is not measured):\n"
		"  initial sync  bytes sent = size x (1 - zero share) / ratio; rate = the least\n"
		"                of the scan rate, link / (bytes sent per device byte), and the\n"
		"                CPUs / (scan CPU + lz4 CPU per device byte)\n"
		"  epoch         time E = full rescan + changed bytes / ratio / link (an upper\n"
		"                bound: sending overlaps the scan); one starts every\n"
		"                max(interval, E); changed bytes = change rate x that period,\n"
		"                at most the device; RPO (age of the standby's data at worst)\n"
		"                = period + E. When change rate / ratio reaches the link rate,\n"
		"                epochs grow until each resends the whole device. Rewrites of\n"
		"                a block within an epoch count once: give the rate of distinct\n"
		"                blocks changed.\n",
		BENCH_INTERVAL_MS_DEFAULT / 1000, BENCH_DURATION_MS_DEFAULT / 1000,
		SCAN_BLOCK_BYTES_DEFAULT / 1024);
}

struct bench_opts {
	const char *device;
	uint64_t change_bytes_per_s;
	uint64_t link_bytes_per_s;
	uint64_t interval_ms;
	uint64_t duration_ms;
	uint32_t block_bytes;
	uint64_t sample_bytes;
	enum progress_mode progress;
	enum out_format fmt;
};

static int bench_opt_rate(const char *name, const char *arg, bool zero_ok, uint64_t *v)
{
	if (cli_parse_rate(arg, v) || (!zero_ok && *v == 0)) {
		cli_err("--%s %s: expected %sbytes per second (e.g. 5M, 100M) or bits per second (e.g. 100Mbit, 1Gbit)",
			name, arg, zero_ok ? "" : "a rate above zero in ");
		return -EINVAL;
	}
	return 0;
}

static int bench_opt_duration(const char *name, const char *arg, uint64_t min_ms, uint64_t max_ms,
			      uint64_t *ms)
{
	if (cli_parse_duration(arg, ms) || *ms < min_ms || *ms > max_ms) {
		cli_err("--%s %s: expected a duration from %" PRIu64 "ms to %" PRIu64
			"h (e.g. 10s, 2m)",
			name, arg, min_ms, max_ms / 3600000);
		return -EINVAL;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
	enum { OPT_PROGRESS = 256 };
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "change-rate", required_argument, NULL, 'c' },
		{ "link-rate", required_argument, NULL, 'l' },
		{ "interval", required_argument, NULL, 'i' },
		{ "duration", required_argument, NULL, 't' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "sample", required_argument, NULL, 's' },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *sample_arg = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "d:c:l:i:t:b:s:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o->device = optarg;
			break;
		case 'c':
			if (bench_opt_rate("change-rate", optarg, true, &o->change_bytes_per_s))
				return -EINVAL;
			break;
		case 'l':
			if (bench_opt_rate("link-rate", optarg, false, &o->link_bytes_per_s))
				return -EINVAL;
			break;
		case 'i':
			if (bench_opt_duration("interval", optarg, 1, 24 * 3600000ull,
					       &o->interval_ms))
				return -EINVAL;
			break;
		case 't':
			if (bench_opt_duration("duration", optarg, BENCH_DURATION_MS_MIN,
					       BENCH_DURATION_MS_MAX, &o->duration_ms))
				return -EINVAL;
			break;
		case 'b':
			if (cli_opt_block_size(optarg, &o->block_bytes))
				return -EINVAL;
			break;
		case 's':
			sample_arg = optarg;
			break;
		case OPT_PROGRESS:
			if (cli_opt_progress(optarg, &o->progress))
				return -EINVAL;
			break;
		case 'o':
			if (cli_opt_output(optarg, &o->fmt))
				return -EINVAL;
			break;
		case 'h':
			bench_usage(stdout);
			exit(CLI_EXIT_OK);
		default:
			return -EINVAL;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	/* Checked after the loop: the minimum is one block of the final --block-size. */
	if (sample_arg &&
	    (cli_parse_size(sample_arg, &o->sample_bytes) || o->sample_bytes < o->block_bytes ||
	     o->sample_bytes > BENCH_SAMPLE_BYTES_MAX)) {
		cli_err("--sample %s: expected bytes from one block (%u) to 64G (e.g. 256M)",
			sample_arg, o->block_bytes);
		return -EINVAL;
	}
	if (!o->device) {
		cli_err("bench needs --device DEV");
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------- scan */

struct bench_scan {
	uint64_t region_bytes;	/* what the scan was allowed to cover */
	uint64_t scanned_bytes; /* blocks hashed, in bytes */
	uint64_t bytes_read;
	double seconds;
	double cpu_seconds;
	uint32_t workers;
	bool complete; /* every whole block of the device was scanned */
	bool stopped;  /* stopped at --duration */
};

struct bench_deadline {
	double deadline_s;
	bool stopped; /* set by the first sink call past the deadline */
};

/* The map is empty, so every block reaches the sink: it is the scan's clock. */
static int bench_scan_batch(const struct scan_batch *b, void *arg)
{
	struct bench_deadline *d = arg;

	(void)b;
	if (clock_mono_s() < d->deadline_s)
		return 0;
	__atomic_store_n(&d->stopped, true, __ATOMIC_RELAXED);
	return -ECANCELED;
}

struct bench_progress {
	struct progress p;
	uint64_t region_bytes;
	double duration_s;
};

/* The scan ends at the deadline, not at the end of the device: shows progress
 * towards what it will have read by then, so percent and ETA mean something. */
static void bench_progress_cb(uint64_t done_bytes, uint64_t total_bytes, void *arg)
{
	struct bench_progress *bp = arg;
	double el = clock_mono_s() - bp->p.start_s;
	uint64_t total = bp->region_bytes;

	(void)total_bytes;
	if (el > 0.2) {
		double expect = (double)done_bytes / el * bp->duration_s;

		if (expect < (double)total)
			total = (uint64_t)expect;
	}
	bp->p.total_bytes = total > done_bytes ? total : done_bytes;
	progress_update(&bp->p, done_bytes);
}

static int bench_scan_run(struct kfio_dev *dev, const struct bench_opts *o, struct bench_scan *r,
			  char *err, size_t err_len)
{
	uint32_t bb = o->block_bytes;
	/* A view of the device's first region_bytes: the scan reads from 0 to its
	 * size, and the map is sized for it. It shares dev's fd; only dev closes. */
	struct kfio_dev view = *dev;
	struct bench_deadline dl;
	struct bench_progress bp;
	struct scan_config cfg;
	struct scan_sink sink = { .batch = bench_scan_batch, .ctx = &dl };
	struct scan_stats st;
	struct map m;
	int rc;

	memset(r, 0, sizeof(*r));
	r->region_bytes = dev->size_bytes / bb * bb;
	if (r->region_bytes > BENCH_SCAN_BLOCKS_MAX * bb)
		r->region_bytes = BENCH_SCAN_BLOCKS_MAX * bb;
	view.size_bytes = r->region_bytes;
	rc = map_create(&m, "bench", r->region_bytes, bb);
	if (rc) {
		snprintf(err, err_len, "cannot make an in-memory map for %s: %s", dev->path,
			 strerror(-rc));
		return rc;
	}
	scan_config_defaults(&cfg);
	cfg.compress = false; /* a rescan never compresses; lz4 is timed on the sample */
	progress_init(&bp.p, o->progress, "bench scan", dev->path, r->region_bytes);
	bp.region_bytes = r->region_bytes;
	bp.duration_s = (double)o->duration_ms / 1e3;
	cfg.progress = bench_progress_cb;
	cfg.progress_ctx = &bp;
	dl.stopped = false;
	dl.deadline_s = clock_mono_s() + (double)o->duration_ms / 1e3;

	rc = scan_run(&view, &m, &cfg, &sink, &st, err, err_len);
	if (rc == -ECANCELED && __atomic_load_n(&dl.stopped, __ATOMIC_RELAXED))
		rc = 0;
	/* Ending at the deadline is the end: the final line says 100%. */
	if (bp.p.total_bytes < st.bytes_read || dl.stopped)
		bp.p.total_bytes = st.bytes_read;
	progress_finish(&bp.p, st.bytes_read);
	if (!rc) {
		r->stopped = dl.stopped;
		r->complete = st.blocks_scanned * bb >= dev->size_bytes / bb * bb;
		r->scanned_bytes = st.blocks_scanned * bb;
		r->bytes_read = st.bytes_read;
		r->seconds = st.seconds;
		r->cpu_seconds = st.cpu_seconds;
		r->workers = st.workers;
		if (!r->scanned_bytes || r->seconds <= 0) {
			snprintf(err, err_len, "%s: the scan read nothing in %.3f s", dev->path,
				 r->seconds);
			rc = -EIO;
		}
	}
	map_release(&m);
	return rc;
}

/* ----------------------------------------------------------------- sample */

struct bench_sample {
	uint64_t blocks; /* sampled, zero ones included */
	uint64_t zero_blocks;
	uint64_t data_bytes;	   /* bytes of the non-zero blocks */
	uint64_t compressed_bytes; /* what the codec made of them (raw ones at full size) */
	uint64_t lz4_bytes;	   /* plaintext of the blocks lz4 kept: decompressed */
	double hash_seconds;
	double compress_seconds;
	double decompress_seconds;
	uint64_t hash_mix; /* the hashes' xor: keeps the hashing observable */
	bool whole_device;
};

struct bench_sampler {
	struct kfio_dev *dev;
	struct kfio_queue *q;
	uint32_t block_bytes;
	uint32_t round_blocks;
	uint64_t dev_blocks; /* whole blocks of the device */
	uint64_t blocks;     /* pieces to sample */
	char *out;	     /* codec output, round_blocks x block_bytes */
	char *plain;	     /* decompression target, one block */
	uint32_t *out_bytes; /* per piece of the round */
	uint8_t *kind;	     /* per piece: enum codec_kind, or BENCH_PIECE_ZERO */
};

#define BENCH_PIECE_ZERO 0xffu

/* Block index of piece k: k x dev_blocks / blocks, so pieces spread evenly. */
static uint64_t sampler_block(const struct bench_sampler *s, uint64_t k)
{
	return (uint64_t)((unsigned __int128)k * s->dev_blocks / s->blocks);
}

static void sampler_drain(struct bench_sampler *s)
{
	struct kfio_cqe cqes[64];

	while (kfio_queue_inflight(s->q) > 0)
		if (kfio_queue_reap(s->q, cqes, ARRAY_SIZE(cqes), 1) < 0)
			break;
}

/* Reads pieces [k0, k0 + n) into buffers 0..n-1, keeping the queue full. */
static int sampler_read(struct bench_sampler *s, uint64_t k0, uint32_t n, char *err, size_t err_len)
{
	struct kfio_cqe cqes[64];
	uint32_t queued = 0, done = 0;
	int rc;

	while (done < n) {
		while (queued < n) {
			uint64_t off = sampler_block(s, k0 + queued) * s->block_bytes;

			rc = kfio_queue_read(s->q, 0, queued, off, s->block_bytes, queued);
			if (rc == -EBUSY)
				break;
			if (rc) {
				snprintf(err, err_len, "%s", kfio_queue_err(s->q));
				goto fail;
			}
			queued++;
		}
		rc = kfio_queue_submit(s->q);
		if (rc < 0) {
			snprintf(err, err_len, "%s", kfio_queue_err(s->q));
			goto fail;
		}
		rc = kfio_queue_reap(s->q, cqes, ARRAY_SIZE(cqes), 1);
		if (rc < 0) {
			snprintf(err, err_len, "%s", kfio_queue_err(s->q));
			goto fail;
		}
		for (int i = 0; i < rc; i++) {
			const struct kfio_cqe *e = &cqes[i];

			if (e->res < 0) {
				snprintf(err, err_len,
					 "%s: read of %u bytes at offset %" PRIu64 " failed: %s",
					 s->dev->path, e->len, e->offset, strerror(-e->res));
				rc = e->res;
				goto fail;
			}
			if ((uint32_t)e->res != e->len) {
				snprintf(err, err_len,
					 "%s: read at offset %" PRIu64
					 " returned %d of %u bytes; did the device shrink?",
					 s->dev->path, e->offset, e->res, e->len);
				rc = -EIO;
				goto fail;
			}
		}
		done += (uint32_t)rc;
	}
	return 0;

fail:
	sampler_drain(s);
	return rc;
}

/*
 * Times the stages on one round of n pieces in buffers 0..n-1, each stage over
 * the whole round so the clock is read a few times per round, not per block.
 * Zero blocks are found first (untimed: the scan's cost, measured there) and
 * skip the other stages, as in the scan.
 */
static int sampler_measure(struct bench_sampler *s, uint32_t n, struct bench_sample *r, char *err,
			   size_t err_len)
{
	uint32_t bb = s->block_bytes;
	double t;

	for (uint32_t i = 0; i < n; i++) {
		bool zero = delta_is_zero(kfio_queue_buf(s->q, i), bb);

		s->kind[i] = zero ? BENCH_PIECE_ZERO : CODEC_RAW;
		r->zero_blocks += zero;
		r->data_bytes += zero ? 0 : bb;
	}
	r->blocks += n;

	t = clock_mono_s();
	for (uint32_t i = 0; i < n; i++)
		if (s->kind[i] != BENCH_PIECE_ZERO)
			r->hash_mix ^= delta_hash(kfio_queue_buf(s->q, i), bb);
	r->hash_seconds += clock_mono_s() - t;

	t = clock_mono_s();
	for (uint32_t i = 0; i < n; i++) {
		enum codec_kind kind;
		int len;

		if (s->kind[i] == BENCH_PIECE_ZERO)
			continue;
		len = codec_compress(kfio_queue_buf(s->q, i), bb, s->out + (size_t)i * bb, bb,
				     &kind);
		if (len < 0) {
			snprintf(err, err_len, "lz4 failed on a block of %s: %s", s->dev->path,
				 strerror(-len));
			return len;
		}
		s->kind[i] = (uint8_t)kind;
		s->out_bytes[i] = (uint32_t)len;
	}
	r->compress_seconds += clock_mono_s() - t;
	for (uint32_t i = 0; i < n; i++) {
		if (s->kind[i] == BENCH_PIECE_ZERO)
			continue;
		r->compressed_bytes += s->out_bytes[i];
		r->lz4_bytes += s->kind[i] == CODEC_LZ4 ? bb : 0;
	}

	/* The receiver's side: only lz4 blocks are decoded (raw ones are the data). */
	t = clock_mono_s();
	for (uint32_t i = 0; i < n; i++) {
		int rc;

		if (s->kind[i] != CODEC_LZ4)
			continue;
		rc = codec_decompress(CODEC_LZ4, s->out + (size_t)i * bb, s->out_bytes[i], s->plain,
				      bb);
		if (rc) {
			snprintf(err, err_len,
				 "lz4 did not give back a block of %s it had compressed: %s",
				 s->dev->path, strerror(-rc));
			return rc;
		}
	}
	r->decompress_seconds += clock_mono_s() - t;
	return 0;
}

static int bench_sample_run(struct kfio_dev *dev, const struct bench_opts *o,
			    struct bench_sample *r, char *err, size_t err_len)
{
	struct bench_sampler s = { .dev = dev, .block_bytes = o->block_bytes };
	struct kfio_dev *devs[1] = { dev };
	struct kfio_queue_config qc;
	struct progress prog;
	uint64_t k;
	int rc;

	memset(r, 0, sizeof(*r));
	s.dev_blocks = dev->size_bytes / s.block_bytes;
	s.blocks = o->sample_bytes / s.block_bytes;
	if (s.blocks >= s.dev_blocks) {
		s.blocks = s.dev_blocks;
		r->whole_device = true;
	}
	ASSERT(s.blocks > 0);
	s.round_blocks = BENCH_ROUND_BYTES / s.block_bytes;
	if (s.round_blocks == 0)
		s.round_blocks = 1;
	if (s.round_blocks > s.blocks)
		s.round_blocks = (uint32_t)s.blocks;
	qc = (struct kfio_queue_config){
		.backend = KFIO_BACKEND_URING,
		.depth = s.round_blocks < BENCH_SAMPLE_QUEUE_DEPTH ? s.round_blocks
								   : BENCH_SAMPLE_QUEUE_DEPTH,
		.buf_count = s.round_blocks,
		.buf_bytes = s.block_bytes,
	};
	rc = kfio_queue_new(&s.q, &qc, devs, 1, err, err_len);
	if (rc)
		return rc;
	s.out = malloc((size_t)s.round_blocks * s.block_bytes);
	s.plain = malloc(s.block_bytes);
	s.out_bytes = calloc(s.round_blocks, sizeof(*s.out_bytes));
	s.kind = calloc(s.round_blocks, sizeof(*s.kind));
	if (!s.out || !s.plain || !s.out_bytes || !s.kind) {
		snprintf(err, err_len, "out of memory for the sample's buffers");
		rc = -ENOMEM;
		goto free_bufs;
	}

	progress_init(&prog, o->progress, "bench sample", dev->path, s.blocks * s.block_bytes);
	for (k = 0; k < s.blocks; k += s.round_blocks) {
		uint32_t n =
			s.blocks - k < s.round_blocks ? (uint32_t)(s.blocks - k) : s.round_blocks;

		rc = sampler_read(&s, k, n, err, err_len);
		if (!rc)
			rc = sampler_measure(&s, n, r, err, err_len);
		if (rc)
			break;
		progress_update(&prog, (k + n) * s.block_bytes);
	}
	progress_finish(&prog, r->blocks * s.block_bytes);

free_bufs:
	free(s.kind);
	free(s.out_bytes);
	free(s.plain);
	free(s.out);
	kfio_queue_free(s.q);
	return rc;
}

/* ------------------------------------------------------------- projection */

enum bench_bound {
	BENCH_BOUND_DISK, /* the scan: reads and hashing on every CPU */
	BENCH_BOUND_LINK,
	BENCH_BOUND_CPU,
};

static const char *const bench_bound_names[] = {
	[BENCH_BOUND_DISK] = "scan",
	[BENCH_BOUND_LINK] = "link",
	[BENCH_BOUND_CPU] = "cpu",
};

struct bench_model {
	/* measured */
	double scan_bytes_per_s;
	double scan_cpu_s_per_byte;
	double full_scan_s;
	double zero_share;	  /* of the device's blocks */
	double ratio;		  /* lz4 on non-zero blocks: plaintext / sent; >= 1 */
	double hash_bytes_per_s;  /* one core; 0 = nothing to measure */
	double lz4_bytes_per_s;	  /* one core, compress input; 0 = nothing to measure */
	double unlz4_bytes_per_s; /* one core, decompress output; 0 = nothing to measure */
	double lz4_cpu_s_per_byte;
	double cpus;
	/* initial sync */
	double initial_sent_bytes;
	double initial_bytes_per_s; /* device bytes per second */
	double initial_s;
	double initial_cpu_s;
	enum bench_bound initial_bound;
	/* epochs in steady state */
	bool keeps_up;
	double epoch_s;
	double period_s;
	double epoch_changed_bytes;
	double epoch_sent_bytes;
	double rpo_s;
	double epoch_cpu_s;
	double cpus_busy;
	double max_change_bytes_per_s;
};

static void bench_project(const struct bench_opts *o, uint64_t size_bytes,
			  const struct bench_scan *sc, const struct bench_sample *sa,
			  struct bench_model *m)
{
	double size = (double)size_bytes;
	double link = (double)o->link_bytes_per_s;
	double change = (double)o->change_bytes_per_s;
	double interval = (double)o->interval_ms / 1e3;
	double data_share, sent_per_byte, cpu_per_byte, cpu_rate, link_rate, w;

	memset(m, 0, sizeof(*m));
	ASSERT(sc->seconds > 0);
	ASSERT(sc->scanned_bytes > 0);
	ASSERT(sa->blocks > 0);
	ASSERT(link > 0);
	m->scan_bytes_per_s = (double)sc->scanned_bytes / sc->seconds;
	m->scan_cpu_s_per_byte = sc->cpu_seconds / (double)sc->scanned_bytes;
	m->full_scan_s = size / m->scan_bytes_per_s;
	m->zero_share = (double)sa->zero_blocks / (double)sa->blocks;
	/* All-zero sample: nothing says how changed data compresses; assume it
	 * does not (ratio 1), the safe side for every projection. */
	m->ratio =
		sa->compressed_bytes ? (double)sa->data_bytes / (double)sa->compressed_bytes : 1.0;
	/* Rates only from blocks that were timed: an all-zero sample times nothing. */
	if (sa->data_bytes && sa->hash_seconds > 0)
		m->hash_bytes_per_s = (double)sa->data_bytes / sa->hash_seconds;
	if (sa->data_bytes && sa->compress_seconds > 0) {
		m->lz4_bytes_per_s = (double)sa->data_bytes / sa->compress_seconds;
		m->lz4_cpu_s_per_byte = sa->compress_seconds / (double)sa->data_bytes;
	}
	if (sa->lz4_bytes && sa->decompress_seconds > 0)
		m->unlz4_bytes_per_s = (double)sa->lz4_bytes / sa->decompress_seconds;
	m->cpus = sc->workers ? sc->workers : 1;

	/* Initial sync: every block read and hashed, the non-zero ones compressed
	 * and sent. Each resource caps the rate in device bytes per second. */
	data_share = 1.0 - m->zero_share;
	sent_per_byte = data_share / m->ratio;
	cpu_per_byte = m->scan_cpu_s_per_byte + data_share * m->lz4_cpu_s_per_byte;
	m->initial_sent_bytes = size * sent_per_byte;
	m->initial_bytes_per_s = m->scan_bytes_per_s;
	m->initial_bound = BENCH_BOUND_DISK;
	if (sent_per_byte > 0) {
		link_rate = link / sent_per_byte;
		if (link_rate < m->initial_bytes_per_s) {
			m->initial_bytes_per_s = link_rate;
			m->initial_bound = BENCH_BOUND_LINK;
		}
	}
	if (cpu_per_byte > 0) {
		cpu_rate = m->cpus / cpu_per_byte;
		if (cpu_rate < m->initial_bytes_per_s) {
			m->initial_bytes_per_s = cpu_rate;
			m->initial_bound = BENCH_BOUND_CPU;
		}
	}
	m->initial_s = size / m->initial_bytes_per_s;
	m->initial_cpu_s = size * cpu_per_byte;

	/* Epochs: a full rescan S, then the changed bytes C over the link (summed:
	 * an upper bound). One starts every P = max(interval, E), C = min(change x
	 * P, size) and E = S + C w / L with w = 1 / ratio. Try P = interval; if the
	 * epoch is longer, P = E: E = S / (1 - change w / L) while the changes fit
	 * the device, else every epoch resends the whole device. */
	w = 1.0 / m->ratio;
	m->max_change_bytes_per_s = link * m->ratio;
	m->keeps_up = change * w < link;
	m->period_s = interval;
	m->epoch_s = m->full_scan_s + fmin(change * interval, size) * w / link;
	if (m->epoch_s > interval) {
		m->epoch_s = m->full_scan_s + size * w / link;
		if (m->keeps_up) {
			double e = m->full_scan_s / (1.0 - change * w / link);

			if (change * e < size)
				m->epoch_s = e;
		}
		m->period_s = m->epoch_s;
	}
	m->epoch_changed_bytes = fmin(change * m->period_s, size);
	m->epoch_sent_bytes = m->epoch_changed_bytes * w;
	m->rpo_s = m->period_s + m->epoch_s;
	m->epoch_cpu_s =
		size * m->scan_cpu_s_per_byte + m->epoch_changed_bytes * m->lz4_cpu_s_per_byte;
	m->cpus_busy = m->epoch_cpu_s / m->period_s;
}

/* ----------------------------------------------------------------- output */

/* A measured value, or null (text "-") when there was nothing to measure or the
 * value is not finite: JSON has no infinity. */
static void out_measured(struct out *o, const char *key, const char *label, bool known, double v,
			 enum out_unit unit)
{
	if (known && isfinite(v))
		out_f64(o, key, label, v, unit);
	else
		out_str(o, key, label, NULL);
}

static void bench_report(struct out *o, const struct kfio_dev *dev, const struct bench_opts *op,
			 const struct bench_scan *sc, const struct bench_sample *sa,
			 const struct bench_model *m)
{
	out_str(o, "device", "Device", dev->path);
	out_u64(o, "size_bytes", "Size", dev->size_bytes, OUT_UNIT_BYTES);
	out_u64(o, "block_size", "Block size", op->block_bytes, OUT_UNIT_BYTES);
	out_u64(o, "workers", "Workers (CPUs)", sc->workers, OUT_UNIT_NONE);

	out_u64(o, "scan_bytes", "Scan: bytes scanned", sc->scanned_bytes, OUT_UNIT_BYTES);
	out_f64(o, "scan_seconds", "Scan: time", sc->seconds, OUT_UNIT_SECONDS);
	out_f64(o, "scan_bytes_per_second", "Scan: rate (read + xxh3, all CPUs)",
		m->scan_bytes_per_s, OUT_UNIT_BYTES_PER_S);
	out_f64(o, "scan_cpu_seconds", "Scan: CPU time", sc->cpu_seconds, OUT_UNIT_SECONDS);
	out_f64(o, "cpu_seconds_per_gib_scanned", "Scan: CPU per GiB scanned",
		m->scan_cpu_s_per_byte * BENCH_GIB, OUT_UNIT_SECONDS);
	out_bool(o, "scan_complete", "Scan: whole device", sc->complete);
	out_bool(o, "scan_stopped", "Scan: stopped at --duration", sc->stopped);
	out_f64(o, "full_scan_seconds",
		sc->complete ? "Full rescan time" : "Full rescan time (extrapolated)",
		m->full_scan_s, OUT_UNIT_SECONDS);

	out_u64(o, "sample_bytes", "Sample: bytes", sa->blocks * op->block_bytes, OUT_UNIT_BYTES);
	out_u64(o, "sample_blocks", "Sample: blocks", sa->blocks, OUT_UNIT_NONE);
	out_u64(o, "sample_zero_blocks", "Sample: zero blocks (markers)", sa->zero_blocks,
		OUT_UNIT_NONE);
	out_f64(o, "zero_fraction", "Sample: zero fraction", m->zero_share, OUT_UNIT_RATIO);
	out_u64(o, "sample_data_bytes", "Sample: non-zero bytes", sa->data_bytes, OUT_UNIT_BYTES);
	out_u64(o, "sample_compressed_bytes", "Sample: after lz4", sa->compressed_bytes,
		OUT_UNIT_BYTES);
	out_f64(o, "compression_ratio", "lz4 ratio (non-zero blocks)", m->ratio, OUT_UNIT_RATIO);
	out_measured(o, "hash_bytes_per_second", "xxh3 rate (1 CPU)", m->hash_bytes_per_s > 0,
		     m->hash_bytes_per_s, OUT_UNIT_BYTES_PER_S);
	out_measured(o, "compress_bytes_per_second", "lz4 compress rate (1 CPU, input)",
		     m->lz4_bytes_per_s > 0, m->lz4_bytes_per_s, OUT_UNIT_BYTES_PER_S);
	out_measured(o, "decompress_bytes_per_second", "lz4 decompress rate (1 CPU, output)",
		     m->unlz4_bytes_per_s > 0, m->unlz4_bytes_per_s, OUT_UNIT_BYTES_PER_S);
	out_measured(o, "cpu_seconds_per_gib_sent", "lz4 CPU per GiB sent",
		     m->lz4_cpu_s_per_byte > 0, m->lz4_cpu_s_per_byte * m->ratio * BENCH_GIB,
		     OUT_UNIT_SECONDS);

	out_f64(o, "link_bytes_per_second", "Assumed link rate", (double)op->link_bytes_per_s,
		OUT_UNIT_BYTES_PER_S);
	out_f64(o, "change_bytes_per_second", "Assumed change rate", (double)op->change_bytes_per_s,
		OUT_UNIT_BYTES_PER_S);
	out_f64(o, "interval_seconds", "Assumed interval", (double)op->interval_ms / 1e3,
		OUT_UNIT_SECONDS);

	out_u64(o, "initial_sync_bytes", "Initial sync: bytes sent",
		(uint64_t)m->initial_sent_bytes, OUT_UNIT_BYTES);
	out_f64(o, "initial_sync_seconds", "Initial sync: time", m->initial_s, OUT_UNIT_SECONDS);
	out_f64(o, "initial_sync_bytes_per_second", "Initial sync: rate (device bytes)",
		m->initial_bytes_per_s, OUT_UNIT_BYTES_PER_S);
	out_str(o, "initial_sync_bound", "Initial sync: limited by",
		bench_bound_names[m->initial_bound]);
	out_f64(o, "initial_sync_cpu_seconds", "Initial sync: CPU time", m->initial_cpu_s,
		OUT_UNIT_SECONDS);

	out_bool(o, "epoch_keeps_up", "Link carries the change rate", m->keeps_up);
	out_f64(o, "epoch_seconds", "Epoch: time", m->epoch_s, OUT_UNIT_SECONDS);
	out_f64(o, "epoch_period_seconds", "Epoch: one every", m->period_s, OUT_UNIT_SECONDS);
	out_u64(o, "epoch_changed_bytes", "Epoch: changed bytes", (uint64_t)m->epoch_changed_bytes,
		OUT_UNIT_BYTES);
	out_u64(o, "epoch_sent_bytes", "Epoch: bytes sent", (uint64_t)m->epoch_sent_bytes,
		OUT_UNIT_BYTES);
	out_f64(o, "rpo_seconds", "Epoch: expected RPO (worst case)", m->rpo_s, OUT_UNIT_SECONDS);
	out_f64(o, "epoch_cpu_seconds", "Epoch: CPU time", m->epoch_cpu_s, OUT_UNIT_SECONDS);
	out_f64(o, "epoch_cpus_busy", "Epoch: CPUs busy on average", m->cpus_busy, OUT_UNIT_RATIO);
	out_f64(o, "max_change_bytes_per_second", "Change rate the link can carry",
		m->max_change_bytes_per_s, OUT_UNIT_BYTES_PER_S);
}

/* Text only: what a person must know to read the numbers right. */
static void bench_notes(FILE *f, const struct kfio_dev *dev, const struct bench_scan *sc,
			const struct bench_sample *sa, const struct bench_model *m)
{
	char a[32], b[32];

	fputc('\n', f);
	if (!sc->complete)
		fprintf(f,
			"The scan covered %s of %s (%.1f%%)%s;\n"
			"the full rescan and initial sync times are extrapolated from its rate.\n",
			out_human_bytes(sc->scanned_bytes, a, sizeof(a)),
			out_human_bytes(dev->size_bytes, b, sizeof(b)),
			100.0 * (double)sc->scanned_bytes / (double)dev->size_bytes,
			sc->stopped ? " before --duration ended it" : ", the bench's limit");
	if (sa->whole_device)
		fprintf(f, "The sample is the whole device.\n");
	if (!sa->data_bytes)
		fprintf(f, "Every sampled block is zero: nothing to time for xxh3 and lz4, and\n"
			   "changed data is assumed not to compress (ratio 1).\n");
	if (!m->keeps_up)
		fprintf(f,
			"The change rate after lz4 reaches the link rate (it carries at most\n"
			"%.1f MB/s of changes at this ratio): epochs grow until each resends the\n"
			"whole device.\n",
			m->max_change_bytes_per_s / 1e6);
	else if (m->epoch_changed_bytes >= (double)dev->size_bytes)
		fprintf(f, "At this change rate every block changes within an epoch: each epoch\n"
			   "resends the whole device.\n");
	fprintf(f, "Rates are payload only: TLS encryption and framing are not counted.\n"
		   "The model is in `pvrepl bench --help`.\n");
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = {
		.change_bytes_per_s = BENCH_CHANGE_BYTES_PER_S_DEFAULT,
		.link_bytes_per_s = BENCH_LINK_BYTES_PER_S_DEFAULT,
		.interval_ms = BENCH_INTERVAL_MS_DEFAULT,
		.duration_ms = BENCH_DURATION_MS_DEFAULT,
		.block_bytes = SCAN_BLOCK_BYTES_DEFAULT,
		.sample_bytes = BENCH_SAMPLE_BYTES_DEFAULT,
		.fmt = OUT_TEXT,
	};
	struct kfio_dev dev;
	struct bench_scan sc;
	struct bench_sample sa;
	struct bench_model m;
	/* Room for a device path in every sentence, so none is cut. */
	char err[KFIO_PATH_MAX + 512] = "";
	char hb[32];
	struct out *out;
	int rc;

	if (parse_opts(argc, argv, &o)) {
		fputs("Run 'pvrepl bench --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	/* Read-only (no KFIO_OPEN_WRITE) and O_DIRECT (no KFIO_OPEN_BUFFERED): the
	 * bench can never write the device, and does not fill the page cache. */
	rc = kfio_dev_open(&dev, o.device, 0);
	if (rc) {
		cli_err("%s", dev.err_msg);
		return cli_exit_for(rc);
	}
	if (dev.size_bytes < BENCH_DEVICE_BYTES_MIN || dev.size_bytes < o.block_bytes) {
		cli_err("%s is only %s: too small to measure; bench needs at least 1 MiB and one "
			"--block-size block (%u bytes). Point --device at the volume itself",
			dev.path, out_human_bytes(dev.size_bytes, hb, sizeof(hb)), o.block_bytes);
		rc = -EINVAL;
		goto close_dev;
	}

	rc = bench_scan_run(&dev, &o, &sc, err, sizeof(err));
	if (rc) {
		cli_err("bench: scan of %s failed: %s", dev.path, err);
		goto close_dev;
	}
	rc = bench_sample_run(&dev, &o, &sa, err, sizeof(err));
	if (rc) {
		cli_err("bench: sampling %s failed: %s", dev.path, err);
		goto close_dev;
	}
	bench_project(&o, dev.size_bytes, &sc, &sa, &m);

	out = out_new();
	if (!out) {
		rc = -ENOMEM;
		goto close_dev;
	}
	bench_report(out, &dev, &o, &sc, &sa, &m);
	rc = out_print(out, o.fmt, stdout);
	out_free(out);
	if (!rc && o.fmt == OUT_TEXT)
		bench_notes(stdout, &dev, &sc, &sa, &m);

close_dev:
	kfio_dev_close(&dev);
	return cli_exit_for(rc);
}
