// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the sender's epoch choice, the pure part of sender.c: a table of
 * confirmed-map facts and WELCOMEs with the EPOCH_BEGIN each must give.
 * Incremental only when the two sides provably hold the same map (not empty,
 * receiver CONSISTENT, same epoch, generation, root and volume id; after a lost
 * ack was recovered, the recomputed root and not HELLO's); a full sync of epoch
 * max(map epoch, receiver epoch) + 1 otherwise; resumed at the receiver's cursor,
 * with its resume_epoch, only when it is SYNCING the same volume id with a
 * non-zero resume_epoch and cursor. Then the lost-ack predicate: the receiver
 * CONSISTENT exactly one epoch ahead, on the same generation and volume id.
 * No I/O: no device, socket or state directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "proto.h"
#include "pvrepl_assert.h"
#include "sender.h"

/* Volume ids that differ in one byte. */
#define VOL_A 0x0a
#define VOL_B 0x0b
#define VOLUME_ID(vol)                                           \
	{                                                        \
		0x70, 0x76, 0x72, 0x65, 0x70, 0x6c, [15] = (vol) \
	}

#define ROOT_5 0x5555555555555555ull /* the map's root at epoch 5 */
#define ROOT_6 0x6666666666666666ull /* ... and at epoch 6 */
#define ROOT_X 0x0123456789abcdefull /* a root neither side should have */

/* The confirmed map: empty?, epoch, generation, volume, the root HELLO carried. */
#define MAP(empty, ep, gen, vol, root)                                    \
	.map_empty = (empty), .map_epoch = (ep), .map_generation = (gen), \
	.map_volume_id = VOLUME_ID(vol), .hello_root = (root)
/* settle_lost_ack advanced the map: its root now. */
#define RECOVERED(root) .recovered_ack = true, .recovered_root = (root)
/* WELCOME: state, epoch, generation, root, volume, resume_epoch, resume_block. */
#define WELCOME(st, ep, gen, root, vol, rep, rblk) \
	.welcome = { .state = PROTO_STATE_##st,    \
		     .epoch = (ep),                \
		     .generation = (gen),          \
		     .merkle_root = (root),        \
		     .volume_id = VOLUME_ID(vol),  \
		     .resume_epoch = (rep),        \
		     .resume_block = (rblk) }

/* The choices. */
#define INCREMENTAL(ep, base)                       \
	{                                           \
		.epoch = (ep), .base_epoch = (base) \
	}
#define FULL(ep)                                                                       \
	{                                                                              \
		.epoch = (ep), .flags = PROTO_EPOCH_INITIAL_SYNC, .initial_sync = true \
	}
#define RESUMED(ep, rblk)                                                               \
	{                                                                               \
		.epoch = (ep), .flags = PROTO_EPOCH_INITIAL_SYNC | PROTO_EPOCH_RESUMED, \
		.resume_block = (rblk), .initial_sync = true, .resumed = true           \
	}

struct choice_case {
	const char *name;
	struct sender_epoch_facts f;
	struct sender_epoch_choice want;
};

static const struct choice_case choice_cases[] = {
	/* Incremental: both sides provably hold the same confirmed map. */
	{ "in step: incremental on top of the confirmed epoch",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 2, ROOT_5, VOL_A, 0, 0) },
	  INCREMENTAL(6, 5) },
	{ "in step at epoch 1, generation 1",
	  { MAP(false, 1, 1, VOL_A, ROOT_X), WELCOME(CONSISTENT, 1, 1, ROOT_X, VOL_A, 0, 0) },
	  INCREMENTAL(2, 1) },
	{ "in step: the resume fields of a CONSISTENT receiver are ignored",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 2, ROOT_5, VOL_A, 4, 100) },
	  INCREMENTAL(6, 5) },
	{ "lost ack recovered: the recomputed root is compared, not HELLO's",
	  { MAP(false, 6, 2, VOL_A, ROOT_5), RECOVERED(ROOT_6),
	    WELCOME(CONSISTENT, 6, 2, ROOT_6, VOL_A, 0, 0) },
	  INCREMENTAL(7, 6) },

	/* Full: anything not provably in step. */
	{ "map empty, receiver EMPTY: the first sync is epoch 1",
	  { MAP(true, 0, 1, VOL_A, 0), WELCOME(EMPTY, 0, 0, 0, 0, 0, 0) },
	  FULL(1) },
	{ "map empty: full even when the receiver looks in step",
	  { MAP(true, 0, 1, VOL_A, 0), WELCOME(CONSISTENT, 0, 1, 0, VOL_A, 0, 0) },
	  FULL(1) },
	{ "map empty, receiver at 3: max(0, 3) + 1",
	  { MAP(true, 0, 1, VOL_A, 0), WELCOME(CONSISTENT, 3, 1, ROOT_X, VOL_A, 0, 0) },
	  FULL(4) },
	{ "roots differ",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 2, ROOT_X, VOL_A, 0, 0) },
	  FULL(6) },
	{ "no lost ack recovered: HELLO's root is compared",
	  { MAP(false, 6, 2, VOL_A, ROOT_5), .recovered_root = ROOT_6,
	    WELCOME(CONSISTENT, 6, 2, ROOT_6, VOL_A, 0, 0) },
	  FULL(7) },
	{ "lost ack recovered, but the recomputed root differs",
	  { MAP(false, 6, 2, VOL_A, ROOT_6), RECOVERED(ROOT_X),
	    WELCOME(CONSISTENT, 6, 2, ROOT_6, VOL_A, 0, 0) },
	  FULL(7) },
	{ "receiver ahead: max(5, 7) + 1",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 7, 2, ROOT_5, VOL_A, 0, 0) },
	  FULL(8) },
	{ "receiver behind: max(5, 3) + 1",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 3, 2, ROOT_5, VOL_A, 0, 0) },
	  FULL(6) },
	{ "generation differs",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 3, ROOT_5, VOL_A, 0, 0) },
	  FULL(6) },
	{ "volume id differs",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 2, ROOT_5, VOL_B, 0, 0) },
	  FULL(6) },
	{ "receiver EMPTY",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(EMPTY, 5, 2, ROOT_5, VOL_A, 0, 0) },
	  FULL(6) },
	{ "receiver SYNCING without a resume cursor",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 5, 2, ROOT_5, VOL_A, 0, 0) },
	  FULL(6) },

	/* Resumed: an interrupted full sync of the same volume goes on. */
	{ "SYNCING the same volume with a cursor: resumed at it, with its epoch",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 0, 2, 0, VOL_A, 6, 100) },
	  RESUMED(6, 100) },
	{ "resumed: resume_epoch, not max + 1",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 9, 2, 0, VOL_A, 4, 1) },
	  RESUMED(4, 1) },
	{ "resumed from an empty map (the first sync was cut short)",
	  { MAP(true, 0, 1, VOL_A, 0), WELCOME(SYNCING, 0, 1, 0, VOL_A, 1, 4096) },
	  RESUMED(1, 4096) },
	{ "no resume when the volume id differs",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 5, 2, 0, VOL_B, 6, 100) },
	  FULL(6) },
	{ "no resume when the cursor is 0",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 7, 2, 0, VOL_A, 6, 0) },
	  FULL(8) },
	{ "no resume when resume_epoch is 0",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 5, 2, 0, VOL_A, 0, 100) },
	  FULL(6) },
	{ "no resume from a CONSISTENT receiver out of step",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 7, 2, ROOT_X, VOL_A, 6, 100) },
	  FULL(8) },
	{ "no resume from an EMPTY receiver",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(EMPTY, 0, 0, 0, VOL_A, 6, 100) },
	  FULL(6) },
};

