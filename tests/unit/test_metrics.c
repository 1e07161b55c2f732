// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of metrics: a registry of two volumes renders an exposition that a
 * small parser of the Prometheus text format 0.0.4 accepts line by line (every
 * sample is `name{labels} value`, every family has HELP and TYPE before its
 * samples, histogram buckets are cumulative and le="+Inf" equals _count, label
 * values with backslash, quote and newline round-trip); a full registry with the
 * longest, most-escaped labels fits the render buffer; the live HTTP endpoint on
 * 127.0.0.1:0 answers /metrics, /livez (stale heartbeat -> 503), /readyz, 404
 * and 405, scraped with a raw socket; atomic adds from four threads all count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "pvrepl_assert.h"

#define SAMPLES_MAX	  8192
#define LABELS_MAX	  8
#define FAMILIES_MAX	  64
#define NAME_MAX_BYTES	  96
#define HTTP_RESPONSE_MAX (1 << 20)
#define THREADS		  4
#define ADDS_PER_THREAD	  200000

/* ------------------------------------------------- exposition parser */

struct sample {
	char name[NAME_MAX_BYTES];
	unsigned nlabels;
	char keys[LABELS_MAX][32];
	char values[LABELS_MAX][2 * METRICS_LABEL_MAX];
	double value;
};

struct family {
	char name[NAME_MAX_BYTES];
	char type[16];
	bool help;
};

struct exposition {
	struct sample samples[SAMPLES_MAX];
	unsigned nsamples;
	struct family families[FAMILIES_MAX];
	unsigned nfamilies;
};

static struct family *family_find(struct exposition *e, const char *name, size_t len)
{
	for (unsigned i = 0; i < e->nfamilies; i++)
		if (strlen(e->families[i].name) == len && !strncmp(e->families[i].name, name, len))
			return &e->families[i];
	return NULL;
}

static struct family *family_get(struct exposition *e, const char *name, size_t len)
{
	struct family *f = family_find(e, name, len);

	if (f)
		return f;
	assert_true(e->nfamilies < FAMILIES_MAX);
	assert_true(len < NAME_MAX_BYTES);
	f = &e->families[e->nfamilies++];
	memcpy(f->name, name, len);
	f->name[len] = 0;
	return f;
}

static bool is_name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

static size_t name_len(const char *s)
{
	size_t n = 0;

	while (is_name_char(s[n], n == 0))
		n++;
	return n;
}

/* The family a sample belongs to: itself, or a histogram minus its suffix. */
static const struct family *sample_family(struct exposition *e, const char *name)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	const struct family *f = family_find(e, name, strlen(name));

	if (f)
		return f;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		size_t n = strlen(name), sl = strlen(suffixes[i]);

		if (n > sl && !strcmp(name + n - sl, suffixes[i])) {
			f = family_find(e, name, n - sl);
			if (f && !strcmp(f->type, "histogram"))
				return f;
		}
	}
	return NULL;
}

/* Parses one sample line; fails the test on any deviation from the format. */
static void parse_sample(struct exposition *e, const char *line)
{
	struct sample *s;
	const char *p = line;
	size_t n = name_len(p);
	char *end;

	assert_true(e->nsamples < SAMPLES_MAX);
	s = &e->samples[e->nsamples++];
	memset(s, 0, sizeof(*s));
	assert_true(n > 0 && n < NAME_MAX_BYTES);
	memcpy(s->name, p, n);
	p += n;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			size_t k = name_len(p), v = 0;

			assert_true(k > 0 && k < sizeof(s->keys[0]));
			assert_true(s->nlabels < LABELS_MAX);
			memcpy(s->keys[s->nlabels], p, k);
			p += k;
			assert_int_equal(*p++, '=');
			assert_int_equal(*p++, '"');
			while (*p != '"') {
				char c = *p++;

				assert_true(c != 0 && c != '\n');
				if (c == '\\') {
					c = *p++;
					assert_true(c == '\\' || c == '"' || c == 'n');
					if (c == 'n')
						c = '\n';
				}
				assert_true(v + 1 < sizeof(s->values[0]));
				s->values[s->nlabels][v++] = c;
			}
			p++;
			s->nlabels++;
			if (*p == ',')
				p++;
			else
				assert_int_equal(*p, '}');
		}
		p++;
	}
	assert_int_equal(*p++, ' ');
	assert_true(*p != 0 && *p != ' ');
	errno = 0;
	s->value = strtod(p, &end);
	assert_int_equal(errno, 0);
	assert_true(end != p);
	assert_int_equal(*end, 0); /* no timestamp, nothing after the value */
	assert_non_null(sample_family(e, s->name));
	assert_true(sample_family(e, s->name)->help);
}

