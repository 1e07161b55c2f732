// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the configuration file's parser: config_load, then
 * config_apply_env, and config_gather, which does both and formats the problems
 * (`make fuzz`; the input layout is in fuzz.h). The file part of each input becomes
 * a file of a temp directory (/dev/shm when there is one), the rest the environment.
 * The seeds are whole files (every section and key) and every PVREPL_* variable;
 * flag bits pick how many problems are kept and the length of gather's message.
 *
 * Properties: load and apply_env return 0 or -EINVAL, -EINVAL exactly when they
 * found problems, kept sorted by line, each a sentence with a line of the file (or
 * 0); whatever the input, the config holds only values that pass their checks;
 * config_gather gives the same config, fails when one of them did, and says why in
 * a terminated message. Anything else aborts on purpose.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "capture.h"
#include "scan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CONFIG_FILE "pvrepl.conf"
#define STR_OK(s)   fuzz_check(memchr((s), '\0', sizeof(s)) != NULL)

static char dir[256], path[512];
static struct config c, g;
static struct config_problem problems[CONFIG_PROBLEMS_MAX];
static char env[FUZZ_RECORD_FILE_MAX + 1], msg[16 << 10];
static char *envp[FUZZ_CONFIG_ENV_MAX + 1];

static void remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir(dir, sizeof(dir), "fuzz_config");
	snprintf(path, sizeof(path), "%s/%s", dir, CONFIG_FILE);
	atexit(remove_dir);
	return 0;
}

static void check_problems(unsigned from, unsigned to, unsigned lines, bool sorted)
{
	for (unsigned i = from; i < to; i++) {
		STR_OK(problems[i].message);
		fuzz_check(problems[i].message[0] != '\0' && problems[i].line <= lines);
		fuzz_check(!sorted || i == from || problems[i - 1].line <= problems[i].line);
	}
}

static bool in(uint64_t v, uint64_t min, uint64_t max)
{
	return v >= min && v <= max;
}

/* Only values that passed their checks are ever stored. */
static void check_config(const struct config *k)
{
	const struct config_sender *s = &k->sender;
	enum capture_mode mode;

	STR_OK(k->receiver.listen), STR_OK(k->receiver.tls_dir), STR_OK(k->receiver.state_dir);
	STR_OK(k->receiver.metrics_addr), STR_OK(s->tls_dir), STR_OK(s->peer);
	STR_OK(s->server_name), STR_OK(s->metrics_addr), STR_OK(s->track);
	STR_OK(s->track_pin_dir), STR_OK(s->capture);
	fuzz_check(in(k->receiver.journal_bytes, 16u << 20, UINT64_MAX));
	fuzz_check(in(k->receiver.timeout_ms, 100, 3600000) && in(s->timeout_ms, 100, 3600000));
	fuzz_check(!s->block_bytes ||
		   (in(s->block_bytes, SCAN_BLOCK_BYTES_MIN, SCAN_BLOCK_BYTES_MAX) &&
		    !(s->block_bytes & (s->block_bytes - 1))));
	fuzz_check(!s->freeze_timeout_ms || in(s->freeze_timeout_ms, CAPTURE_FREEZE_TIMEOUT_MS_MIN,
					       CAPTURE_FREEZE_TIMEOUT_MS_MAX));
	fuzz_check(!s->max_rate_bytes_per_s || s->max_rate_bytes_per_s >= 4096);
	fuzz_check(!s->full_scan_interval_ms || s->full_scan_interval_ms >= 1000);
	fuzz_check(!s->track[0] || !strcmp(s->track, "auto") || !strcmp(s->track, "bpf") ||
		   !strcmp(s->track, "off"));
	fuzz_check(!s->capture[0] || capture_mode_parse(s->capture, &mode) == 0);
	fuzz_check(k->volume_count <= CONFIG_VOLUMES_MAX);
	for (unsigned i = 0; i < k->volume_count; i++) {
		const struct config_volume *v = &k->volumes[i];
		size_t len = strnlen(v->name, sizeof(v->name));

		fuzz_check(len >= 1 && len < sizeof(v->name) && !strchr(v->name, '/'));
		for (size_t j = 0; j < len; j++)
			fuzz_check(isgraph((unsigned char)v->name[j]));
		STR_OK(v->device), STR_OK(v->state_dir), STR_OK(v->capture);
		fuzz_check(!v->device[0] || v->device[0] == '/');
		fuzz_check(!v->capture[0] || capture_mode_parse(v->capture, &mode) == 0);
		fuzz_check(v->allow_count <= CONFIG_ALLOW_MAX);
		for (unsigned j = 0; j < v->allow_count; j++)
			fuzz_check(v->allow[j][0] != '\0' &&
				   memchr(v->allow[j], 0, CONFIG_CERT_MAX));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned flags, max, n = 0, before, lines = 1, k = 0;
	size_t file_n, msg_len;
	int rc, erc, grc;

	if (size < FUZZ_CONFIG_PREFIX_BYTES)
		return 0;
	flags = data[0];
	file_n = (size_t)data[1] | (size_t)data[2] << 8;
	data += FUZZ_CONFIG_PREFIX_BYTES;
	size -= FUZZ_CONFIG_PREFIX_BYTES;
	if (file_n > size)
		file_n = size;
	fuzz_write_file(dir, CONFIG_FILE, data, file_n);
	for (size_t i = 0; i < file_n; i++)
		lines += data[i] == '\n';
	size -= file_n;
	if (size > FUZZ_RECORD_FILE_MAX)
		size = FUZZ_RECORD_FILE_MAX;
	memcpy(env, data + file_n, size);
	env[size] = '\0';
	for (char *e = env, *nl; e && k < FUZZ_CONFIG_ENV_MAX; e = nl ? nl + 1 : NULL) {
		nl = strchr(e, '\n');
		if (nl)
			*nl = '\0';
		envp[k++] = e;
	}
	envp[k] = NULL;
	max = flags & FUZZ_CONFIG_PROBLEMS ? flags & FUZZ_CONFIG_PROBLEMS : CONFIG_PROBLEMS_MAX;
	msg_len = flags & FUZZ_CONFIG_SHORT_MSG ? 64 : sizeof(msg);

	rc = config_load(&c, path, problems, max, &n);
	fuzz_check((rc == 0 && n == 0) || (rc == -EINVAL && n > 0));
	check_problems(0, n < max ? n : max, lines, true);
	check_config(&c);
	before = n;
	erc = config_apply_env(&c, envp, problems, max, &n);
	fuzz_check((erc == 0 && n == before) || (erc == -EINVAL && n > before));
	check_problems(before < max ? before : max, n < max ? n : max, 0, false);
	check_config(&c);

	grc = config_gather(&g, flags & FUZZ_CONFIG_NO_FILE ? NULL : path, envp, msg, msg_len);
	fuzz_check(grc == 0 || grc == -EINVAL);
	fuzz_check(memchr(msg, '\0', msg_len) && (grc == 0) == (msg[0] == '\0'));
	check_config(&g);
	if (!(flags & FUZZ_CONFIG_NO_FILE)) {
		fuzz_check(grc != 0 || (rc == 0 && erc == 0));
		fuzz_check(memcmp(&g, &c, sizeof(c)) == 0);
	}
	return 0;
}
