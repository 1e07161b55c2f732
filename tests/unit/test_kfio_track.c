// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the write tracker (kmod-free-io/track.c and bpf/track.bpf.c) on
 * loop devices with direct I/O. Every check compares the harvested pending
 * bitmap with the exact set of 4 KiB pages the test wrote (the truth): a page
 * missing is a write the standby would never get, an extra page is a tracker
 * that marks what it should not.
 *
 *   - write patterns through a separate fd: O_DIRECT writes of 512 B .. 4 MiB
 *     (512-byte ones not aligned to 4 KiB too), O_DSYNC and fsynced buffered
 *     writes, BLKDISCARD, BLKZEROOUT, fallocate punch-hole / zero-range on the
 *     device, io_uring writes at queue depth 32; after each: harvest == truth,
 *     settle empties pending, a second harvest finds nothing;
 *   - a partition (msdos or GPT by sfdisk, msdos by hand) of a loop device with
 *     partscan: only partition 2's writes mark, at partition-relative pages;
 *   - reads mark nothing;
 *   - survival: the pins outlive the process's tracker (free, reopen, a child
 *     that dies between harvest and settle);
 *   - losses: ATTACHED owed until a full-scan settle, across reopen; new
 *     instances on remove and on a device of another size or identity;
 *   - refusals: a regular file, invalid names;
 *   - a writer racing harvests: every write that returned before a harvest
 *     began is in that harvest or an earlier one.
 *
 * Pins live under a private root, /sys/fs/bpf/pvrepl-test-<pid>, removed at
 * exit (also on failure and on a fatal signal). Needs root, loop devices and
 * BPF; skips (exit 77) without them. PVREPL_TEST_SEED=<n> replays a seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/blkpg.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define MIB	     (1024ull * 1024ull)
#define PAGE	     ((uint64_t)KFIO_TRACK_PAGE_BYTES)
#define SECTOR	     512ull
#define S(n)	     ((uint64_t)(n)*SECTOR)
#define P(n)	     ((uint64_t)(n)*PAGE)
#define BPFFS	     "/sys/fs/bpf"
#define VOL_BYTES    (64 * MIB)
#define VOL_PAGES    (VOL_BYTES / PAGE)
#define BITMAP_WORDS (VOL_PAGES / 64) /* big enough for every volume here */
#define IO_BYTES_MAX (4 * MIB)
#define SEED_DATA    0xda7a0001ull

#define URING_DEPTH  32u
#define URING_WRITES 1024u
#define PAT_IOS_MAX  4u
#define HELD_MAX     8u
#define FDS_MAX	     8u
#define REPORT_MAX   8u /* pages listed in a failure message */

#define RACE_MS		  2000u
#define RACE_WRITES_MAX	  200000u
#define RACE_HARVEST_US	  3000u
#define RACE_WRITES_MIN	  200u /* fewer: the machine is too slow to race */
#define RACE_HARVESTS_MIN 20u
#define NODE_WAIT_MS	  3000u
#define PART1_START	  2048u
#define PART1_SECTORS	  32768u
#define PART2_START	  36865u /* odd: its pages are not the disk's pages */
#define PART2_SECTORS	  65536u
#define PART_DISK_SECTORS (VOL_BYTES / SECTOR)

static uint64_t g_seed;
static char g_pin_root[64];
static bool g_mounted_bpffs; /* this process mounted BPFFS: unmounted at the end */
static pid_t g_owner;

/* The 64 MiB loop device every test shares, and fds onto it for the writes. */
static struct {
	struct tu_backing b;
	struct kfio_dev dev; /* what the trackers are opened with */
	int fd_direct;	     /* O_DIRECT */
	int fd_buffered;
	int fd_dsync; /* O_DSYNC, buffered */
	void *buf;    /* IO_BYTES_MAX, aligned for O_DIRECT */
} G = { .fd_direct = -1, .fd_buffered = -1, .fd_dsync = -1 };

/* What one test made beyond the group's device; undone by its teardown. */
static struct {
	struct kfio_track *held[HELD_MAX];
	int fds[FDS_MAX];
	pid_t child;
	struct tu_backing extra;
	bool extra_made;
	struct kfio_dev extra_dev;
	bool extra_dev_open;
	struct tu_loop part_loop;
	char part_file[TU_PATH_MAX];
} T;

/* -------------------------------------------------------------- pin root */

static void pins_remove_dir(const char *dir)
{
	char p[TU_PATH_MAX + 256];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (unlink(p) && errno == EISDIR)
			rmdir(p);
	}
	closedir(d);
	rmdir(dir);
}

static int pins_remove_one(const char *name, void *ctx)
{
	char err[KFIO_ERR_MSG_MAX];

	(void)ctx;
	kfio_track_remove(g_pin_root, name, err, sizeof(err));
	return 0;
}

/* Removes every tracker under the private root, and what the library would not
 * (a stray "<name>@new"), leaving the root itself. Async-signal-safe enough for
 * a dying process: no allocation beyond opendir. */
static void pins_clear(void)
{
	char err[KFIO_ERR_MSG_MAX], p[TU_PATH_MAX];
	struct dirent *e;
	DIR *d;

	if (!g_pin_root[0])
		return;
	kfio_track_list(g_pin_root, pins_remove_one, NULL, err, sizeof(err));
	d = opendir(g_pin_root);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", g_pin_root, e->d_name);
		pins_remove_dir(p);
	}
	closedir(d);
}

static void pins_cleanup(void)
{
	if (!g_pin_root[0] || getpid() != g_owner)
		return;
	pins_clear();
	rmdir(g_pin_root);
	g_pin_root[0] = '\0';
	if (g_mounted_bpffs && !umount(BPFFS))
		g_mounted_bpffs = false;
}

static const int fatal_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT };
static struct sigaction fatal_old[ARRAY_SIZE(fatal_sigs)];

static void pins_on_signal(int sig)
{
	pins_cleanup();
	for (unsigned i = 0; i < ARRAY_SIZE(fatal_sigs); i++)
		if (fatal_sigs[i] == sig)
			sigaction(sig, &fatal_old[i], NULL); /* testutil's, or the default */
	raise(sig);
}

/* Chains in front of testutil's handlers, which exist once it made something. */
static void pins_hook_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pins_on_signal;
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < ARRAY_SIZE(fatal_sigs); i++)
		sigaction(fatal_sigs[i], &sa, &fatal_old[i]);
}

/* bpffs at /sys/fs/bpf (mounted if absent) and the private root under it. */
static void pins_setup(void)
{
	struct statfs sf;

	if (statfs(BPFFS, &sf) || (unsigned long)sf.f_type != BPF_FS_MAGIC) {
		if (mount("bpf", BPFFS, "bpf", 0, "mode=0700"))
			tu_skip("no bpffs at %s and mounting one failed: %s", BPFFS,
				strerror(errno));
		g_mounted_bpffs = true;
	}
	g_owner = getpid();
	/* bpffs refuses names with a dot. */
	snprintf(g_pin_root, sizeof(g_pin_root), "%s/pvrepl-test-%d", BPFFS, (int)getpid());
	if (mkdir(g_pin_root, 0700)) {
		fprintf(stderr, "cannot create %s: %s\n", g_pin_root, strerror(errno));
		g_pin_root[0] = '\0';
		exit(1);
	}
	atexit(pins_cleanup);
}

