// SPDX-License-Identifier: Apache-2.0
/*
 * metrics — the registry, its Prometheus text rendering (exposition format
 * 0.0.4) and the HTTP endpoint (libmicrohttpd, one internal polling thread).
 * Updates are lock-free atomics on fixed fields; a scrape reads them with relaxed
 * loads, so one scrape may mix values from slightly different instants, which
 * Prometheus accepts for independent series. The only lock on the update side
 * is taken when a volume is added. The render buffer is sized once from
 * METRICS_VOLUMES_MAX and METRICS_LABEL_MAX. Knows nothing of what the numbers
 * mean beyond their help text.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"
#include "pvrepl_assert.h"
#include "status.h"

#define METRICS_PREFIX "pvrepl_"
/*
 * Worst-case sizes for the render buffer. One sample line: a name (< 64 bytes
 * with its suffix), three label values of METRICS_LABEL_MAX - 1 bytes that may
 * double when escaped, the label names and one extra label (< 96 bytes), a value
 * (<= 24 bytes). Samples per volume: 1 info + 8 states + 10 gauges + 9 counters +
 * 3 syncs + 8 errors + 6 full scans + 1 throttled + 2 histograms of 11 buckets,
 * sum and count = 72. The HELP and TYPE lines of every family fit METRICS_HEADERS_BYTES_MAX.
 */
#define METRICS_LINE_BYTES_MAX	       (64 + 3 * 2 * (METRICS_LABEL_MAX - 1) + 96 + 32)
#define METRICS_SAMPLES_PER_VOLUME_MAX 80
#define METRICS_HEADERS_BYTES_MAX      16384
#define METRICS_STATUS_BYTES_MAX       256
#define METRICS_CONTENT_TYPE	       "text/plain; version=0.0.4; charset=utf-8"

const double metrics_histogram_bounds_s[METRICS_HISTOGRAM_BOUNDS] = { 0.1, 0.5, 1,  2.5, 5,
								      10,  30,	60, 120, 300 };
static const char *const metrics_bound_names[METRICS_HISTOGRAM_BOUNDS] = {
	"0.1", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300"
};

static const char *const metrics_state_names[METRICS_STATE_COUNT] = {
	[METRICS_STATE_INITIAL_SYNC] = "initial_sync",
	[METRICS_STATE_REPLICATING] = "replicating",
	[METRICS_STATE_PAUSED] = "paused",
	[METRICS_STATE_DISCONNECTED] = "disconnected",
	[METRICS_STATE_SPLIT_BRAIN] = "split_brain",
	[METRICS_STATE_ERROR] = "error",
	[METRICS_STATE_SYNCING] = "syncing",
	[METRICS_STATE_CONSISTENT] = "consistent",
};

static const char *const metrics_capture_names[METRICS_CAPTURE_COUNT] = {
	[METRICS_CAPTURE_UNKNOWN] = "unknown",	 [METRICS_CAPTURE_SNAPSHOT] = "snapshot",
	[METRICS_CAPTURE_FREEZE] = "freeze",	 [METRICS_CAPTURE_CBT] = "cbt",
	[METRICS_CAPTURE_NONE] = "none",	 [METRICS_CAPTURE_REFLINK] = "reflink",
	[METRICS_CAPTURE_CAPTURED] = "captured",
};

static const char *const metrics_sync_result_names[METRICS_SYNC_RESULT_COUNT] = {
	[METRICS_SYNC_SUCCESS] = "success",
	[METRICS_SYNC_FAILURE] = "failure",
	[METRICS_SYNC_ABORTED] = "aborted",
};

static const char *const metrics_error_kind_names[METRICS_ERROR_KIND_COUNT] = {
	[METRICS_ERROR_IO] = "io",	     [METRICS_ERROR_NETWORK] = "network",
	[METRICS_ERROR_TLS] = "tls",	     [METRICS_ERROR_PROTOCOL] = "protocol",
	[METRICS_ERROR_VERIFY] = "verify",   [METRICS_ERROR_JOURNAL] = "journal",
	[METRICS_ERROR_CAPTURE] = "capture", [METRICS_ERROR_OTHER] = "other",
};

