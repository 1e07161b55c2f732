// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of devid, which storage a volume's path names: a file and a
 * symlink to it are one; two files are two; two loop devices over one file are
 * one, and so are a loop device and its file; loop devices over disjoint ranges
 * of one file (--offset/--sizelimit) are two, overlapping ones one.
 * devid_find_conflict names both volumes and both paths. (Partitions resolve
 * through sysfs to their disk and range; no test makes a partition table.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devid.h"
#include "testutil.h"

static struct devid resolve(const char *path)
{
	struct devid d;
	char err[512] = "";

	if (devid_resolve(path, &d, err, sizeof(err)))
		fail_msg("devid_resolve %s: %s", path, err);
	return d;
}

static bool overlap(const char *a, const char *b)
{
	struct devid x = resolve(a), y = resolve(b);

	assert_true(devid_overlap(&x, &y) == devid_overlap(&y, &x));
	return devid_overlap(&x, &y);
}

static void test_files(void **state)
{
	char dir[TU_PATH_MAX], a[TU_PATH_MAX + 32], b[TU_PATH_MAX + 32], link[TU_PATH_MAX + 32],
		missing[TU_PATH_MAX + 32];
	char err[1024] = "";
	const char *names[] = { "data", "logs" }, *paths[2];
	struct devid d;

	(void)state;
	assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
	snprintf(a, sizeof(a), "%s/a.img", dir);
	snprintf(b, sizeof(b), "%s/b.img", dir);
	snprintf(link, sizeof(link), "%s/alias.img", dir);
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? b : a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 1 << 20), 0);
		close(fd);
	}
	assert_int_equal(symlink("a.img", link), 0);
	assert_true(overlap(a, link));
	assert_false(overlap(a, b));
	paths[0] = a;
	paths[1] = link;
	assert_int_equal(devid_find_conflict(names, paths, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "volumes data and logs share storage"));
	assert_non_null(strstr(err, a));
	assert_non_null(strstr(err, link));
	paths[1] = b;
	err[0] = '\0';
	assert_int_equal(devid_find_conflict(names, paths, 2, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	/* A path that does not resolve is left to whoever opens it. */
	snprintf(missing, sizeof(missing), "%s/missing.img", dir);
	paths[1] = missing;
	assert_int_equal(devid_find_conflict(names, paths, 2, err, sizeof(err)), 0);
	assert_int_equal(devid_resolve(missing, &d, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, missing));
	assert_int_equal(devid_resolve("/proc/self", &d, err, sizeof(err)), -EINVAL);
	unlink(link);
	unlink(a);
	unlink(b);
	rmdir(dir);
}

/* Attaches file's [offset, offset + limit) to a loop device (0: to its end). */
static void attach_range(struct tu_loop *lp, const char *file, uint64_t offset, uint64_t limit)
{
	struct loop_info64 li;

	assert_int_equal(tu_loop_attach(lp, file, 512, true), 0);
	memset(&li, 0, sizeof(li));
	assert_int_equal(ioctl(lp->fd, LOOP_GET_STATUS64, &li), 0);
	li.lo_offset = offset;
	li.lo_sizelimit = limit;
	assert_int_equal(ioctl(lp->fd, LOOP_SET_STATUS64, &li), 0);
}

static void test_loops(void **state)
{
	char file[TU_PATH_MAX], other[TU_PATH_MAX];
	struct tu_loop l1, l2, l3, l4, l5, l6;

	(void)state;
	tu_require_root();
	tu_require_loop();
	assert_int_equal(tu_tmpfile(file, sizeof(file), 8 << 20, 3), 0);
	assert_int_equal(tu_tmpfile(other, sizeof(other), 8 << 20, 4), 0);
	assert_int_equal(tu_loop_attach(&l1, file, 512, true), 0);
	assert_int_equal(tu_loop_attach(&l2, file, 512, true), 0);
	assert_int_equal(tu_loop_attach(&l3, other, 512, true), 0);
	/* two loop devices over one file, and a loop device and its file */
	assert_true(overlap(l1.dev, l2.dev));
	assert_true(overlap(l1.dev, file));
	assert_false(overlap(l1.dev, l3.dev));
	assert_false(overlap(l1.dev, other));
	/* ranges of one file: [0, 4M) and [4M, 8M) are two, [2M, 6M) meets both */
	attach_range(&l4, file, 0, 4 << 20);
	attach_range(&l5, file, 4 << 20, 4 << 20);
	attach_range(&l6, file, 2 << 20, 4 << 20);
	assert_false(overlap(l4.dev, l5.dev));
	assert_true(overlap(l4.dev, l6.dev));
	assert_true(overlap(l5.dev, l6.dev));
	assert_true(overlap(l1.dev, l5.dev));
	tu_loop_detach(&l6);
	tu_loop_detach(&l5);
	tu_loop_detach(&l4);
	tu_loop_detach(&l3);
	tu_loop_detach(&l2);
	tu_loop_detach(&l1);
	tu_tmpfile_release(other);
	tu_tmpfile_release(file);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_loops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
