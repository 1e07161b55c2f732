/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sender — the source side of replication: one epoch per call. It scans the device
 * against the confirmed map, streams the changed blocks to the receiver in block
 * order while the scan runs, and advances the confirmed map only after the
 * receiver acknowledged the epoch as durable. A failure at any point leaves the
 * confirmed map where it was, so the next attempt resends what is needed.
 * One of the two modules that own control flow (with receiver.c).
 */
#ifndef PVREPL_SENDER_H
#define PVREPL_SENDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "progress.h"
#include "proto.h"
#include "capture.h"
#include "scan.h"
#include "tracking.h"

#define SENDER_TIMEOUT_MS_DEFAULT 30000u

/*
 * Lets another thread (the network watcher of `replicate`) stop the epoch in
 * flight at once: sender_abort_now() marks it paused with a reason and shuts
 * down the live socket, so a write blocked on a dead link returns now instead of
 * after the TCP timeout. The socket is published and withdrawn under the lock,
 * so a shutdown never hits a descriptor that was closed and reused.
 */
struct sender_abort {
	pthread_mutex_t lock;
	int fd;		  /* the live connection's socket, -1 when none */
	bool paused;	  /* no epoch may start or continue */
	char reason[256]; /* why, for logs and status */
};

void sender_abort_init(struct sender_abort *a);
/* Pauses (reason is copied) and aborts the epoch in flight, if any. */
void sender_abort_now(struct sender_abort *a, const char *reason);
void sender_abort_resume(struct sender_abort *a);
bool sender_abort_paused(struct sender_abort *a);

struct sender_config {
	const char *volume;
	const char *device;
	const char *state_dir;
	const char *peer; /* HOST:PORT */
	const char *tls_dir;
	const char *server_name; /* expected name in the receiver's certificate */
	bool insecure_plaintext;
	uint32_t block_bytes; /* for a new map; 0 = default */
	unsigned timeout_ms;
	uint64_t max_rate_bytes_per_s; /* network cap, TLS included; 0 = none */
	double rpo_target_seconds;     /* shown by `pvrepl status`; 0 = none */
	enum progress_mode progress;
	/* Called from the scan's progress updates while an epoch runs (may be NULL):
	 * lets a daemon tell its liveness probe it is working, not stuck. */
	void (*alive)(void *ctx);
	void *alive_ctx;
	struct sender_abort *abort; /* may be NULL */
	/* A TLS context made from tls_dir and server_name and kept across epochs
	 * (may be NULL: each epoch makes its own). Borrowed: a daemon's, which
	 * spares every epoch the few milliseconds of making one; tls_connect
	 * reloads it when the files change. */
	struct tls_ctx *tls;
	/* Run by a daemon (replicate), which refreshes the status record's
	 * heartbeat between epochs: `status` calls the record stale without it. */
	bool daemon;
	struct capture_config capture;
	struct scan_config scan;
	struct tracking_config tracking;
};

enum sender_outcome {
	SENDER_OK = 0,
	SENDER_REFUSED, /* the receiver refused the volume (see message) */
	SENDER_FAILED,	/* I/O, network or protocol failure (see message) */
};

