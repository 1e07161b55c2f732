// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of recv_check, the receiver's checks of what a sender says, on a
 * volume built in memory (no device, no socket): each table row is a frame and
 * a standby, and the verdict it must get (none, or REFUSE / ERROR with its code
 * and a message naming the volume). The HELLO checks are also checked for their
 * documented order: a HELLO wrong in two ways gets the earlier check's verdict.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "delta.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "recv_check.h"

#define BLOCK  4096u
#define BLOCKS 100u
#define SIZE   ((uint64_t)BLOCKS * BLOCK - 1000) /* a short last block */

static const uint8_t ID[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t OTHER_ID[16] = { 9 };

/* A consistent standby at generation 3, epoch 7, with a map. */
static void standby_fake(struct standby *v)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->own.name, sizeof(v->own.name), "vol");
	snprintf(v->own.device, sizeof(v->own.device), "/dev/standby");
	v->cfg = &v->own;
	v->dev.size_bytes = SIZE;
	assert_int_equal(map_create(&v->map, "vol", SIZE, BLOCK), 0);
	memcpy(v->map.volume_id, ID, 16);
	v->map.generation = 3;
	v->map.epoch = 7;
	v->have_map = true;
	v->vs.kind = VSTATE_CONSISTENT;
	v->vs.epoch = 7;
	v->vs.generation = 3;
	memcpy(v->vs.volume_id, ID, 16);
}

static void standby_fake_release(struct standby *v)
{
	if (v->have_map)
		map_release(&v->map);
}

static void hello_ok(struct proto_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->version_min = PROTO_VERSION_MIN;
	h->version_max = PROTO_VERSION_MAX;
	memcpy(h->volume_id, ID, 16);
	h->size_bytes = SIZE;
	h->block_bytes = BLOCK;
	h->generation = 3;
	h->epoch = 7;
	snprintf(h->volume_name, sizeof(h->volume_name), "vol");
}

/* What a check must answer: 0, or the verdict's kind and code. */
struct want {
	enum recv_verdict_kind kind;
	uint16_t code;
};

static void expect(int rc, const struct recv_verdict *vd, struct want w, const char *row)
{
	if (w.kind == RECV_VERDICT_NONE) {
		if (rc != 0)
			fail_msg("%s: expected no verdict, got %d: %s", row, rc, vd->message);
		return;
	}
	if (rc != (w.kind == RECV_VERDICT_REFUSE ? -EACCES : -EPROTO))
		fail_msg("%s: expected %s %u, got rc %d", row,
			 w.kind == RECV_VERDICT_REFUSE ? "REFUSE" : "ERROR", w.code, rc);
	if (vd->kind != w.kind || vd->code != w.code)
		fail_msg("%s: expected verdict %d/%u, got %d/%u (%s)", row, w.kind, w.code,
			 vd->kind, vd->code, vd->message);
	/* Every verdict names the volume, so an operator knows which one (but the
	 * version check, which is about the two programs, not the volume). */
	if (!(w.kind == RECV_VERDICT_REFUSE && w.code == PROTO_REFUSE_VERSION) &&
	    !strstr(vd->message, "volume vol"))
		fail_msg("%s: the message does not name the volume: %s", row, vd->message);
}

#define OK	  ((struct want){ RECV_VERDICT_NONE, 0 })
#define REFUSE(c) ((struct want){ RECV_VERDICT_REFUSE, (c) })
#define ERROR(c)  ((struct want){ RECV_VERDICT_ERROR, (c) })

/* ------------------------------------------------------------------ HELLO */

enum hello_case {
	H_OK,
	H_VERSION,
	H_FAILED,
	H_ID,
	H_SIZE,
	H_MAP_BLOCK,
	H_BLOCK_RANGE,
	H_GENERATION,
	H_NEWER_GENERATION,
	H_EMPTY_OTHER_ID,
	H_VERSION_AND_SIZE,
	H_ID_AND_SIZE,
	H_SIZE_AND_BLOCK,
};

