/* SPDX-License-Identifier: Apache-2.0 */
/*
 * devid — which storage a volume's path names, so two volumes never share it.
 *
 * Two paths can name the same bytes: a symlink, two device nodes, two loop
 * devices over one file, a loop device and its backing file, a disk and one of
 * its partitions. A volume's path is resolved to the thing that holds its
 * bytes and the range of it:
 *
 *   a regular file            the file (st_dev, st_ino), [0, its size)
 *   a loop device             its backing file, [offset, offset + size)
 *   a partition               its disk (recursively: a loop device's partition is
 *                             a range of the loop device's file), [start, + size)
 *   any other block device    itself (st_rdev), [0, its size)
 *
 * and two volumes conflict when they resolve to the same thing with ranges
 * that overlap (devid_overlap). Device-mapper stacks are taken as they are (a
 * dm device over a partition is not traced to the disk).
 */
#ifndef PVREPL_DEVID_H
#define PVREPL_DEVID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct devid {
	bool is_file; /* a regular file holds the bytes (fs_dev, ino); else disk */
	dev_t fs_dev;
	ino_t ino;
	dev_t disk;
	uint64_t start, len; /* bytes */
	char what[320];	     /* "file X", "disk 7:0", for messages */
	/* is_file: the file's path (the path given, or a loop device's backing
	 * file as sysfs names it: check it is (fs_dev, ino) before trusting it) */
	char file[4096];
};

/* Resolves path; 0, or -errno with a sentence naming it in err (missing, not a
 * file or block device, unreadable sysfs). */
int devid_resolve(const char *path, struct devid *out, char *err, size_t err_len);

/* Whether a and b share bytes. */
bool devid_overlap(const struct devid *a, const struct devid *b);

/*
 * The loop device (its /dev name into loop) over the regular file path, if
 * any: 1 found, 0 none, -errno when path cannot be looked at.
 */
int devid_loop_over(const char *path, char *loop, size_t loop_len);

/*
 * Among n volumes (names[i] on paths[i]), the first two whose storage overlaps:
 * -EINVAL (a configuration error) with a sentence naming both volumes, both paths and what they share
 * in err; 0 when none does. A path that does not resolve is left to the code
 * that opens it (not a conflict).
 */
int devid_find_conflict(const char *const *names, const char *const *paths, unsigned n, char *err,
			size_t err_len);

#endif
