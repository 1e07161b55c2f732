// SPDX-License-Identifier: Apache-2.0
/* pvrepl — entry point; everything is in the subcommand table (cli.c). */
#include <signal.h>

#include "cli.h"

int main(int argc, char **argv)
{
	/* A peer that goes away must surface as EPIPE on the write, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	return cli_main(argc, argv);
}
