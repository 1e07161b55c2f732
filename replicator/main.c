// SPDX-License-Identifier: Apache-2.0
/* pvrepl — entry point; everything is in the subcommand table (cli.c). */
#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
