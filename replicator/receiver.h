/* SPDX-License-Identifier: Apache-2.0 */
/*
 * receiver — the standby side: serves many volumes from many senders. Each volume
 * is mapped to its standby device by configuration and keeps a state directory
 * (map, journal, state). Epochs are verified block by block, journaled, committed
 * durably, acknowledged, then applied; an initial sync writes directly with a
 * persisted cursor while the volume says `syncing`. One of the two modules that
 * own control flow (with sender.c).
 */
#ifndef PVREPL_RECEIVER_H
#define PVREPL_RECEIVER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "kfio.h"

struct metrics;

#define RECEIVER_VOLUMES_MAX 64u
#define RECEIVER_ALLOW_MAX   8u
#define RECEIVER_CONNS_MAX   64u
/* Connections not yet authorised (TLS handshake, HELLO): at most this many,
 * this many from one address, each for at most RECEIVER_HANDSHAKE_MS; a new
 * one evicts the oldest past a limit, so idle or slow strangers never keep a
 * sender out (defect 9 of the reliability issue). */
#define RECEIVER_HANDSHAKES_MAX		 16u
#define RECEIVER_HANDSHAKES_PER_HOST_MAX 4u
#define RECEIVER_HANDSHAKE_MS		 5000u
#define RECEIVER_JOURNAL_BYTES_DEFAULT	 (1ull << 30)
#define RECEIVER_NAME_MAX		 64u

struct receiver_volume_cfg {
	char name[RECEIVER_NAME_MAX];
	char device[KFIO_PATH_MAX];
	char allow[RECEIVER_ALLOW_MAX][256]; /* certificate identities; none = any CA-signed */
	unsigned allow_count;
};

struct receiver_config {
	const char *listen;
	const char *tls_dir;
	const char *state_dir;
	bool insecure_plaintext;
	unsigned timeout_ms;
	uint64_t journal_bytes;
	enum kfio_backend_kind backend;
	struct receiver_volume_cfg vols[RECEIVER_VOLUMES_MAX];
	unsigned vol_count;
	/* When set, the address actually bound is written here once listening
	 * (tests listen on port 0). */
	const char *ready_file;
	/* When set (--metrics-addr), per-epoch outcomes are counted here; the caller
	 * owns it and keeps it alive until receiver_run() returns. NULL: no metrics. */
	struct metrics *metrics;
	/* SIGHUP: when *reload_requested is set, the serving loop clears it and calls
	 * reload, which builds the new configuration (kept alive until the next call)
	 * or returns -errno with every problem in err (the running one is kept). */
	volatile sig_atomic_t *reload_requested;
	int (*reload)(void *ctx, const struct receiver_config **next, char *err, size_t err_len);
	void *reload_ctx;
};

/*
 * Opens every volume (recovering committed journals), listens, and serves until
 * *stop becomes non-zero. Returns 0 or -errno with a sentence in err.
 */
int receiver_run(const struct receiver_config *cfg, volatile sig_atomic_t *stop, char *err,
		 size_t err_len);

#endif
