// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the kfio device layer: kfio_dev_open's probing (size, logical
 * and physical block size, O_DIRECT alignment, read-only detection) on regular
 * files and on loop devices with direct I/O and 512- or 4096-byte blocks, the
 * alignment and end-of-device checks with their exact sentences, the synchronous
 * read/write/flush helpers, and discard and zero-out reading back zeros.
 *
 * Each probed value is compared with what the kernel says through an independent
 * path (our own ioctls and statx on the same object), not with the engine's own
 * idea of it. Loop devices need root: without it the binary skips (exit 77).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kfio.h"
#include "pvrepl_assert.h"
#include "testutil.h"

#define MIB (1024ull * 1024ull)

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

static bool is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

/* ------------------------------------------------------------- fixtures */

struct dev_case {
	const char *name;
	enum tu_backing_kind kind;
	uint64_t size_bytes;
};

struct dev_fix {
	const struct dev_case *c;
	struct tu_backing b;
	struct kfio_dev dev;
	bool dev_open;
	void *buf; /* KFIO_MEM_ALIGN-aligned, FIX_BUF_BYTES */
};

#define FIX_BUF_BYTES (1u << 20)
#define SEED_BASE     0x5eed0001ull

/* Creates the backing filled with the SEED_BASE pattern and opens it read-write. */
static int fix_setup(void **state)
{
	const struct dev_case *c = *state;
	struct dev_fix *f = calloc(1, sizeof(*f));
	int ret;

	assert_non_null(f);
	f->c = c;
	f->dev.fd = -1;
	*state = f;
	ret = tu_backing_create(&f->b, c->kind, c->size_bytes, SEED_BASE);
	assert_int_equal(ret, 0);
	if (c->kind != TU_BACKING_FILE && !f->b.loop.direct)
		fail_msg("%s: the kernel turned direct I/O off on %s", c->name, f->b.path);
	ret = kfio_dev_open(&f->dev, f->b.path, KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("kfio_dev_open %s: %d (%s)", f->b.path, ret, f->dev.err_msg);
	f->dev_open = true;
	f->buf = kfio_buf_alloc(FIX_BUF_BYTES);
	assert_non_null(f->buf);
	return 0;
}

static int fix_teardown(void **state)
{
	struct dev_fix *f = *state;

	if (f == NULL)
		return 0;
	if (f->buf)
		kfio_buf_free(f->buf, FIX_BUF_BYTES);
	if (f->dev_open)
		kfio_dev_close(&f->dev);
	tu_backing_destroy(&f->b);
	free(f);
	*state = NULL;
	return 0;
}

static const struct dev_case case_file_4m = { "file-4M", TU_BACKING_FILE, 4 * MIB };
static const struct dev_case case_file_8m = { "file-8M", TU_BACKING_FILE, 8 * MIB };
static const struct dev_case case_file_odd = { "file-1M+1536", TU_BACKING_FILE, MIB + 1536 };
static const struct dev_case case_loop512_8m = { "loop512-8M", TU_BACKING_LOOP512, 8 * MIB };
static const struct dev_case case_loop512_odd = { "loop512-1M+1536", TU_BACKING_LOOP512,
						  MIB + 1536 };
static const struct dev_case case_loop4096_8m = { "loop4096-8M", TU_BACKING_LOOP4096, 8 * MIB };
static const struct dev_case case_loop4096_odd = { "loop4096-1M+8192", TU_BACKING_LOOP4096,
						   MIB + 8192 };

/* --------------------------------------------------------------- probing */

static void test_open_missing(void **state)
{
	struct kfio_dev dev;
	char path[256];
	int ret;

	(void)state;
	snprintf(path, sizeof(path), "/nonexistent-pvrepl-%d/disk", (int)getpid());
	memset(&dev, 0, sizeof(dev));
	ret = kfio_dev_open(&dev, path, 0);
	assert_int_equal(ret, -ENOENT);
	assert_int_equal(dev.fd, -1);
	assert_contains(dev.err_msg, path);
}

static void test_open_directory(void **state)
{
	struct kfio_dev dev;
	char dir[TU_PATH_MAX];
	int ret;

	(void)state;
	assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
	memset(&dev, 0, sizeof(dev));
	ret = kfio_dev_open(&dev, dir, 0);
	if (ret == 0) {
		kfio_dev_close(&dev);
		fail_msg("kfio_dev_open accepted the directory %s as a volume", dir);
	}
	assert_int_equal(dev.fd, -1);
	assert_true(dev.err_msg[0] != '\0');
}

/* The geometry of the fixture's device against the kernel's own answers. */
static void test_geometry(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev *d = &f->dev;
	struct stat st;

	assert_true(d->fd >= 0);
	assert_string_equal(d->path, f->b.path);
	assert_int_equal(d->size_bytes, f->c->size_bytes);
	assert_true(d->direct);
	assert_false(d->read_only);
	assert_true(d->discard_supported);
	assert_true(is_pow2(d->logical_block_bytes));
	assert_true(is_pow2(d->physical_block_bytes));
	assert_true(is_pow2(d->dio_offset_align));
	assert_true(is_pow2(d->dio_mem_align));
	assert_true(d->dio_mem_align <= KFIO_MEM_ALIGN);
	assert_true(d->physical_block_bytes >= d->logical_block_bytes);

	if (f->c->kind == TU_BACKING_FILE) {
		uint32_t mem = 0, off = 0;

		assert_false(d->is_blockdev);
		assert_int_equal(stat(f->b.path, &st), 0);
		assert_int_equal(d->physical_block_bytes, (uint32_t)st.st_blksize);
		assert_in_range(d->logical_block_bytes, 512, 4096);
		assert_int_equal(d->logical_block_bytes % d->dio_offset_align, 0);
		/* The engine may be stricter than the kernel, never looser. */
		if (tu_statx_dio(d->fd, &mem, &off) == 0) {
			assert_true(d->dio_offset_align >= off);
			assert_true(d->dio_mem_align >= mem);
		}
	} else {
		uint64_t size = 0;
		int lbs = 0;
		unsigned pbs = 0;

		assert_true(d->is_blockdev);
		assert_int_equal(ioctl(f->b.loop.fd, BLKGETSIZE64, &size), 0);
		assert_int_equal(ioctl(f->b.loop.fd, BLKSSZGET, &lbs), 0);
		assert_int_equal(ioctl(f->b.loop.fd, BLKPBSZGET, &pbs), 0);
		assert_int_equal(d->size_bytes, size);
		assert_int_equal(d->logical_block_bytes, f->b.loop.block_bytes);
		assert_int_equal(d->logical_block_bytes, (uint32_t)lbs);
		assert_int_equal(d->physical_block_bytes, pbs);
		assert_int_equal(d->dio_offset_align, f->b.loop.block_bytes);
	}
}

/* Opened without KFIO_OPEN_WRITE: read-only, same geometry, writes refused. */
static void test_open_read_only(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev ro;
	int ret;

	memset(&ro, 0, sizeof(ro));
	ret = kfio_dev_open(&ro, f->b.path, 0);
	if (ret)
		fail_msg("kfio_dev_open %s read-only: %d (%s)", f->b.path, ret, ro.err_msg);
	assert_true(ro.read_only);
	assert_int_equal(ro.size_bytes, f->dev.size_bytes);
	assert_int_equal(ro.logical_block_bytes, f->dev.logical_block_bytes);
	assert_int_equal(ro.is_blockdev, f->dev.is_blockdev);
	tu_pattern_fill(f->buf, 4096, 0, 7);
	ret = kfio_dev_pwrite_all(&ro, f->buf, 4096, 0);
	assert_true(ret < 0);
	assert_true(ro.err_msg[0] != '\0');
	kfio_dev_close(&ro);
	/* The failed write changed nothing. */
	assert_int_equal(kfio_dev_pread_all(&f->dev, f->buf, 4096, 0), 0);
	assert_int_equal(tu_pattern_mismatch(f->buf, 4096, 0, SEED_BASE), -1);
}

/*
 * Asking to write a read-only device either fails at open with a sentence naming
 * it, or opens with read_only set and then refuses the write.
 */
static void expect_write_refused(const char *path, void *buf)
{
	struct kfio_dev d;
	int ret;

	memset(&d, 0, sizeof(d));
	ret = kfio_dev_open(&d, path, KFIO_OPEN_WRITE);
	if (ret == 0) {
		bool ro = d.read_only;
		int wret;

		tu_pattern_fill(buf, 4096, 0, 7);
		wret = kfio_dev_pwrite_all(&d, buf, 4096, 0);
		kfio_dev_close(&d);
		if (!ro || wret == 0)
			fail_msg("KFIO_OPEN_WRITE of read-only %s: read_only=%d write=%d", path, ro,
				 wret);
	} else {
		assert_true(ret == -EACCES || ret == -EROFS || ret == -EPERM);
		assert_int_equal(d.fd, -1);
		assert_contains(d.err_msg, path);
	}
}

/* A device made read-only with BLKROSET, and one attached read-only. */
static void test_blkroset(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev d;
	struct tu_loop rol;
	int ret;

	/* The fixture holds the device open read-write; BLKROSET still applies. */
	assert_int_equal(tu_loop_set_ro(&f->b.loop, true), 0);
	memset(&d, 0, sizeof(d));
	ret = kfio_dev_open(&d, f->b.path, 0);
	if (ret)
		fail_msg("kfio_dev_open %s after BLKROSET: %d (%s)", f->b.path, ret, d.err_msg);
	assert_true(d.read_only);
	kfio_dev_close(&d);

	expect_write_refused(f->b.path, f->buf);

	assert_int_equal(tu_loop_set_ro(&f->b.loop, false), 0);
	memset(&d, 0, sizeof(d));
	ret = kfio_dev_open(&d, f->b.path, KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("kfio_dev_open %s after BLKROSET 0: %d (%s)", f->b.path, ret, d.err_msg);
	assert_false(d.read_only);
	kfio_dev_close(&d);

	/* A loop device attached with LO_FLAGS_READ_ONLY over the same file. */
	assert_int_equal(tu_loop_attach(&rol, f->b.file, 512, true), 0);
	memset(&d, 0, sizeof(d));
	ret = kfio_dev_open(&d, rol.dev, 0);
	if (ret) {
		tu_loop_detach(&rol);
		fail_msg("kfio_dev_open %s: %d (%s)", rol.dev, ret, d.err_msg);
	}
	assert_true(d.read_only);
	kfio_dev_close(&d);
	expect_write_refused(rol.dev, f->buf);
	tu_loop_detach(&rol);
}

/* ------------------------------------------------------ alignment, ranges */

/* What the error sentence must contain. */
enum msg_kind {
	MSG_ANY = 0,	 /* any non-empty sentence */
	MSG_OFFSET = 1,	 /* "offset N is not aligned to the device's L-byte logical..." */
	MSG_LEN_NUM = 2, /* the length, as a number */
	MSG_OFF_NUM = 3, /* the offset, as a number */
};

enum buf_kind {
	BUF_ALIGNED = 0,
	BUF_PLUS_1 = 1, /* one byte past an aligned address */
};

struct check_case {
	const char *what;
	int64_t offset;	   /* >= 0 from the start, < 0 from the end (size + offset) */
	uint32_t len_lbs;  /* length in logical blocks */
	int32_t len_extra; /* bytes added to the length */
	enum buf_kind buf;
	bool allow_past_end;
	int want;
	enum msg_kind msg;
};

static const struct check_case check_cases[] = {
	{ "aligned at 0", 0, 1, 0, BUF_ALIGNED, false, 0, MSG_ANY },
	{ "aligned 8 blocks at 64K", 65536, 8, 0, BUF_ALIGNED, false, 0, MSG_ANY },
	{ "offset 4100", 4100, 1, 0, BUF_ALIGNED, false, -EINVAL, MSG_OFFSET },
	{ "offset 4100 past-ok", 4100, 1, 0, BUF_ALIGNED, true, -EINVAL, MSG_OFFSET },
	{ "offset 511", 511, 1, 0, BUF_ALIGNED, false, -EINVAL, MSG_OFFSET },
	{ "length +100", 0, 1, 100, BUF_ALIGNED, false, -EINVAL, MSG_LEN_NUM },
	{ "length -1", 0, 2, -1, BUF_ALIGNED, false, -EINVAL, MSG_LEN_NUM },
	{ "buffer +1", 0, 1, 0, BUF_PLUS_1, false, -EINVAL, MSG_ANY },
	{ "last block", -1, 1, 0, BUF_ALIGNED, false, 0, MSG_ANY },
	{ "crosses end", -1, 2, 0, BUF_ALIGNED, false, -ERANGE, MSG_OFF_NUM },
	{ "crosses end, past ok", -1, 2, 0, BUF_ALIGNED, true, 0, MSG_ANY },
	{ "starts past end", 0x7fffffff000ll, 1, 0, BUF_ALIGNED, false, -ERANGE, MSG_ANY },
};

static void test_check_io(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev *d = &f->dev;
	uint32_t lbs = d->logical_block_bytes;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(check_cases); i++) {
		const struct check_case *c = &check_cases[i];
		uint64_t off = c->offset >= 0
				       ? (uint64_t)c->offset
				       : d->size_bytes + (uint64_t)(c->offset * (int64_t)lbs);
		uint64_t len = (uint64_t)c->len_lbs * lbs + (uint64_t)(int64_t)c->len_extra;
		const char *buf = (const char *)f->buf + (c->buf == BUF_PLUS_1 ? 1 : 0);
		int ret;

		memset(d->err_msg, 0, sizeof(d->err_msg));
		ret = kfio_dev_check_io(d, off, len, buf, c->allow_past_end);
		if (ret != c->want)
			fail_msg("%s / %s: offset %llu len %llu: got %d want %d (%s)", f->c->name,
				 c->what, (unsigned long long)off, (unsigned long long)len, ret,
				 c->want, d->err_msg);
		if (c->want != 0)
			assert_true(d->err_msg[0] != '\0');
		if (c->want != 0 && c->msg != MSG_ANY) {
			char want_msg[256];

			if (c->msg == MSG_OFFSET && d->is_blockdev) {
				snprintf(want_msg, sizeof(want_msg),
					 "offset %llu is not aligned to the device's %u-byte "
					 "logical block size",
					 (unsigned long long)off, lbs);
			} else if (c->msg == MSG_OFFSET) {
				/* A file may word it as "the file's O_DIRECT ..." */
				snprintf(want_msg, sizeof(want_msg), "offset %llu is not aligned",
					 (unsigned long long)off);
				assert_contains(d->err_msg, want_msg);
				snprintf(want_msg, sizeof(want_msg), "%u-byte", lbs);
			} else if (c->msg == MSG_LEN_NUM) {
				snprintf(want_msg, sizeof(want_msg), "length %llu",
					 (unsigned long long)len);
				assert_contains(d->err_msg, want_msg);
				snprintf(want_msg, sizeof(want_msg), "%u-byte", lbs);
			} else
				snprintf(want_msg, sizeof(want_msg), "%llu",
					 (unsigned long long)(c->msg == MSG_LEN_NUM ? len : off));
			assert_contains(d->err_msg, want_msg);
		}
	}
}

/* On a 4096-byte device a 512-aligned offset is still misaligned. */
static void test_check_io_4k(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev *d = &f->dev;
	int ret;

	ret = kfio_dev_check_io(d, 4608, 4096, f->buf, false);
	assert_int_equal(ret, -EINVAL);
	assert_contains(d->err_msg,
			"offset 4608 is not aligned to the device's 4096-byte logical block size");
	ret = kfio_dev_check_io(d, 8192, 512, f->buf, false);
	assert_int_equal(ret, -EINVAL);
	assert_contains(d->err_msg, "512");
	assert_int_equal(kfio_dev_check_io(d, 8192, 4096, f->buf, false), 0);
}

/* ------------------------------------------------------ synchronous I/O */

static void test_sync_roundtrip(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev *d = &f->dev;
	uint32_t lbs = d->logical_block_bytes;
	uint64_t offs[3] = { 0, 65536 + lbs, d->size_bytes - 8ull * lbs };
	const uint64_t seed = 0xabcdef01ull;
	unsigned char *check;
	unsigned i;
	int ret;

	check = malloc(8ull * lbs);
	assert_non_null(check);
	for (i = 0; i < 3; i++) {
		tu_pattern_fill(f->buf, 8ull * lbs, offs[i], seed);
		ret = kfio_dev_pwrite_all(d, f->buf, 8ull * lbs, offs[i]);
		if (ret)
			fail_msg("pwrite_all at %llu: %d (%s)", (unsigned long long)offs[i], ret,
				 d->err_msg);
	}
	assert_int_equal(kfio_dev_flush(d), 0);
	for (i = 0; i < 3; i++) {
		memset(f->buf, 0, 8ull * lbs);
		assert_int_equal(kfio_dev_pread_all(d, f->buf, 8ull * lbs, offs[i]), 0);
		assert_int_equal(tu_pattern_mismatch(f->buf, 8ull * lbs, offs[i], seed), -1);
		/* Through the file underneath, by another path than the engine's. */
		assert_int_equal(tu_file_read(f->b.file, check, 8ull * lbs, offs[i]), 0);
		assert_int_equal(tu_pattern_mismatch(check, 8ull * lbs, offs[i], seed), -1);
	}
	/* The blocks around were not touched. */
	assert_int_equal(kfio_dev_pread_all(d, f->buf, lbs, 65536), 0);
	assert_int_equal(tu_pattern_mismatch(f->buf, lbs, 65536, SEED_BASE), -1);
	free(check);

	/* Misaligned synchronous I/O is refused with a sentence naming the offset. */
	ret = kfio_dev_pwrite_all(d, f->buf, lbs, 4100);
	assert_int_equal(ret, -EINVAL);
	assert_contains(d->err_msg, "4100");
	/* A write crossing the end is refused and never extends the volume. */
	ret = kfio_dev_pwrite_all(d, f->buf, 2ull * lbs, d->size_bytes - lbs);
	if (f->c->kind == TU_BACKING_FILE) {
		struct stat st;

		assert_int_equal(stat(f->b.file, &st), 0);
		if ((uint64_t)st.st_size != f->c->size_bytes)
			fail_msg("pwrite_all crossing the end returned %d and grew %s from %llu to "
				 "%llu bytes",
				 ret, f->b.file, (unsigned long long)f->c->size_bytes,
				 (unsigned long long)st.st_size);
	}
	if (ret >= 0)
		fail_msg("pwrite_all of %u bytes at %llu on %s (size %llu) returned %d", 2 * lbs,
			 (unsigned long long)(d->size_bytes - lbs), f->c->name,
			 (unsigned long long)d->size_bytes, ret);
	assert_true(d->err_msg[0] != '\0');
}

/* ------------------------------------------------ discard and zero-out */

static void expect_range(struct dev_fix *f, uint64_t start, uint64_t end, uint64_t zero_start,
			 uint64_t zero_end, const char *what)
{
	struct kfio_dev *d = &f->dev;
	uint64_t off;

	for (off = start; off < end; off += FIX_BUF_BYTES) {
		uint64_t n = end - off < FIX_BUF_BYTES ? end - off : FIX_BUF_BYTES;
		uint64_t i, lbs = d->logical_block_bytes;
		int ret = kfio_dev_pread_all(d, f->buf, n, off);

		if (ret)
			fail_msg("%s: pread_all %llu+%llu: %d (%s)", what, (unsigned long long)off,
				 (unsigned long long)n, ret, d->err_msg);
		for (i = 0; i < n; i += lbs) {
			const unsigned char *p = (const unsigned char *)f->buf + i;
			uint64_t at = off + i;
			bool want_zero = at >= zero_start && at < zero_end;

			if (want_zero && !tu_is_zero(p, lbs))
				fail_msg("%s on %s: block at %llu not zero", what, f->c->name,
					 (unsigned long long)at);
			if (!want_zero && tu_pattern_mismatch(p, lbs, at, SEED_BASE) != -1)
				fail_msg("%s on %s: block at %llu outside [%llu, %llu) changed",
					 what, f->c->name, (unsigned long long)at,
					 (unsigned long long)zero_start,
					 (unsigned long long)zero_end);
		}
	}
}

struct zero_case {
	const char *what;
	bool discard;	 /* else zero-out */
	uint64_t offset; /* multiple of 4096 */
	uint64_t len;	 /* multiple of 4096 */
};

static const struct zero_case zero_cases[] = {
	{ "discard 256K at 1M", true, MIB, 256 * 1024 },
	{ "discard one 4K block at 2M+4K", true, 2 * MIB + 4096, 4096 },
	{ "zero-out 64K+4K at 3M", false, 3 * MIB, 65536 + 4096 },
	{ "zero-out 1M at 5M", false, 5 * MIB, MIB },
};

static void test_discard_zero(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev *d = &f->dev;
	unsigned i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(zero_cases); i++) {
		const struct zero_case *z = &zero_cases[i];
		unsigned char *check;
		uint64_t lo = z->offset >= MIB ? z->offset - MIB / 2 : 0;
		uint64_t hi = z->offset + z->len + MIB / 2;

		/* Restore the pattern, then make the range zero. */
		assert_int_equal(tu_file_fill(f->b.file, 0, f->c->size_bytes, SEED_BASE), 0);
		if (d->is_blockdev) {
			/* Drop the loop device's cache of the old content. */
			assert_int_equal(ioctl(f->b.loop.fd, BLKFLSBUF, 0), 0);
		}
		ret = z->discard ? kfio_dev_discard(d, z->offset, z->len)
				 : kfio_dev_zero_out(d, z->offset, z->len);
		if (ret)
			fail_msg("%s on %s: %d (%s)", z->what, f->c->name, ret, d->err_msg);
		expect_range(f, lo, hi < d->size_bytes ? hi : d->size_bytes, z->offset,
			     z->offset + z->len, z->what);
		/* The zeros reached the file underneath. */
		assert_int_equal(kfio_dev_flush(d), 0);
		check = malloc(z->len);
		assert_non_null(check);
		assert_int_equal(tu_file_read(f->b.file, check, z->len, z->offset), 0);
		if (!tu_is_zero(check, z->len))
			fail_msg("%s on %s: backing file not zero", z->what, f->c->name);
		free(check);
	}

	/* Misaligned ranges are refused with a sentence; nothing changes. */
	ret = kfio_dev_discard(d, 4100, 4096);
	assert_int_equal(ret, -EINVAL);
	assert_contains(d->err_msg, "offset 4100 is not aligned");
	ret = kfio_dev_zero_out(d, 4096, 100);
	assert_int_equal(ret, -EINVAL);
	assert_true(d->err_msg[0] != '\0');
	ret = kfio_dev_zero_out(d, d->size_bytes - 4096, 8192);
	assert_int_equal(ret, -ERANGE);
	ret = kfio_dev_discard(d, d->size_bytes, 4096);
	assert_int_equal(ret, -ERANGE);
	if (f->c->kind == TU_BACKING_FILE) {
		struct stat st;

		assert_int_equal(stat(f->b.file, &st), 0);
		assert_int_equal((uint64_t)st.st_size, f->c->size_bytes);
	}
}

