// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of kfio's filesystem helpers on real filesystems made on loop
 * devices (direct I/O) and mounted in temp dirs: kfio_fs_freeze/kfio_fs_thaw on
 * ext4 (a second freeze is EBUSY, a writer in a child process blocks until the
 * thaw, thawing a thawed fs is EINVAL) and kfio_fs_clone (FICLONE) on xfs made
 * with reflink=1 (same content, shared extents, a write to the clone leaves the
 * source alone; refused across filesystems and where reflink is unsupported).
 *
 * Needs root, loop devices, mkfs.ext4 and mkfs.xfs; skips (exit 77) without them.
 * Mounts live in a private mount namespace and are thawed and unmounted at exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define MIB		 (1024ull * 1024ull)
#define SEED_SRC	 0x5a5a0001ull
#define SEED_EDIT	 0xed170001ull
#define CHILD_BLOCKED_MS 700
#define CHILD_DONE_MS	 20000

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* ------------------------------------------------------------- fixtures */

struct fs_fix {
	char file[TU_PATH_MAX];
	struct tu_loop loop;
	char mnt[TU_PATH_MAX];
	bool mounted;
	pid_t child;
};

/* A sparse file of size_bytes, a loop device over it, mkfs_cmd run on it, mounted. */
static void fs_make(struct fs_fix *f, uint64_t size_bytes, const char *fstype, const char *mkfs_cmd)
{
	int ret;

	f->loop.fd = -1;
	f->child = -1;
	assert_int_equal(tu_tmpfile(f->file, sizeof(f->file), size_bytes, 0), 0);
	assert_int_equal(tu_loop_attach(&f->loop, f->file, 512, false), 0);
	if (!f->loop.direct)
		fail_msg("the kernel turned direct I/O off on %s", f->loop.dev);
	ret = tu_run("%s %s", mkfs_cmd, f->loop.dev);
	if (ret)
		fail_msg("'%s %s' failed with %d", mkfs_cmd, f->loop.dev, ret);
	ret = tu_mount(f->loop.dev, fstype, NULL, f->mnt, sizeof(f->mnt));
	if (ret)
		fail_msg("mounting %s (%s): %d", f->loop.dev, fstype, ret);
	f->mounted = true;
}

static int fs_teardown(void **state)
{
	struct fs_fix *f = *state;

	if (f == NULL)
		return 0;
	if (f->child > 0) {
		/* The child may sleep in the frozen fs, deaf to SIGKILL until thawed. */
		int fd = open(f->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd >= 0) {
			ioctl(fd, FITHAW, 0);
			close(fd);
		}
		kill(f->child, SIGKILL);
		waitpid(f->child, NULL, 0);
	}
	if (f->mounted)
		tu_umount(f->mnt); /* thaws first if a test left it frozen */
	tu_loop_detach(&f->loop);
	tu_tmpfile_release(f->file);
	free(f);
	*state = NULL;
	return 0;
}

static int ext4_setup(void **state)
{
	struct fs_fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	fs_make(f, 64 * MIB, "ext4", "mkfs.ext4 -q -F");
	return 0;
}

static int xfs_setup(void **state)
{
	struct fs_fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	/* mkfs.xfs refuses filesystems under 300 MB; the file is sparse. */
	fs_make(f, 512 * MIB, "xfs", "mkfs.xfs -q -f -m reflink=1");
	return 0;
}

/* ------------------------------------------------------------ helpers */

