// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl probe --device DEV [-o json]`: what the engine sees of a device — size,
 * block sizes, O_DIRECT alignment, rotational, read-only, discard — and which
 * io_uring opcodes this kernel offers. Read-only; safe on a live production device.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kfio.h"
#include "out.h"

static void probe_usage(FILE *f)
{
	fprintf(f, "Usage: pvrepl probe --device DEV [-o text|json]\n\n"
		   "Shows what pvrepl's I/O engine sees of a block device or image file.\n"
		   "Opens the device read-only with O_DIRECT; changes nothing.\n\n"
		   "  -d, --device DEV   block device or regular file\n"
		   "  -o, --output FMT   text (default) or json\n"
		   "  -h, --help         this help\n");
}

int cmd_probe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum out_format fmt = OUT_TEXT;
	const char *path = NULL;
	struct kfio_dev dev;
	struct kfio_caps caps;
	struct out *o;
	int c, rc;

	while ((c = getopt_long(argc, argv, "d:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			path = optarg;
			break;
		case 'o':
			if (cli_opt_output(optarg, &fmt))
				return CLI_EXIT_USAGE;
			break;
		case 'h':
			probe_usage(stdout);
			return CLI_EXIT_OK;
		default:
			probe_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (!path || optind != argc) {
		cli_err("probe needs --device DEV and no other arguments");
		probe_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	rc = kfio_dev_open(&dev, path, 0);
	if (rc) {
		cli_err("%s", dev.err_msg);
		return cli_exit_for(rc);
	}
	o = out_new();
	if (!o) {
		kfio_dev_close(&dev);
		cli_err("out of memory");
		return CLI_EXIT_FAIL;
	}
	out_str(o, "device", "Device", dev.path);
	out_str(o, "type", "Type", dev.is_blockdev ? "block device" : "regular file");
	out_u64(o, "size_bytes", "Size", dev.size_bytes, OUT_UNIT_BYTES);
	out_u64(o, "logical_block_bytes", "Logical block", dev.logical_block_bytes, OUT_UNIT_BYTES);
	out_u64(o, "physical_block_bytes", "Physical block", dev.physical_block_bytes,
		OUT_UNIT_BYTES);
	out_u64(o, "dio_offset_align", "O_DIRECT offset alignment", dev.dio_offset_align,
		OUT_UNIT_BYTES);
	out_u64(o, "dio_mem_align", "O_DIRECT memory alignment", dev.dio_mem_align, OUT_UNIT_BYTES);
	out_bool(o, "rotational", "Rotational", dev.rotational);
	out_bool(o, "read_only", "Read-only", dev.device_read_only);
	out_bool(o, "discard", "Discard", dev.discard_supported);
	rc = kfio_probe(&caps);
	out_bool(o, "io_uring", "io_uring", rc == 0 && caps.uring);
	out_bool(o, "io_uring_fixed_buffers", "io_uring fixed buffers",
		 rc == 0 && caps.read_fixed && caps.write_fixed);
	out_bool(o, "io_uring_fsync", "io_uring fsync", rc == 0 && caps.fsync);
	rc = out_print(o, fmt, stdout);
	out_free(o);
	kfio_dev_close(&dev);
	return rc ? CLI_EXIT_IOERR : CLI_EXIT_OK;
}