static const struct {
	const char *name;
	enum hello_case c;
	struct want w;
} hello_rows[] = {
	{ "in step", H_OK, OK },
	{ "no common version", H_VERSION, REFUSE(PROTO_REFUSE_VERSION) },
	{ "volume failed (sticky I/O error)", H_FAILED, ERROR(PROTO_ERR_IO) },
	{ "another volume id", H_ID, REFUSE(PROTO_REFUSE_VOLUME_ID) },
	{ "wrong size", H_SIZE, REFUSE(PROTO_REFUSE_SIZE) },
	{ "block size differs from the map", H_MAP_BLOCK, REFUSE(PROTO_REFUSE_BLOCK_SIZE) },
	{ "block size out of range, no map", H_BLOCK_RANGE, REFUSE(PROTO_REFUSE_BLOCK_SIZE) },
	{ "standby at a newer generation", H_GENERATION, REFUSE(PROTO_REFUSE_GENERATION) },
	{ "sender at a newer generation", H_NEWER_GENERATION, OK },
	{ "empty standby, any id", H_EMPTY_OTHER_ID, OK },
	{ "version before size", H_VERSION_AND_SIZE, REFUSE(PROTO_REFUSE_VERSION) },
	{ "id before size", H_ID_AND_SIZE, REFUSE(PROTO_REFUSE_VOLUME_ID) },
	{ "size before block size", H_SIZE_AND_BLOCK, REFUSE(PROTO_REFUSE_SIZE) },
};

static void test_hello(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(hello_rows); i++) {
		struct recv_verdict vd = { 0 };
		struct proto_hello h;
		struct standby v;

		standby_fake(&v);
		hello_ok(&h);
		switch (hello_rows[i].c) {
		case H_OK:
			break;
		case H_VERSION:
			h.version_min = h.version_max = PROTO_VERSION_MAX + 1;
			break;
		case H_FAILED:
			v.failed = true;
			snprintf(v.fail_msg, sizeof(v.fail_msg), "journal: EIO");
			break;
		case H_ID:
			memcpy(h.volume_id, OTHER_ID, 16);
			break;
		case H_SIZE:
			h.size_bytes = SIZE + BLOCK;
			break;
		case H_MAP_BLOCK:
			h.block_bytes = BLOCK * 2;
			break;
		case H_BLOCK_RANGE:
			map_release(&v.map);
			v.have_map = false;
			v.vs.kind = VSTATE_EMPTY;
			h.block_bytes = 512;
			break;
		case H_GENERATION:
			h.generation = 2;
			break;
		case H_NEWER_GENERATION:
			h.generation = 4;
			break;
		case H_EMPTY_OTHER_ID:
			map_release(&v.map);
			v.have_map = false;
			v.vs.kind = VSTATE_EMPTY;
			memcpy(h.volume_id, OTHER_ID, 16);
			break;
		case H_VERSION_AND_SIZE:
			h.version_min = h.version_max = PROTO_VERSION_MAX + 1;
			h.size_bytes = 1;
			break;
		case H_ID_AND_SIZE:
			memcpy(h.volume_id, OTHER_ID, 16);
			h.size_bytes = 1;
			break;
		case H_SIZE_AND_BLOCK:
			h.size_bytes = 1;
			h.block_bytes = BLOCK * 2;
			break;
		}
		expect(recv_check_hello(&v, &h, &vd), &vd, hello_rows[i].w, hello_rows[i].name);
		standby_fake_release(&v);
	}
}

/* ------------------------------------------------------- EPOCH_BEGIN kinds */

