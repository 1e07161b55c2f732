/* SPDX-License-Identifier: Apache-2.0 */
/*
 * out — one result, two renderings. A command adds its fields once (key, a human
 * label, a value, a unit) and out_print() renders them either as aligned
 * "label: value" text for people or as one JSON object for scripts (-o json).
 * The only module that includes <jansson.h>.
 */
#ifndef PVREPL_OUT_H
#define PVREPL_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define OUT_FIELDS_MAX 64

enum out_format {
	OUT_TEXT = 0,
	OUT_JSON = 1,
};

enum out_unit {
	OUT_UNIT_NONE = 0,
	OUT_UNIT_BYTES,	      /* text: 1.5 GiB (1610612736) */
	OUT_UNIT_SECONDS,     /* text: 1.234 s */
	OUT_UNIT_BYTES_PER_S, /* text: 2.1 GB/s */
	OUT_UNIT_RATIO,	      /* text: 0.953 */
};

struct out;

struct out *out_new(void);
void out_free(struct out *o);
void out_str(struct out *o, const char *key, const char *label, const char *value);
void out_u64(struct out *o, const char *key, const char *label, uint64_t value, enum out_unit unit);
void out_f64(struct out *o, const char *key, const char *label, double value, enum out_unit unit);
void out_bool(struct out *o, const char *key, const char *label, bool value);
/* JSON only: appends item as an object to the array `key` of o (created on first
 * use). Takes item (freed here). Text rendering ignores arrays. */
void out_append(struct out *o, const char *key, struct out *item);
/* Writes the fields to f; returns 0 or -errno. */
int out_print(const struct out *o, enum out_format format, FILE *f);
/* Parses "-o" values: "json" or "text"; returns -EINVAL otherwise. */
int out_parse_format(const char *s, enum out_format *format);
/* Human byte count, e.g. "1.50 GiB", into buf. */
const char *out_human_bytes(uint64_t bytes, char *buf, size_t len);

#endif