/* ------------------------------------------------------------- bitmaps */

static bool bit_get(const uint64_t *bm, uint64_t p)
{
	return (bm[p / 64] >> (p % 64)) & 1;
}

static void bit_set(uint64_t *bm, uint64_t p)
{
	bm[p / 64] |= 1ull << (p % 64);
}

/* Marks the pages [offset, offset + len) touches. */
static void truth_add(uint64_t *truth, uint64_t offset, uint64_t len)
{
	for (uint64_t p = offset / PAGE; p <= (offset + len - 1) / PAGE; p++)
		bit_set(truth, p);
}

static uint64_t bm_count(const uint64_t *bm, uint64_t pages)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (pages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* Appends page p to a short list for a failure message. */
static void list_add(char *out, size_t len, uint64_t *count, uint64_t p)
{
	size_t n = strlen(out);

	if (++*count <= REPORT_MAX)
		snprintf(out + n, len - n, "%s%llu", n ? " " : "", (unsigned long long)p);
	else if (*count == REPORT_MAX + 1)
		snprintf(out + n, len - n, " ...");
}

/* Fails, naming the missing and extra pages, unless got == want over every bit
 * of the bitmap's words (bits past `pages` must be zero too). */
static void expect_bitmap(const uint64_t *got, const uint64_t *want, uint64_t pages,
			  const char *what)
{
	char missing[256] = "", extra[256] = "";
	uint64_t n_missing = 0, n_extra = 0;

	for (uint64_t p = 0; p < (pages + 63) / 64 * 64; p++) {
		bool g = bit_get(got, p), w = p < pages && bit_get(want, p);

		if (w && !g)
			list_add(missing, sizeof(missing), &n_missing, p);
		else if (g && !w)
			list_add(extra, sizeof(extra), &n_extra, p);
	}
	if (n_missing || n_extra)
		fail_msg(
			"%s: marked pages differ from the pages written: %llu missing [%s], %llu extra [%s] (seed 0x%llx)",
			what, (unsigned long long)n_missing, missing, (unsigned long long)n_extra,
			extra, (unsigned long long)g_seed);
}

static const uint64_t zero_bitmap[BITMAP_WORDS];

/* ---------------------------------------------------------- the tracker */

static void held_add(struct kfio_track *t)
{
	for (unsigned i = 0; i < HELD_MAX; i++) {
		if (!T.held[i]) {
			T.held[i] = t;
			return;
		}
	}
	fail_msg("more than %u trackers open in one test", HELD_MAX);
}

static void trk_free(struct kfio_track *t)
{
	for (unsigned i = 0; i < HELD_MAX; i++)
		if (T.held[i] == t)
			T.held[i] = NULL;
	kfio_track_free(t);
}

static struct kfio_track *trk_open(const struct kfio_dev *dev, const char *name,
				   struct kfio_track_info *info)
{
	char err[KFIO_ERR_MSG_MAX] = "";
	struct kfio_track *t = NULL;
	int rc = kfio_track_open(&t, dev, g_pin_root, name, err, sizeof(err));

	if (rc)
		fail_msg("kfio_track_open %s on %s: %d (%s)", name, dev->path, rc, err);
	assert_non_null(t);
	held_add(t);
	if (info)
		kfio_track_get_info(t, info);
	return t;
}

static void trk_remove(const char *name)
{
	char err[KFIO_ERR_MSG_MAX] = "";
	int rc = kfio_track_remove(g_pin_root, name, err, sizeof(err));

	if (rc)
		fail_msg("kfio_track_remove %s: %d (%s)", name, rc, err);
}

static void trk_harvest(struct kfio_track *t, struct kfio_track_harvest *h, const char *what)
{
	char err[KFIO_ERR_MSG_MAX] = "";
	int rc = kfio_track_harvest(t, h, err, sizeof(err));

	if (rc)
		fail_msg("%s: kfio_track_harvest: %d (%s)", what, rc, err);
}

/* Settles with a tag of its own, checked kept in the info; returns the tag. */
static uint64_t trk_settle(struct kfio_track *t, bool full_scan, const char *what)
{
	static uint64_t tag = 1000;
	char err[KFIO_ERR_MSG_MAX] = "";
	struct kfio_track_info info;
	int rc = kfio_track_settle(t, full_scan, ++tag, err, sizeof(err));

	if (rc)
		fail_msg("%s: kfio_track_settle: %d (%s)", what, rc, err);
	kfio_track_get_info(t, &info);
	assert_int_equal(info.settled_tag, tag);
	return tag;
}

static void expect_no_loss(const struct kfio_track_harvest *h, const char *what)
{
	if (h->loss)
		fail_msg("%s: unexpected loss 0x%x: %s", what, h->loss, h->reason);
}

/* A new instance with nothing pending and nothing owed. */
static struct kfio_track *trk_fresh(const struct kfio_dev *dev, const char *name,
				    struct kfio_track_info *info)
{
	struct kfio_track_harvest h;
	struct kfio_track *t;

	trk_remove(name);
	t = trk_open(dev, name, info);
	if (info)
		assert_true(info->attached_now);
	trk_harvest(t, &h, "fresh tracker");
	assert_true(h.loss & KFIO_TRACK_LOSS_ATTACHED);
	assert_int_equal(h.pending_pages, 0);
	trk_settle(t, true, "fresh tracker");
	return t;
}

/*
 * One epoch: harvest, pending must be exactly truth (and say so in its counts),
 * settle, pending is empty, and a second harvest finds nothing more.
 */
static void expect_epoch(struct kfio_track *t, const uint64_t *truth, uint64_t pages,
			 const char *what)
{
	struct kfio_track_harvest h;
	uint64_t want = bm_count(truth, pages);

	trk_harvest(t, &h, what);
	expect_no_loss(&h, what);
	expect_bitmap(kfio_track_pending(t), truth, pages, what);
	assert_int_equal(h.pending_pages, want);
	assert_int_equal(h.harvested_pages, want);
	trk_settle(t, false, what);
	expect_bitmap(kfio_track_pending(t), zero_bitmap, pages, what);
	trk_harvest(t, &h, what);
	expect_no_loss(&h, what);
	assert_int_equal(h.pending_pages, 0);
	assert_int_equal(h.harvested_pages, 0);
	expect_bitmap(kfio_track_pending(t), zero_bitmap, pages, what);
}

/* ------------------------------------------------------------------- I/O */

static int fd_hold(int fd)
{
	for (unsigned i = 0; i < FDS_MAX; i++) {
		if (T.fds[i] < 0) {
			T.fds[i] = fd;
			return fd;
		}
	}
	fail_msg("more than %u fds held in one test", FDS_MAX);
	return -1;
}

static int open_or_fail(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	return fd_hold(fd);
}

static void fd_drop(int fd)
{
	for (unsigned i = 0; i < FDS_MAX; i++)
		if (T.fds[i] == fd)
			T.fds[i] = -1;
	close(fd);
}

static void write_at(int fd, uint64_t offset, uint64_t len, const char *what)
{
	ssize_t n;

	assert_true(len <= IO_BYTES_MAX);
	tu_pattern_fill(G.buf, len, offset, SEED_DATA ^ g_seed);
	n = pwrite(fd, G.buf, len, (off_t)offset);
	if (n != (ssize_t)len)
		fail_msg("%s: pwrite %llu bytes at %llu: %s", what, (unsigned long long)len,
			 (unsigned long long)offset, n < 0 ? strerror(errno) : "short write");
}

static void read_at(int fd, uint64_t offset, uint64_t len, const char *what)
{
	ssize_t n;

	assert_true(len <= IO_BYTES_MAX);
	n = pread(fd, G.buf, len, (off_t)offset);
	if (n != (ssize_t)len)
		fail_msg("%s: pread %llu bytes at %llu: %s", what, (unsigned long long)len,
			 (unsigned long long)offset, n < 0 ? strerror(errno) : "short read");
}

/* n requests of one page each at pages[i], URING_DEPTH in flight. */
static void uring_pages(int fd, bool write, const uint64_t *pages, unsigned n, const char *what)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	unsigned queued = 0, done = 0;
	int rc = io_uring_queue_init(URING_DEPTH, &ring, 0);

	if (rc)
		fail_msg("%s: io_uring_queue_init: %s", what, strerror(-rc));
	tu_pattern_fill(G.buf, PAGE, 0, SEED_DATA);
	while (done < n) {
		while (queued < n && queued - done < URING_DEPTH) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			if (!sqe)
				break;
			if (write)
				io_uring_prep_write(sqe, fd, G.buf, PAGE, pages[queued] * PAGE);
			else
				io_uring_prep_read(sqe, fd, G.buf, PAGE, pages[queued] * PAGE);
			sqe->user_data = queued++;
		}
		rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0) {
			io_uring_queue_exit(&ring);
			fail_msg("%s: io_uring_submit_and_wait: %s", what, strerror(-rc));
		}
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			int res = cqe->res;

			io_uring_cqe_seen(&ring, cqe);
			if (res != (int)PAGE) {
				io_uring_queue_exit(&ring);
				fail_msg("%s: io_uring request %u: %d (%s)", what, done, res,
					 res < 0 ? strerror(-res) : "short");
			}
			done++;
		}
	}
	io_uring_queue_exit(&ring);
}