/* KFIO_OPEN_BUFFERED opens without O_DIRECT; the geometry is the same. */
static void test_open_buffered(void **state)
{
	struct dev_fix *f = *state;
	struct kfio_dev d;
	int ret;

	memset(&d, 0, sizeof(d));
	ret = kfio_dev_open(&d, f->b.path, KFIO_OPEN_BUFFERED | KFIO_OPEN_WRITE);
	if (ret)
		fail_msg("kfio_dev_open %s buffered: %d (%s)", f->b.path, ret, d.err_msg);
	assert_false(d.direct);
	assert_false(d.read_only);
	assert_int_equal(d.size_bytes, f->dev.size_bytes);
	assert_int_equal(d.logical_block_bytes, f->dev.logical_block_bytes);
	assert_int_equal(kfio_dev_pread_all(&d, f->buf, 8192, 4096), 0);
	assert_int_equal(tu_pattern_mismatch(f->buf, 8192, 4096, SEED_BASE), -1);
	kfio_dev_close(&d);
}

static void test_buf_alloc(void **state)
{
	static const size_t lens[] = { 512, 4096, 65536 + 4096, 4u << 20 };
	unsigned i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		unsigned char *p = kfio_buf_alloc(lens[i]);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % KFIO_MEM_ALIGN, 0);
		memset(p, 0xa5, lens[i]);
		kfio_buf_free(p, lens[i]);
	}
}

