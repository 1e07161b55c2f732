/* SPDX-License-Identifier: Apache-2.0 */
/*
 * capture — making an epoch one instant of the source.
 *
 * freeze. A tracked epoch is read in rounds (sender.c): the first round reads what was
 * written since the last epoch, live; each further round reads what was
 * written during the one before it, after a syncfs of the file system so the
 * page cache reaches the device while writes still flow; once a round's set is
 * small the file system is frozen (FIFREEZE), the last set is harvested and
 * read, and it is thawed (FITHAW). Everything the standby holds after that
 * epoch is the source at the freeze: blocks unchanged since their last read
 * were read after the previous harvest, every other block in a later round.
 *
 * The freeze is bounded: a watchdog process, forked before FIFREEZE, thaws the
 * file system when the freeze outlives the timeout, or at once when the sender
 * dies (it sees its pipe close), and it ignores the signals of the terminal.
 * An epoch whose freeze the watchdog ended is aborted (nothing committed; the
 * standby keeps its previous instant).
 *
 * FIFREEZE stops the file system's writers, not the raw device's: what is
 * marked while frozen belongs to the next epoch, and the tracker sees it.
 *
 * reflink and snapshot. The epoch reads an image of the volume made at one
 * instant: a clone of its file (FICLONE into an unnamed file beside it), or
 * the device a snapshot command prints. The tracker is harvested before the
 * image and again after it: the epoch reads both sets from the image, and the
 * second set is marked again for the next epoch (what was written while the
 * image was made may be in it or not). Every block that changed since the
 * last epoch was marked by one of the harvests or completed after the image's
 * instant, so the standby becomes the image: the source at that instant (a
 * write still in flight then may be missing, as a crash could have lost it).
 */
#ifndef PVREPL_CAPTURE_H
#define PVREPL_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CAPTURE_FREEZE_TIMEOUT_MS_DEFAULT 2000u
#define CAPTURE_FREEZE_TIMEOUT_MS_MIN	  10u
#define CAPTURE_FREEZE_TIMEOUT_MS_MAX	  60000u
#define CAPTURE_PATH_MAX		  4096u
#define CAPTURE_WHY_MAX			  512u

/* A clone that takes longer than this is reported as a warning: all I/O to
 * the file waits for it (a fragmented file clones slowly). */
#define CAPTURE_CLONE_WARN_MS 100u
/* The snapshot and release commands are killed (their process group) past this. */
#define CAPTURE_CMD_TIMEOUT_MS 120000u

enum capture_mode {
	CAPTURE_AUTO = 0,     /* freeze, else reflink, else none (capture_open) */
	CAPTURE_NONE = 1,     /* live reads: not one instant (said so in status) */
	CAPTURE_FREEZE = 2,   /* FIFREEZE of the file system on the device, or an error */
	CAPTURE_REFLINK = 3,  /* FICLONE of the volume's file (or a loop device's), read */
	CAPTURE_SNAPSHOT = 4, /* a device the snapshot command makes, read */
};

struct capture_config {
	enum capture_mode mode;
	const char *freeze_path;	  /* NULL: the mount point found for the device */
	uint32_t freeze_timeout_ms;	  /* 0: CAPTURE_FREEZE_TIMEOUT_MS_DEFAULT */
	const char *snapshot_cmd;	  /* snapshot: prints the snapshot device's path */
	const char *snapshot_release_cmd; /* snapshot: after the epoch; NULL: none */
};

