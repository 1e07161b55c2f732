// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl scan`: reads a device through the engine, compares every block with the
 * map recorded in the state directory, and reports what an epoch would send:
 * blocks changed, zero blocks (markers), payload bytes before and after lz4, and
 * the scan rate. With --update it records the new map (a new epoch of the map,
 * crash-safe). Without a map every block counts as changed: the first sync.
 * The device is only ever read.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "kfio.h"
#include "map.h"
#include "out.h"
#include "progress.h"
#include "scan.h"

static void scan_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl scan --device DEV --state-dir DIR [options]\n\n"
		"Finds the blocks of DEV that changed since the map recorded in DIR, reading\n"
		"only DEV (O_DIRECT, never written). Without a map, every block counts as\n"
		"changed (a first sync). Prints what an epoch would send.\n\n"
		"  -d, --device DEV        block device or image file to scan\n"
		"  -s, --state-dir DIR     where the volume's map lives (created by --update)\n"
		"  -b, --block-size N      block size for a new map: a power of two from 4k to 1M\n"
		"                          (default %uk); an existing map keeps its own\n"
		"  -u, --update            record the new map as the next epoch\n"
		"  -n, --volume NAME       volume name for a new map (default: the device's name)\n"
		"  -w, --workers N         hashing/compression threads (default: all CPUs)\n"
		"  -q, --queue-depth N     reads in flight (default %u)\n"
		"  -r, --read-size N       bytes per read request (default %uk)\n"
		"      --no-compress       do not run lz4 (report raw sizes)\n"
		"      --max-read-rate RATE  cap the reads on the device, bytes/s (e.g. 200M)\n"
		"      --progress MODE     auto, tty, log or none (default auto)\n"
		"  -o, --output FMT        text (default) or json\n"
		"  -h, --help              this help\n",
		SCAN_BLOCK_BYTES_DEFAULT / 1024, SCAN_QUEUE_DEPTH_DEFAULT,
		SCAN_READ_BYTES_DEFAULT / 1024);
}

struct scan_opts {
	const char *device;
	const char *state_dir;
	const char *volume;
	uint32_t block_bytes; /* 0 = not given */
	bool update;
	enum out_format fmt;
	enum progress_mode progress;
	struct scan_config cfg;
};

static int parse_u32(const char *name, const char *s, uint32_t min, uint32_t max, uint32_t *v)
{
	uint64_t x;

	if (cli_parse_size(s, &x) || x < min || x > max) {
		cli_err("--%s %s: expected a number from %u to %u", name, s, min, max);
		return -EINVAL;
	}
	*v = (uint32_t)x;
	return 0;
}

static int parse_opts(int argc, char **argv, struct scan_opts *o)
{
	enum { OPT_NO_COMPRESS = 256, OPT_PROGRESS, OPT_MAX_READ_RATE };
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "update", no_argument, NULL, 'u' },
		{ "volume", required_argument, NULL, 'n' },
		{ "workers", required_argument, NULL, 'w' },
		{ "queue-depth", required_argument, NULL, 'q' },
		{ "read-size", required_argument, NULL, 'r' },
		{ "no-compress", no_argument, NULL, OPT_NO_COMPRESS },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "max-read-rate", required_argument, NULL, OPT_MAX_READ_RATE },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "d:s:b:un:w:q:r:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o->device = optarg;
			break;
		case 's':
			o->state_dir = optarg;
			break;
		case 'b':
			if (cli_opt_block_size(optarg, &o->block_bytes))
				return -EINVAL;
			break;
		case 'u':
			o->update = true;
			break;
		case 'n':
			o->volume = optarg;
			break;
		case 'w':
			if (parse_u32("workers", optarg, 1, SCAN_WORKERS_MAX, &o->cfg.workers))
				return -EINVAL;
			break;
		case 'q':
			if (parse_u32("queue-depth", optarg, 1, KFIO_QUEUE_DEPTH_MAX,
				      &o->cfg.queue_depth))
				return -EINVAL;
			break;
		case 'r':
			if (parse_u32("read-size", optarg, KFIO_MEM_ALIGN, 16u << 20,
				      &o->cfg.read_bytes))
				return -EINVAL;
			break;
		case OPT_NO_COMPRESS:
			o->cfg.compress = false;
			break;
		case OPT_MAX_READ_RATE:
			if (cli_opt_rate("max-read-rate", optarg, &o->cfg.max_read_bytes_per_s))
				return -EINVAL;
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
			scan_usage(stdout);
			exit(CLI_EXIT_OK);
		default:
			return -EINVAL;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!o->device || !o->state_dir) {
		cli_err("scan needs --device DEV and --state-dir DIR");
		return -EINVAL;
	}
	return 0;
}

