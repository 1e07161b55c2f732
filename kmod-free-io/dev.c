// SPDX-License-Identifier: Apache-2.0
/*
 * kfio devices: open a block device or a regular file, probe its geometry
 * (size, logical and physical block size, rotational, read-only, discard), check
 * O_DIRECT requests against the alignment rules with errors a person can act on,
 * and the synchronous helpers: flush, discard, zero-out, freeze/thaw, reflink.
 *
 * It knows nothing of queues (queue.c) and nothing above the engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kfio.h"
#include "kfio_internal.h"

void kfio_fmt(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!dst || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

#define dev_err(dev, ...) kfio_fmt((dev)->err_msg, sizeof((dev)->err_msg), __VA_ARGS__)

static int read_sysfs_u64(const char *path, uint64_t *out)
{
	char buf[64];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	*out = strtoull(buf, NULL, 10);
	return 0;
}

static int probe_blockdev(struct kfio_dev *dev, const struct stat *st)
{
	char path[128];
	uint64_t v = 0;
	int lbs = 0;
	unsigned int pbs = 0;
	int ro = 0;

	if (ioctl(dev->fd, BLKGETSIZE64, &dev->size_bytes) < 0) {
		dev_err(dev, "%s: BLKGETSIZE64 failed: %s", dev->path, strerror(errno));
		return -errno;
	}
	if (ioctl(dev->fd, BLKSSZGET, &lbs) < 0 || lbs <= 0) {
		dev_err(dev, "%s: BLKSSZGET failed: %s", dev->path, strerror(errno));
		return -EIO;
	}
	if (ioctl(dev->fd, BLKPBSZGET, &pbs) < 0 || pbs == 0)
		pbs = (unsigned int)lbs;
	if (ioctl(dev->fd, BLKROGET, &ro) == 0 && ro) {
		dev->read_only = true;
		dev->device_read_only = true;
	}
	dev->logical_block_bytes = (uint32_t)lbs;
	dev->physical_block_bytes = pbs;
	/*
	 * O_DIRECT on a block device: offsets and lengths must be multiples of the
	 * logical block size; memory must be aligned to the queue's dma alignment,
	 * which is at most the logical block size. We ask for the logical block size
	 * for both, the rule every kernel since 2.6 enforces.
	 */
	dev->dio_offset_align = (uint32_t)lbs;
	dev->dio_mem_align = (uint32_t)lbs;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/rotational", major(st->st_rdev),
		 minor(st->st_rdev));
	if (read_sysfs_u64(path, &v) == 0)
		dev->rotational = v != 0;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/discard_max_bytes",
		 major(st->st_rdev), minor(st->st_rdev));
	if (read_sysfs_u64(path, &v) == 0)
		dev->discard_supported = v != 0;
	return 0;
}

