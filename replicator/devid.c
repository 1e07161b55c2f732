// SPDX-License-Identifier: Apache-2.0
/*
 * devid — the storage behind a volume's path (see devid.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "devid.h"

/* A partition chain deeper than this is not followed (none is). */
#define DEVID_DEPTH_MAX 4

/* A number from /sys/dev/block/M:m/<name>: 0, or -errno (-ENOENT: no such attribute). */
static int sysfs_u64(dev_t rdev, const char *name, uint64_t *v)
{
	char p[128], line[64];
	FILE *f;
	int rc = 0;

	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/%s", major(rdev), minor(rdev), name);
	f = fopen(p, "re");
	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "%" SCNu64, v) != 1)
		rc = -EIO;
	fclose(f);
	return rc;
}

/* The disk a partition rdev is on (the "dev" of its sysfs parent). */
static int parent_disk(dev_t rdev, dev_t *disk)
{
	char p[128], line[64];
	unsigned ma, mi;
	FILE *f;
	int rc = -EIO;

	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../dev", major(rdev), minor(rdev));
	f = fopen(p, "re");
	if (!f)
		return -errno;
	if (fgets(line, sizeof(line), f) && sscanf(line, "%u:%u", &ma, &mi) == 2) {
		*disk = makedev(ma, mi);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* A block device rdev (opened as path when it is a loop device), resolved. */
static int resolve_blk(const char *path, dev_t rdev, int depth, struct devid *out, char *err,
		       size_t err_len)
{
	uint64_t part, start, sectors;
	char node[64];
	int fd, rc;

	if (depth > DEVID_DEPTH_MAX) {
		snprintf(err, err_len, "%s: partitions nested too deep to resolve", path);
		return -ELOOP;
	}
	rc = sysfs_u64(rdev, "size", &sectors);
	if (rc) {
		snprintf(err, err_len, "%s: cannot read the size of block device %u:%u: %s", path,
			 major(rdev), minor(rdev), strerror(-rc));
		return rc;
	}
	if (!sysfs_u64(rdev, "partition", &part) && !sysfs_u64(rdev, "start", &start)) {
		dev_t disk = 0;

		rc = parent_disk(rdev, &disk);
		if (rc) {
			snprintf(err, err_len, "%s: cannot find the disk of partition %u:%u: %s",
				 path, major(rdev), minor(rdev), strerror(-rc));
			return rc;
		}
		/* The disk's node may not exist under /dev here: resolve by number,
		 * opening it only when it is a loop device (for its backing file). */
		snprintf(node, sizeof(node), "/dev/block/%u:%u", major(disk), minor(disk));
		rc = resolve_blk(node, disk, depth + 1, out, err, err_len);
		if (rc)
			return rc;
		out->start += start * 512;
		out->len = sectors * 512;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	out->disk = rdev;
	out->len = sectors * 512;
	snprintf(out->what, sizeof(out->what), "block device %u:%u", major(rdev), minor(rdev));
	/* A loop device: the bytes are its backing file's, from its offset. */
	if (sysfs_u64(rdev, "loop/offset", &start))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		struct loop_info64 li;
		struct stat st;

		if (!fstat(fd, &st) && S_ISBLK(st.st_mode) && st.st_rdev == rdev &&
		    !ioctl(fd, LOOP_GET_STATUS64, &li)) {
			out->is_file = true;
			out->fs_dev = (dev_t)li.lo_device;
			out->ino = (ino_t)li.lo_inode;
		}
		close(fd);
	}
	{
		/* The backing file's name (a path in the loop device's mount
		 * namespace); the only identity when there is no node to ask (a
		 * partition's disk seen only in sysfs), if reachable here. */
		char p[128];
		struct stat st;
		FILE *f;

		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/loop/backing_file", major(rdev),
			 minor(rdev));
		f = fopen(p, "re");
		if (f && fgets(out->file, sizeof(out->file), f)) {
			out->file[strcspn(out->file, "\n")] = '\0';
			if (!out->is_file && !stat(out->file, &st) && S_ISREG(st.st_mode)) {
				out->is_file = true;
				out->fs_dev = st.st_dev;
				out->ino = st.st_ino;
			}
		}
		if (f)
			fclose(f);
	}
	if (out->is_file) {
		out->start = start;
		snprintf(out->what, sizeof(out->what),
			 "the backing file of loop device %u:%u (inode %" PRIu64 " on %u:%u)",
			 major(rdev), minor(rdev), (uint64_t)out->ino, major(out->fs_dev),
			 minor(out->fs_dev));
	}
	return 0;
}

int devid_resolve(const char *path, struct devid *out, char *err, size_t err_len)
{
	struct stat st;
	int rc;

	memset(out, 0, sizeof(*out));
	if (stat(path, &st)) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (S_ISREG(st.st_mode)) {
		char real[PATH_MAX];

		out->is_file = true;
		out->fs_dev = st.st_dev;
		out->ino = st.st_ino;
		out->len = (uint64_t)st.st_size;
		snprintf(out->file, sizeof(out->file), "%s", path);
		snprintf(out->what, sizeof(out->what), "file %.280s",
			 realpath(path, real) ? real : path);
		return 0;
	}
	if (!S_ISBLK(st.st_mode)) {
		snprintf(err, err_len, "%s is neither a block device nor a regular file", path);
		return -EINVAL;
	}
	return resolve_blk(path, st.st_rdev, 0, out, err, err_len);
}

bool devid_overlap(const struct devid *a, const struct devid *b)
{
	bool same = a->is_file == b->is_file &&
		    (a->is_file ? a->fs_dev == b->fs_dev && a->ino == b->ino : a->disk == b->disk);
	uint64_t a_end = a->start + (a->len ? a->len : 1), b_end = b->start + (b->len ? b->len : 1);

	return same && a->start < b_end && b->start < a_end;
}

int devid_find_conflict(const char *const *names, const char *const *paths, unsigned n, char *err,
			size_t err_len)
{
	struct devid *ids = calloc(n ? n : 1, sizeof(*ids));
	bool *ok = calloc(n ? n : 1, sizeof(*ok));
	char why[400];
	int rc = 0;

	if (!ids || !ok) {
		free(ids);
		free(ok);
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n && !rc; i++) {
		ok[i] = devid_resolve(paths[i], &ids[i], why, sizeof(why)) == 0;
		for (unsigned k = 0; ok[i] && k < i && !rc; k++) {
			if (!ok[k] || !devid_overlap(&ids[k], &ids[i]))
				continue;
			snprintf(
				err, err_len,
				"volumes %s and %s share storage: %s and %s are both %s%s; a device can be one volume's only (two volumes over it would write one standby from two sources): remove one of them",
				names[k], names[i], paths[k], paths[i], ids[i].what,
				ids[k].start == ids[i].start && ids[k].len == ids[i].len
					? ""
					: " (overlapping ranges)");
			rc = -EINVAL;
		}
	}
	free(ids);
	free(ok);
	return rc;
}

int devid_loop_over(const char *path, char *loop, size_t loop_len)
{
	struct stat want;
	DIR *d;
	struct dirent *e;
	int found = 0;

	if (stat(path, &want))
		return -errno;
	if (!S_ISREG(want.st_mode))
		return 0;
	d = opendir("/sys/block");
	if (!d)
		return 0; /* no sysfs: nothing to say */
	while (!found && (e = readdir(d))) {
		char p[300], file[4096];
		struct stat st;
		FILE *f;

		if (strncmp(e->d_name, "loop", 4))
			continue;
		snprintf(p, sizeof(p), "/sys/block/%.200s/loop/backing_file", e->d_name);
		f = fopen(p, "re");
		if (!f)
			continue;
		if (fgets(file, sizeof(file), f)) {
			file[strcspn(file, "\n")] = '\0';
			if (!stat(file, &st) && st.st_dev == want.st_dev &&
			    st.st_ino == want.st_ino) {
				snprintf(loop, loop_len, "/dev/%.200s", e->d_name);
				found = 1;
			}
		}
		fclose(f);
	}
	closedir(d);
	return found;
}