static const char *const metrics_full_scan_names[METRICS_FULL_SCAN_REASON_COUNT] = {
	[METRICS_FULL_SCAN_OFF] = "off",	   [METRICS_FULL_SCAN_INITIAL] = "initial",
	[METRICS_FULL_SCAN_NEW] = "new",	   [METRICS_FULL_SCAN_LOSS] = "loss",
	[METRICS_FULL_SCAN_PERIODIC] = "periodic", [METRICS_FULL_SCAN_REQUESTED] = "requested",
};

enum metrics_field_kind {
	METRICS_FIELD_GAUGE,
	METRICS_FIELD_COUNTER,
	METRICS_FIELD_COUNTER_F64,
};

/* A family with one plain series per volume, read at offset in the volume. */
struct metrics_field {
	const char *name;
	const char *help;
	enum metrics_field_kind kind;
	size_t offset;
};

#define METRICS_FIELD(field, kind, help)                                   \
	{                                                                  \
#field, help, kind, offsetof(struct metrics_volume, field) \
	}

static const struct metrics_field metrics_fields[] = {
	METRICS_FIELD(volume_size_bytes, METRICS_FIELD_GAUGE, "Size of the volume in bytes."),
	METRICS_FIELD(peer_connected, METRICS_FIELD_GAUGE,
		      "1 while the replication peer is connected, else 0."),
	METRICS_FIELD(replication_lag_seconds, METRICS_FIELD_GAUGE,
		      "Age of the newest epoch acknowledged by the standby."),
	METRICS_FIELD(rpo_target_seconds, METRICS_FIELD_GAUGE,
		      "Configured recovery point objective."),
	METRICS_FIELD(last_sync_success_timestamp_seconds, METRICS_FIELD_GAUGE,
		      "Unix time of the last successful sync (0: none yet)."),
	METRICS_FIELD(consistent_point_timestamp_seconds, METRICS_FIELD_GAUGE,
		      "Unix time of the instant the standby's committed epoch captured."),
	METRICS_FIELD(out_of_sync_bytes, METRICS_FIELD_GAUGE,
		      "Bytes known to differ between source and standby."),
	METRICS_FIELD(initial_sync_progress_ratio, METRICS_FIELD_GAUGE,
		      "Progress of the initial or full sync, 0 to 1."),
	METRICS_FIELD(tls_certificate_expiry_timestamp_seconds, METRICS_FIELD_GAUGE,
		      "Unix time at which this side's TLS certificate expires."),
	METRICS_FIELD(changed_blocks_total, METRICS_FIELD_COUNTER,
		      "Blocks found changed by scans or write tracking."),
	METRICS_FIELD(payload_bytes_total, METRICS_FIELD_COUNTER,
		      "Block payload bytes replicated, before compression."),
	METRICS_FIELD(sent_bytes_total, METRICS_FIELD_COUNTER, "Bytes sent to the peer."),
	METRICS_FIELD(received_bytes_total, METRICS_FIELD_COUNTER, "Bytes received from the peer."),
	METRICS_FIELD(applied_bytes_total, METRICS_FIELD_COUNTER,
		      "Bytes written to the standby device."),
	METRICS_FIELD(
		write_tracking, METRICS_FIELD_GAUGE,
		"1 when epochs read only what the eBPF write tracker marked, 0 when every epoch scans the whole device."),
	METRICS_FIELD(source_read_bytes_total, METRICS_FIELD_COUNTER,
		      "Bytes read from the source device."),
	METRICS_FIELD(tracked_bytes_total, METRICS_FIELD_COUNTER,
		      "Bytes the write tracker marked as written, harvested at epoch starts."),
	METRICS_FIELD(
		tracker_missed_blocks_total, METRICS_FIELD_COUNTER,
		"Changed blocks a full scan found that the write tracker had not marked (must stay 0)."),
	METRICS_FIELD(reconnects_total, METRICS_FIELD_COUNTER, "Connections re-established."),
	METRICS_FIELD(
		throttled_seconds_total, METRICS_FIELD_COUNTER_F64,
		"Time held back by the caps: source reads delayed by --max-read-rate, and time blocked on the socket paced by --max-rate when the stream reached the cap."),
};

/* ---------------------------------------------------------------- updates */

static uint64_t metrics_bits(double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	return bits;
}