static int probe_file(struct kfio_dev *dev, const struct stat *st)
{
	struct statx stx;

	dev->size_bytes = (uint64_t)st->st_size;
	dev->device_read_only = access(dev->path, W_OK) != 0;
	dev->physical_block_bytes = (uint32_t)st->st_blksize;
	dev->logical_block_bytes = 512;
	dev->dio_offset_align = 512;
	dev->dio_mem_align = 512;
	/*
	 * Linux 6.1+ reports the real O_DIRECT rules of a file through
	 * STATX_DIOALIGN; older kernels or filesystems that do not fill it keep the
	 * 512-byte assumption, which is what ext4/xfs on 512e disks require.
	 */
#ifdef STATX_DIOALIGN
	if (statx(dev->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		dev->dio_offset_align = stx.stx_dio_offset_align;
		dev->dio_mem_align = stx.stx_dio_mem_align;
		dev->logical_block_bytes = stx.stx_dio_offset_align;
	}
#else
	(void)stx;
#endif
	/* Files punch holes on every filesystem pvrepl supports (ext4, xfs, btrfs). */
	dev->discard_supported = true;
	dev->rotational = false;
	return 0;
}

int kfio_dev_open(struct kfio_dev *dev, const char *path, unsigned flags)
{
	struct stat st;
	int oflags = O_CLOEXEC;
	int err;

	memset(dev, 0, sizeof(*dev));
	dev->fd = -1;
	if (!path || !*path) {
		dev_err(dev, "no device path given");
		return -EINVAL;
	}
	if (strlen(path) >= sizeof(dev->path)) {
		dev_err(dev, "device path is longer than %zu bytes", sizeof(dev->path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(dev->path, path);

	oflags |= (flags & KFIO_OPEN_WRITE) ? O_RDWR : O_RDONLY;
	if (!(flags & KFIO_OPEN_BUFFERED))
		oflags |= O_DIRECT;
	if (flags & KFIO_OPEN_EXCL)
		oflags |= O_EXCL;

	dev->fd = open(path, oflags);
	if (dev->fd < 0) {
		err = -errno;
		switch (-err) {
		case ENOENT:
			dev_err(dev, "%s does not exist; check the device path", path);
			break;
		case EACCES:
		case EPERM:
			dev_err(dev,
				"%s: permission denied opening %s; run as root or grant access to the device",
				path, (flags & KFIO_OPEN_WRITE) ? "read-write" : "read-only");
			break;
		case EROFS:
			dev_err(dev, "%s is read-only and cannot be opened for writing", path);
			break;
		case EBUSY:
			dev_err(dev,
				"%s is in use (mounted or held exclusively); unmount it or drop the exclusive open",
				path);
			break;
		case EINVAL:
			dev_err(dev,
				"%s: the filesystem refuses O_DIRECT; put the image on ext4, xfs or btrfs, or use buffered mode",
				path);
			break;
		default:
			dev_err(dev, "%s: open failed: %s", path, strerror(-err));
		}
		return err;
	}
	dev->direct = !(flags & KFIO_OPEN_BUFFERED);
	if (!(flags & KFIO_OPEN_WRITE))
		dev->read_only = true;

	if (fstat(dev->fd, &st) < 0) {
		err = -errno;
		dev_err(dev, "%s: fstat failed: %s", path, strerror(-err));
		goto close_fd;
	}
	if (S_ISBLK(st.st_mode)) {
		dev->is_blockdev = true;
		err = probe_blockdev(dev, &st);
	} else if (S_ISREG(st.st_mode)) {
		err = probe_file(dev, &st);
	} else {
		dev_err(dev, "%s is neither a block device nor a regular file", path);
		err = -ENOTBLK;
	}
	if (err)
		goto close_fd;
	if ((flags & KFIO_OPEN_WRITE) && dev->is_blockdev && dev->device_read_only) {
		/* The kernel lets O_RDWR open a read-only device and fails each write;
		 * refuse up front so nothing is half-applied. */
		dev_err(dev,
			"%s is a read-only block device; make it writable (blockdev --setrw %s) to use it as a standby",
			path, path);
		err = -EROFS;
		goto close_fd;
	}
	if (!dev->direct) {
		dev->dio_mem_align = 1;
		dev->dio_offset_align = 1;
	}
	return 0;

close_fd:
	close(dev->fd);
	dev->fd = -1;
	return err;
}

void kfio_dev_close(struct kfio_dev *dev)
{
	if (dev->fd >= 0)
		close(dev->fd);
	dev->fd = -1;
}

int kfio_dev_check_io(struct kfio_dev *dev, uint64_t offset, uint64_t len, const void *buf,
		      bool allow_past_end)
{
	uint32_t a = dev->dio_offset_align;
	const char *what = dev->is_blockdev ? "the device's" : "the file's O_DIRECT";

	if (a > 1 && offset % a) {
		dev_err(dev,
			"%s: offset %" PRIu64 " is not aligned to %s %u-byte logical block size",
			dev->path, offset, what, a);
		return -EINVAL;
	}
	if (a > 1 && len % a) {
		dev_err(dev,
			"%s: length %" PRIu64 " is not a multiple of %s %u-byte logical block size",
			dev->path, len, what, a);
		return -EINVAL;
	}
	if (buf && dev->dio_mem_align > 1 && (uintptr_t)buf % dev->dio_mem_align) {
		dev_err(dev,
			"%s: buffer address %p is not aligned to %u bytes as O_DIRECT requires",
			dev->path, buf, dev->dio_mem_align);
		return -EINVAL;
	}
	if (!allow_past_end && (offset > dev->size_bytes || len > dev->size_bytes - offset)) {
		dev_err(dev,
			"%s: range %" PRIu64 "+%" PRIu64 " ends beyond the end of the %" PRIu64
			"-byte %s",
			dev->path, offset, len, dev->size_bytes,
			dev->is_blockdev ? "device" : "file");
		return -ERANGE;
	}
	return 0;
}

int kfio_dev_flush(struct kfio_dev *dev)
{
	if (fdatasync(dev->fd) < 0) {
		int err = -errno;

		dev_err(dev, "%s: flush (fdatasync) failed: %s", dev->path, strerror(-err));
		return err;
	}
	return 0;
}

static int range_ioctl(struct kfio_dev *dev, unsigned long req, const char *name, uint64_t offset,
		       uint64_t len)
{
	uint64_t range[2] = { offset, len };

	if (ioctl(dev->fd, req, range) < 0) {
		int err = -errno;

		dev_err(dev, "%s: %s of %" PRIu64 "+%" PRIu64 " failed: %s", dev->path, name,
			offset, len, strerror(-err));
		return err;
	}
	return 0;
}

static int file_fallocate(struct kfio_dev *dev, int mode, const char *name, uint64_t offset,
			  uint64_t len)
{
	if (fallocate(dev->fd, mode, (off_t)offset, (off_t)len) < 0) {
		int err = -errno;

		dev_err(dev, "%s: %s of %" PRIu64 "+%" PRIu64 " failed: %s", dev->path, name,
			offset, len, strerror(-err));
		return err;
	}
	return 0;
}

static int check_range_write(struct kfio_dev *dev, uint64_t offset, uint64_t len)
{
	if (dev->read_only) {
		dev_err(dev, "%s is open read-only", dev->path);
		return -EBADF;
	}
	return kfio_dev_check_io(dev, offset, len, NULL, false);
}

int kfio_dev_discard(struct kfio_dev *dev, uint64_t offset, uint64_t len)
{
	int err = check_range_write(dev, offset, len);

	if (err)
		return err;
	if (dev->is_blockdev)
		return range_ioctl(dev, BLKDISCARD, "discard (BLKDISCARD)", offset, len);
	return file_fallocate(dev, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      "discard (punch hole)", offset, len);
}

int kfio_dev_zero_out(struct kfio_dev *dev, uint64_t offset, uint64_t len)
{
	int err = check_range_write(dev, offset, len);

	if (err)
		return err;
	if (dev->is_blockdev)
		return range_ioctl(dev, BLKZEROOUT, "zero-out (BLKZEROOUT)", offset, len);
	/* ZERO_RANGE keeps the blocks allocated, so later writes do not allocate. */
	err = file_fallocate(dev, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			     "zero-out (zero range)", offset, len);
	if (err == -EOPNOTSUPP)
		err = file_fallocate(dev, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				     "zero-out (punch hole)", offset, len);
	return err;
}

int kfio_dev_pread_all(struct kfio_dev *dev, void *buf, uint64_t len, uint64_t offset)
{
	uint64_t done = 0;
	int rc = kfio_dev_check_io(dev, offset, len, buf, false);

	if (rc)
		return rc;

	while (done < len) {
		ssize_t n = pread(dev->fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			dev_err(dev, "%s: read at offset %" PRIu64 " failed: %s", dev->path,
				offset + done, strerror(-err));
			return err;
		}
		if (n == 0) {
			dev_err(dev, "%s: read at offset %" PRIu64 " hit the end of the device",
				dev->path, offset + done);
			return -ENODATA;
		}
		done += (uint64_t)n;
	}
	return 0;
}

int kfio_dev_pwrite_all(struct kfio_dev *dev, const void *buf, uint64_t len, uint64_t offset)
{
	uint64_t done = 0;
	int rc = check_range_write(dev, offset, len);

	if (rc)
		return rc;
	if (dev->dio_mem_align > 1 && (uintptr_t)buf % dev->dio_mem_align) {
		dev_err(dev,
			"%s: buffer address %p is not aligned to %u bytes as O_DIRECT requires",
			dev->path, buf, dev->dio_mem_align);
		return -EINVAL;
	}

	while (done < len) {
		ssize_t n = pwrite(dev->fd, (const char *)buf + done, len - done,
				   (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			dev_err(dev, "%s: write at offset %" PRIu64 " failed: %s", dev->path,
				offset + done, strerror(-err));
			return err;
		}
		done += (uint64_t)n;
	}
	return 0;
}

static int fs_ioctl(const char *mountpoint, unsigned long req, const char *name, char *err,
		    size_t err_len)
{
	int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0) {
		rc = -errno;
		kfio_fmt(err, err_len, "%s: cannot open the mount point for %s: %s", mountpoint,
			 name, strerror(-rc));
		return rc;
	}
	if (ioctl(fd, req, 0) < 0) {
		rc = -errno;
		if (rc == -EBUSY && req == FIFREEZE)
			kfio_fmt(err, err_len, "%s is already frozen; thaw it first (fsfreeze -u)",
				 mountpoint);
		else if (rc == -EINVAL && req == FITHAW)
			kfio_fmt(err, err_len, "%s is not frozen", mountpoint);
		else if (rc == -EOPNOTSUPP)
			kfio_fmt(err, err_len, "%s: the filesystem does not support %s", mountpoint,
				 name);
		else
			kfio_fmt(err, err_len, "%s: %s failed: %s", mountpoint, name,
				 strerror(-rc));
	}
	close(fd);
	return rc;
}

int kfio_fs_freeze(const char *mountpoint, char *err, size_t err_len)
{
	return fs_ioctl(mountpoint, FIFREEZE, "freeze (FIFREEZE)", err, err_len);
}

int kfio_fs_thaw(const char *mountpoint, char *err, size_t err_len)
{
	return fs_ioctl(mountpoint, FITHAW, "thaw (FITHAW)", err, err_len);
}

int kfio_fs_clone(const char *src_path, const char *dst_path, char *err, size_t err_len)
{
	int src, dst, rc = 0;

	src = open(src_path, O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		rc = -errno;
		kfio_fmt(err, err_len, "%s: cannot open clone source: %s", src_path, strerror(-rc));
		return rc;
	}
	dst = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (dst < 0) {
		rc = -errno;
		kfio_fmt(err, err_len, "%s: cannot create clone target: %s", dst_path,
			 strerror(-rc));
		goto close_src;
	}
	if (ioctl(dst, FICLONE, src) < 0) {
		rc = -errno;
		if (rc == -EOPNOTSUPP || rc == -EINVAL)
			kfio_fmt(
				err, err_len,
				"%s: the filesystem cannot reflink (FICLONE); put the images on xfs (reflink=1) or btrfs",
				src_path);
		else if (rc == -EXDEV)
			kfio_fmt(
				err, err_len,
				"%s and %s are on different filesystems; a reflink clone must stay on one",
				src_path, dst_path);
		else
			kfio_fmt(err, err_len, "%s: FICLONE to %s failed: %s", src_path, dst_path,
				 strerror(-rc));
		close(dst);
		unlink(dst_path);
		goto close_src;
	}
	if (close(dst) < 0) {
		rc = -errno;
		kfio_fmt(err, err_len, "%s: close failed: %s", dst_path, strerror(-rc));
	}
close_src:
	close(src);
	return rc;
}

void *kfio_buf_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, KFIO_MEM_ALIGN, len ? len : KFIO_MEM_ALIGN))
		return NULL;
	return p;
}

void kfio_buf_free(void *buf, size_t len)
{
	(void)len;
	free(buf);
}