static void parse_comment(struct exposition *e, const char *line)
{
	bool help = !strncmp(line, "# HELP ", 7);
	const char *p = line + 7;
	size_t n;
	struct family *f;

	if (!help && strncmp(line, "# TYPE ", 7))
		return; /* another comment */
	n = name_len(p);
	assert_true(n > 0);
	assert_true(p[n] == ' ');
	f = family_get(e, p, n);
	if (help) {
		assert_false(f->help); /* once per family */
		assert_true(f->type[0] == 0);
		f->help = true;
		return;
	}
	assert_true(f->help);
	assert_true(f->type[0] == 0);
	p += n + 1;
	assert_true(!strcmp(p, "counter") || !strcmp(p, "gauge") || !strcmp(p, "histogram"));
	snprintf(f->type, sizeof(f->type), "%s", p);
}

static void parse_exposition(struct exposition *e, const char *text)
{
	char *copy = strdup(text), *save = NULL;
	size_t len = strlen(text);

	assert_non_null(copy);
	assert_true(len > 0 && text[len - 1] == '\n');
	memset(e, 0, sizeof(*e));
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			parse_comment(e, line);
		else
			parse_sample(e, line);
	}
	free(copy);
	for (unsigned i = 0; i < e->nfamilies; i++) {
		assert_true(e->families[i].help);
		assert_true(e->families[i].type[0] != 0);
	}
}

static const char *label(const struct sample *s, const char *key)
{
	for (unsigned i = 0; i < s->nlabels; i++)
		if (!strcmp(s->keys[i], key))
			return s->values[i];
	return NULL;
}

/* The value of name for volume (and extra key=value when key is not NULL). */
static double value_of(const struct exposition *e, const char *name, const char *volume,
		       const char *key, const char *value)
{
	unsigned found = 0;
	double v = 0;

	for (unsigned i = 0; i < e->nsamples; i++) {
		const struct sample *s = &e->samples[i];
		const char *l = label(s, "volume");

		if (strcmp(s->name, name) || !l || strcmp(l, volume))
			continue;
		if (key && (!label(s, key) || strcmp(label(s, key), value)))
			continue;
		v = s->value;
		found++;
	}
	assert_int_equal(found, 1);
	return v;
}

/* Same labels, le aside. */
static bool same_series(const struct sample *a, const struct sample *b)
{
	unsigned na = 0, nb = 0;

	for (unsigned i = 0; i < a->nlabels; i++) {
		if (!strcmp(a->keys[i], "le"))
			continue;
		na++;
		if (!label(b, a->keys[i]) || strcmp(label(b, a->keys[i]), a->values[i]))
			return false;
	}
	for (unsigned i = 0; i < b->nlabels; i++)
		nb += strcmp(b->keys[i], "le") != 0;
	return na == nb;
}