static void test_choose_epoch(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(choice_cases); i++) {
		const struct choice_case *t = &choice_cases[i];
		struct sender_epoch_choice got;

		memset(&got, 0xa5, sizeof(got));
		sender_choose_epoch(&t->f, &got);
		if (got.epoch != t->want.epoch || got.base_epoch != t->want.base_epoch ||
		    got.flags != t->want.flags || got.resume_block != t->want.resume_block ||
		    got.initial_sync != t->want.initial_sync || got.resumed != t->want.resumed)
			fail_msg("%s: got epoch %" PRIu64 " base %" PRIu64
				 " flags %#x resume_block %" PRIu64
				 " initial_sync %d resumed %d; want epoch %" PRIu64 " base %" PRIu64
				 " flags %#x resume_block %" PRIu64 " initial_sync %d resumed %d",
				 t->name, got.epoch, got.base_epoch, got.flags, got.resume_block,
				 got.initial_sync, got.resumed, t->want.epoch, t->want.base_epoch,
				 t->want.flags, t->want.resume_block, t->want.initial_sync,
				 t->want.resumed);
	}
}

struct lost_ack_case {
	const char *name;
	struct sender_epoch_facts f;
	bool want;
};

static const struct lost_ack_case lost_ack_cases[] = {
	{ "receiver one epoch ahead, same generation and id",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 6, 2, ROOT_6, VOL_A, 0, 0) },
	  true },
	{ "the roots do not matter (map.pending decides)",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 6, 2, ROOT_X, VOL_A, 0, 0) },
	  true },
	{ "the first epoch's ack lost: empty map at 0, receiver at 1",
	  { MAP(true, 0, 1, VOL_A, 0), WELCOME(CONSISTENT, 1, 1, ROOT_X, VOL_A, 0, 0) },
	  true },
	{ "in step",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 5, 2, ROOT_5, VOL_A, 0, 0) },
	  false },
	{ "two epochs ahead",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 7, 2, ROOT_X, VOL_A, 0, 0) },
	  false },
	{ "behind",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 4, 2, ROOT_X, VOL_A, 0, 0) },
	  false },
	{ "generation differs",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 6, 3, ROOT_6, VOL_A, 0, 0) },
	  false },
	{ "volume id differs",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(CONSISTENT, 6, 2, ROOT_6, VOL_B, 0, 0) },
	  false },
	{ "receiver SYNCING",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(SYNCING, 6, 2, ROOT_6, VOL_A, 6, 100) },
	  false },
	{ "receiver EMPTY",
	  { MAP(false, 5, 2, VOL_A, ROOT_5), WELCOME(EMPTY, 6, 2, ROOT_6, VOL_A, 0, 0) },
	  false },
};

static void test_lost_ack_candidate(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(lost_ack_cases); i++) {
		const struct lost_ack_case *t = &lost_ack_cases[i];

		if (sender_lost_ack_candidate(&t->f) != t->want)
			fail_msg("%s: got %d, want %d", t->name, !t->want, t->want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_choose_epoch),
		cmocka_unit_test(test_lost_ack_candidate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
