// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of vstate, the receiver volume's state record, and of the durable
 * replace under it: every transition the receiver makes (none -> syncing, a
 * sync's cursor, syncing -> consistent, consistent -> the next epoch) is
 * stopped before each step of its replace in turn (the crash hook), and the
 * record read back must be the old one or the new one, never damaged or mixed;
 * the next store after such a crash succeeds. A damaged record is refused with
 * -EBADMSG, never trusted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pvrepl_assert.h"
#include "replace.h"
#include "status.h"
#include "testutil.h"
#include "vstate.h"

static int hook_stop_at;
static int hook_calls;
static char hook_stopped[64];

static int crash_hook(const char *step)
{
	if (hook_calls++ == hook_stop_at) {
		snprintf(hook_stopped, sizeof(hook_stopped), "%s", step);
		return -EINTR;
	}
	return 0;
}

static void new_dir(char *dir, size_t len)
{
	assert_int_equal(tu_tmpdir(dir, len), 0);
}

static bool same(const struct vstate *a, const struct vstate *b)
{
	return a->kind == b->kind && a->crash_consistent == b->crash_consistent &&
	       a->capture == b->capture && a->epoch == b->epoch && a->generation == b->generation &&
	       a->sync_epoch == b->sync_epoch && a->sync_cursor == b->sync_cursor &&
	       a->committed_unix == b->committed_unix &&
	       a->consistent_point_ms == b->consistent_point_ms &&
	       a->sync_capture_ms == b->sync_capture_ms &&
	       !memcmp(a->volume_id, b->volume_id, sizeof(a->volume_id));
}

/* The receiver's transitions, each from the state before it. */
enum transition { T_SYNC_BEGIN, T_SYNC_CURSOR, T_SYNC_DONE, T_NEXT_EPOCH, T_COUNT };
static const char *const transition_names[] = { "none -> syncing", "syncing cursor",
						"syncing -> consistent",
						"consistent -> next epoch" };

static void states_of(enum transition t, struct vstate *before, struct vstate *after)
{
	struct vstate syncing = {
		.kind = VSTATE_SYNCING,
		.generation = 2,
		.sync_epoch = 5,
		.sync_capture_ms = 1700000000123,
		.volume_id = { 7, 7, 7 },
	};
	struct vstate consistent = {
		.kind = VSTATE_CONSISTENT,
		.crash_consistent = true,
		.capture = STATUS_CAPTURE_FREEZE,
		.epoch = 5,
		.generation = 2,
		.committed_unix = 1700000001,
		.consistent_point_ms = 1700000000123,
		.volume_id = { 7, 7, 7 },
	};

	memset(before, 0, sizeof(*before));
	switch (t) {
	case T_SYNC_BEGIN:
		*after = syncing;
		break;
	case T_SYNC_CURSOR:
		*before = syncing;
		*after = syncing;
		after->sync_cursor = 4096;
		break;
	case T_SYNC_DONE:
		*before = syncing;
		before->sync_cursor = 4096;
		*after = consistent;
		break;
	case T_NEXT_EPOCH:
	case T_COUNT:
		*before = consistent;
		*after = consistent;
		after->epoch = 6;
		after->capture = STATUS_CAPTURE_REFLINK; /* how it was captured is kept */
		after->committed_unix++;
		after->consistent_point_ms += 5000;
		break;
	}
}

static void test_crash_every_step(void **state)
{
	(void)state;
	for (int t = 0; t < T_COUNT; t++) {
		int olds = 0, news = 0, k;

		for (k = 0;; k++) {
			char dir[TU_PATH_MAX], err[512] = "";
			struct vstate before, after, got;
			bool have_before = t != T_SYNC_BEGIN;
			int rc;

			states_of((enum transition)t, &before, &after);
			new_dir(dir, sizeof(dir));
			if (have_before)
				assert_int_equal(vstate_store(&before, dir, err, sizeof(err)), 0);
			hook_stop_at = k;
			hook_calls = 0;
			hook_stopped[0] = '\0';
			replace_crash_hook = crash_hook;
			rc = vstate_store(&after, dir, err, sizeof(err));
			replace_crash_hook = NULL;
			if (!hook_stopped[0]) {
				/* past the last step: the store ran to its end */
				assert_int_equal(rc, 0);
				assert_int_equal(vstate_load(&got, dir, err, sizeof(err)), 0);
				assert_true(same(&got, &after));
				break;
			}
			assert_int_equal(rc, -EINTR);
			assert_non_null(strstr(hook_stopped, "state."));
			rc = vstate_load(&got, dir, err, sizeof(err));
			if (rc == -ENOENT && !have_before) {
				olds++; /* nothing yet: an empty standby, as before */
			} else {
				if (rc)
					fail_msg("%s, crash before %s: vstate_load %d: %s",
						 transition_names[t], hook_stopped, rc, err);
				if (same(&got, &after))
					news++;
				else if (have_before && same(&got, &before))
					olds++;
				else
					fail_msg("%s, crash before %s: neither state",
						 transition_names[t], hook_stopped);
			}
			/* The next store after the crash works, whatever it left. */
			assert_int_equal(vstate_store(&after, dir, err, sizeof(err)), 0);
			assert_int_equal(vstate_load(&got, dir, err, sizeof(err)), 0);
			assert_true(same(&got, &after));
		}
		/* create, write, fsync, rename, dirsync */
		assert_int_equal(k, 5);
		/* Only a stop before the directory fsync can still show the new
		 * record (the rename happened): one point; four give the old one. */
		assert_int_equal(olds, 4);
		assert_int_equal(news, 1);
		print_message("%s: %d crash points, %d gave the old state, %d the new\n",
			      transition_names[t], k, olds, news);
	}
}

static void test_damaged_record(void **state)
{
	struct vstate s = { .kind = VSTATE_CONSISTENT, .epoch = 3, .generation = 1 }, got;
	char dir[TU_PATH_MAX], path[TU_PATH_MAX + 16], err[512] = "";
	static const off_t offsets[] = { 0, 6, 8, 100, 127 };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(offsets); i++) {
		uint8_t b;
		int fd;

		new_dir(dir, sizeof(dir));
		assert_int_equal(vstate_store(&s, dir, err, sizeof(err)), 0);
		snprintf(path, sizeof(path), "%s/%s", dir, VSTATE_FILE);
		fd = open(path, O_RDWR);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, &b, 1, offsets[i]), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, offsets[i]), 1);
		close(fd);
		assert_int_equal(vstate_load(&got, dir, err, sizeof(err)), -EBADMSG);
		assert_non_null(strstr(err, "damaged"));
	}
	/* A short record is damaged too, not a smaller one. */
	assert_int_equal(truncate(path, 64), 0);
	assert_int_equal(vstate_load(&got, dir, err, sizeof(err)), -EBADMSG);
	new_dir(dir, sizeof(dir));
	assert_int_equal(vstate_load(&got, dir, err, sizeof(err)), -ENOENT);
}