/* Buckets cumulative, le="+Inf" equal to _count, for every histogram series. */
static void check_histograms(const struct exposition *e)
{
	unsigned checked = 0;

	for (unsigned i = 0; i < e->nsamples; i++) {
		const struct sample *s = &e->samples[i];
		char count_name[NAME_MAX_BYTES];
		size_t n = strlen(s->name);
		double prev = 0;
		unsigned counts = 0;
		bool inf = false;

		if (n < 7 || strcmp(s->name + n - 7, "_bucket") || strcmp(label(s, "le"), "0.1"))
			continue;
		for (unsigned j = i; j < e->nsamples; j++) {
			const struct sample *b = &e->samples[j];

			if (strcmp(b->name, s->name) || !same_series(s, b))
				continue;
			assert_true(b->value >= prev);
			prev = b->value;
			inf = !strcmp(label(b, "le"), "+Inf");
		}
		assert_true(inf); /* +Inf is the last bucket */
		snprintf(count_name, sizeof(count_name), "%.*s_count", (int)(n - 7), s->name);
		for (unsigned j = 0; j < e->nsamples; j++) {
			if (!strcmp(e->samples[j].name, count_name) &&
			    same_series(s, &e->samples[j])) {
				assert_true(e->samples[j].value == prev);
				counts++;
			}
		}
		assert_int_equal(counts, 1);
		checked++;
	}
	assert_true(checked >= 2);
}

static struct exposition expo;

static const char weird_volume[] = "vol\"a\\b\nc";

static void fill_two_volumes(struct metrics *m)
{
	struct metrics_volume *a = metrics_volume(m, "pvc-a", "primary", "standby:7000");
	struct metrics_volume *b = metrics_volume(m, weird_volume, "secondary", NULL);

	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_equal(metrics_volume(m, "pvc-a", "primary", "standby:7000"), a);
	assert_ptr_not_equal(metrics_volume(m, "pvc-c", "primary", "standby:7000"), a);

	metrics_set(&a->volume_size_bytes, 1073741824.0);
	metrics_set(&a->replication_lag_seconds, 0.1);
	metrics_set(&a->last_sync_success_timestamp_seconds, 1718000000.123456);
	metrics_set(&a->peer_connected, 1);
	metrics_set_state(a, METRICS_STATE_REPLICATING);
	metrics_set_capture(a, METRICS_CAPTURE_SNAPSHOT);
	metrics_add(&a->sent_bytes_total, 12345);
	metrics_add(&a->sent_bytes_total, 5);
	metrics_add_f64(&a->throttled_seconds_total, 1.25);
	metrics_count_sync(a, METRICS_SYNC_SUCCESS);
	metrics_count_sync(a, METRICS_SYNC_SUCCESS);
	metrics_count_error(a, METRICS_ERROR_TLS);
	metrics_observe(&a->scan_duration_seconds, 0.05);
	metrics_observe(&a->scan_duration_seconds, 0.1); /* on a bound: le="0.1" */
	metrics_observe(&a->scan_duration_seconds, 7);
	metrics_observe(&a->scan_duration_seconds, 1000);
	metrics_set_state(b, METRICS_STATE_SPLIT_BRAIN);
	metrics_observe(&b->sync_duration_seconds, 3);
}