static void test_begin(void **state)
{
	struct recv_verdict vd = { 0 };
	struct proto_hello h;
	struct proto_msg msg;
	struct standby v;

	(void)state;
	standby_fake(&v);
	hello_ok(&h);
	memset(&msg, 0, sizeof(msg));
	msg.header.type = PROTO_EPOCH_BEGIN;
	msg.u.epoch_begin.generation = 3;
	expect(recv_check_begin(&v, &h, &msg, &vd), &vd, OK, "EPOCH_BEGIN of HELLO's generation");
	msg.u.epoch_begin.generation = 4;
	expect(recv_check_begin(&v, &h, &msg, &vd), &vd, ERROR(PROTO_ERR_EPOCH),
	       "EPOCH_BEGIN of another generation");
	msg.header.type = PROTO_DATA;
	expect(recv_check_begin(&v, &h, &msg, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "DATA instead of EPOCH_BEGIN");
	standby_fake_release(&v);
}

static const struct {
	const char *name;
	enum vstate_kind kind;
	uint64_t base_epoch, generation;
	struct want w;
} delta_rows[] = {
	{ "on the committed epoch", VSTATE_CONSISTENT, 7, 3, OK },
	{ "on an older epoch", VSTATE_CONSISTENT, 6, 3, ERROR(PROTO_ERR_EPOCH) },
	{ "on a newer epoch", VSTATE_CONSISTENT, 8, 3, ERROR(PROTO_ERR_EPOCH) },
	{ "of another generation", VSTATE_CONSISTENT, 7, 4, ERROR(PROTO_ERR_EPOCH) },
	{ "while syncing", VSTATE_SYNCING, 7, 3, ERROR(PROTO_ERR_EPOCH) },
	{ "on an empty standby", VSTATE_EMPTY, 7, 3, ERROR(PROTO_ERR_EPOCH) },
};

static void test_delta(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(delta_rows); i++) {
		struct proto_epoch_begin eb = { .epoch = 8,
						.base_epoch = delta_rows[i].base_epoch,
						.generation = delta_rows[i].generation };
		struct recv_verdict vd = { 0 };
		struct standby v;

		standby_fake(&v);
		v.vs.kind = delta_rows[i].kind;
		expect(recv_check_delta(&v, &eb, &vd), &vd, delta_rows[i].w, delta_rows[i].name);
		standby_fake_release(&v);
	}
}

static const struct {
	const char *name;
	enum vstate_kind kind;
	uint64_t epoch, resume_block;
	bool have_map;
	struct want w;
	bool other_id; /* the sender is another volume */
} resume_rows[] = {
	{ "at the cursor", VSTATE_SYNCING, 9, 40, true, OK, false },
	{ "below the cursor", VSTATE_SYNCING, 9, 10, true, OK, false },
	{ "past the cursor", VSTATE_SYNCING, 9, 41, true, ERROR(PROTO_ERR_EPOCH), false },
	{ "another sync's epoch", VSTATE_SYNCING, 10, 40, true, ERROR(PROTO_ERR_EPOCH), false },
	{ "nothing to resume (consistent)", VSTATE_CONSISTENT, 9, 40, true, ERROR(PROTO_ERR_EPOCH),
	  false },
	/* A first sync interrupted by a restart: no map was ever committed. */
	{ "no committed map", VSTATE_SYNCING, 9, 40, false, OK, false },
	/* The committed map is at epoch 7: a sync that resumes at or below it
	 * could never commit (map_commit asserts epochs only move forward). */
	{ "a sync at the committed epoch", VSTATE_SYNCING, 7, 40, true, ERROR(PROTO_ERR_EPOCH),
	  false },
	{ "a sync below the committed epoch", VSTATE_SYNCING, 3, 40, true, ERROR(PROTO_ERR_EPOCH),
	  false },
	{ "another volume's sync", VSTATE_SYNCING, 9, 40, false, ERROR(PROTO_ERR_EPOCH), true },
};

static void test_resume(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(resume_rows); i++) {
		struct proto_epoch_begin eb = {
			.epoch = resume_rows[i].epoch,
			.generation = 3,
			.flags = PROTO_EPOCH_INITIAL_SYNC | PROTO_EPOCH_RESUMED,
			.resume_block = resume_rows[i].resume_block,
		};
		struct recv_verdict vd = { 0 };
		struct proto_hello h;
		struct standby v;

		standby_fake(&v);
		hello_ok(&h);
		if (resume_rows[i].other_id)
			memcpy(h.volume_id, OTHER_ID, 16);
		v.vs.kind = resume_rows[i].kind;
		v.vs.sync_epoch = resume_rows[i].epoch <= 7 ? resume_rows[i].epoch : 9;
		v.vs.sync_cursor = 40;
		if (!resume_rows[i].have_map) {
			map_release(&v.map);
			v.have_map = false;
		}
		expect(recv_check_resume(&v, &h, &eb, &vd), &vd, resume_rows[i].w,
		       resume_rows[i].name);
		standby_fake_release(&v);
	}
}