/* ------------------------------------------------------------- fixtures */

static int group_setup(void **state)
{
	int rc;

	(void)state;
	rc = tu_backing_create(&G.b, TU_BACKING_LOOP512, VOL_BYTES, 0);
	if (rc)
		tu_skip("cannot make a loop device: %s", strerror(-rc));
	pins_hook_signals(); /* testutil's handlers exist now */
	if (!G.b.loop.direct)
		fail_msg("the kernel turned direct I/O off on %s", G.b.path);
	rc = kfio_dev_open(&G.dev, G.b.path, 0);
	if (rc)
		fail_msg("kfio_dev_open %s: %d (%s)", G.b.path, rc, G.dev.err_msg);
	G.fd_direct = open(G.b.path, O_RDWR | O_DIRECT | O_CLOEXEC);
	G.fd_buffered = open(G.b.path, O_RDWR | O_CLOEXEC);
	G.fd_dsync = open(G.b.path, O_RDWR | O_DSYNC | O_CLOEXEC);
	assert_true(G.fd_direct >= 0 && G.fd_buffered >= 0 && G.fd_dsync >= 0);
	G.buf = kfio_buf_alloc(IO_BYTES_MAX);
	assert_non_null(G.buf);

	/* The one place a missing permission is a skip, not a failure. */
	{
		char err[KFIO_ERR_MSG_MAX] = "";
		struct kfio_track *t = NULL;

		rc = kfio_track_open(&t, &G.dev, g_pin_root, "probe", err, sizeof(err));
		if (rc == -EPERM)
			tu_skip("opening a tracker is not permitted here (-EPERM): %s", err);
		if (rc)
			fail_msg("kfio_track_open probe on %s: %d (%s)", G.b.path, rc, err);
		kfio_track_free(t);
		trk_remove("probe");
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	pins_cleanup();
	if (G.buf)
		kfio_buf_free(G.buf, IO_BYTES_MAX);
	G.buf = NULL;
	if (G.fd_direct >= 0)
		close(G.fd_direct);
	if (G.fd_buffered >= 0)
		close(G.fd_buffered);
	if (G.fd_dsync >= 0)
		close(G.fd_dsync);
	G.fd_direct = G.fd_buffered = G.fd_dsync = -1;
	if (G.dev.fd >= 0)
		kfio_dev_close(&G.dev);
	tu_backing_destroy(&G.b);
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	memset(&T, 0, sizeof(T));
	for (unsigned i = 0; i < FDS_MAX; i++)
		T.fds[i] = -1;
	T.child = -1;
	T.extra.loop.fd = -1;
	T.part_loop.fd = -1;
	T.extra_dev.fd = -1;
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	if (T.child > 0) {
		kill(T.child, SIGKILL);
		waitpid(T.child, NULL, 0);
	}
	for (unsigned i = 0; i < HELD_MAX; i++)
		kfio_track_free(T.held[i]);
	for (unsigned i = 0; i < FDS_MAX; i++)
		if (T.fds[i] >= 0)
			close(T.fds[i]);
	/* Nothing dirty may reach the next test's tracker. */
	fsync(G.fd_buffered);
	fsync(G.fd_dsync);
	pins_clear();
	if (T.extra_dev_open)
		kfio_dev_close(&T.extra_dev);
	if (T.extra_made)
		tu_backing_destroy(&T.extra);
	tu_loop_detach(&T.part_loop);
	if (T.part_file[0])
		tu_tmpfile_release(T.part_file);
	memset(&T, 0, sizeof(T));
	return 0;
}

/* ------------------------------------------------------ 1: write patterns */

enum pat_op {
	PAT_DIRECT,	/* pwrite on the O_DIRECT fd */
	PAT_DSYNC,	/* pwrite on the O_DSYNC buffered fd */
	PAT_FSYNC,	/* pwrite on the buffered fd, then fsync */
	PAT_DISCARD,	/* BLKDISCARD */
	PAT_ZEROOUT,	/* BLKZEROOUT */
	PAT_PUNCH,	/* fallocate PUNCH_HOLE | KEEP_SIZE */
	PAT_ZERO_RANGE, /* fallocate ZERO_RANGE */
	PAT_URING,	/* io_uring writes of random pages at depth 32 */
};

struct pat_io {
	uint64_t offset, len;
};

struct pat_row {
	const char *name;
	enum pat_op op;
	unsigned n;
	struct pat_io io[PAT_IOS_MAX];
};

static const struct pat_row pat_rows[] = {
	{ "direct 512 B at sector 9 marks page 1 only", PAT_DIRECT, 1, { { S(9), 512 } } },
	{ "direct 512 B at the first and last sectors of pages 0 and 1",
	  PAT_DIRECT,
	  4,
	  { { S(0), 512 }, { S(7), 512 }, { S(8), 512 }, { S(15), 512 } } },
	{ "direct 1 KiB at sector 7 spans pages 0 and 1", PAT_DIRECT, 1, { { S(7), 1024 } } },
	{ "direct 512 B in the device's last sector", PAT_DIRECT, 1, { { VOL_BYTES - 512, 512 } } },
	{ "direct 4 KiB at pages 0, 100, 4095 and the last",
	  PAT_DIRECT,
	  4,
	  { { P(0), 4096 }, { P(100), 4096 }, { P(4095), 4096 }, { VOL_BYTES - 4096, 4096 } } },
	{ "direct 4 KiB at sector 1 spans pages 0 and 1", PAT_DIRECT, 1, { { S(1), 4096 } } },
	{ "direct 64 KiB: aligned, across a bitmap word, 3 sectors off a page",
	  PAT_DIRECT,
	  3,
	  { { P(48), 65536 }, { P(120), 65536 }, { S(8 * 200 + 3), 65536 } } },
	{ "direct 4 MiB: at 0, at 8 MiB + 5 pages, the last 4 MiB",
	  PAT_DIRECT,
	  3,
	  { { 0, 4 * MIB }, { 8 * MIB + P(5), 4 * MIB }, { VOL_BYTES - 4 * MIB, 4 * MIB } } },
	{ "O_DSYNC buffered 4 KiB and 8 KiB",
	  PAT_DSYNC,
	  3,
	  { { P(3), 4096 }, { P(64), 4096 }, { P(1000), 8192 } } },
	{ "O_DSYNC buffered 512 B inside page 7", PAT_DSYNC, 1, { { P(7) + 512, 512 } } },
	{ "buffered then fsync, 100 B and 200 B across a page boundary",
	  PAT_FSYNC,
	  4,
	  { { P(10), 4096 }, { P(300), 65536 }, { P(2000) + 100, 100 }, { P(5121) - 96, 200 } } },
	{ "BLKDISCARD 256 KiB and 14 sectors from sector 9",
	  PAT_DISCARD,
	  2,
	  { { MIB, 256 * 1024 }, { S(9), S(14) } } },
	{ "BLKZEROOUT 128 KiB and 2 sectors from sector 3",
	  PAT_ZEROOUT,
	  2,
	  { { 2 * MIB, 128 * 1024 }, { S(3), S(2) } } },
	{ "fallocate punch hole 64 KiB and sector 17",
	  PAT_PUNCH,
	  2,
	  { { 3 * MIB, 65536 }, { S(17), 512 } } },
	{ "fallocate zero range 64 KiB and 2 sectors from sector 25",
	  PAT_ZERO_RANGE,
	  2,
	  { { 4 * MIB, 65536 }, { S(25), S(2) } } },
	{ "io_uring writes of random pages at depth 32", PAT_URING, 0, { { 0, 0 } } },
};

/* Runs one row's I/O and returns false when the device does not support it. */
static bool pat_run(const struct pat_row *r, uint64_t *truth)
{
	for (unsigned i = 0; i < r->n; i++) {
		const struct pat_io *io = &r->io[i];
		uint64_t range[2] = { io->offset, io->len };
		int rc = 0;

		switch (r->op) {
		case PAT_DIRECT:
			write_at(G.fd_direct, io->offset, io->len, r->name);
			break;
		case PAT_DSYNC:
			write_at(G.fd_dsync, io->offset, io->len, r->name);
			break;
		case PAT_FSYNC:
			write_at(G.fd_buffered, io->offset, io->len, r->name);
			break;
		case PAT_DISCARD:
			rc = ioctl(G.fd_direct, BLKDISCARD, range);
			break;
		case PAT_ZEROOUT:
			rc = ioctl(G.fd_direct, BLKZEROOUT, range);
			break;
		case PAT_PUNCH:
			rc = fallocate(G.fd_direct, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)io->offset, (off_t)io->len);
			break;
		case PAT_ZERO_RANGE:
			rc = fallocate(G.fd_direct, FALLOC_FL_ZERO_RANGE, (off_t)io->offset,
				       (off_t)io->len);
			break;
		case PAT_URING:
			break;
		}
		if (rc && errno == EOPNOTSUPP &&
		    (r->op == PAT_PUNCH || r->op == PAT_ZERO_RANGE || r->op == PAT_DISCARD)) {
			print_message("row skipped: %s: %s on %s\n", r->name, strerror(errno),
				      G.b.path);
			return false;
		}
		if (rc)
			fail_msg("%s: at %llu len %llu: %s", r->name,
				 (unsigned long long)io->offset, (unsigned long long)io->len,
				 strerror(errno));
		truth_add(truth, io->offset, io->len);
	}
	if (r->op == PAT_FSYNC && fsync(G.fd_buffered))
		fail_msg("%s: fsync: %s", r->name, strerror(errno));
	if (r->op == PAT_URING) {
		static uint64_t pages[URING_WRITES];
		uint64_t rnd = g_seed ^ 0x0b1a0001ull;

		for (unsigned i = 0; i < URING_WRITES; i++) {
			pages[i] = tu_rand_below(&rnd, VOL_PAGES);
			bit_set(truth, pages[i]);
		}
		uring_pages(G.fd_direct, true, pages, URING_WRITES, r->name);
	}
	return true;
}