static void check_two_volumes(const struct exposition *e)
{
	unsigned ones = 0;

	assert_true(value_of(e, "pvrepl_sent_bytes_total", "pvc-a", NULL, NULL) == 12350);
	assert_true(value_of(e, "pvrepl_volume_size_bytes", "pvc-a", NULL, NULL) == 1073741824.0);
	assert_true(value_of(e, "pvrepl_replication_lag_seconds", "pvc-a", NULL, NULL) == 0.1);
	assert_true(value_of(e, "pvrepl_last_sync_success_timestamp_seconds", "pvc-a", NULL,
			     NULL) == 1718000000.123456);
	assert_true(value_of(e, "pvrepl_throttled_seconds_total", "pvc-a", NULL, NULL) == 1.25);
	assert_true(value_of(e, "pvrepl_syncs_total", "pvc-a", "result", "success") == 2);
	assert_true(value_of(e, "pvrepl_errors_total", "pvc-a", "kind", "tls") == 1);
	assert_true(value_of(e, "pvrepl_errors_total", "pvc-a", "kind", "io") == 0);
	assert_true(value_of(e, "pvrepl_volume_info", "pvc-a", "capture", "snapshot") == 1);
	assert_true(value_of(e, "pvrepl_scan_duration_seconds_bucket", "pvc-a", "le", "0.1") == 2);
	assert_true(value_of(e, "pvrepl_scan_duration_seconds_bucket", "pvc-a", "le", "10") == 3);
	assert_true(value_of(e, "pvrepl_scan_duration_seconds_count", "pvc-a", NULL, NULL) == 4);
	assert_true(value_of(e, "pvrepl_scan_duration_seconds_sum", "pvc-a", NULL, NULL) ==
		    0.05 + 0.1 + 7 + 1000);
	/* The escaped label came back intact. */
	assert_true(value_of(e, "pvrepl_volume_state", weird_volume, "state", "split_brain") == 1);
	assert_true(value_of(e, "pvrepl_sync_duration_seconds_count", weird_volume, NULL, NULL) ==
		    1);
	/* One state series per state, exactly one of them 1, per volume. */
	for (unsigned i = 0; i < e->nsamples; i++)
		if (!strcmp(e->samples[i].name, "pvrepl_volume_state"))
			ones += e->samples[i].value == 1;
	assert_int_equal(ones, 3);
	check_histograms(e);
}

static void test_render_parses(void **state)
{
	static struct metrics m;
	size_t cap = metrics_render_bytes_max();
	char *buf = malloc(cap);
	static const char *const names[] = {
		"pvrepl_build_info",
		"pvrepl_volume_info",
		"pvrepl_volume_size_bytes",
		"pvrepl_volume_state",
		"pvrepl_peer_connected",
		"pvrepl_replication_lag_seconds",
		"pvrepl_rpo_target_seconds",
		"pvrepl_last_sync_success_timestamp_seconds",
		"pvrepl_consistent_point_timestamp_seconds",
		"pvrepl_out_of_sync_bytes",
		"pvrepl_changed_blocks_total",
		"pvrepl_payload_bytes_total",
		"pvrepl_sent_bytes_total",
		"pvrepl_received_bytes_total",
		"pvrepl_applied_bytes_total",
		"pvrepl_source_read_bytes_total",
		"pvrepl_scan_duration_seconds",
		"pvrepl_sync_duration_seconds",
		"pvrepl_initial_sync_progress_ratio",
		"pvrepl_syncs_total",
		"pvrepl_errors_total",
		"pvrepl_reconnects_total",
		"pvrepl_throttled_seconds_total",
		"pvrepl_tls_certificate_expiry_timestamp_seconds",
	};
	int n;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(metrics_init(&m, "1.2.3-\"test\""), 0);
	fill_two_volumes(&m);
	n = metrics_render(&m, buf, cap);
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	parse_exposition(&expo, buf);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		assert_non_null(family_find(&expo, names[i], strlen(names[i])));
	assert_string_equal(family_find(&expo, "pvrepl_sync_duration_seconds", 28)->type,
			    "histogram");
	assert_string_equal(family_find(&expo, "pvrepl_sent_bytes_total", 23)->type, "counter");
	assert_string_equal(expo.samples[0].name, "pvrepl_build_info");
	assert_string_equal(label(&expo.samples[0], "version"), "1.2.3-\"test\"");
	check_two_volumes(&expo);

	/* Too small a buffer is an error, not a truncated exposition. */
	assert_int_equal(metrics_render(&m, buf, (size_t)n), -ENOBUFS);
	assert_int_equal(metrics_render(&m, buf, 0), -ENOBUFS);
	assert_int_equal(metrics_render(&m, buf, (size_t)n + 1), n);
	metrics_release(&m);
	free(buf);
}

