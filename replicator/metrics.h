/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics — a fixed-size registry of per-volume counters, gauges and histograms,
 * rendered in the Prometheus text exposition format (0.0.4) and served over HTTP
 * on --metrics-addr with /metrics, /livez and /readyz. The only module that
 * includes <microhttpd.h>.
 *
 * Every series is labelled by volume, role and peer. A struct metrics_volume is
 * found or added once (metrics_volume()) and then updated without a lock: counters
 * are uint64_t bumped with __atomic adds, gauges are doubles stored as atomic
 * 64-bit bit patterns, histograms are arrays of atomic bucket counters. So a
 * data-path thread can count bytes at no more cost than one atomic add, and a
 * scrape never blocks the event loop. Volumes are never removed; the registry
 * holds at most METRICS_VOLUMES_MAX of them and the render buffer is sized from
 * that limit once, at metrics_init().
 *
 * /readyz says "started and state loaded" (metrics_set_ready()) and deliberately
 * never looks at the peer: a sidecar's readiness gates the whole pod, and a pod
 * must not go unready because the standby site is away. /livez says the event
 * loop still runs: it fails once metrics_heartbeat() has not been called for the
 * liveness limit.
 *
 * It knows nothing of senders, receivers or the protocol: callers push numbers in.
 */
#ifndef PVREPL_METRICS_H
#define PVREPL_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_VOLUMES_MAX 64
/* Longest volume, role or peer label value, in bytes, including the NUL. */
#define METRICS_LABEL_MAX   128
#define METRICS_VERSION_MAX 64
/* Finite histogram bucket bounds; one more bucket counts the rest (+Inf). */
#define METRICS_HISTOGRAM_BOUNDS 10
/* /livez fails when the last heartbeat is older than this (default). */
#define METRICS_LIVENESS_LIMIT_MS 30000
/* HTTP: simultaneous connections and the idle timeout of one connection. */
#define METRICS_CONNECTIONS_MAX	     16
#define METRICS_CONNECTION_TIMEOUT_S 10

/* The replication state of a volume: one series per state, 1 for the current. */
enum metrics_state {
	METRICS_STATE_INITIAL_SYNC = 0,
	METRICS_STATE_REPLICATING,
	METRICS_STATE_PAUSED,
	METRICS_STATE_DISCONNECTED,
	METRICS_STATE_SPLIT_BRAIN,
	METRICS_STATE_ERROR,
	METRICS_STATE_SYNCING,
	METRICS_STATE_CONSISTENT,
	METRICS_STATE_COUNT,
};

/* The capture mode of a source volume, shown by pvrepl_volume_info. */
enum metrics_capture {
	METRICS_CAPTURE_UNKNOWN = 0,
	METRICS_CAPTURE_SNAPSHOT,
	METRICS_CAPTURE_FREEZE,
	METRICS_CAPTURE_CBT,
	METRICS_CAPTURE_NONE,
	METRICS_CAPTURE_REFLINK,
	METRICS_CAPTURE_CAPTURED, /* captured, how not recorded */
	METRICS_CAPTURE_COUNT,
};

/* syncs_total{result}: an epoch or a resync that ended. */
enum metrics_sync_result {
	METRICS_SYNC_SUCCESS = 0,
	METRICS_SYNC_FAILURE,
	METRICS_SYNC_ABORTED,
	METRICS_SYNC_RESULT_COUNT,
};

/* errors_total{kind}. */
enum metrics_error_kind {
	METRICS_ERROR_IO = 0,
	METRICS_ERROR_NETWORK,
	METRICS_ERROR_TLS,
	METRICS_ERROR_PROTOCOL,
	METRICS_ERROR_VERIFY,
	METRICS_ERROR_JOURNAL,
	METRICS_ERROR_CAPTURE,
	METRICS_ERROR_OTHER,
	METRICS_ERROR_KIND_COUNT,
};

