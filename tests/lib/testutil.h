/* SPDX-License-Identifier: Apache-2.0 */
/*
 * testutil — small helpers shared by every unit test binary (prefix tu_).
 *
 * Temp files and directories with a deterministic content pattern, loop devices
 * attached with direct I/O through the real ioctls, mounts in a private mount
 * namespace, shell commands with their exit checked, and the skip convention
 * (print the reason, exit 77). Everything created is registered and undone at exit,
 * on a fatal signal, or earlier by the matching tu_*_release call, so a failing
 * assertion never leaves a loop device, a mount or a file behind.
 *
 * It knows nothing of kfio or of any other module under test, and nothing of the
 * test harness: functions report failure by returning -errno (after printing what
 * failed on stderr), and the test decides what that means.
 */
#ifndef PVREPL_TESTUTIL_H
#define PVREPL_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TU_PATH_MAX  4096
#define TU_EXIT_SKIP 77

/* -------------------------------------------------------------- skipping */

/* Prints "SKIP: <reason>" as the last line of output and exits 77. */
__attribute__((noreturn, format(printf, 1, 2))) void tu_skip(const char *fmt, ...);
/* Skips unless the process runs as root. */
void tu_require_root(void);
/* Skips unless a program named prog is found in PATH (or /sbin, /usr/sbin). */
void tu_require_prog(const char *prog);
/* Skips unless the filesystem type is known to the kernel (/proc/filesystems). */
void tu_require_fs(const char *fstype);
/* Skips unless /dev/loop-control can be opened. */
void tu_require_loop(void);

/* -------------------------------------------------------------- patterns */

/* A splitmix64 step: deterministic randomness for tests. */
uint64_t tu_rand_next(uint64_t *state);
/* A value in [0, bound); bound > 0. */
uint64_t tu_rand_below(uint64_t *state, uint64_t bound);
/*
 * Fills buf with the pattern of seed as it appears at byte offset of a device:
 * every byte depends on (seed, offset + i), so data written to the wrong place or
 * from the wrong generation is detected. offset and len need not be aligned.
 */
void tu_pattern_fill(void *buf, size_t len, uint64_t offset, uint64_t seed);
/*
 * Returns -1 when buf holds the pattern of seed at offset, else the index of the
 * first byte that differs.
 */
long tu_pattern_mismatch(const void *buf, size_t len, uint64_t offset, uint64_t seed);
/* True when all len bytes are zero. */
bool tu_is_zero(const void *buf, size_t len);

/* ------------------------------------------------------ files and dirs */

/* Makes a temp dir (under $TMPDIR or /tmp, name with the pid) removed at exit. */
int tu_tmpdir(char *out, size_t out_len);
/*
 * Makes a temp file of size_bytes whose content is the pattern of seed (seed 0
 * means a sparse file of zeros). Removed at exit or by tu_tmpfile_release.
 */
int tu_tmpfile(char *out, size_t out_len, uint64_t size_bytes, uint64_t seed);
/* Fills [offset, offset + len) of path with the pattern of seed (buffered, fsynced). */
int tu_file_fill(const char *path, uint64_t offset, uint64_t len, uint64_t seed);
/* Reads [offset, offset + len) of path (buffered) into buf; short reads are errors. */
int tu_file_read(const char *path, void *buf, size_t len, uint64_t offset);
/* Removes the file now and forgets it. */
void tu_tmpfile_release(const char *path);

/* Direct I/O alignment of an open file through statx(STATX_DIOALIGN). */
int tu_statx_dio(int fd, uint32_t *mem_align, uint32_t *offset_align);

/* ---------------------------------------------------------- loop devices */

struct tu_loop {
	char dev[64];		/* /dev/loopN */
	char file[TU_PATH_MAX]; /* backing file */
	int fd;			/* held open; the device has LO_FLAGS_AUTOCLEAR */
	uint32_t block_bytes;	/* logical block size set with LOOP_CONFIGURE */
	bool direct;		/* LO_FLAGS_DIRECT_IO reported after configure */
	bool read_only;
};

/*
 * Attaches file to a free loop device with LOOP_CONFIGURE: direct I/O on, the
 * given logical block size (512..4096), autoclear, optionally read-only. The
 * device fd stays open in lp->fd so the kernel detaches the device even if this
 * process is killed; tu_loop_detach (or exit) detaches it explicitly.
 */
int tu_loop_attach(struct tu_loop *lp, const char *file, uint32_t block_bytes, bool read_only);
/* LOOP_CLR_FD and close; safe to call twice. */
void tu_loop_detach(struct tu_loop *lp);
/* BLKROSET on the loop device (ro = true makes it read-only). */
int tu_loop_set_ro(struct tu_loop *lp, bool ro);

/* ------------------------------------------------ backings (file or loop) */

enum tu_backing_kind {
	TU_BACKING_FILE = 0,	 /* a regular temp file */
	TU_BACKING_LOOP512 = 1,	 /* a loop device, direct I/O, 512-byte blocks */
	TU_BACKING_LOOP4096 = 2, /* a loop device, direct I/O, 4096-byte blocks */
};

/* Something to open as a volume: a temp file, or a loop device over one. */
struct tu_backing {
	enum tu_backing_kind kind;
	char path[TU_PATH_MAX]; /* what to open: the file or /dev/loopN */
	char file[TU_PATH_MAX]; /* the regular file underneath */
	uint64_t size_bytes;
	struct tu_loop loop; /* attached when kind != TU_BACKING_FILE */
};

const char *tu_backing_name(enum tu_backing_kind kind);
/* Creates the file (pattern of seed, 0 = zeros) and attaches a loop if asked. */
int tu_backing_create(struct tu_backing *b, enum tu_backing_kind kind, uint64_t size_bytes,
		      uint64_t seed);
/* Detaches and removes; safe to call twice. */
void tu_backing_destroy(struct tu_backing *b);

/* ----------------------------------------------------- commands, mounts */

/*
 * Runs a shell command (printf-style) with output captured; on a non-zero exit
 * prints the command and its output to stderr. Returns the exit status (0..255),
 * or -errno / 128 + signal.
 */
__attribute__((format(printf, 1, 2))) int tu_run(const char *fmt, ...);

/*
 * Mounts dev (fstype, options may be NULL) on a fresh temp dir returned in mnt.
 * The first mount moves the process into a private mount namespace, so mounts
 * vanish with the process even on SIGKILL. The cleanup thaws (FITHAW, in case a
 * test left it frozen), unmounts and removes the dir.
 */
int tu_mount(const char *dev, const char *fstype, const char *options, char *mnt, size_t mnt_len);
/* Thaws if frozen, unmounts now and removes the dir; safe to call twice. */
void tu_umount(const char *mnt);

/* Runs every registered cleanup now (also runs at exit); idempotent. */
void tu_cleanup_all(void);

#endif
