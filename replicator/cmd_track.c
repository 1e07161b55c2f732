// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl track list|remove`: the write trackers pinned on this node. A tracker
 * outlives its sender on purpose (a restart must not force a full scan), so
 * one of a volume that is no longer replicated stays attached, costing a few
 * percent of that disk's write IOPS, until it is removed here (or the node
 * reboots). Options and output only; the tracker is kmod-free-io/track.c's.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "cli_opt.h"
#include "kfio.h"
#include "out.h"

static void track_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl track list [--pin-dir DIR] [-o text|json]\n"
		"       pvrepl track remove [--pin-dir DIR] NAME...\n\n"
		"The eBPF write trackers pinned on this node (one per volume and sender state\n"
		"directory, named VOLUME-HASH). A tracker stays attached when its sender\n"
		"stops, so a restart needs no full scan; remove the tracker of a volume that\n"
		"is no longer replicated (its next epoch, if any, scans everything).\n\n"
		"  --pin-dir DIR      where the trackers are pinned (default\n"
		"                     $PVREPL_TRACK_PIN_DIR or %s)\n"
		"  -o, --output FMT   text (default) or json\n"
		"  -h, --help         this help\n",
		KFIO_TRACK_PIN_ROOT_DEFAULT);
}

static const char *owed_words(unsigned owed, char *buf, size_t len)
{
	static const struct {
		unsigned bit;
		const char *word;
	} names[] = {
		{ KFIO_TRACK_LOSS_ATTACHED, "attached" },
		{ KFIO_TRACK_LOSS_DETACHED, "detached" },
		{ KFIO_TRACK_LOSS_RECURSION, "recursion-misses" },
		{ KFIO_TRACK_LOSS_PASSTHROUGH, "passthrough" },
		{ KFIO_TRACK_LOSS_OVERFLOW, "overflow" },
	};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && n < len; i++)
		if (owed & names[i].bit)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "",
					      names[i].word);
	if (!buf[0])
		snprintf(buf, len, "-");
	return buf;
}

struct list_ctx {
	const char *root;
	enum out_format fmt;
	struct out *json;
	unsigned count;
	int rc;
};

static int list_one(const char *name, void *arg)
{
	struct list_ctx *lc = arg;
	struct kfio_track_pinned p;
	char err[512] = "", owed[96], size[32], dev[32];
	int rc = kfio_track_inspect(lc->root, name, &p, err, sizeof(err));

	if (rc) {
		cli_err("%s", err);
		lc->rc = rc;
		return 0; /* go on with the others */
	}
	lc->count++;
	snprintf(dev, sizeof(dev), "%u:%u", p.vol_major, p.vol_minor);
	owed_words(p.owed, owed, sizeof(owed));
	if (lc->fmt == OUT_JSON) {
		struct out *o = out_new();

		if (!o)
			return -ENOMEM;
		out_str(o, "name", "Name", name);
		out_str(o, "device", "Device", dev);
		out_u64(o, "size_bytes", "Size", p.size_bytes, OUT_UNIT_BYTES);
		out_bool(o, "attached", "Attached", p.attached);
		out_str(o, "owed", "Losses owed a full scan", owed);
		out_u64(o, "pending_bytes", "Pending", p.pending_pages * KFIO_TRACK_PAGE_BYTES,
			OUT_UNIT_BYTES);
		out_u64(o, "live_bytes", "Marked since the last harvest",
			p.live_pages * KFIO_TRACK_PAGE_BYTES, OUT_UNIT_BYTES);
		out_u64(o, "marks", "Write completions marked", p.marks, OUT_UNIT_NONE);
		out_u64(o, "settled_epoch", "Last settled epoch", p.info.settled_tag,
			OUT_UNIT_NONE);
		out_u64(o, "created_unix", "Attached at", p.info.created_unix, OUT_UNIT_NONE);
		out_append(lc->json, "trackers", o);
		return 0;
	}
	printf("%-40s %-9s %10s %-8s %-18s %10" PRIu64 " %10" PRIu64 " %8" PRIu64 "\n", name, dev,
	       out_human_bytes(p.size_bytes, size, sizeof(size)), p.attached ? "yes" : "NO", owed,
	       p.pending_pages * KFIO_TRACK_PAGE_BYTES / 1024,
	       p.live_pages * KFIO_TRACK_PAGE_BYTES / 1024, p.info.settled_tag);
	return 0;
}