/* ------------------------------------------------------------------- runs */

static void test_runs(void **state)
{
	static const struct {
		const char *name;
		uint64_t first;
		uint32_t count;
		struct want w;
	} rows[] = {
		/* one sequence: each row runs after the rows before it */
		{ "first run", 0, 10, OK },
		{ "adjacent run", 10, 5, OK },
		{ "overlapping run", 14, 2, ERROR(PROTO_ERR_PROTOCOL) },
		{ "gap, then a run", 20, 1, OK },
		{ "empty run", 30, 0, ERROR(PROTO_ERR_PROTOCOL) },
		{ "run before the previous one", 5, 1, ERROR(PROTO_ERR_PROTOCOL) },
		{ "run past the end", BLOCKS - 2, 3, ERROR(PROTO_ERR_PROTOCOL) },
		{ "run far outside", UINT64_MAX - 1, 2, ERROR(PROTO_ERR_PROTOCOL) },
		{ "run to the last block", BLOCKS - 2, 2, OK },
		{ "nothing after the last block", BLOCKS, 1, ERROR(PROTO_ERR_PROTOCOL) },
	};
	struct recv_runs runs = { 0 };
	struct standby v;
	uint64_t blocks = 0;

	(void)state;
	standby_fake(&v);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		struct recv_verdict vd = { 0 };
		struct recv_runs before = runs;
		int rc = recv_check_run(&v, &runs, rows[i].first, rows[i].count, &vd);

		expect(rc, &vd, rows[i].w, rows[i].name);
		if (rc) {
			/* a refused run moves nothing */
			assert_int_equal(runs.next_block, before.next_block);
			assert_int_equal(runs.blocks, before.blocks);
		} else {
			blocks += rows[i].count;
			assert_int_equal(runs.next_block, rows[i].first + rows[i].count);
			assert_int_equal(runs.blocks, blocks);
		}
	}
	standby_fake_release(&v);
}

/* ------------------------------------------------------------------- DATA */

enum data_case { D_OK, D_LZ4, D_LAST, D_SHORT, D_LONG, D_HASH, D_GARBAGE };

static void test_data(void **state)
{
	static const struct {
		const char *name;
		enum data_case c;
		struct want w;
	} rows[] = {
		{ "raw, hashes match", D_OK, OK },
		{ "lz4, hashes match", D_LZ4, OK },
		{ "the short last block", D_LAST, OK },
		{ "fewer plaintext bytes than the geometry", D_SHORT, ERROR(PROTO_ERR_PROTOCOL) },
		{ "more plaintext bytes than the geometry", D_LONG, ERROR(PROTO_ERR_PROTOCOL) },
		{ "one block's hash differs", D_HASH, ERROR(PROTO_ERR_VERIFY) },
		{ "lz4 that does not decompress", D_GARBAGE, ERROR(PROTO_ERR_VERIFY) },
	};
	static uint8_t plain[4 * BLOCK], packed[8 * BLOCK], dst[PROTO_DATA_PLAINTEXT_MAX];
	static uint64_t hashes[PROTO_DATA_BLOCKS_MAX];
	uint64_t want_hashes[4];
	struct standby v;

	(void)state;
	standby_fake(&v);
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 7 + i / 4096);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		struct recv_verdict vd = { 0 };
		struct proto_data d = { .first_block = 10, .block_count = 4 };
		uint32_t bytes = 4 * BLOCK;
		int rc;

		if (rows[i].c == D_LAST) {
			d.first_block = BLOCKS - 1;
			d.block_count = 1;
			bytes = standby_block_len(&v, BLOCKS - 1);
			assert_true(bytes < BLOCK);
		}
		for (uint32_t b = 0; b < d.block_count; b++)
			want_hashes[b] =
				delta_hash(plain + b * BLOCK,
					   b + 1 < d.block_count ? BLOCK : bytes - b * BLOCK);
		d.codec = PROTO_CODEC_RAW;
		d.data = plain;
		d.data_bytes = bytes;
		d.plaintext_bytes = bytes;
		d.hashes = want_hashes; /* host order: proto_data_hash reads it */
		if (rows[i].c == D_LZ4 || rows[i].c == D_GARBAGE) {
			enum codec_kind kind;
			int n = codec_compress(plain, bytes, packed, sizeof(packed), &kind);

			assert_true(n > 0);
			assert_int_equal(kind, CODEC_LZ4); /* the pattern compresses */
			if (rows[i].c == D_GARBAGE)
				memset(packed, 0xff, n);
			d.codec = PROTO_CODEC_LZ4;
			d.data = packed;
			d.data_bytes = (uint32_t)n;
		}
		if (rows[i].c == D_SHORT)
			d.plaintext_bytes = bytes - 1;
		if (rows[i].c == D_LONG)
			d.plaintext_bytes = bytes + 1;
		if (rows[i].c == D_HASH)
			want_hashes[2] ^= 1;
		memset(hashes, 0, sizeof(hashes));
		rc = recv_check_data(&v, &d, dst, hashes, &vd);
		if (rows[i].w.kind == RECV_VERDICT_NONE) {
			if (rc != (int)bytes)
				fail_msg("%s: expected %u plaintext bytes, got %d (%s)",
					 rows[i].name, bytes, rc, vd.message);
			assert_memory_equal(dst, plain, bytes);
			assert_memory_equal(hashes, want_hashes, d.block_count * 8);
		} else {
			expect(rc, &vd, rows[i].w, rows[i].name);
		}
	}
	standby_fake_release(&v);
}