/* The byte that said crash_consistent says how: 1 (written before kinds were
 * recorded) and values past the known kinds read as captured, kind unknown. */
static void test_capture_byte(void **state)
{
	(void)state;
	assert_int_equal(status_capture_of_byte(0), STATUS_CAPTURE_LIVE);
	assert_int_equal(status_capture_of_byte(1), STATUS_CAPTURE_UNKNOWN);
	assert_int_equal(status_capture_of_byte(2), STATUS_CAPTURE_FREEZE);
	assert_int_equal(status_capture_of_byte(3), STATUS_CAPTURE_REFLINK);
	assert_int_equal(status_capture_of_byte(4), STATUS_CAPTURE_SNAPSHOT);
	assert_int_equal(status_capture_of_byte(5), STATUS_CAPTURE_UNKNOWN);
	assert_int_equal(status_capture_of_byte(255), STATUS_CAPTURE_UNKNOWN);
	assert_string_equal(status_capture_name(STATUS_CAPTURE_UNKNOWN), "captured");
	assert_string_equal(status_capture_name(STATUS_CAPTURE_REFLINK), "reflink");
	assert_string_equal(status_capture_name(STATUS_CAPTURE_LIVE), "none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_every_step),
		cmocka_unit_test(test_capture_byte),
		cmocka_unit_test(test_damaged_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