static double metrics_double(uint64_t bits)
{
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

/* A compare-and-swap loop: there is no atomic add of doubles. */
static void metrics_add_bits(uint64_t *bits, double n)
{
	uint64_t old = __atomic_load_n(bits, __ATOMIC_RELAXED);

	while (!__atomic_compare_exchange_n(bits, &old, metrics_bits(metrics_double(old) + n), true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void metrics_add_f64(struct metrics_counter_f64 *c, double n)
{
	if (!(n > 0)) /* a counter never goes down; NaN ignored */
		return;
	metrics_add_bits(&c->bits, n);
}

double metrics_counter_f64_get(const struct metrics_counter_f64 *c)
{
	return metrics_double(__atomic_load_n(&c->bits, __ATOMIC_RELAXED));
}

void metrics_set(struct metrics_gauge *g, double v)
{
	__atomic_store_n(&g->bits, metrics_bits(v), __ATOMIC_RELAXED);
}

double metrics_gauge_get(const struct metrics_gauge *g)
{
	return metrics_double(__atomic_load_n(&g->bits, __ATOMIC_RELAXED));
}

void metrics_observe(struct metrics_histogram *h, double v)
{
	unsigned i = 0;

	if (isnan(v))
		return;
	while (i < METRICS_HISTOGRAM_BOUNDS && v > metrics_histogram_bounds_s[i])
		i++;
	__atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
	metrics_add_bits(&h->sum_bits, v);
}

void metrics_set_state(struct metrics_volume *v, enum metrics_state state)
{
	ASSERT((unsigned)state < METRICS_STATE_COUNT);
	__atomic_store_n(&v->state, (uint32_t)state, __ATOMIC_RELAXED);
}

enum metrics_capture metrics_capture_of(uint8_t status_capture)
{
	switch (status_capture) {
	case STATUS_CAPTURE_LIVE:
		return METRICS_CAPTURE_NONE;
	case STATUS_CAPTURE_FREEZE:
		return METRICS_CAPTURE_FREEZE;
	case STATUS_CAPTURE_REFLINK:
		return METRICS_CAPTURE_REFLINK;
	case STATUS_CAPTURE_SNAPSHOT:
		return METRICS_CAPTURE_SNAPSHOT;
	}
	return METRICS_CAPTURE_CAPTURED;
}

void metrics_set_capture(struct metrics_volume *v, enum metrics_capture capture)
{
	ASSERT((unsigned)capture < METRICS_CAPTURE_COUNT);
	__atomic_store_n(&v->capture, (uint32_t)capture, __ATOMIC_RELAXED);
}

static uint64_t metrics_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_heartbeat(struct metrics *m)
{
	__atomic_store_n(&m->heartbeat_ns, metrics_now_ns(), __ATOMIC_RELAXED);
}

void metrics_set_liveness_limit_ms(struct metrics *m, uint64_t limit_ms)
{
	__atomic_store_n(&m->liveness_limit_ms, limit_ms, __ATOMIC_RELAXED);
}

void metrics_set_ready(struct metrics *m, bool ready)
{
	__atomic_store_n(&m->ready, ready, __ATOMIC_RELAXED);
}

/* --------------------------------------------------------------- registry */

size_t metrics_render_bytes_max(void)
{
	return METRICS_HEADERS_BYTES_MAX + METRICS_LINE_BYTES_MAX +
	       (size_t)METRICS_VOLUMES_MAX * METRICS_SAMPLES_PER_VOLUME_MAX *
		       METRICS_LINE_BYTES_MAX;
}

int metrics_init(struct metrics *m, const char *version)
{
	int err;

	memset(m, 0, sizeof(*m));
	snprintf(m->version, sizeof(m->version), "%s", version ? version : "");
	m->liveness_limit_ms = METRICS_LIVENESS_LIMIT_MS;
	m->heartbeat_ns = metrics_now_ns();
	m->render_buf = malloc(metrics_render_bytes_max());
	if (!m->render_buf)
		return -ENOMEM;
	err = -pthread_mutex_init(&m->add_lock, NULL);
	if (err)
		goto free_buf;
	err = -pthread_mutex_init(&m->render_lock, NULL);
	if (err)
		goto destroy_add_lock;
	return 0;

destroy_add_lock:
	pthread_mutex_destroy(&m->add_lock);
free_buf:
	free(m->render_buf);
	m->render_buf = NULL;
	return err;
}

void metrics_release(struct metrics *m)
{
	metrics_stop(m);
	pthread_mutex_destroy(&m->render_lock);
	pthread_mutex_destroy(&m->add_lock);
	free(m->render_buf);
	m->render_buf = NULL;
}

static bool metrics_label_fits(const char *s)
{
	return strnlen(s, METRICS_LABEL_MAX) < METRICS_LABEL_MAX;
}

struct metrics_volume *metrics_volume(struct metrics *m, const char *volume, const char *role,
				      const char *peer)
{
	struct metrics_volume *v = NULL;
	uint32_t n;

	ASSERT(volume != NULL);
	ASSERT(role != NULL);
	if (!peer)
		peer = "";
	if (!metrics_label_fits(volume) || !metrics_label_fits(role) || !metrics_label_fits(peer))
		return NULL;

	pthread_mutex_lock(&m->add_lock);
	n = m->volume_count;
	for (uint32_t i = 0; i < n; i++) {
		struct metrics_volume *c = &m->volumes[i];

		if (!strcmp(c->volume, volume) && !strcmp(c->role, role) &&
		    !strcmp(c->peer, peer)) {
			v = c;
			goto unlock;
		}
	}
	if (n == METRICS_VOLUMES_MAX)
		goto unlock;
	v = &m->volumes[n];
	memset(v, 0, sizeof(*v));
	strcpy(v->volume, volume);
	strcpy(v->role, role);
	strcpy(v->peer, peer);
	v->state = METRICS_STATE_DISCONNECTED;
	/*
	 * Release: a renderer that loads the new count with acquire sees the labels
	 * written above, without taking the lock.
	 */
	__atomic_store_n(&m->volume_count, n + 1, __ATOMIC_RELEASE);
unlock:
	pthread_mutex_unlock(&m->add_lock);
	return v;
}

/* -------------------------------------------------------------- rendering */

struct metrics_buf {
	char *p;
	size_t len;
	size_t cap; /* excluding the NUL */
	bool overflow;
};

static void metrics_put(struct metrics_buf *b, const char *s, size_t n)
{
	if (b->overflow || n > b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void metrics_puts(struct metrics_buf *b, const char *s)
{
	metrics_put(b, s, strlen(s));
}

/* Label values escape backslash, double quote and newline (format 0.0.4). */
static void metrics_put_escaped(struct metrics_buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '\\':
			metrics_put(b, "\\\\", 2);
			break;
		case '"':
			metrics_put(b, "\\\"", 2);
			break;
		case '\n':
			metrics_put(b, "\\n", 2);
			break;
		default:
			metrics_put(b, s, 1);
		}
	}
}

static void metrics_put_label(struct metrics_buf *b, const char *sep, const char *key,
			      const char *value)
{
	metrics_puts(b, sep);
	metrics_puts(b, key);
	metrics_puts(b, "=\"");
	metrics_put_escaped(b, value);
	metrics_puts(b, "\"");
}

/* "pvrepl_<name><suffix>{volume=...,role=...,peer=...[,key=value]} " */
static void metrics_put_series(struct metrics_buf *b, const char *name, const char *suffix,
			       const struct metrics_volume *v, const char *key, const char *value)
{
	metrics_puts(b, METRICS_PREFIX);
	metrics_puts(b, name);
	metrics_puts(b, suffix);
	metrics_put_label(b, "{", "volume", v->volume);
	metrics_put_label(b, ",", "role", v->role);
	metrics_put_label(b, ",", "peer", v->peer);
	if (key)
		metrics_put_label(b, ",", key, value);
	metrics_puts(b, "} ");
}

static void metrics_put_u64(struct metrics_buf *b, uint64_t n)
{
	char s[32];

	metrics_put(b, s, (size_t)snprintf(s, sizeof(s), "%" PRIu64 "\n", n));
}

/* The shortest of %.15g and %.17g that reads back as the same double. */
static void metrics_put_f64(struct metrics_buf *b, double v)
{
	char s[40];
	int n;

	if (isnan(v)) {
		metrics_puts(b, "NaN\n");
		return;
	}
	if (isinf(v)) {
		metrics_puts(b, v > 0 ? "+Inf\n" : "-Inf\n");
		return;
	}
	n = snprintf(s, sizeof(s), "%.15g", v);
	if (strtod(s, NULL) != v)
		n = snprintf(s, sizeof(s), "%.17g", v);
	metrics_put(b, s, (size_t)n);
	metrics_put(b, "\n", 1);
}

static void metrics_put_family(struct metrics_buf *b, const char *name, const char *type,
			       const char *help)
{
	metrics_puts(b, "# HELP " METRICS_PREFIX);
	metrics_puts(b, name);
	metrics_puts(b, " ");
	metrics_puts(b, help); /* constants without backslash or newline */
	metrics_puts(b, "\n# TYPE " METRICS_PREFIX);
	metrics_puts(b, name);
	metrics_puts(b, " ");
	metrics_puts(b, type);
	metrics_puts(b, "\n");
}

static void metrics_put_histogram(struct metrics_buf *b, const struct metrics_volume *v,
				  const char *name, const struct metrics_histogram *h)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < METRICS_HISTOGRAM_BOUNDS; i++) {
		total += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
		metrics_put_series(b, name, "_bucket", v, "le", metrics_bound_names[i]);
		metrics_put_u64(b, total);
	}
	total += __atomic_load_n(&h->buckets[METRICS_HISTOGRAM_BOUNDS], __ATOMIC_RELAXED);
	metrics_put_series(b, name, "_bucket", v, "le", "+Inf");
	metrics_put_u64(b, total);
	metrics_put_series(b, name, "_sum", v, NULL, NULL);
	metrics_put_f64(b, metrics_double(__atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED)));
	/* _count from the buckets just read, so it always equals le="+Inf". */
	metrics_put_series(b, name, "_count", v, NULL, NULL);
	metrics_put_u64(b, total);
}

static void metrics_put_field(struct metrics_buf *b, const struct metrics_volume *v,
			      const struct metrics_field *f)
{
	const void *p = (const char *)v + f->offset;

	metrics_put_series(b, f->name, "", v, NULL, NULL);
	switch (f->kind) {
	case METRICS_FIELD_GAUGE:
		metrics_put_f64(b, metrics_gauge_get(p));
		break;
	case METRICS_FIELD_COUNTER:
		metrics_put_u64(b, metrics_counter_get(p));
		break;
	case METRICS_FIELD_COUNTER_F64:
		metrics_put_f64(b, metrics_counter_f64_get(p));
		break;
	}
}

int metrics_render(const struct metrics *m, char *buf, size_t cap)
{
	struct metrics_buf b = { .p = buf, .cap = cap ? cap - 1 : 0, .overflow = cap == 0 };
	uint32_t n = __atomic_load_n(&m->volume_count, __ATOMIC_ACQUIRE);
	const struct metrics_volume *vs = m->volumes;

	metrics_put_family(&b, "build_info", "gauge",
			   "Always 1; labelled with the pvrepl version.");
	metrics_put_label(&b, METRICS_PREFIX "build_info{", "version", m->version);
	metrics_puts(&b, "} 1\n");

	metrics_put_family(&b, "volume_info", "gauge",
			   "Always 1; labelled with the volume's capture mode.");
	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = __atomic_load_n(&vs[i].capture, __ATOMIC_RELAXED);

		metrics_put_series(&b, "volume_info", "", &vs[i], "capture",
				   metrics_capture_names[c]);
		metrics_puts(&b, "1\n");
	}

	metrics_put_family(&b, "volume_state", "gauge",
			   "1 for the volume's current replication state, else 0.");
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = __atomic_load_n(&vs[i].state, __ATOMIC_RELAXED);

		for (uint32_t j = 0; j < METRICS_STATE_COUNT; j++) {
			metrics_put_series(&b, "volume_state", "", &vs[i], "state",
					   metrics_state_names[j]);
			metrics_puts(&b, j == s ? "1\n" : "0\n");
		}
	}

	for (size_t f = 0; f < ARRAY_SIZE(metrics_fields); f++) {
		const struct metrics_field *fd = &metrics_fields[f];

		metrics_put_family(&b, fd->name,
				   fd->kind == METRICS_FIELD_GAUGE ? "gauge" : "counter", fd->help);
		for (uint32_t i = 0; i < n; i++)
			metrics_put_field(&b, &vs[i], fd);
	}

	metrics_put_family(&b, "syncs_total", "counter", "Syncs (epochs or resyncs) by result.");
	for (uint32_t i = 0; i < n; i++) {
		for (unsigned r = 0; r < METRICS_SYNC_RESULT_COUNT; r++) {
			metrics_put_series(&b, "syncs_total", "", &vs[i], "result",
					   metrics_sync_result_names[r]);
			metrics_put_u64(&b, metrics_counter_get(&vs[i].syncs_total[r]));
		}
	}

	metrics_put_family(&b, "errors_total", "counter", "Errors by kind.");
	for (uint32_t i = 0; i < n; i++) {
		for (unsigned k = 0; k < METRICS_ERROR_KIND_COUNT; k++) {
			metrics_put_series(&b, "errors_total", "", &vs[i], "kind",
					   metrics_error_kind_names[k]);
			metrics_put_u64(&b, metrics_counter_get(&vs[i].errors_total[k]));
		}
	}

	metrics_put_family(&b, "full_scans_total", "counter",
			   "Epochs that read the whole source device, by reason.");
	for (uint32_t i = 0; i < n; i++) {
		for (unsigned k = 0; k < METRICS_FULL_SCAN_REASON_COUNT; k++) {
			metrics_put_series(&b, "full_scans_total", "", &vs[i], "reason",
					   metrics_full_scan_names[k]);
			metrics_put_u64(&b, metrics_counter_get(&vs[i].full_scans_total[k]));
		}
	}

	metrics_put_family(&b, "scan_duration_seconds", "histogram",
			   "Duration of one change-detection scan.");
	for (uint32_t i = 0; i < n; i++)
		metrics_put_histogram(&b, &vs[i], "scan_duration_seconds",
				      &vs[i].scan_duration_seconds);
	metrics_put_family(&b, "sync_duration_seconds", "histogram",
			   "Duration of one sync, from capture to acknowledgement.");
	for (uint32_t i = 0; i < n; i++)
		metrics_put_histogram(&b, &vs[i], "sync_duration_seconds",
				      &vs[i].sync_duration_seconds);

	if (b.overflow)
		return -ENOBUFS;
	buf[b.len] = 0;
	return (int)b.len;
}