/* What an epoch's capture resolved to. */
struct capture {
	enum capture_mode mode;		/* CAPTURE_NONE or CAPTURE_FREEZE */
	char why_none[CAPTURE_WHY_MAX]; /* auto that found nothing to freeze: why */
	char path[CAPTURE_PATH_MAX];	/* the mount point frozen */
	int fd;				/* open on path; -1 */
	uint32_t timeout_ms;
	/* the freeze in progress */
	bool frozen;
	pid_t watchdog;
	int watchdog_fd; /* the write end of the watchdog's pipe; -1 */
	int64_t freeze_unix_ms;
	double freeze_t0;
	/* reflink: the file cloned (the volume, or a loop device's backing file),
	 * open, and the directory its clones are made in (unnamed: O_TMPFILE, so
	 * a killed sender leaves none behind) */
	char clone_src[CAPTURE_PATH_MAX];
	int src_fd;
	int dir_fd;
	/* snapshot: the commands, and the volume's device (never its own snapshot) */
	const char *snapshot_cmd;
	const char *snapshot_release_cmd;
	const char *volume;
	const char *device;
	dev_t device_rdev;
	/* the image of this epoch (reflink: the clone; snapshot: the device) */
	bool image_held;
	int image_fd;				/* reflink: the clone; -1 */
	char image[CAPTURE_PATH_MAX];		/* the path the epoch reads */
	char image_name[CAPTURE_PATH_MAX + 32]; /* what messages call it (the command too) */
	int64_t image_unix_ms;			/* the instant it holds */
	double image_ms; /* how long making it took (the clone, the command) */
};

/*
 * Resolves the mode for the volume on device. freeze (a block device: its
 * st_rdev names the file system): the mount point is freeze_path (checked to
 * be a file system on that device) or found in /proc/self/mountinfo, and
 * tracking must be on (rounds need the tracker). reflink: the device is a
 * regular file, or a loop device whose backing file is, on a file system
 * that clones (checked by cloning an empty file). snapshot: the command is
 * set. auto tries freeze, then reflink, and falls back to none with the
 * reasons in why_none. Returns 0, or -errno with a sentence in err naming
 * the device, the path and the fix.
 */
int capture_open(struct capture *c, const struct capture_config *cfg, const char *volume,
		 const char *device, bool tracking, char *err, size_t err_len);
/* A capture nothing was opened for (every fd -1): capture_close may run on it. */
void capture_init(struct capture *c);
void capture_close(struct capture *c);

/* syncfs(2) of the frozen-to-be file system (no-op for none). 0 or -errno. */
int capture_sync(struct capture *c, char *err, size_t err_len);

/* Starts the watchdog and freezes. 0 or -errno with err (nothing frozen then). */
int capture_freeze(struct capture *c, char *err, size_t err_len);

/*
 * Thaws (when still frozen) and stops the watchdog. *held_ms is how long the
 * file system was frozen. Returns 0, -ETIMEDOUT when the watchdog thawed it
 * first (what was read may not be one instant: abort the epoch), or -errno.
 */
int capture_thaw(struct capture *c, double *held_ms, char *err, size_t err_len);

/* Whether the mode reads an image of the volume (reflink, snapshot). */
bool capture_reads_image(const struct capture *c);

/*
 * Makes this epoch's image: reflink clones the file (c->image_ms is the
 * FICLONE call, which all I/O to the file waits for), snapshot runs the
 * command (environment PVREPL_VOLUME, PVREPL_DEVICE, PVREPL_EPOCH) and takes
 * the first line it prints as the device's path. c->image is then the path to
 * read, and c->image_unix_ms its instant (when the clone or the command
 * began: every write completed before then is in it). tick (may be NULL) is
 * called about once a second while a snapshot command runs. 0 or -errno with
 * err. A snapshot that is the volume's own storage is refused (and never
 * released).
 */
int capture_image(struct capture *c, uint64_t epoch, void (*tick)(void *), void *tick_ctx,
		  char *err, size_t err_len);

/*
 * Drops the image (reflink: closes the clone, which the file system then
 * frees; snapshot: runs the release command with PVREPL_SNAPSHOT too). Does
 * nothing when none is held. 0, or -errno with err (the epoch may still
 * stand: the caller warns).
 */
int capture_image_release(struct capture *c, uint64_t epoch, char *err, size_t err_len);

/* "none", "freeze", "reflink", "snapshot", "auto" <-> the enum; 0 or -EINVAL. */
int capture_mode_parse(const char *s, enum capture_mode *m);
const char *capture_mode_name(enum capture_mode m);

#endif