/* ------------------------------------------------------------------ PAGES */

enum pages_case { P_OK, P_LAST, P_INDEX, P_BYTES, P_HASH, P_GARBAGE };

/* Blocks of the fake are one page: index 0 is the only page of a block. */
static void test_pages(void **state)
{
	static const struct {
		const char *name;
		enum pages_case c;
		struct want w;
	} rows[] = {
		{ "one page, hash matches", P_OK, OK },
		{ "the short last block's page", P_LAST, OK },
		{ "a page past the block", P_INDEX, ERROR(PROTO_ERR_PROTOCOL) },
		{ "plaintext bytes not the geometry's", P_BYTES, ERROR(PROTO_ERR_PROTOCOL) },
		{ "the page's hash differs", P_HASH, ERROR(PROTO_ERR_VERIFY) },
		{ "lz4 that does not decompress", P_GARBAGE, ERROR(PROTO_ERR_VERIFY) },
	};
	static uint8_t page[BLOCK], dst[PROTO_DATA_PLAINTEXT_MAX];
	struct standby v;

	(void)state;
	standby_fake(&v);
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 13);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		struct recv_verdict vd = { 0 };
		uint32_t idx = rows[i].c == P_INDEX ? 1 : 0;
		uint32_t bytes = BLOCK;
		uint64_t h;
		struct proto_pages pg = { .block = 10, .block_hash = 7, .page_count = 1 };
		int rc;

		if (rows[i].c == P_LAST) {
			pg.block = BLOCKS - 1;
			bytes = standby_block_len(&v, BLOCKS - 1);
			assert_true(bytes < BLOCK);
		}
		h = delta_hash(page, bytes);
		if (rows[i].c == P_HASH)
			h ^= 1;
		pg.codec = rows[i].c == P_GARBAGE ? PROTO_CODEC_LZ4 : PROTO_CODEC_RAW;
		pg.plaintext_bytes = rows[i].c == P_BYTES ? bytes - 512 : bytes;
		pg.page_index = &idx;
		pg.page_hashes = &h;
		pg.data = rows[i].c == P_GARBAGE ? (const uint8_t *)"\xff\xff\xff\xff" : page;
		pg.data_bytes = rows[i].c == P_GARBAGE ? 4 : pg.plaintext_bytes;
		rc = recv_check_pages(&v, &pg, dst, &vd);
		if (rows[i].w.kind == RECV_VERDICT_NONE) {
			if (rc != 0)
				fail_msg("%s: %d (%s)", rows[i].name, rc, vd.message);
			assert_memory_equal(dst, page, bytes);
		} else {
			expect(rc, &vd, rows[i].w, rows[i].name);
		}
	}
	standby_fake_release(&v);
}