/* ------------------------------------------------------------------- HTTP */

static enum MHD_Result metrics_respond(struct MHD_Connection *conn, unsigned status,
				       const char *content_type, const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	/* Copied: the render buffer is reused by the next scrape. */
	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result metrics_respond_text(struct MHD_Connection *conn, unsigned status,
					    const char *text)
{
	return metrics_respond(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result metrics_http_metrics(struct metrics *m, struct MHD_Connection *conn)
{
	enum MHD_Result ret;
	int n;

	pthread_mutex_lock(&m->render_lock);
	n = metrics_render(m, m->render_buf, metrics_render_bytes_max());
	if (n < 0)
		ret = metrics_respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
					   "cannot render metrics\n");
	else
		ret = metrics_respond(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, m->render_buf,
				      (size_t)n);
	pthread_mutex_unlock(&m->render_lock);
	return ret;
}

static enum MHD_Result metrics_http_livez(struct metrics *m, struct MHD_Connection *conn)
{
	uint64_t hb = __atomic_load_n(&m->heartbeat_ns, __ATOMIC_RELAXED);
	uint64_t limit_ms = __atomic_load_n(&m->liveness_limit_ms, __ATOMIC_RELAXED);
	uint64_t now = metrics_now_ns();
	uint64_t age_ms = now > hb ? (now - hb) / 1000000u : 0;
	char s[METRICS_STATUS_BYTES_MAX];

	if (age_ms <= limit_ms)
		return metrics_respond_text(conn, MHD_HTTP_OK, "ok\n");
	snprintf(s, sizeof(s),
		 "event loop stalled: last heartbeat %" PRIu64 " ms ago (limit %" PRIu64 " ms)\n",
		 age_ms, limit_ms);
	return metrics_respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, s);
}

static enum MHD_Result metrics_http_readyz(struct metrics *m, struct MHD_Connection *conn)
{
	/* Deliberately blind to the peer: see the header. */
	if (__atomic_load_n(&m->ready, __ATOMIC_RELAXED))
		return metrics_respond_text(conn, MHD_HTTP_OK, "ok\n");
	return metrics_respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				    "not ready: starting or loading state\n");
}

