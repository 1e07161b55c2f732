// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl config validate FILE [-o json]`: loads a configuration file with
 * config.c and reports every problem as "FILE:LINE: message" (or one JSON object
 * with a problems array). It checks the file alone: it neither applies the
 * environment nor opens the devices and directories the file names.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"
#include "devid.h"
#include "out.h"

static void config_usage(FILE *f)
{
	fprintf(f, "Usage: pvrepl config validate FILE [-o text|json] [--syntax-only]\n\n"
		   "Checks a configuration file (docs/CONFIG.md) and reports every problem with\n"
		   "its line, and checks the devices as the daemons will on this host: each\n"
		   "exists, and no two volumes share storage (one device under two paths, two\n"
		   "loop devices over one file, a disk and its partition). Exit 0 if it is\n"
		   "valid, 78 if it is not, 66 if FILE does not exist.\n\n"
		   "  -o, --output FORMAT   text (default: FILE:LINE: message) or json\n"
		   "      --syntax-only     the file alone, not the devices of this host (to\n"
		   "                        check a file for another machine)\n"
		   "  -h, --help            this help\n");
}

static int config_print(const char *path, const struct config *c,
			const struct config_problem *problems, unsigned stored, unsigned found,
			enum out_format fmt)
{
	struct out *o;
	int rc;

	if (fmt == OUT_TEXT) {
		for (unsigned i = 0; i < stored; i++) {
			if (problems[i].line)
				fprintf(stderr, "%s:%u: %s\n", path, problems[i].line,
					problems[i].message);
			else
				fprintf(stderr, "%s: %s\n", path, problems[i].message);
		}
		if (found > stored)
			fprintf(stderr, "%s: %u more problems not shown\n", path, found - stored);
		if (!found)
			printf("%s: ok, %u volume(s)\n", path, c->volume_count);
		return 0;
	}
	o = out_new();
	if (!o)
		return -ENOMEM;
	out_str(o, "file", "File", path);
	out_bool(o, "valid", "Valid", found == 0);
	out_u64(o, "volumes", "Volumes", found ? 0 : c->volume_count, OUT_UNIT_NONE);
	out_u64(o, "problem_count", "Problems", found, OUT_UNIT_NONE);
	for (unsigned i = 0; i < stored; i++) {
		struct out *item = out_new();

		if (!item) {
			out_free(o);
			return -ENOMEM;
		}
		out_u64(item, "line", "Line", problems[i].line, OUT_UNIT_NONE);
		out_str(item, "message", "Message", problems[i].message);
		out_append(o, "problems", item);
	}
	rc = out_print(o, OUT_JSON, stdout);
	out_free(o);
	return rc;
}

/*
 * What the daemons check of the devices, here too: each exists, and no two
 * volumes share storage (devid.h). Appends up to room problems; returns how
 * many it found.
 */
static unsigned check_devices(const struct config *cfg, struct config_problem *out, unsigned room)
{
	const char *names[CONFIG_VOLUMES_MAX], *paths[CONFIG_VOLUMES_MAX];
	unsigned n = 0, found = 0;
	char err[CONFIG_MESSAGE_MAX];

	for (unsigned i = 0; i < cfg->volume_count; i++) {
		const struct config_volume *v = &cfg->volumes[i];
		struct stat st;

		if (!v->device[0])
			continue;
		if (stat(v->device, &st)) {
			if (found < room) {
				out[found].line = v->line;
				snprintf(out[found].message, sizeof(out[found].message),
					 "[volume %s] device %s: %s (on this host, %s)", v->name,
					 v->device, strerror(errno),
					 cfg->receiver.present
						 ? "the receiver refuses to start until it exists"
						 : "the sender's epochs fail until it exists");
			}
			found++;
			continue;
		}
		names[n] = v->name;
		paths[n++] = v->device;
	}
	/* The certificates: the daemons refuse to start without them. */
	for (int side = 0; side < 2; side++) {
		const char *tls = side ? cfg->sender.tls_dir : cfg->receiver.tls_dir;
		bool present = side ? cfg->sender.present : cfg->receiver.present;
		struct stat st;

		if (!present || !tls[0] || (!stat(tls, &st) && S_ISDIR(st.st_mode)))
			continue;
		if (found < room) {
			out[found].line = 0;
			snprintf(
				out[found].message, sizeof(out[found].message),
				"[%s] tls_dir %.150s is not a directory here; make it (pvrepl certs) or fix the path",
				side ? "sender" : "receiver", tls);
		}
		found++;
	}
	if (devid_find_conflict(names, paths, n, err, sizeof(err))) {
		if (found < room) {
			out[found].line = 0;
			snprintf(out[found].message, sizeof(out[found].message), "%s", err);
		}
		found++;
	}
	return found;
}

static int config_validate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "syntax-only", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct config cfg; /* large: keep it off the stack */
	static struct config_problem problems[CONFIG_PROBLEMS_MAX];
	enum out_format fmt = OUT_TEXT;
	unsigned found = 0, stored;
	bool syntax_only = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "o:Sh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (cli_opt_output(optarg, &fmt))
				return CLI_EXIT_USAGE;
			break;
		case 'S':
			syntax_only = true;
			break;
		case 'h':
			config_usage(stdout);
			return CLI_EXIT_OK;
		default:
			fputs("Run 'pvrepl config --help' for the options.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		cli_err("config validate needs exactly one FILE");
		return CLI_EXIT_USAGE;
	}
	rc = config_load(&cfg, argv[optind], problems, CONFIG_PROBLEMS_MAX, &found);
	if (!syntax_only && (rc == 0 || rc == -EINVAL))
		found += check_devices(
			&cfg,
			problems + (found < CONFIG_PROBLEMS_MAX ? found : CONFIG_PROBLEMS_MAX),
			found < CONFIG_PROBLEMS_MAX ? CONFIG_PROBLEMS_MAX - found : 0);
	if (found && rc == 0)
		rc = -EINVAL;
	stored = found < CONFIG_PROBLEMS_MAX ? found : CONFIG_PROBLEMS_MAX;
	if (config_print(argv[optind], &cfg, problems, stored, found, fmt))
		return CLI_EXIT_FAIL;
	if (rc == -EINVAL)
		return CLI_EXIT_CONFIG;
	return cli_exit_for(rc);
}

int cmd_config(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		config_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "validate"))
		return config_validate(argc - 1, argv + 1);
	if (argc >= 2)
		cli_err("unknown config command '%s'", argv[1]);
	config_usage(stderr);
	return CLI_EXIT_USAGE;
}