/* Loads the map from the state directory, or starts an empty one for the device. */
static int load_or_create_map(const struct scan_opts *o, const struct kfio_dev *dev, struct map *m,
			      bool *existed)
{
	char err[512] = "";
	char namebuf[KFIO_PATH_MAX];
	int rc;

	rc = map_load(m, o->state_dir, err, sizeof(err));
	if (rc == 0) {
		*existed = true;
		rc = map_check_geometry(m, dev->size_bytes,
					o->block_bytes ? (uint32_t)o->block_bytes : m->block_bytes,
					err, sizeof(err));
		if (rc) {
			cli_err("%s: %s", o->device, err);
			map_release(m);
		}
		return rc;
	}
	if (rc != -ENOENT) {
		cli_err("%s", err[0] ? err : strerror(-rc));
		return rc;
	}
	*existed = false;
	snprintf(namebuf, sizeof(namebuf), "%s", o->device);
	rc = map_create(m, o->volume ? o->volume : basename(namebuf), dev->size_bytes,
			o->block_bytes ? (uint32_t)o->block_bytes : SCAN_BLOCK_BYTES_DEFAULT);
	if (rc)
		cli_err("%s: cannot create a map: %s", o->device, strerror(-rc));
	return rc;
}

static int ensure_dir(const char *dir)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

int cmd_scan(int argc, char **argv)
{
	struct scan_opts o = { .fmt = OUT_TEXT };
	struct kfio_dev dev;
	struct map m;
	struct scan_stats st;
	struct progress prog;
	char err[512] = "";
	bool existed = false;
	struct out *out;
	int rc;

	scan_config_defaults(&o.cfg);
	if (parse_opts(argc, argv, &o)) {
		fputs("Run 'pvrepl scan --help' for the options.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	rc = kfio_dev_open(&dev, o.device, 0);
	if (rc) {
		cli_err("%s", dev.err_msg);
		return cli_exit_for(rc);
	}
	rc = load_or_create_map(&o, &dev, &m, &existed);
	if (rc)
		goto close_dev;

	progress_init(&prog, o.progress, "scan", dev.path, dev.size_bytes);
	o.cfg.progress = progress_cb;
	o.cfg.progress_ctx = &prog;
	rc = scan_run(&dev, &m, &o.cfg, NULL, &st, err, sizeof(err));
	if (rc) {
		progress_finish(&prog, st.bytes_read);
		cli_err("scan of %s failed: %s", dev.path, err);
		goto release_map;
	}
	progress_finish(&prog, dev.size_bytes);

	uint64_t epoch = existed ? m.epoch : 0;

	if (o.update) {
		rc = ensure_dir(o.state_dir);
		if (rc) {
			cli_err("cannot create state directory %s: %s", o.state_dir, strerror(-rc));
			goto release_map;
		}
		rc = map_commit(&m, o.state_dir, epoch + 1, err, sizeof(err));
		if (rc) {
			cli_err("%s: recording the new map in %s failed (the old map is intact): %s",
				o.device, o.state_dir, err);
			goto release_map;
		}
		epoch++;
	}

	out = out_new();
	if (!out) {
		rc = -ENOMEM;
		goto release_map;
	}
	out_str(out, "device", "Device", dev.path);
	out_str(out, "volume", "Volume", m.volume_name);
	out_u64(out, "size_bytes", "Size", dev.size_bytes, OUT_UNIT_BYTES);
	out_u64(out, "block_size", "Block size", m.block_bytes, OUT_UNIT_BYTES);
	out_bool(out, "map_existed", "Compared with a recorded map", existed);
	out_u64(out, "epoch", o.update ? "Map epoch (recorded)" : "Map epoch", epoch,
		OUT_UNIT_NONE);
	out_u64(out, "blocks_scanned", "Blocks scanned", st.blocks_scanned, OUT_UNIT_NONE);
	out_u64(out, "blocks_changed", "Blocks changed", st.blocks_changed, OUT_UNIT_NONE);
	out_u64(out, "blocks_zero", "Changed blocks that are zero", st.blocks_zero, OUT_UNIT_NONE);
	out_u64(out, "payload_bytes", "Payload (changed, non-zero)", st.payload_bytes,
		OUT_UNIT_BYTES);
	out_u64(out, "compressed_bytes", "After compression", st.compressed_bytes, OUT_UNIT_BYTES);
	out_f64(out, "compression_ratio", "Compression ratio",
		st.compressed_bytes ? (double)st.payload_bytes / (double)st.compressed_bytes : 1.0,
		OUT_UNIT_RATIO);
	out_u64(out, "bytes_read", "Bytes read", st.bytes_read, OUT_UNIT_BYTES);
	out_f64(out, "seconds", "Time", st.seconds, OUT_UNIT_SECONDS);
	out_f64(out, "scan_bytes_per_second", "Scan rate",
		st.seconds > 0 ? (double)dev.size_bytes / st.seconds : 0, OUT_UNIT_BYTES_PER_S);
	out_f64(out, "cpu_seconds", "CPU time", st.cpu_seconds, OUT_UNIT_SECONDS);
	out_f64(out, "throttled_seconds", "Held back by --max-read-rate", st.throttled_seconds,
		OUT_UNIT_SECONDS);
	out_u64(out, "workers", "Workers", st.workers, OUT_UNIT_NONE);
	out_bool(out, "updated", "Map updated", o.update);
	rc = out_print(out, o.fmt, stdout);
	out_free(out);

release_map:
	map_release(&m);
close_dev:
	kfio_dev_close(&dev);
	return cli_exit_for(rc);
}