static enum MHD_Result metrics_http_handle(void *cls, struct MHD_Connection *conn, const char *url,
					   const char *method, const char *version,
					   const char *upload_data, size_t *upload_data_size,
					   void **con_cls)
{
	struct metrics *m = cls;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	/* Answered on the first call; a request body, if any, is never read. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return metrics_respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					    "method not allowed\n");
	if (!strcmp(url, "/metrics"))
		return metrics_http_metrics(m, conn);
	if (!strcmp(url, "/livez"))
		return metrics_http_livez(m, conn);
	if (!strcmp(url, "/readyz"))
		return metrics_http_readyz(m, conn);
	return metrics_respond_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" and resolves HOST (empty: any). */
static int metrics_parse_addr(const char *addr, struct sockaddr_storage *ss, bool *any, char *err,
			      size_t err_len)
{
	char host[256];
	const char *port, *colon;
	size_t host_len;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	char *end;
	unsigned long p;
	int rc;

	if (addr[0] == '[') {
		colon = strchr(addr, ']');
		if (!colon || colon[1] != ':')
			goto bad;
		addr++;
		host_len = (size_t)(colon - addr);
		colon++;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			goto bad;
		host_len = (size_t)(colon - addr);
		if (memchr(addr, ':', host_len))
			goto bad; /* an IPv6 address needs brackets */
	}
	port = colon + 1;
	errno = 0;
	p = strtoul(port, &end, 10);
	if (!*port || *end || errno || p > 65535 || *port < '0' || *port > '9')
		goto bad;
	if (host_len >= sizeof(host))
		goto bad;
	memcpy(host, addr, host_len);
	host[host_len] = 0;

	*any = host_len == 0;
	if (*any) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		memset(ss, 0, sizeof(*ss));
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)p);
		return 0;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(err, err_len, "metrics address %s: %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;

bad:
	snprintf(err, err_len, "bad metrics address \"%s\": want HOST:PORT, [V6]:PORT or :PORT",
		 addr);
	return -EINVAL;
}