/* full_scans_total{reason}: why an epoch read the whole source device. */
enum metrics_full_scan_reason {
	METRICS_FULL_SCAN_OFF = 0,   /* no write tracker (off, or unavailable) */
	METRICS_FULL_SCAN_INITIAL,   /* an initial or resumed sync */
	METRICS_FULL_SCAN_NEW,	     /* a new tracker instance or state directory */
	METRICS_FULL_SCAN_LOSS,	     /* the tracker may have missed writes */
	METRICS_FULL_SCAN_PERIODIC,  /* the safety net */
	METRICS_FULL_SCAN_REQUESTED, /* send --full-scan */
	METRICS_FULL_SCAN_REASON_COUNT,
};

/* A monotonically increasing count; bump with metrics_add(). */
struct metrics_counter {
	uint64_t value;
};

/* A monotonically increasing non-integer count (seconds); metrics_add_f64(). */
struct metrics_counter_f64 {
	uint64_t bits;
};

/* A double that goes up and down; metrics_set(). */
struct metrics_gauge {
	uint64_t bits;
};

/*
 * Bucket i counts observations <= metrics_histogram_bounds_s[i] and above the
 * previous bound; bucket METRICS_HISTOGRAM_BOUNDS counts the rest. Rendering
 * makes them cumulative and derives _count from them, so le="+Inf" always equals
 * _count even while other threads observe.
 */
struct metrics_histogram {
	uint64_t buckets[METRICS_HISTOGRAM_BOUNDS + 1];
	uint64_t sum_bits;
};

extern const double metrics_histogram_bounds_s[METRICS_HISTOGRAM_BOUNDS];

/* The series of one (volume, role, peer). Owned by its struct metrics. */
struct metrics_volume {
	char volume[METRICS_LABEL_MAX];
	char role[METRICS_LABEL_MAX];
	char peer[METRICS_LABEL_MAX];
	uint32_t state;	  /* enum metrics_state, atomic */
	uint32_t capture; /* enum metrics_capture, atomic */

	struct metrics_gauge volume_size_bytes;
	struct metrics_gauge peer_connected; /* 0 or 1 */
	struct metrics_gauge replication_lag_seconds;
	struct metrics_gauge rpo_target_seconds;
	struct metrics_gauge last_sync_success_timestamp_seconds;
	struct metrics_gauge consistent_point_timestamp_seconds;
	struct metrics_gauge out_of_sync_bytes;
	struct metrics_gauge initial_sync_progress_ratio;
	struct metrics_gauge tls_certificate_expiry_timestamp_seconds;
	struct metrics_gauge write_tracking; /* 1: epochs read what the tracker marked */

	struct metrics_counter changed_blocks_total;
	struct metrics_counter payload_bytes_total;
	struct metrics_counter sent_bytes_total;
	struct metrics_counter received_bytes_total;
	struct metrics_counter applied_bytes_total;
	struct metrics_counter source_read_bytes_total;
	struct metrics_counter tracked_bytes_total;
	struct metrics_counter tracker_missed_blocks_total;
	struct metrics_counter reconnects_total;
	struct metrics_counter syncs_total[METRICS_SYNC_RESULT_COUNT];
	struct metrics_counter errors_total[METRICS_ERROR_KIND_COUNT];
	struct metrics_counter full_scans_total[METRICS_FULL_SCAN_REASON_COUNT];
	struct metrics_counter_f64 throttled_seconds_total;

	struct metrics_histogram scan_duration_seconds;
	struct metrics_histogram sync_duration_seconds;
};

struct MHD_Daemon;

/* Embedded by its owner; every field is private to metrics.c. */
struct metrics {
	char version[METRICS_VERSION_MAX];
	struct metrics_volume volumes[METRICS_VOLUMES_MAX];
	uint32_t volume_count;	  /* published with a release store */
	pthread_mutex_t add_lock; /* serialises metrics_volume() adds */