struct sender_result {
	enum sender_outcome outcome;
	int err;		/* -errno when not SENDER_OK */
	uint16_t refuse_reason; /* PROTO_REFUSE_* when SENDER_REFUSED */
	uint64_t epoch;
	uint32_t block_bytes;
	bool initial_sync;
	bool resumed;
	bool recovered_ack; /* the previous epoch's lost ack was settled from map.pending */
	uint64_t resume_block;
	uint64_t size_bytes; /* of the source device; 0 when it did not open */
	uint64_t blocks_scanned;
	uint64_t read_bytes; /* read from the source device by the scan */
	/* What the epoch read: every block, or the tracker's marks (and why). */
	enum tracking_scan scan;
	enum tracking_full_reason full_scan_reason;
	char scan_reason[400];
	bool tracking;			/* a write tracker was in use */
	char tracking_off[320];		/* when not: why */
	uint64_t tracked_bytes;		/* marked by the tracker at this epoch's harvest */
	uint64_t tracker_missed_blocks; /* a checking full scan found these unmarked */
	/* The capture: freeze, reflink or snapshot (one instant, crash_consistent)
	 * or none (live reads, with the reason when it was not asked for). */
	enum capture_mode capture;
	char capture_note[CAPTURE_WHY_MAX];
	bool crash_consistent;
	uint32_t rounds;	    /* rounds of reads (1: none after the first) */
	double freeze_ms;	    /* how long the file system was frozen */
	uint64_t freeze_read_bytes; /* read while it was */
	double clone_ms;	    /* reflink: the FICLONE call; snapshot: the command */
	char warning[400];	    /* the epoch succeeded, but this needs attention */
	uint64_t blocks_changed;
	uint64_t blocks_zero;
	uint64_t blocks_sent;	 /* data + zero blocks on the wire */
	uint64_t blocks_partial; /* of them, sent as their changed 4 KiB pages (PAGES) */
	uint64_t payload_bytes;	 /* plaintext of the data blocks sent */
	uint64_t data_bytes;	 /* after compression */
	uint64_t wire_bytes;	 /* everything sent on the connection, TLS included */
	double seconds;
	double scan_seconds;
	double cpu_seconds;
	/* Held back by the caps: reads by --max-read-rate, plus the time the sender
	 * sat blocked on its socket paced by --max-rate, when the stream's average
	 * rate reached 85% of the cap (else the link set the pace). */
	double throttled_seconds;
	bool disconnected; /* failed on the network: the peer is away */
	bool config_error; /* the options cannot work (a capture that cannot be): fix, restart */
	bool paused;	   /* stopped by sender_abort_now (the route is gone) */
	char message[512];
};

/* How the epoch's source was captured: a status_capture value (status.h). */
uint8_t sender_capture_kind(const struct sender_result *res);

/* Runs one epoch end to end; fills res (also on failure). Returns 0 or -errno. */
int sender_run_epoch(const struct sender_config *cfg, struct sender_result *res);

/*
 * What the epoch choice depends on, once the handshake is done: the sender's
 * confirmed map (after any lost ack was settled) and the receiver's WELCOME.
 * Plain values, no I/O behind them, so the choice can be tested as a table.
 */
struct sender_epoch_facts {
	bool map_empty; /* nothing confirmed yet (epoch 0): every block differs */
	uint64_t map_epoch;
	uint64_t map_generation;
	uint8_t map_volume_id[PROTO_VOLUME_ID_BYTES];
	uint64_t hello_root; /* the confirmed map's root sent in HELLO (0 when empty) */
	/* The receiver held the epoch whose ack was lost, and the map advanced to
	 * it: hello_root is stale, recovered_root is the map's root now. */
	bool recovered_ack;
	uint64_t recovered_root; /* read only when recovered_ack */
	struct proto_welcome welcome;
};

/* The EPOCH_BEGIN the facts call for. */
struct sender_epoch_choice {
	uint64_t epoch;
	uint64_t base_epoch;   /* the confirmed epoch an incremental builds on; 0 otherwise */
	uint32_t flags;	       /* PROTO_EPOCH_INITIAL_SYNC, PROTO_EPOCH_RESUMED */
	uint64_t resume_block; /* the receiver's cursor when resumed; 0 otherwise */
	bool initial_sync;     /* compare against nothing: every block is sent */
	bool resumed;	       /* an interrupted initial sync goes on from resume_block */
};

/*
 * The full / resumed / incremental choice (pure). Incremental only when both
 * sides provably hold the same confirmed map: map not empty, receiver CONSISTENT
 * at the same epoch, generation, root and volume id. Anything else is a full sync
 * of epoch max(map epoch, receiver epoch) + 1, resumed at the receiver's cursor
 * (and with its resume_epoch) when it is SYNCING the same volume id with a
 * non-zero resume_epoch and resume_block.
 */
void sender_choose_epoch(const struct sender_epoch_facts *f, struct sender_epoch_choice *c);

/*
 * True when the receiver is CONSISTENT exactly one epoch ahead of the confirmed
 * map, on the same generation and volume id (pure; reads the map facts and the
 * WELCOME only): it committed the epoch we sent last and its ack was lost. Only
 * then is map.pending worth applying.
 */
bool sender_lost_ack_candidate(const struct sender_epoch_facts *f);

#endif