/* Writes len bytes of seed's pattern at offset of path (created if absent), fsynced. */
static void write_file(const char *path, uint64_t offset, size_t len, uint64_t seed)
{
	unsigned char *buf = malloc(len);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	assert_non_null(buf);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	tu_pattern_fill(buf, len, offset, seed);
	assert_int_equal(pwrite(fd, buf, len, (off_t)offset), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	free(buf);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		fail_msg("stat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

/* Waits up to timeout_ms for one byte on fd; returns it, or -1 on timeout. */
static int wait_byte(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		return -1;
	return c;
}

/* Extents of path flagged FIEMAP_EXTENT_SHARED, and all extents. */
static void count_shared_extents(const char *path, unsigned *shared, unsigned *total)
{
	const unsigned max = 64;
	struct fiemap *fm = calloc(1, sizeof(*fm) + max * sizeof(struct fiemap_extent));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned i;

	assert_non_null(fm);
	assert_true(fd >= 0);
	fm->fm_start = 0;
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = max;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0)
		fail_msg("FIEMAP %s: %s", path, strerror(errno));
	*shared = 0;
	*total = fm->fm_mapped_extents;
	for (i = 0; i < fm->fm_mapped_extents; i++) {
		if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED)
			(*shared)++;
	}
	close(fd);
	free(fm);
}

/* ------------------------------------------------------------------ tests */

static void test_freeze_thaw_ext4(void **state)
{
	struct fs_fix *f = *state;
	char err[KFIO_ERR_MSG_MAX] = "", path[TU_PATH_MAX + 32];
	int pipefd[2], ret, st = 0, c;

	snprintf(path, sizeof(path), "%s/before", f->mnt);
	write_file(path, 0, 4096, SEED_SRC);

	ret = kfio_fs_freeze(f->mnt, err, sizeof(err));
	if (ret)
		fail_msg("kfio_fs_freeze %s: %d (%s)", f->mnt, ret, err);
	/* Frozen already: the kernel says EBUSY and kfio passes it on. */
	err[0] = '\0';
	ret = kfio_fs_freeze(f->mnt, err, sizeof(err));
	assert_int_equal(ret, -EBUSY);
	assert_true(err[0] != '\0');
	assert_contains(err, f->mnt);

	/* A writer in a child process blocks while frozen... */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	f->child = fork();
	assert_true(f->child >= 0);
	if (f->child == 0) {
		unsigned char buf[4096];
		int fd;

		memset(buf, 0x5a, sizeof(buf));
		if (write(pipefd[1], "r", 1) != 1)
			_exit(2);
		snprintf(path, sizeof(path), "%s/during", f->mnt);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd))
			_exit(3);
		close(fd);
		if (write(pipefd[1], "d", 1) != 1)
			_exit(4);
		_exit(0);
	}
	close(pipefd[1]);
	assert_int_equal(wait_byte(pipefd[0], CHILD_DONE_MS), 'r');
	c = wait_byte(pipefd[0], CHILD_BLOCKED_MS);
	if (c == 'd')
		fail_msg("a write to the frozen filesystem %s completed", f->mnt);
	assert_int_equal(waitpid(f->child, &st, WNOHANG), 0);

	/* ...and proceeds after the thaw. */
	err[0] = '\0';
	ret = kfio_fs_thaw(f->mnt, err, sizeof(err));
	if (ret)
		fail_msg("kfio_fs_thaw %s: %d (%s)", f->mnt, ret, err);
	c = wait_byte(pipefd[0], CHILD_DONE_MS);
	if (c != 'd')
		fail_msg("the writer did not finish within %d ms of the thaw", CHILD_DONE_MS);
	assert_int_equal(waitpid(f->child, &st, 0), f->child);
	f->child = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(pipefd[0]);
	snprintf(path, sizeof(path), "%s/during", f->mnt);
	assert_int_equal(file_size(path), 4096);

	/* Thawing a thawed filesystem is EINVAL, with a sentence. */
	err[0] = '\0';
	ret = kfio_fs_thaw(f->mnt, err, sizeof(err));
	assert_int_equal(ret, -EINVAL);
	assert_true(err[0] != '\0');

	/* And it can be frozen and thawed again. */
	assert_int_equal(kfio_fs_freeze(f->mnt, err, sizeof(err)), 0);
	assert_int_equal(kfio_fs_thaw(f->mnt, err, sizeof(err)), 0);
}