static void test_write_patterns(void **state)
{
	struct kfio_track *t;
	struct kfio_track_info info;

	(void)state;
	t = trk_fresh(&G.dev, "patterns", &info);
	assert_int_equal(info.pages, VOL_PAGES);
	assert_int_equal(info.first_sector, 0);
	assert_int_equal(info.nr_sectors, VOL_BYTES / SECTOR);
	for (unsigned i = 0; i < ARRAY_SIZE(pat_rows); i++) {
		const struct pat_row *r = &pat_rows[i];
		uint64_t truth[BITMAP_WORDS] = { 0 };

		if (!pat_run(r, truth)) {
			/* Nothing was done; nothing may be marked. */
			expect_epoch(t, zero_bitmap, VOL_PAGES, r->name);
			continue;
		}
		/* Live, before the harvest: each range is marked, an untouched page not. */
		for (unsigned k = 0; k < r->n; k++)
			if (!kfio_track_live_any(t, r->io[k].offset, r->io[k].len))
				fail_msg("%s: kfio_track_live_any(%llu, %llu) is false", r->name,
					 (unsigned long long)r->io[k].offset,
					 (unsigned long long)r->io[k].len);
		for (uint64_t p = 0; p < VOL_PAGES; p++) {
			if (!bit_get(truth, p)) {
				if (kfio_track_live_any(t, P(p), PAGE))
					fail_msg("%s: page %llu is live, never written", r->name,
						 (unsigned long long)p);
				break;
			}
		}
		expect_epoch(t, truth, VOL_PAGES, r->name);
	}
}

/* ------------------------------------------------------------ 2: partition */

enum part_how {
	PART_SFDISK_DOS,
	PART_SFDISK_GPT,
	PART_BY_HAND_DOS, /* a plain MBR written here: runs where sfdisk is missing */
};

struct part_row {
	const char *name;
	enum part_how how;
};

static const struct part_row part_rows[] = {
	{ "msdos table by sfdisk", PART_SFDISK_DOS },
	{ "GPT by sfdisk", PART_SFDISK_GPT },
	{ "msdos table written by hand", PART_BY_HAND_DOS },
};

