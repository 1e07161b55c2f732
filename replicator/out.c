// SPDX-License-Identifier: Apache-2.0
/*
 * out — renders a command's result as text or JSON (jansson). Fields keep their
 * insertion order in both renderings, so the text a person reads and the JSON a
 * script parses list the same things in the same order. Knows nothing of what
 * the fields mean.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "out.h"
#include "pvrepl_assert.h"

struct out_field {
	const char *key;
	const char *label;
	enum out_unit unit;
};

struct out {
	json_t *obj;
	struct out_field fields[OUT_FIELDS_MAX];
	unsigned count;
};

struct out *out_new(void)
{
	struct out *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->obj = json_object();
	if (!o->obj) {
		free(o);
		return NULL;
	}
	return o;
}

void out_free(struct out *o)
{
	if (!o)
		return;
	json_decref(o->obj);
	free(o);
}

static void add(struct out *o, const char *key, const char *label, json_t *v, enum out_unit unit)
{
	ASSERT(o->count < OUT_FIELDS_MAX);
	ASSERT(v != NULL);
	json_object_set_new(o->obj, key, v);
	o->fields[o->count++] = (struct out_field){ .key = key, .label = label, .unit = unit };
}

/*
 * A JSON string of value. Strings can come from disk or a path the user typed,
 * and JSON takes only UTF-8: bytes that are not valid UTF-8 become '?' (jansson
 * refuses them, and bad bytes are never an assert).
 */
static json_t *json_text(const char *value)
{
	json_t *v = json_string(value);
	char *copy;

	if (v)
		return v;
	copy = strdup(value);
	if (!copy)
		return NULL;
	for (unsigned char *p = (unsigned char *)copy; *p;) {
		/* the length of a valid sequence at p, or 0 */
		size_t n = *p < 0x80		 ? 1
			   : (*p & 0xe0) == 0xc0 ? 2
			   : (*p & 0xf0) == 0xe0 ? 3
			   : (*p & 0xf8) == 0xf0 ? 4
						 : 0;

		for (size_t k = 1; k < n; k++)
			if ((p[k] & 0xc0) != 0x80)
				n = 0;
		if (n == 0 || (n == 2 && *p < 0xc2)) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
	v = json_string(copy);
	if (!v) /* overlong or surrogate forms: keep ASCII alone */
		for (unsigned char *p = (unsigned char *)copy; *p; p++)
			if (*p >= 0x80)
				*p = '?';
	if (!v)
		v = json_string(copy);
	free(copy);
	return v;
}

void out_str(struct out *o, const char *key, const char *label, const char *value)
{
	add(o, key, label, value ? json_text(value) : json_null(), OUT_UNIT_NONE);
}

void out_u64(struct out *o, const char *key, const char *label, uint64_t value, enum out_unit unit)
{
	add(o, key, label, json_integer((json_int_t)value), unit);
}

void out_f64(struct out *o, const char *key, const char *label, double value, enum out_unit unit)
{
	add(o, key, label, json_real(value), unit);
}

void out_bool(struct out *o, const char *key, const char *label, bool value)
{
	add(o, key, label, json_boolean(value), OUT_UNIT_NONE);
}

const char *out_human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024.0 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
	return buf;
}

static void print_text_value(const struct out_field *f, json_t *v, FILE *out)
{
	char hb[32];

	if (json_is_string(v)) {
		fprintf(out, "%s\n", json_string_value(v));
	} else if (json_is_boolean(v)) {
		fprintf(out, "%s\n", json_is_true(v) ? "yes" : "no");
	} else if (json_is_null(v)) {
		fprintf(out, "-\n");
	} else if (json_is_integer(v)) {
		uint64_t n = (uint64_t)json_integer_value(v);

		if (f->unit == OUT_UNIT_BYTES && n >= 1024)
			fprintf(out, "%s (%" PRIu64 ")\n", out_human_bytes(n, hb, sizeof(hb)), n);
		else if (f->unit == OUT_UNIT_BYTES)
			fprintf(out, "%" PRIu64 " B\n", n);
		else
			fprintf(out, "%" PRIu64 "\n", n);
	} else {
		double d = json_real_value(v);

		switch (f->unit) {
		case OUT_UNIT_SECONDS:
			fprintf(out, "%.3f s\n", d);
			break;
		case OUT_UNIT_BYTES_PER_S:
			if (d >= 1e9)
				fprintf(out, "%.2f GB/s\n", d / 1e9);
			else
				fprintf(out, "%.1f MB/s\n", d / 1e6);
			break;
		case OUT_UNIT_RATIO:
			fprintf(out, "%.3f\n", d);
			break;
		default:
			fprintf(out, "%g\n", d);
		}
	}
}

void out_append(struct out *o, const char *key, struct out *item)
{
	json_t *arr = json_object_get(o->obj, key);

	if (!arr) {
		arr = json_array();
		ASSERT(arr != NULL);
		json_object_set_new(o->obj, key, arr);
	}
	json_array_append(arr, item->obj);
	out_free(item);
}

int out_print(const struct out *o, enum out_format format, FILE *f)
{
	if (format == OUT_JSON) {
		if (json_dumpf(o->obj, f, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0)
			return -EIO;
		fputc('\n', f);
		return fflush(f) ? -errno : 0;
	}
	size_t width = 0;

	for (unsigned i = 0; i < o->count; i++)
		if (strlen(o->fields[i].label) > width)
			width = strlen(o->fields[i].label);
	for (unsigned i = 0; i < o->count; i++) {
		const struct out_field *fl = &o->fields[i];

		fprintf(f, "%s:%*s", fl->label, (int)(width - strlen(fl->label) + 2), "");
		print_text_value(fl, json_object_get(o->obj, fl->key), f);
	}
	return fflush(f) ? -errno : 0;
}

int out_parse_format(const char *s, enum out_format *format)
{
	if (!strcmp(s, "json")) {
		*format = OUT_JSON;
		return 0;
	}
	if (!strcmp(s, "text") || !strcmp(s, "wide")) {
		*format = OUT_TEXT;
		return 0;
	}
	return -EINVAL;
}
