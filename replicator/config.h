/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config — the configuration file of the daemons (INI, see docs/CONFIG.md): a
 * [receiver] section, a [sender] section and one [volume NAME] section per volume,
 * parsed with libinih into a fixed-size struct config, with PVREPL_* environment
 * variables layered on top. Values are checked with the same rules as the command
 * line (cli_parse_size, cli_parse_duration, HOST:PORT). Every problem is collected
 * with its line, not just the first. The only module that includes <ini.h>.
 *
 * It does not open devices, certificates or sockets, and it does not know the
 * command-line flags: the daemons apply flags on top (flags > env > file).
 */
#ifndef PVREPL_CONFIG_H
#define PVREPL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_VOLUMES_MAX   64u
#define CONFIG_ALLOW_MAX     8u
#define CONFIG_NAME_MAX	     64u   /* a volume name is 1..63 printable characters */
#define CONFIG_PATH_MAX	     1024u /* device, tls_dir, state_dir */
#define CONFIG_ADDR_MAX	     256u  /* HOST:PORT, server_name */
#define CONFIG_CERT_MAX	     256u  /* a certificate name in allow */
#define CONFIG_MESSAGE_MAX   256u
#define CONFIG_PROBLEMS_MAX  128u /* a sensible problems_max for callers */
#define CONFIG_TIMEOUT_MS    30000u
#define CONFIG_JOURNAL_BYTES (1ull << 30)

/* Numbers are 0 when the file does not set them (the daemon's default applies),
 * except timeout_ms and journal_bytes, which start at the CLI defaults. */
struct config_receiver {
	bool present;
	unsigned line; /* of the [receiver] header */
	char listen[CONFIG_ADDR_MAX];
	char tls_dir[CONFIG_PATH_MAX];
	char state_dir[CONFIG_PATH_MAX];
	uint64_t journal_bytes;
	uint64_t timeout_ms;
	char metrics_addr[CONFIG_ADDR_MAX];
};

struct config_sender {
	bool present;
	unsigned line;
	char tls_dir[CONFIG_PATH_MAX];
	char peer[CONFIG_ADDR_MAX];
	char server_name[CONFIG_ADDR_MAX];
	uint64_t interval_ms;
	uint64_t rpo_ms;
	uint64_t timeout_ms;
	uint64_t max_rate_bytes_per_s;
	uint64_t max_read_bytes_per_s;
	char metrics_addr[CONFIG_ADDR_MAX];
	uint64_t block_bytes;
	char track[8]; /* auto, bpf or off; empty: auto */
	uint64_t full_scan_interval_ms;
	char track_pin_dir[CONFIG_PATH_MAX];
	char capture[16]; /* auto, none, freeze, reflink or snapshot; empty: auto */
	uint64_t freeze_timeout_ms;
};

struct config_volume {
	unsigned line;
	char name[CONFIG_NAME_MAX];
	char device[CONFIG_PATH_MAX];
	char state_dir[CONFIG_PATH_MAX]; /* the sender's */
	char capture[16];		 /* overrides [sender]'s; empty: that one */
	char freeze_path[CONFIG_PATH_MAX];
	char snapshot_cmd[CONFIG_PATH_MAX]; /* capture = snapshot */
	char snapshot_release_cmd[CONFIG_PATH_MAX];
	unsigned allow_count;
	char allow[CONFIG_ALLOW_MAX][CONFIG_CERT_MAX];
};

/* About 300 KiB: make it static or allocate it, not a local. */
struct config {
	struct config_receiver receiver;
	struct config_sender sender;
	unsigned volume_count;
	struct config_volume volumes[CONFIG_VOLUMES_MAX];
};

/* line 0: the problem is about the whole file or the environment. */
struct config_problem {
	unsigned line;
	char message[CONFIG_MESSAGE_MAX];
};

/* Empties c and sets the defaults. */
void config_init(struct config *c);

/*
 * Initializes c and reads the file at path into it. Stores the first problems_max
 * problems (sorted by line) in problems and sets *problem_count to the number
 * found. Returns 0 if there are none, -EINVAL if there are, and -errno if the file
 * cannot be read (one problem, line 0, naming the path).
 */
int config_load(struct config *c, const char *path, struct config_problem *problems,
		unsigned problems_max, unsigned *problem_count);

/*
 * Overrides values of c with the PVREPL_* variables of envp (NULL-terminated
 * "NAME=VALUE" strings, e.g. environ). PVREPL_VOLUME, PVREPL_DEVICE and
 * PVREPL_ALLOW are about the single volume: they need c to hold at most one (and
 * create it if it holds none); PVREPL_STATE_DIR sets the receiver's state_dir and
 * the single volume's. Problems have line 0 and name the variable. Appends to
 * problems from *problem_count on. Returns 0 or -EINVAL.
 */
int config_apply_env(struct config *c, char *const *envp, struct config_problem *problems,
		     unsigned problems_max, unsigned *problem_count);

/*
 * What the daemons start from: the file at path (NULL: none) with envp's PVREPL_*
 * variables on top. Every problem goes into msg, one per line, as "PATH:LINE:
 * message" or "PATH: message" (line-less) or "environment: message". Returns 0,
 * -EINVAL when there are problems, or the file's -errno when it cannot be read.
 */
int config_gather(struct config *c, const char *path, char *const *envp, char *msg, size_t msg_len);

#endif