/* -------------------------------------------------------------- EPOCH_END */

static void test_end(void **state)
{
	struct proto_epoch_begin eb = { .epoch = 8, .base_epoch = 7, .generation = 3 };
	struct recv_runs runs = { .next_block = 50, .blocks = 12 };
	struct proto_epoch_end ee;
	struct recv_verdict vd = { 0 };
	struct standby v;
	uint64_t root = 0, want;

	(void)state;
	standby_fake(&v);
	map_set(&v.map, 3, 0x1234);
	want = map_merkle_root(&v.map);
	ee = (struct proto_epoch_end){ .epoch = 8, .block_count = 12, .merkle_root = want };
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, OK, "whole epoch");
	assert_int_equal(root, want);

	ee.epoch = 9;
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, ERROR(PROTO_ERR_EPOCH),
	       "END of another epoch");
	ee.epoch = 8;
	ee.block_count = 11;
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, ERROR(PROTO_ERR_EPOCH),
	       "END counting fewer blocks than arrived");
	ee.block_count = 12;
	ee.merkle_root = want ^ 1;
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, ERROR(PROTO_ERR_VERIFY),
	       "END with another root");
	expect(recv_check_unexpected(&v, &eb, PROTO_HELLO, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "HELLO inside an epoch");
	standby_fake_release(&v);
}

/* Rounds: only in an incremental epoch that says it is one instant, in
 * sequence, none after the final; each starts the ascending order again; such
 * an epoch must not end before its final round. */
static void test_rounds(void **state)
{
	struct proto_epoch_begin eb = { .epoch = 8, .base_epoch = 7, .generation = 3 };
	struct recv_runs runs = { .next_block = 50, .blocks = 12 };
	struct proto_round r = { .round = 2 };
	struct proto_epoch_end ee;
	struct recv_verdict vd = { 0 };
	struct standby v;
	uint64_t root = 0;

	(void)state;
	standby_fake(&v);
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "ROUND in an epoch read live");
	eb.flags = PROTO_EPOCH_CRASH_CONSISTENT | PROTO_EPOCH_INITIAL_SYNC | PROTO_EPOCH_RESUMED;
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "ROUND in a resumed sync");
	eb.flags = PROTO_EPOCH_CRASH_CONSISTENT;
	r.round = 3;
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "round 3 before round 2");
	r.round = 2;
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, OK, "round 2");
	assert_int_equal(runs.next_block, 0);
	assert_int_equal(runs.round, 1);
	assert_false(runs.final);
	expect(recv_check_run(&v, &runs, 10, 1, &vd), &vd, OK, "a block again, in round 2");
	expect(recv_check_run(&v, &runs, 5, 1, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "descending inside round 2");

	ee = (struct proto_epoch_end){ .epoch = 8,
				       .block_count = 13,
				       .merkle_root = map_merkle_root(&v.map) };
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "a captured epoch ending without its final round");

	r = (struct proto_round){ .round = 3, .flags = PROTO_ROUND_FINAL, .capture_unix_ms = 1 };
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, OK, "the final round 3");
	assert_true(runs.final);
	assert_int_equal(runs.next_block, 0);
	expect(recv_check_run(&v, &runs, 10, 1, &vd), &vd, OK, "a block again, in round 3");
	r = (struct proto_round){ .round = 4 };
	expect(recv_check_round(&v, &eb, &runs, &r, &vd), &vd, ERROR(PROTO_ERR_PROTOCOL),
	       "a round after the final");
	ee.block_count = 14; /* the repeats count again */
	expect(recv_check_end(&v, &eb, &runs, &ee, &root, &vd), &vd, OK,
	       "the captured epoch's end");
	standby_fake_release(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),  cmocka_unit_test(test_begin),
		cmocka_unit_test(test_delta),  cmocka_unit_test(test_resume),
		cmocka_unit_test(test_runs),   cmocka_unit_test(test_data),
		cmocka_unit_test(test_pages),  cmocka_unit_test(test_end),
		cmocka_unit_test(test_rounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
