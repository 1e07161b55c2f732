/* SPDX-License-Identifier: Apache-2.0 */
/*
 * status — what `pvrepl status` shows, kept by the daemons in each volume's state
 * directory (`status`): role, state, epoch, the last sync's time, duration and
 * bytes, the consistent point, the peer, and the last error. The sender and the
 * receiver rewrite it after every epoch and connection event; `pvrepl status`
 * reads it while they run. It is replaced by rename (readers never see half a
 * record) but not fsync'ed: it reports, it does not decide anything after a
 * crash (the map, journal and state files do).
 */
#ifndef PVREPL_STATUS_H
#define PVREPL_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATUS_FILE	"status"
#define STATUS_TMP_FILE "status.tmp"

enum status_role {
	STATUS_ROLE_PRIMARY = 0,   /* the source: pvrepl send / replicate */
	STATUS_ROLE_SECONDARY = 1, /* the standby: pvrepl receive */
};

enum status_state {
	STATUS_INITIAL_SYNC = 0,
	STATUS_REPLICATING = 1,
	STATUS_PAUSED = 2,
	STATUS_DISCONNECTED = 3,
	STATUS_SPLIT_BRAIN = 4,
	STATUS_ERROR = 5,
	STATUS_STATE_COUNT = 6,
};

enum status_tracking {
	STATUS_TRACKING_UNKNOWN = 0, /* secondary, or a record from before tracking */
	STATUS_TRACKING_OFF = 1,     /* every epoch reads the whole device */
	STATUS_TRACKING_BPF = 2,     /* the eBPF write tracker */
};

/*
 * How the standby's epoch was captured. On disk it is the byte that says
 * crash_consistent (vstate, status): 0 read live, 1 captured in a way not
 * recorded (records written before kinds were), else the kind; the values
 * are PROTO_CAPTURE_*'s.
 */
enum status_capture {
	STATUS_CAPTURE_LIVE = 0,
	STATUS_CAPTURE_UNKNOWN = 1,
	STATUS_CAPTURE_FREEZE = 2,
	STATUS_CAPTURE_REFLINK = 3,
	STATUS_CAPTURE_SNAPSHOT = 4,
};

/* "none" (read live), "captured", "freeze", "reflink", "snapshot". */
const char *status_capture_name(uint8_t capture);
/* The on-disk byte read back: crash_consistent and the kind (an unknown one
 * is STATUS_CAPTURE_UNKNOWN). */
uint8_t status_capture_of_byte(uint8_t b);
/* The byte written: 0 read live, else the kind (STATUS_CAPTURE_UNKNOWN when
 * none was said). */
uint8_t status_capture_byte(bool crash_consistent, uint8_t kind);

struct status_record {
	enum status_role role;
	enum status_state state;
	bool consistent;       /* secondary: the standby holds a whole epoch */
	bool crash_consistent; /* that epoch came from a point-in-time capture */
	uint8_t capture;       /* how (enum status_capture); 0 when not */
	uint64_t epoch;	       /* confirmed (primary) / committed (secondary) */
	uint64_t size_bytes;
	int64_t state_since_unix; /* when state last changed */
	int64_t last_attempt_unix;
	int64_t last_success_unix;   /* end of the last good epoch */
	int64_t consistent_point_ms; /* the source time (Unix ms) the standby's data is from */
	uint64_t last_sync_duration_ms;
	uint64_t last_sync_bytes;   /* on the wire */
	uint64_t out_of_sync_bytes; /* primary: changed, not yet confirmed (last scan) */
	double rpo_target_seconds;  /* primary: --rpo, 0 if none */
	char volume[64];
	char peer[128];
	char last_error[256];
	/* primary: what the last epoch read (the record's extension) */
	enum status_tracking tracking;
	bool last_scan_tracked;		/* read only what the tracker marked */
	uint64_t tracker_missed_blocks; /* found by the last checking full scan */
	char scan_note[200];		/* why a full scan, or why no tracker */
	/* the writer (the record's second extension; 0/false in older records) */
	bool daemon;	     /* receive or replicate, which refresh heartbeat_unix */
	uint32_t writer_pid; /* its process */
	int64_t heartbeat_unix;
};

/* A daemon refreshes its records this often, even when idle; a reader calls a
 * daemon's record stale (the daemon is not running) past STATUS_STALE_S. */
#define STATUS_HEARTBEAT_S 10
#define STATUS_STALE_S	   35

/*
 * Whether the daemon that writes s has stopped: its heartbeat is older than
 * STATUS_STALE_S at now, or its pid is gone. Never for a record a one-shot
 * command (send) wrote, or one from before the writer was recorded.
 */
bool status_writer_gone(const struct status_record *s, int64_t now_unix);

/* Refreshes the heartbeat (and the writer's pid) of DIR/status: 0, -ENOENT
 * when there is no record yet, or -errno. Reporting only: not fsynced. */
int status_heartbeat_nosync(const char *dir);

/* Writes DIR/status: rename-atomic for readers, deliberately not fsynced (it
 * decides nothing after a crash). Returns 0 or -errno. */
int status_store_nosync(const struct status_record *s, const char *dir);
/*
 * An update of DIR/status by its writer: status_update_begin starts s from the
 * record there (or zeros) with the role and volume set; the writer sets what it
 * knows; status_update_store_nosync stamps state_since_unix when the state
 * changed and stores s (status_store_nosync).
 */
struct status_update {
	struct status_record prev;
	bool have_prev;
	int64_t now_unix;
};

void status_update_begin(struct status_update *u, struct status_record *s, const char *dir,
			 enum status_role role, const char *volume);
int status_update_store_nosync(const struct status_update *u, struct status_record *s,
			       const char *dir);
/* Reads DIR/status: 0, -ENOENT, or -EBADMSG for a damaged record. */
int status_load(struct status_record *s, const char *dir);
const char *status_state_name(enum status_state st);
const char *status_role_name(enum status_role r);

#endif