	uint64_t heartbeat_ns;	    /* CLOCK_MONOTONIC, atomic */
	uint64_t liveness_limit_ms; /* atomic */
	bool ready;		    /* atomic */

	pthread_mutex_t render_lock; /* guards render_buf */
	char *render_buf;	     /* METRICS_RENDER_BYTES_MAX, owned */
	struct MHD_Daemon *daemon;
};

/* Worst-case exposition size of a full registry with the longest labels. */
size_t metrics_render_bytes_max(void);

/*
 * Initialises an empty registry; version goes to pvrepl_build_info (truncated to
 * METRICS_VERSION_MAX - 1). Counts as a first heartbeat. Returns 0 or -errno.
 */
int metrics_init(struct metrics *m, const char *version);
/* Stops the server if running and frees the render buffer. */
void metrics_release(struct metrics *m);

/*
 * Finds or adds the series of (volume, role, peer); peer may be NULL or "".
 * Returns NULL when the registry is full or a label is longer than
 * METRICS_LABEL_MAX - 1 bytes. The pointer stays valid until metrics_release().
 * Thread-safe.
 */
struct metrics_volume *metrics_volume(struct metrics *m, const char *volume, const char *role,
				      const char *peer);

/* Lock-free updates; safe from any thread. */
static inline void metrics_add(struct metrics_counter *c, uint64_t n)
{
	__atomic_fetch_add(&c->value, n, __ATOMIC_RELAXED);
}
static inline uint64_t metrics_counter_get(const struct metrics_counter *c)
{
	return __atomic_load_n(&c->value, __ATOMIC_RELAXED);
}
void metrics_add_f64(struct metrics_counter_f64 *c, double n);
double metrics_counter_f64_get(const struct metrics_counter_f64 *c);
void metrics_set(struct metrics_gauge *g, double v);
double metrics_gauge_get(const struct metrics_gauge *g);
/* NaN is ignored; a negative value lands in the first bucket. */
void metrics_observe(struct metrics_histogram *h, double v);
void metrics_set_state(struct metrics_volume *v, enum metrics_state state);
void metrics_set_capture(struct metrics_volume *v, enum metrics_capture capture);
/* The label of a status_capture (status.h) value. */
enum metrics_capture metrics_capture_of(uint8_t status_capture);
static inline void metrics_count_sync(struct metrics_volume *v, enum metrics_sync_result result)
{
	metrics_add(&v->syncs_total[result], 1);
}
static inline void metrics_count_error(struct metrics_volume *v, enum metrics_error_kind kind)
{
	metrics_add(&v->errors_total[kind], 1);
}

/* The event loop calls this on each turn; /livez fails when it stops. */
void metrics_heartbeat(struct metrics *m);
/* Overrides METRICS_LIVENESS_LIMIT_MS (tests use a short one). */
void metrics_set_liveness_limit_ms(struct metrics *m, uint64_t limit_ms);
/* True once started and state is loaded; never tied to the peer. */
void metrics_set_ready(struct metrics *m, bool ready);

/*
 * Writes the exposition (text format 0.0.4) into buf. Returns its length (no NUL
 * counted, but one is written) or -ENOBUFS when cap is too small; a buffer of
 * metrics_render_bytes_max() bytes is always enough.
 */
int metrics_render(const struct metrics *m, char *buf, size_t cap);

/*
 * Serves /metrics, /livez and /readyz on addr, "HOST:PORT", "[V6]:PORT" or ":PORT"
 * (every address); port 0 picks a free one (see metrics_port()). Runs its own
 * thread. Returns 0, or -errno with a message in err.
 */
int metrics_serve(struct metrics *m, const char *addr, char *err, size_t err_len);
/* The bound port while serving, else 0. */
uint16_t metrics_port(const struct metrics *m);
/* Stops serving (waits for the server thread); a no-op when not serving. */
void metrics_stop(struct metrics *m);

#endif