#define DEV_TEST(fn, c)                                             \
	{                                                           \
#fn "/" #c, fn, fix_setup, fix_teardown, (void *)&c \
	}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_missing),
		cmocka_unit_test(test_open_directory),
		cmocka_unit_test(test_buf_alloc),
		DEV_TEST(test_geometry, case_file_4m),
		DEV_TEST(test_geometry, case_file_odd),
		DEV_TEST(test_geometry, case_loop512_8m),
		DEV_TEST(test_geometry, case_loop512_odd),
		DEV_TEST(test_geometry, case_loop4096_8m),
		DEV_TEST(test_geometry, case_loop4096_odd),
		DEV_TEST(test_open_read_only, case_file_4m),
		DEV_TEST(test_open_read_only, case_loop512_8m),
		DEV_TEST(test_open_read_only, case_loop4096_8m),
		DEV_TEST(test_blkroset, case_loop512_8m),
		DEV_TEST(test_open_buffered, case_file_4m),
		DEV_TEST(test_open_buffered, case_loop4096_8m),
		DEV_TEST(test_check_io, case_file_4m),
		DEV_TEST(test_check_io, case_loop512_odd),
		DEV_TEST(test_check_io, case_loop4096_8m),
		DEV_TEST(test_check_io_4k, case_loop4096_8m),
		DEV_TEST(test_sync_roundtrip, case_file_4m),
		DEV_TEST(test_sync_roundtrip, case_loop512_odd),
		DEV_TEST(test_sync_roundtrip, case_loop4096_8m),
		DEV_TEST(test_discard_zero, case_file_8m),
		DEV_TEST(test_discard_zero, case_loop512_8m),
		DEV_TEST(test_discard_zero, case_loop4096_8m),
	};

	tu_require_root();
	tu_require_loop();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