static const struct option track_opts[] = {
	{ "pin-dir", required_argument, NULL, 'p' },
	{ "output", required_argument, NULL, 'o' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* Options up to the first argument ("+": the verb stops them), or all of them:
 * -1 to go on, else the exit code. */
static int track_parse(int argc, char **argv, const char *optstring, struct list_ctx *lc)
{
	int c;

	while ((c = getopt_long(argc, argv, optstring, track_opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (cli_opt_pin_dir("--pin-dir ", optarg, &lc->root))
				return CLI_EXIT_USAGE;
			break;
		case 'o':
			if (cli_opt_output(optarg, &lc->fmt))
				return CLI_EXIT_USAGE;
			break;
		case 'h':
			track_usage(stdout);
			return CLI_EXIT_OK;
		default:
			track_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	return -1;
}

int cmd_track(int argc, char **argv)
{
	struct list_ctx lc = { .fmt = OUT_TEXT };
	char err[512] = "";
	const char *verb;
	int rc;

	if (cli_env_pin_dir(&lc.root))
		return CLI_EXIT_USAGE;
	optind = 0;
	rc = track_parse(argc, argv, "+o:h", &lc);
	if (rc >= 0)
		return rc;
	if (optind >= argc) {
		cli_err("track needs 'list' or 'remove NAME...'");
		track_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	verb = argv[optind++];
	rc = track_parse(argc, argv, "o:h", &lc); /* options may follow the verb */
	if (rc >= 0)
		return rc;
	if (!strcmp(verb, "list")) {
		if (optind != argc) {
			cli_err("track list takes no arguments");
			return CLI_EXIT_USAGE;
		}
		if (lc.fmt == OUT_JSON) {
			lc.json = out_new();
			if (!lc.json)
				return CLI_EXIT_FAIL;
		} else {
			printf("%-40s %-9s %10s %-8s %-18s %10s %10s %8s\n", "NAME", "DEVICE",
			       "SIZE", "ATTACHED", "OWED", "PENDING_K", "LIVE_K", "EPOCH");
		}
		rc = kfio_track_list(lc.root, list_one, &lc, err, sizeof(err));
		if (lc.json) {
			out_print(lc.json, OUT_JSON, stdout);
			out_free(lc.json);
		}
		if (rc) {
			cli_err("%s", err);
			return cli_exit_for(rc);
		}
		return lc.rc ? cli_exit_for(lc.rc) : CLI_EXIT_OK;
	}
	if (!strcmp(verb, "remove")) {
		int worst = 0;

		if (optind == argc) {
			cli_err("track remove needs the NAME of each tracker (see 'pvrepl track list')");
			return CLI_EXIT_USAGE;
		}
		for (int i = optind; i < argc; i++) {
			struct kfio_track_pinned p;
			char dir[KFIO_PATH_MAX + KFIO_TRACK_NAME_MAX];
			struct stat st;
			bool known;

			snprintf(dir, sizeof(dir), "%s/%s",
				 lc.root ? lc.root : KFIO_TRACK_PIN_ROOT_DEFAULT, argv[i]);
			if (stat(dir, &st)) {
				cli_err("no tracker named %s under %s", argv[i],
					lc.root ? lc.root : KFIO_TRACK_PIN_ROOT_DEFAULT);
				worst = -ENOENT;
				continue;
			}
			/* A damaged or half-made tracker is removed too. */
			known = kfio_track_inspect(lc.root, argv[i], &p, err, sizeof(err)) == 0;
			rc = kfio_track_remove(lc.root, argv[i], err, sizeof(err));
			if (rc) {
				cli_err("%s", err);
				worst = rc;
				continue;
			}
			if (known)
				printf("removed %s (device %u:%u): its programs are detached\n",
				       argv[i], p.vol_major, p.vol_minor);
			else
				printf("removed %s\n", argv[i]);
		}
		return worst ? cli_exit_for(worst) : CLI_EXIT_OK;
	}
	cli_err("track: unknown verb '%s' (list or remove)", verb);
	return CLI_EXIT_USAGE;
}
