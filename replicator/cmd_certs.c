// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl certs ca --out DIR` and `pvrepl certs issue --ca DIR --name NAME --out DIR`:
 * a private CA and node certificates laid out as a Kubernetes TLS Secret mounts
 * them (tls.crt, tls.key, ca.crt), for tests, the demo and small setups. The
 * cryptography is in tls_issue.c (part of the one OpenSSL module); this file
 * parses options and reports. Never overwrites a file without --force.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tls_issue.h"

static void certs_usage(FILE *f)
{
	fprintf(f,
		"Usage: pvrepl certs ca --out DIR [--force]\n"
		"       pvrepl certs issue --ca DIR --name NAME --out DIR [--days N] [--force]\n\n"
		"Makes a private CA, and node certificates signed by it, as files laid out like\n"
		"a Kubernetes TLS Secret. Every node (sender and receiver) gets one; senders\n"
		"check the receiver's name, receivers authorise volumes by the sender's name.\n\n"
		"  ca      writes DIR/ca.crt and DIR/ca.key (0600): EC P-256, %u days\n"
		"  issue   writes DIR/tls.crt, DIR/tls.key (0600) and a copy of ca.crt:\n"
		"          CN and subjectAltName NAME, for TLS server and client use\n\n"
		"  -o, --out DIR      where to write (created 0700 if missing)\n"
		"  -c, --ca DIR       the CA directory made by `pvrepl certs ca` (issue)\n"
		"  -n, --name NAME    DNS name or IP address of the node (issue)\n"
		"  -d, --days N       validity of the node certificate (issue; default %u)\n"
		"  -f, --force        replace existing files\n"
		"  -h, --help         this help\n",
		TLS_CA_DAYS, TLS_CERT_DAYS_DEFAULT);
}

int cmd_certs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "ca", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "days", required_argument, NULL, 'd' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out_dir = NULL, *ca_dir = NULL, *name = NULL, *sub;
	unsigned long days = TLS_CERT_DAYS_DEFAULT;
	char err[TLS_ERR_BYTES];
	bool force = false, issue;
	char *end;
	int c, rc;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		certs_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (argc < 2 || (strcmp(argv[1], "ca") && strcmp(argv[1], "issue"))) {
		cli_err("certs needs a subcommand: ca or issue");
		certs_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	sub = argv[1];
	issue = !strcmp(sub, "issue");
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "o:c:n:d:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out_dir = optarg;
			break;
		case 'c':
			ca_dir = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'd':
			errno = 0;
			days = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || days < 1 ||
			    days > TLS_CERT_DAYS_MAX) {
				cli_err("--days must be a number from 1 to %u", TLS_CERT_DAYS_MAX);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			certs_usage(stdout);
			return CLI_EXIT_OK;
		default:
			certs_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!out_dir) {
		cli_err("certs %s needs --out DIR", sub);
		return CLI_EXIT_USAGE;
	}
	if (!issue && (ca_dir || name)) {
		cli_err("certs ca takes only --out and --force (--ca and --name are for issue)");
		return CLI_EXIT_USAGE;
	}
	if (issue && (!ca_dir || !name)) {
		cli_err("certs issue needs --ca DIR and --name NAME");
		return CLI_EXIT_USAGE;
	}
	if (issue)
		rc = tls_cert_issue(ca_dir, name, out_dir, (unsigned)days, force, err, sizeof(err));
	else
		rc = tls_ca_create(out_dir, force, err, sizeof(err));
	if (rc) {
		cli_err("%s", err);
		return cli_exit_for(rc);
	}
	if (issue)
		printf("wrote %s/%s, %s/%s (0600) and %s/%s for '%s', valid %lu days\n", out_dir,
		       TLS_CERT_FILE, out_dir, TLS_KEY_FILE, out_dir, TLS_CA_FILE, name, days);
	else
		printf("wrote %s/%s and %s/%s (0600), valid %u days\n", out_dir, TLS_CA_FILE,
		       out_dir, TLS_CA_KEY_FILE, TLS_CA_DAYS);
	return CLI_EXIT_OK;
}