/* KFIO_OPEN_EXCL refuses a block device with a mounted filesystem. */
static void test_open_excl_mounted(void **state)
{
	struct fs_fix *f = *state;
	struct kfio_dev dev;
	int ret;

	memset(&dev, 0, sizeof(dev));
	ret = kfio_dev_open(&dev, f->loop.dev, KFIO_OPEN_EXCL);
	if (ret == 0) {
		kfio_dev_close(&dev);
		fail_msg("KFIO_OPEN_EXCL of mounted %s succeeded", f->loop.dev);
	}
	assert_int_equal(ret, -EBUSY);
	assert_int_equal(dev.fd, -1);
	assert_contains(dev.err_msg, f->loop.dev);
	/* Without it the device opens (read-only here). */
	ret = kfio_dev_open(&dev, f->loop.dev, 0);
	if (ret)
		fail_msg("kfio_dev_open %s: %d (%s)", f->loop.dev, ret, dev.err_msg);
	assert_true(dev.is_blockdev);
	assert_int_equal(dev.size_bytes, 64 * MIB);
	kfio_dev_close(&dev);
	/* Unmounted, KFIO_OPEN_EXCL succeeds. */
	tu_umount(f->mnt);
	f->mounted = false;
	ret = kfio_dev_open(&dev, f->loop.dev, KFIO_OPEN_EXCL | KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("KFIO_OPEN_EXCL of unmounted %s: %d (%s)", f->loop.dev, ret, dev.err_msg);
	kfio_dev_close(&dev);
}

static void test_freeze_errors(void **state)
{
	char err[KFIO_ERR_MSG_MAX] = "", path[256], file[TU_PATH_MAX];
	int ret;

	(void)state;
	snprintf(path, sizeof(path), "/nonexistent-pvrepl-%d", (int)getpid());
	ret = kfio_fs_freeze(path, err, sizeof(err));
	assert_int_equal(ret, -ENOENT);
	assert_contains(err, path);
	err[0] = '\0';
	ret = kfio_fs_thaw(path, err, sizeof(err));
	assert_int_equal(ret, -ENOENT);
	assert_contains(err, path);
	/* A regular file is not a mountpoint; never freeze the root filesystem here. */
	assert_int_equal(tu_tmpfile(file, sizeof(file), 4096, 1), 0);
	err[0] = '\0';
	ret = kfio_fs_freeze(file, err, sizeof(err));
	assert_true(ret < 0);
	assert_true(err[0] != '\0');
	tu_tmpfile_release(file);
}

static void test_clone_xfs(void **state)
{
	struct fs_fix *f = *state;
	char src[TU_PATH_MAX + 32], dst[TU_PATH_MAX + 32], dst2[TU_PATH_MAX + 32];
	char err[KFIO_ERR_MSG_MAX] = "";
	const size_t src_len = 4 * MIB + 12345;
	unsigned char *buf = malloc(8 * MIB);
	unsigned shared = 0, total = 0;
	int ret;

	assert_non_null(buf);
	snprintf(src, sizeof(src), "%s/volume.img", f->mnt);
	snprintf(dst, sizeof(dst), "%s/volume.snap", f->mnt);
	snprintf(dst2, sizeof(dst2), "%s/volume.snap2", f->mnt);
	write_file(src, 0, src_len, SEED_SRC);
	/* dst exists and is larger: the clone truncates it. */
	write_file(dst, 0, 8 * MIB, SEED_EDIT);

	ret = kfio_fs_clone(src, dst, err, sizeof(err));
	if (ret)
		fail_msg("kfio_fs_clone %s -> %s: %d (%s)", src, dst, ret, err);
	assert_int_equal(file_size(dst), src_len);
	assert_int_equal(tu_file_read(dst, buf, src_len, 0), 0);
	assert_int_equal(tu_pattern_mismatch(buf, src_len, 0, SEED_SRC), -1);
	count_shared_extents(dst, &shared, &total);
	if (shared == 0)
		fail_msg("%s has %u extents, none shared: a copy, not a reflink", dst, total);

	/* Writing the clone leaves the source alone (copy on write). */
	write_file(dst, 4096, 65536, SEED_EDIT);
	assert_int_equal(tu_file_read(src, buf, src_len, 0), 0);
	assert_int_equal(tu_pattern_mismatch(buf, src_len, 0, SEED_SRC), -1);
	assert_int_equal(tu_file_read(dst, buf, src_len, 0), 0);
	assert_int_equal(tu_pattern_mismatch(buf, 4096, 0, SEED_SRC), -1);
	assert_int_equal(tu_pattern_mismatch(buf + 4096, 65536, 4096, SEED_EDIT), -1);
	assert_int_equal(tu_pattern_mismatch(buf + 4096 + 65536, src_len - 4096 - 65536,
					     4096 + 65536, SEED_SRC),
			 -1);
	/* And writing the source leaves the clone alone. */
	write_file(src, 0, 4096, SEED_EDIT);
	assert_int_equal(tu_file_read(dst, buf, 4096, 0), 0);
	assert_int_equal(tu_pattern_mismatch(buf, 4096, 0, SEED_SRC), -1);

	/* A dst that does not exist yet is created. */
	ret = kfio_fs_clone(src, dst2, err, sizeof(err));
	if (ret)
		fail_msg("kfio_fs_clone %s -> %s: %d (%s)", src, dst2, ret, err);
	assert_int_equal(file_size(dst2), src_len);
	assert_int_equal(tu_file_read(dst2, buf, 4096, 0), 0);
	assert_int_equal(tu_pattern_mismatch(buf, 4096, 0, SEED_EDIT), -1);
	free(buf);
}

static void test_clone_errors(void **state)
{
	struct fs_fix *f = *state;
	char src[TU_PATH_MAX + 32], missing[TU_PATH_MAX + 32], other[TU_PATH_MAX];
	char tmpdst[TU_PATH_MAX + 32];
	char err[KFIO_ERR_MSG_MAX] = "";
	int ret;

	snprintf(src, sizeof(src), "%s/src", f->mnt);
	snprintf(missing, sizeof(missing), "%s/missing", f->mnt);
	write_file(src, 0, 65536, SEED_SRC);

	/* A missing source. */
	ret = kfio_fs_clone(missing, src, err, sizeof(err));
	assert_int_equal(ret, -ENOENT);
	assert_contains(err, missing);
	/* The source was not truncated by the failed attempt. */
	assert_int_equal(file_size(src), 65536);

	/* Across filesystems: the xfs mount and the temp dir. */
	assert_int_equal(tu_tmpdir(other, sizeof(other)), 0);
	snprintf(tmpdst, sizeof(tmpdst), "%s/dst", other);
	err[0] = '\0';
	ret = kfio_fs_clone(src, tmpdst, err, sizeof(err));
	assert_int_equal(ret, -EXDEV);
	assert_true(err[0] != '\0');

	/* On a filesystem without reflink (ext4 on a loop device). */
	{
		struct fs_fix e;
		char esrc[TU_PATH_MAX + 32], edst[TU_PATH_MAX + 32];

		memset(&e, 0, sizeof(e));
		fs_make(&e, 64 * MIB, "ext4", "mkfs.ext4 -q -F");
		snprintf(esrc, sizeof(esrc), "%s/src", e.mnt);
		snprintf(edst, sizeof(edst), "%s/dst", e.mnt);
		write_file(esrc, 0, 65536, SEED_SRC);
		err[0] = '\0';
		ret = kfio_fs_clone(esrc, edst, err, sizeof(err));
		tu_umount(e.mnt);
		tu_loop_detach(&e.loop);
		tu_tmpfile_release(e.file);
		if (ret != -EOPNOTSUPP && ret != -EINVAL)
			fail_msg("kfio_fs_clone on ext4: %d, want -EOPNOTSUPP (%s)", ret, err);
		assert_true(err[0] != '\0');
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_freeze_errors),
		cmocka_unit_test_setup_teardown(test_freeze_thaw_ext4, ext4_setup, fs_teardown),
		cmocka_unit_test_setup_teardown(test_open_excl_mounted, ext4_setup, fs_teardown),
		cmocka_unit_test_setup_teardown(test_clone_xfs, xfs_setup, fs_teardown),
		cmocka_unit_test_setup_teardown(test_clone_errors, xfs_setup, fs_teardown),
	};

	tu_require_root();
	tu_require_loop();
	tu_require_prog("mkfs.ext4");
	tu_require_prog("mkfs.xfs");
	tu_require_fs("ext4");
	tu_require_fs("xfs");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