static bool have_prog(const char *prog)
{
	static const char *const dirs[] = { "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
					    "/usr/bin",	       "/sbin",		 "/bin" };
	char p[256];

	for (unsigned i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", dirs[i], prog);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void mbr_write(const char *file)
{
	unsigned char mbr[512];
	const uint32_t start[2] = { PART1_START, PART2_START };
	const uint32_t len[2] = { PART1_SECTORS, PART2_SECTORS };
	int fd = open(file, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	memset(mbr, 0, sizeof(mbr));
	put_le32(mbr + 440, 0x70767231u); /* disk signature */
	for (unsigned i = 0; i < 2; i++) {
		unsigned char *e = mbr + 446 + 16 * i;

		/* CHS fields saturated: LBA only. */
		e[1] = 0xfe, e[2] = 0xff, e[3] = 0xff;
		e[4] = 0x83; /* Linux */
		e[5] = 0xfe, e[6] = 0xff, e[7] = 0xff;
		put_le32(e + 8, start[i]);
		put_le32(e + 12, len[i]);
	}
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	assert_int_equal(pwrite(fd, mbr, sizeof(mbr), 0), (ssize_t)sizeof(mbr));
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* Turns partition scanning on for an attached loop device (the kernel rescans). */
static void loop_partscan(struct tu_loop *lp)
{
	struct loop_info64 li;

	memset(&li, 0, sizeof(li));
	if (ioctl(lp->fd, LOOP_GET_STATUS64, &li))
		fail_msg("LOOP_GET_STATUS64 %s: %s", lp->dev, strerror(errno));
	li.lo_flags |= LO_FLAGS_PARTSCAN;
	if (ioctl(lp->fd, LOOP_SET_STATUS64, &li))
		fail_msg("LOOP_SET_STATUS64 partscan %s: %s", lp->dev, strerror(errno));
}

static bool sysfs_has_partition(const struct tu_loop *lp, unsigned pno)
{
	const char *n = strrchr(lp->dev, '/') + 1;
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "/sys/block/%s/%sp%u", n, n, pno);
	return stat(p, &st) == 0;
}

/* What partx -a does: tells the kernel of a partition it did not find itself. */
static void blkpg_add(const struct tu_loop *lp, int pno, uint64_t start, uint64_t sectors)
{
	struct blkpg_partition part;
	struct blkpg_ioctl_arg arg;

	memset(&part, 0, sizeof(part));
	part.start = (long long)S(start);
	part.length = (long long)S(sectors);
	part.pno = pno;
	memset(&arg, 0, sizeof(arg));
	arg.op = BLKPG_ADD_PARTITION;
	arg.datalen = sizeof(part);
	arg.data = &part;
	if (ioctl(lp->fd, BLKPG, &arg))
		fail_msg("BLKPG_ADD_PARTITION %d on %s: %s", pno, lp->dev, strerror(errno));
}

static void wait_node(const char *path)
{
	struct stat st;

	for (unsigned ms = 0; ms < NODE_WAIT_MS; ms += 10) {
		if (stat(path, &st) == 0 && S_ISBLK(st.st_mode))
			return;
		usleep(10000);
	}
	fail_msg("%s did not appear within %u ms of the partition scan", path, NODE_WAIT_MS);
}

static void part_row_run(const struct part_row *r)
{
	char p1[80], p2[80];
	struct kfio_track *t;
	struct kfio_track_info info;
	struct stat disk_st;
	uint64_t truth[BITMAP_WORDS] = { 0 };
	const uint64_t part_pages = (uint64_t)PART2_SECTORS * SECTOR / PAGE;
	int fd_disk, fd_p1, fd_p2, rc;

	assert_int_equal(tu_tmpfile(T.part_file, sizeof(T.part_file), VOL_BYTES, 0), 0);
	if (r->how == PART_BY_HAND_DOS) {
		mbr_write(T.part_file);
	} else {
		rc = tu_run(
			"printf 'label: %s\\nstart=%u, size=%u, type=L\\nstart=%u, size=%u, type=L\\n' | sfdisk -q --no-reread --no-tell-kernel %s",
			r->how == PART_SFDISK_GPT ? "gpt" : "dos", PART1_START, PART1_SECTORS,
			PART2_START, PART2_SECTORS, T.part_file);
		if (rc)
			fail_msg("%s: sfdisk failed: %d", r->name, rc);
	}
	assert_int_equal(tu_loop_attach(&T.part_loop, T.part_file, 512, false), 0);
	loop_partscan(&T.part_loop);
	/* The scan runs inside the ioctl. A kernel built without this table's
	 * parser (CONFIG_MSDOS_PARTITION, CONFIG_EFI_PARTITION) finds nothing: add
	 * the same two partitions through BLKPG, as partx would. */
	if (!sysfs_has_partition(&T.part_loop, 1) || !sysfs_has_partition(&T.part_loop, 2)) {
		print_message(
			"%s: the kernel found no partitions on %s (no parser for the table?); adding them with BLKPG\n",
			r->name, T.part_loop.dev);
		if (!sysfs_has_partition(&T.part_loop, 1))
			blkpg_add(&T.part_loop, 1, PART1_START, PART1_SECTORS);
		if (!sysfs_has_partition(&T.part_loop, 2))
			blkpg_add(&T.part_loop, 2, PART2_START, PART2_SECTORS);
	}
	snprintf(p1, sizeof(p1), "%sp1", T.part_loop.dev);
	snprintf(p2, sizeof(p2), "%sp2", T.part_loop.dev);
	wait_node(p1);
	wait_node(p2);
	assert_int_equal(stat(T.part_loop.dev, &disk_st), 0);
	fd_disk = open_or_fail(T.part_loop.dev, O_RDWR | O_DIRECT);
	fd_p1 = open_or_fail(p1, O_RDWR | O_DIRECT);
	fd_p2 = open_or_fail(p2, O_RDWR | O_DIRECT);

	rc = kfio_dev_open(&T.extra_dev, p2, 0);
	if (rc)
		fail_msg("%s: kfio_dev_open %s: %d (%s)", r->name, p2, rc, T.extra_dev.err_msg);
	T.extra_dev_open = true;
	assert_int_equal(T.extra_dev.size_bytes, (uint64_t)PART2_SECTORS * SECTOR);
	t = trk_fresh(&T.extra_dev, "part2", &info);
	assert_int_equal(info.disk_major, major(disk_st.st_rdev));
	assert_int_equal(info.disk_minor, minor(disk_st.st_rdev));
	assert_int_equal(info.first_sector, PART2_START);
	assert_int_equal(info.nr_sectors, PART2_SECTORS);
	assert_int_equal(info.pages, part_pages);

	/* Partition 1 is the same disk, outside the range: nothing. */
	write_at(fd_p1, 0, 4096, r->name);
	write_at(fd_p1, 1 * MIB, 65536, r->name);
	write_at(fd_p1, (uint64_t)PART1_SECTORS * SECTOR - 4096, 4096, r->name);
	expect_epoch(t, zero_bitmap, part_pages, "writes to partition 1");

	/* Partition 2 at offset X marks page X / 4096 of the partition. */
	{
		const struct pat_io ios[] = {
			{ 0, 4096 },
			{ S(9), 512 },
			{ P(100), 4096 },
			{ P(500), 65536 },
			{ 8 * MIB, 4 * MIB },
			{ S(8 * 300 + 7), 1024 },
			{ P(part_pages - 1), 4096 },
		};

		for (unsigned i = 0; i < ARRAY_SIZE(ios); i++) {
			write_at(fd_p2, ios[i].offset, ios[i].len, r->name);
			truth_add(truth, ios[i].offset, ios[i].len);
		}
		expect_epoch(t, truth, part_pages, "writes to partition 2");
	}

	/* Through the whole disk: only the part inside partition 2 marks, at the
	 * partition's pages. */
	memset(truth, 0, sizeof(truth));
	write_at(fd_disk, S(PART2_START - 5), S(11), r->name); /* its sectors 0..5 */
	bit_set(truth, 0);
	write_at(fd_disk, S(PART2_START + 8 * 10), 4096, r->name);
	bit_set(truth, 10);
	write_at(fd_disk, S(PART2_START + PART2_SECTORS - 3), S(8), r->name); /* last 3 */
	bit_set(truth, part_pages - 1);
	write_at(fd_disk, S(PART2_START + PART2_SECTORS + 8), 65536, r->name); /* after */
	write_at(fd_disk, S(PART1_START + 64), 65536, r->name);		       /* in p1 */
	expect_epoch(t, truth, part_pages, "writes to the whole disk");

	trk_free(t);
	trk_remove("part2");
	kfio_dev_close(&T.extra_dev);
	T.extra_dev_open = false;
	fd_drop(fd_p2);
	fd_drop(fd_p1);
	fd_drop(fd_disk);
	tu_loop_detach(&T.part_loop);
	tu_tmpfile_release(T.part_file);
	T.part_file[0] = '\0';
}

static void test_partition(void **state)
{
	bool sfdisk = have_prog("sfdisk");

	(void)state;
	for (unsigned i = 0; i < ARRAY_SIZE(part_rows); i++) {
		if (part_rows[i].how != PART_BY_HAND_DOS && !sfdisk) {
			print_message("row skipped: %s: sfdisk not found\n", part_rows[i].name);
			continue;
		}
		part_row_run(&part_rows[i]);
	}
}

/* ---------------------------------------------------------------- 3: reads */

static void test_reads_mark_nothing(void **state)
{
	struct kfio_track *t;
	struct kfio_track_harvest h0, h;
	static uint64_t pages[URING_WRITES];
	uint64_t rnd = g_seed ^ 0x4ead0001ull;

	(void)state;
	t = trk_fresh(&G.dev, "reads", NULL);
	trk_harvest(t, &h0, "before the reads");
	read_at(G.fd_direct, S(9), 512, "direct 512 B read");
	read_at(G.fd_direct, P(100), 4096, "direct 4 KiB read");
	read_at(G.fd_direct, 8 * MIB, 4 * MIB, "direct 4 MiB read");
	/* Buffered, from the device rather than the cache, with readahead. */
	assert_int_equal(posix_fadvise(G.fd_buffered, 0, 0, POSIX_FADV_DONTNEED), 0);
	read_at(G.fd_buffered, 0, 1 * MIB, "buffered read");
	read_at(G.fd_buffered, 20 * MIB + 100, 3000, "buffered unaligned read");
	for (unsigned i = 0; i < URING_WRITES; i++)
		pages[i] = tu_rand_below(&rnd, VOL_PAGES);
	uring_pages(G.fd_direct, false, pages, URING_WRITES, "io_uring reads");
	trk_harvest(t, &h, "after the reads");
	expect_no_loss(&h, "after the reads");
	expect_bitmap(kfio_track_pending(t), zero_bitmap, VOL_PAGES, "reads");
	assert_int_equal(h.harvested_pages, 0);
	assert_int_equal(h.pending_pages, 0);
	assert_int_equal(h.marks, h0.marks);
}

/* ------------------------------------------------------------- 4: survival */

static void test_survival(void **state)
{
	struct kfio_track *t;
	struct kfio_track_info first, again;
	struct kfio_track_harvest h;
	uint64_t a[BITMAP_WORDS] = { 0 }, all[BITMAP_WORDS] = { 0 };
	const struct pat_io before[] = { { P(5), 4096 }, { P(70), 4096 }, { 16 * MIB, 65536 } };
	const struct pat_io after[] = { { P(5), 4096 },
					{ P(6), 4096 },
					{ VOL_BYTES - 4096, 4096 } };
	const struct pat_io crash[] = { { P(9000), 8192 }, { S(7), 1024 } };
	uint64_t b_pages = 0, tag;
	int st = 0;

	(void)state;
	t = trk_fresh(&G.dev, "survive", &first);
	for (unsigned i = 0; i < ARRAY_SIZE(before); i++) {
		write_at(G.fd_direct, before[i].offset, before[i].len, "before");
		truth_add(a, before[i].offset, before[i].len);
		truth_add(all, before[i].offset, before[i].len);
	}
	trk_harvest(t, &h, "harvest before the free");
	expect_bitmap(kfio_track_pending(t), a, VOL_PAGES, "harvest before the free");
	trk_free(t); /* not settled: pending keeps them */

	/* Nobody holds the tracker; only its pins keep it attached. */
	{
		uint64_t b[BITMAP_WORDS] = { 0 };

		for (unsigned i = 0; i < ARRAY_SIZE(after); i++) {
			write_at(G.fd_direct, after[i].offset, after[i].len, "while not held");
			truth_add(b, after[i].offset, after[i].len);
			truth_add(all, after[i].offset, after[i].len);
		}
		b_pages = bm_count(b, VOL_PAGES);
	}
	t = trk_open(&G.dev, "survive", &again);
	assert_false(again.attached_now);
	assert_string_equal(again.why_new, "");
	assert_true(again.instance_id == first.instance_id);
	assert_int_equal(again.created_unix, first.created_unix);
	trk_harvest(t, &h, "harvest after the reopen");
	expect_no_loss(&h, "harvest after the reopen");
	expect_bitmap(kfio_track_pending(t), all, VOL_PAGES, "after free and reopen");
	assert_int_equal(h.harvested_pages, b_pages);
	assert_int_equal(h.pending_pages, bm_count(all, VOL_PAGES));
	tag = trk_settle(t, false, "survival");
	trk_free(t);

	/* A process that dies between harvest and settle leaves its bits pending. */
	memset(all, 0, sizeof(all));
	for (unsigned i = 0; i < ARRAY_SIZE(crash); i++) {
		write_at(G.fd_direct, crash[i].offset, crash[i].len, "before the crash");
		truth_add(all, crash[i].offset, crash[i].len);
	}
	T.child = fork();
	assert_true(T.child >= 0);
	if (T.child == 0) {
		char err[KFIO_ERR_MSG_MAX];
		struct kfio_track *c = NULL;
		struct kfio_track_harvest ch;

		if (kfio_track_open(&c, &G.dev, g_pin_root, "survive", err, sizeof(err)))
			_exit(2);
		if (kfio_track_harvest(c, &ch, err, sizeof(err)) || ch.harvested_pages == 0)
			_exit(3);
		raise(SIGKILL); /* no settle, no free */
		_exit(4);
	}
	assert_int_equal(waitpid(T.child, &st, 0), T.child);
	T.child = -1;
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fail_msg("the child that harvests and dies ended with status 0x%x", st);
	t = trk_open(&G.dev, "survive", &again);
	assert_false(again.attached_now);
	assert_true(again.instance_id == first.instance_id);
	assert_int_equal(again.settled_tag, tag); /* the child never settled */
	trk_harvest(t, &h, "harvest after the crash");
	expect_no_loss(&h, "harvest after the crash");
	assert_int_equal(h.harvested_pages, 0); /* the dead child took them from live */
	expect_bitmap(kfio_track_pending(t), all, VOL_PAGES,
		      "after a crash between harvest and settle");
	trk_settle(t, false, "after the crash");
}

/* --------------------------------------------------------------- 5: losses */

static int list_find(const char *name, void *ctx)
{
	const char *want = ctx;

	return strcmp(name, want) ? 0 : 1;
}

static bool listed(const char *name)
{
	char err[KFIO_ERR_MSG_MAX] = "";
	int rc = kfio_track_list(g_pin_root, list_find, (void *)name, err, sizeof(err));

	if (rc < 0)
		fail_msg("kfio_track_list: %d (%s)", rc, err);
	return rc == 1;
}

static void expect_owed(struct kfio_track *t, bool owed, const char *what)
{
	struct kfio_track_harvest h;

	trk_harvest(t, &h, what);
	if (owed) {
		if (h.loss != KFIO_TRACK_LOSS_ATTACHED)
			fail_msg("%s: loss 0x%x, want ATTACHED owed (%s)", what, h.loss, h.reason);
		if (!strstr(h.reason, "attached"))
			fail_msg("%s: reason \"%s\" does not mention the attach", what, h.reason);
	} else {
		if (h.loss)
			fail_msg("%s: loss 0x%x still owed (%s)", what, h.loss, h.reason);
		assert_string_equal(h.reason, "");
	}
}

static void test_losses(void **state)
{
	struct kfio_track *t;
	struct kfio_track_info info, info2;
	char pin_dir[TU_PATH_MAX];
	struct stat st;
	uint64_t tag;

	(void)state;
	trk_remove("losses");
	t = trk_open(&G.dev, "losses", &info);
	assert_true(info.attached_now);
	assert_true(info.why_new[0] != '\0');
	assert_int_equal(info.settled_tag, 0);
	assert_true(listed("losses"));
	expect_owed(t, true, "fresh open");
	trk_settle(t, false, "settle without a full scan");
	expect_owed(t, true, "after a settle without a full scan");
	trk_free(t);
	t = trk_open(&G.dev, "losses", &info2);
	assert_false(info2.attached_now);
	assert_true(info2.instance_id == info.instance_id);
	expect_owed(t, true, "after free and reopen");
	tag = trk_settle(t, true, "full scan");
	expect_owed(t, false, "after a full-scan settle");
	trk_free(t);
	t = trk_open(&G.dev, "losses", &info2);
	assert_false(info2.attached_now);
	assert_int_equal(info2.settled_tag, tag);
	expect_owed(t, false, "reopened after a full-scan settle");
	trk_free(t);

	/* Unpinned: the next open is a new instance with the loss owed again. */
	snprintf(pin_dir, sizeof(pin_dir), "%s", info.pin_dir);
	trk_remove("losses");
	if (stat(pin_dir, &st) == 0 || errno != ENOENT)
		fail_msg("%s still exists after kfio_track_remove", pin_dir);
	assert_false(listed("losses"));
	t = trk_open(&G.dev, "losses", &info2);
	assert_true(info2.attached_now);
	assert_true(info2.instance_id != info.instance_id);
	assert_int_equal(info2.settled_tag, 0);
	expect_owed(t, true, "open after remove");
	trk_free(t);
	trk_remove("losses");
}

/* The same name on a device of another size, then on another device. */
static void test_device_changes(void **state)
{
	struct kfio_track *t;
	struct kfio_track_info info, info2;
	uint64_t truth[BITMAP_WORDS] = { 0 };
	const uint64_t small = 8 * MIB, grown = 12 * MIB;
	int fd_extra, rc;

	(void)state;
	assert_int_equal(tu_backing_create(&T.extra, TU_BACKING_LOOP512, small, 0), 0);
	T.extra_made = true;
	rc = kfio_dev_open(&T.extra_dev, T.extra.path, 0);
	if (rc)
		fail_msg("kfio_dev_open %s: %d (%s)", T.extra.path, rc, T.extra_dev.err_msg);
	T.extra_dev_open = true;
	t = trk_fresh(&T.extra_dev, "moving", &info);
	assert_int_equal(info.pages, small / PAGE);
	trk_free(t);

	/* Grown under the same name: the pins are for another size. */
	kfio_dev_close(&T.extra_dev);
	T.extra_dev_open = false;
	if (truncate(T.extra.file, (off_t)grown))
		fail_msg("truncate %s: %s", T.extra.file, strerror(errno));
	if (ioctl(T.extra.loop.fd, LOOP_SET_CAPACITY, 0))
		fail_msg("LOOP_SET_CAPACITY %s: %s", T.extra.path, strerror(errno));
	rc = kfio_dev_open(&T.extra_dev, T.extra.path, 0);
	if (rc)
		fail_msg("kfio_dev_open %s: %d (%s)", T.extra.path, rc, T.extra_dev.err_msg);
	T.extra_dev_open = true;
	assert_int_equal(T.extra_dev.size_bytes, grown);
	t = trk_open(&T.extra_dev, "moving", &info2);
	if (!info2.attached_now)
		fail_msg("the tracker of a %llu-byte device was picked up for %llu bytes",
			 (unsigned long long)small, (unsigned long long)grown);
	if (!strstr(info2.why_new, "device"))
		fail_msg("why_new \"%s\" does not mention the device", info2.why_new);
	assert_true(info2.instance_id != info.instance_id);
	assert_int_equal(info2.pages, grown / PAGE);
	expect_owed(t, true, "after the resize");
	trk_settle(t, true, "after the resize");
	/* It tracks the grown device, including its new tail. */
	fd_extra = open_or_fail(T.extra.path, O_RDWR | O_DIRECT);
	write_at(fd_extra, grown - 4096, 4096, "the grown tail");
	truth_add(truth, grown - 4096, 4096);
	expect_epoch(t, truth, grown / PAGE, "the grown device");
	trk_free(t);

	/* Another device under the same name. */
	t = trk_open(&G.dev, "moving", &info);
	if (!info.attached_now)
		fail_msg("the tracker of %s was picked up for %s", T.extra.path, G.b.path);
	if (!strstr(info.why_new, "device"))
		fail_msg("why_new \"%s\" does not mention the device", info.why_new);
	assert_true(info.instance_id != info2.instance_id);
	assert_int_equal(info.pages, VOL_PAGES);
	expect_owed(t, true, "after the move");
	trk_settle(t, true, "after the move");
	/* The old device's writes reach it no more; the new one's do. */
	write_at(fd_extra, P(5), 4096, "old device");
	expect_epoch(t, zero_bitmap, VOL_PAGES, "a write to the old device");
	memset(truth, 0, sizeof(truth));
	write_at(G.fd_direct, P(5), 4096, "new device");
	truth_add(truth, P(5), 4096);
	expect_epoch(t, truth, VOL_PAGES, "a write to the new device");
	fd_drop(fd_extra);
}

/* ------------------------------------------------------------- 6: refusals */

static void test_refusals(void **state)
{
	char why[KFIO_ERR_MSG_MAX] = "", err[KFIO_ERR_MSG_MAX], file[TU_PATH_MAX];
	char long_name[201], max_name[KFIO_TRACK_NAME_MAX + 1], ok_name[KFIO_TRACK_NAME_MAX];
	struct kfio_dev fdev;
	struct kfio_track *t = (struct kfio_track *)&fdev; /* must come back NULL */
	int rc;
	const char *const bad[] = { "a.b", "", long_name, max_name, "a/b", "..", "x y", "@new" };

	(void)state;
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	memset(max_name, 'b', KFIO_TRACK_NAME_MAX);
	max_name[KFIO_TRACK_NAME_MAX] = '\0';
	memset(ok_name, 'c', KFIO_TRACK_NAME_MAX - 1);
	ok_name[KFIO_TRACK_NAME_MAX - 1] = '\0';

	/* A regular file: refused with the reason, with no BPF touched. */
	assert_int_equal(tu_tmpfile(file, sizeof(file), 8 * MIB, 0), 0);
	memset(&fdev, 0, sizeof(fdev));
	rc = kfio_dev_open(&fdev, file, 0);
	if (rc)
		fail_msg("kfio_dev_open %s: %d (%s)", file, rc, fdev.err_msg);
	assert_int_equal(kfio_track_supported(&fdev, why, sizeof(why)), -EOPNOTSUPP);
	if (!strstr(why, "regular file"))
		fail_msg("why \"%s\" does not mention a regular file", why);
	err[0] = '\0';
	rc = kfio_track_open(&t, &fdev, g_pin_root, "file", err, sizeof(err));
	assert_int_equal(rc, -EOPNOTSUPP);
	assert_null(t);
	if (!strstr(err, "regular file"))
		fail_msg("err \"%s\" does not mention a regular file", err);
	kfio_dev_close(&fdev);
	tu_tmpfile_release(file);
	assert_int_equal(kfio_track_supported(&G.dev, why, sizeof(why)), 0);

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		t = (struct kfio_track *)&fdev;
		err[0] = '\0';
		rc = kfio_track_open(&t, &G.dev, g_pin_root, bad[i], err, sizeof(err));
		if (rc != -EINVAL)
			fail_msg(
				"kfio_track_open name \"%.40s\" (%zu chars): %d, want -EINVAL (%s)",
				bad[i], strlen(bad[i]), rc, err);
		assert_null(t);
		assert_true(err[0] != '\0');
		assert_int_equal(kfio_track_remove(g_pin_root, bad[i], err, sizeof(err)), -EINVAL);
	}
	/* Nothing was pinned for them. */
	{
		DIR *d = opendir(g_pin_root);
		struct dirent *e;

		assert_non_null(d);
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				fail_msg("%s/%s exists after refused opens", g_pin_root, e->d_name);
		closedir(d);
	}
	/* The longest valid name works; removing a name never pinned is not an error. */
	t = trk_open(&G.dev, ok_name, NULL);
	trk_free(t);
	trk_remove(ok_name);
	trk_remove("never-pinned");
}

/* --------------------------------------------------- 7: writes racing harvests */

struct race_log {
	uint32_t count; /* entries of pages[] published (release) */
	uint32_t pages[RACE_WRITES_MAX];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The child: random O_DIRECT page writes, each logged once pwrite returned. */
static void race_writer(struct race_log *log, const char *path, uint64_t seed)
{
	uint64_t end = now_ms() + RACE_MS, rnd = seed;
	void *buf = NULL;
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);

	if (fd < 0 || posix_memalign(&buf, PAGE, PAGE))
		_exit(2);
	memset(buf, 0x5a, PAGE);
	for (uint32_t n = 0; n < RACE_WRITES_MAX && now_ms() < end; n++) {
		uint32_t page = (uint32_t)tu_rand_below(&rnd, VOL_PAGES);

		if (pwrite(fd, buf, PAGE, (off_t)(page * PAGE)) != (ssize_t)PAGE)
			_exit(3);
		log->pages[n] = page;
		__atomic_store_n(&log->count, n + 1, __ATOMIC_RELEASE);
	}
	_exit(0);
}

static void test_race(void **state)
{
	struct kfio_track *t;
	struct kfio_track_harvest h;
	struct race_log *log;
	uint64_t acc[BITMAP_WORDS] = { 0 }, want[BITMAP_WORDS] = { 0 };
	uint32_t checked = 0, harvests = 0;
	bool running = true;
	int st = 0;

	(void)state;
	log = mmap(NULL, sizeof(*log), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(log != MAP_FAILED);
	t = trk_fresh(&G.dev, "race", NULL);
	T.child = fork();
	assert_true(T.child >= 0);
	if (T.child == 0)
		race_writer(log, G.b.path, g_seed ^ 0x7ace0001ull);

	while (running) {
		/* Every write logged before this harvest began has completed, so its
		 * page is in this harvest or an earlier one. */
		uint32_t n = __atomic_load_n(&log->count, __ATOMIC_ACQUIRE);
		const uint64_t *pend;

		pid_t waited = waitpid(T.child, &st, WNOHANG);

		if (waited < 0)
			fail_msg("waitpid the writer: %s", strerror(errno));
		running = waited == 0;
		trk_harvest(t, &h, "racing harvest");
		expect_no_loss(&h, "racing harvest");
		pend = kfio_track_pending(t);
		for (unsigned w = 0; w < BITMAP_WORDS; w++)
			acc[w] |= pend[w];
		trk_settle(t, false, "racing harvest");
		harvests++;
		for (; checked < n; checked++) {
			if (!bit_get(acc, log->pages[checked]))
				fail_msg(
					"page %u, written by write #%u which returned before harvest #%u began, was not harvested (seed 0x%llx)",
					log->pages[checked], checked, harvests,
					(unsigned long long)g_seed);
		}
		if (running)
			usleep(RACE_HARVEST_US);
	}
	T.child = -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("the writer ended with status 0x%x", st);
	/* The child is gone: one last harvest finds whatever the loop did not. */
	trk_harvest(t, &h, "final harvest");
	expect_no_loss(&h, "final harvest");
	for (unsigned w = 0; w < BITMAP_WORDS; w++)
		acc[w] |= kfio_track_pending(t)[w];
	trk_settle(t, false, "final harvest");
	for (uint32_t i = 0; i < log->count; i++)
		bit_set(want, log->pages[i]);
	print_message("race: %u writes, %u harvests\n", log->count, harvests);
	expect_bitmap(acc, want, VOL_PAGES, "writes racing harvests");
	if (log->count < RACE_WRITES_MIN || harvests < RACE_HARVESTS_MIN)
		fail_msg("only %u writes and %u harvests in %u ms: nothing raced", log->count,
			 harvests, RACE_MS);
	munmap(log, sizeof(*log));
}

/* ------------------------------------------------------------------ main */

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_refusals, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_write_patterns, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_reads_mark_nothing, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_partition, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_survival, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_losses, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_device_changes, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_race, test_setup, test_teardown),
	};
	const char *seed_env = getenv("PVREPL_TEST_SEED");

	tu_require_root();
	tu_require_loop();
	g_seed = seed_env ? strtoull(seed_env, NULL, 0)
			  : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
	printf("seed 0x%llx (PVREPL_TEST_SEED=0x%llx replays it)\n", (unsigned long long)g_seed,
	       (unsigned long long)g_seed);
	fflush(stdout);
	pins_setup();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