static struct MHD_Daemon *metrics_start(struct metrics *m, const struct sockaddr_storage *ss,
					unsigned extra_flags)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | extra_flags;

	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(flags, 0, NULL, NULL, metrics_http_handle, m, MHD_OPTION_SOCK_ADDR,
				(const struct sockaddr *)ss, MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)METRICS_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)METRICS_CONNECTION_TIMEOUT_S,
				MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
}

int metrics_serve(struct metrics *m, const char *addr, char *err, size_t err_len)
{
	struct sockaddr_storage ss;
	bool any;
	int rc;

	ASSERT(m->daemon == NULL);
	ASSERT(m->render_buf != NULL);
	rc = metrics_parse_addr(addr, &ss, &any, err, err_len);
	if (rc)
		return rc;
	errno = 0;
	m->daemon = metrics_start(m, &ss, any ? MHD_USE_DUAL_STACK : 0);
	if (!m->daemon && any) {
		/* No IPv6 on this host: every IPv4 address then. */
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		uint16_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;

		memset(&ss, 0, sizeof(ss));
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		s4->sin_port = port;
		errno = 0;
		m->daemon = metrics_start(m, &ss, 0);
	}
	if (!m->daemon) {
		rc = errno ? -errno : -EIO;
		snprintf(err, err_len, "cannot serve metrics on %s: %s", addr, strerror(-rc));
		return rc;
	}
	return 0;
}

uint16_t metrics_port(const struct metrics *m)
{
	const union MHD_DaemonInfo *info;

	if (!m->daemon)
		return 0;
	info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info ? info->port : 0;
}

void metrics_stop(struct metrics *m)
{
	if (!m->daemon)
		return;
	MHD_stop_daemon(m->daemon);
	m->daemon = NULL;
}