/* A full registry with the longest labels, all of them escaped, still fits. */
static void test_full_registry_fits(void **state)
{
	static struct metrics m;
	char volume[METRICS_LABEL_MAX], peer[METRICS_LABEL_MAX], too_long[METRICS_LABEL_MAX + 1];
	size_t cap = metrics_render_bytes_max();
	char *buf = malloc(cap);
	unsigned states = 0;
	int n;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(metrics_init(&m, "v"), 0);
	memset(volume, '"', sizeof(volume) - 1);
	volume[sizeof(volume) - 1] = 0;
	memset(peer, '\\', sizeof(peer) - 1);
	peer[sizeof(peer) - 1] = 0;
	for (unsigned i = 0; i < METRICS_VOLUMES_MAX; i++) {
		char role[METRICS_LABEL_MAX];
		struct metrics_volume *v;

		memset(role, '\n', sizeof(role) - 1);
		role[sizeof(role) - 1] = 0;
		snprintf(role, sizeof(role), "%03u", i);
		role[3] = '\n';
		v = metrics_volume(&m, volume, role, peer);
		assert_non_null(v);
		metrics_set(&v->volume_size_bytes, -1.2345678901234567e+308);
		metrics_set(&v->replication_lag_seconds, 1.0 / 3.0);
		metrics_add(&v->sent_bytes_total, UINT64_MAX);
		for (unsigned k = 0; k < METRICS_ERROR_KIND_COUNT; k++)
			metrics_add(&v->errors_total[k], UINT64_MAX);
	}
	assert_null(metrics_volume(&m, "one-more", "primary", NULL));
	memset(too_long, 'x', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = 0;
	assert_null(metrics_volume(&m, too_long, "primary", NULL));
	n = metrics_render(&m, buf, cap);
	assert_true(n > 0);
	parse_exposition(&expo, buf);
	for (unsigned i = 0; i < expo.nsamples; i++) {
		if (!strcmp(expo.samples[i].name, "pvrepl_volume_state")) {
			assert_string_equal(label(&expo.samples[i], "volume"), volume);
			assert_string_equal(label(&expo.samples[i], "peer"), peer);
			states++;
		}
	}
	assert_int_equal(states, METRICS_VOLUMES_MAX * METRICS_STATE_COUNT);
	check_histograms(&expo);
	metrics_release(&m);
	free(buf);
}

/* ------------------------------------------------------------- HTTP */

struct http_reply {
	int status;
	char content_type[128];
	const char *body;
	char raw[HTTP_RESPONSE_MAX];
};

static struct http_reply reply;

static void http_request(uint16_t port, const char *method, const char *path, struct http_reply *r)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { .tv_sec = 5 };
	char req[256];
	size_t len = 0;
	const char *h, *end;
	int fd, n;

	memset(r, 0, sizeof(*r));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		     "Content-Length: 0\r\n\r\n",
		     method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	for (;;) {
		ssize_t got = read(fd, r->raw + len, sizeof(r->raw) - 1 - len);

		assert_true(got >= 0);
		if (got == 0)
			break;
		len += (size_t)got;
		assert_true(len < sizeof(r->raw) - 1);
	}
	close(fd);
	r->raw[len] = 0;
	assert_int_equal(sscanf(r->raw, "HTTP/1.%*d %d", &r->status), 1);
	end = strstr(r->raw, "\r\n\r\n");
	assert_non_null(end);
	r->body = end + 4;
	for (h = strstr(r->raw, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
		if (!strncasecmp(h + 2, "Content-Type: ", 14)) {
			const char *e = strstr(h + 2, "\r\n");

			snprintf(r->content_type, sizeof(r->content_type), "%.*s",
				 (int)(e - h - 16), h + 16);
		}
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void test_serve(void **state)
{
	static struct metrics m;
	char err[256] = "";
	uint16_t port;

	(void)state;
	assert_int_equal(metrics_init(&m, "1.2.3"), 0);
	fill_two_volumes(&m);
	assert_int_equal(metrics_port(&m), 0);
	assert_int_equal(metrics_serve(&m, "127.0.0.1:0", err, sizeof(err)), 0);
	port = metrics_port(&m);
	assert_true(port != 0);

	http_request(port, "GET", "/metrics", &reply);
	assert_int_equal(reply.status, 200);
	assert_string_equal(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
	parse_exposition(&expo, reply.body);
	check_two_volumes(&expo);

	metrics_set_liveness_limit_ms(&m, 150);
	metrics_heartbeat(&m);
	http_request(port, "GET", "/livez", &reply);
	assert_int_equal(reply.status, 200);
	assert_string_equal(reply.body, "ok\n");
	sleep_ms(400);
	http_request(port, "GET", "/livez", &reply);
	assert_int_equal(reply.status, 503);
	assert_non_null(strstr(reply.body, "heartbeat"));
	metrics_heartbeat(&m);
	http_request(port, "GET", "/livez", &reply);
	assert_int_equal(reply.status, 200);

	http_request(port, "GET", "/readyz", &reply);
	assert_int_equal(reply.status, 503);
	metrics_set_ready(&m, true);
	http_request(port, "GET", "/readyz", &reply);
	assert_int_equal(reply.status, 200);

	http_request(port, "GET", "/nope", &reply);
	assert_int_equal(reply.status, 404);
	http_request(port, "POST", "/metrics", &reply);
	assert_int_equal(reply.status, 405);
	assert_non_null(strstr(reply.raw, "Allow: GET"));

	metrics_stop(&m);
	assert_int_equal(metrics_port(&m), 0);
	metrics_stop(&m);
	metrics_release(&m);
}

static void test_serve_bad_addr(void **state)
{
	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
					   "::1:80",	"[::1]80",    "127.0.0.1:x1" };
	static struct metrics m;
	char err[256];

	(void)state;
	assert_int_equal(metrics_init(&m, "v"), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		assert_int_equal(metrics_serve(&m, bad[i], err, sizeof(err)), -EINVAL);
		assert_true(err[0] != 0);
	}
	metrics_release(&m);
}

/* ------------------------------------------------------ concurrency */

static void *adder(void *arg)
{
	struct metrics_volume *v = arg;

	for (unsigned i = 0; i < ADDS_PER_THREAD; i++) {
		metrics_add(&v->sent_bytes_total, 3);
		metrics_add_f64(&v->throttled_seconds_total, 0.5);
		if (i % 16 == 0)
			metrics_observe(&v->sync_duration_seconds, (double)(i % 400));
	}
	return NULL;
}

static void test_concurrent_adds(void **state)
{
	static struct metrics m;
	pthread_t threads[THREADS];
	struct metrics_volume *v;
	uint64_t count = 0;

	(void)state;
	assert_int_equal(metrics_init(&m, "v"), 0);
	v = metrics_volume(&m, "pvc-a", "primary", NULL);
	assert_non_null(v);
	for (unsigned i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, adder, v), 0);
	for (unsigned i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	assert_true(metrics_counter_get(&v->sent_bytes_total) ==
		    (uint64_t)THREADS * ADDS_PER_THREAD * 3);
	assert_true(metrics_counter_f64_get(&v->throttled_seconds_total) ==
		    (double)THREADS * ADDS_PER_THREAD * 0.5);
	for (unsigned i = 0; i <= METRICS_HISTOGRAM_BOUNDS; i++)
		count += v->sync_duration_seconds.buckets[i];
	assert_true(count == (uint64_t)THREADS * (ADDS_PER_THREAD / 16));
	metrics_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_parses),	cmocka_unit_test(test_full_registry_fits),
		cmocka_unit_test(test_serve),		cmocka_unit_test(test_serve_bad_addr),
		cmocka_unit_test(test_concurrent_adds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
