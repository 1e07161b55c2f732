/* SPDX-License-Identifier: Apache-2.0 */
/*
 * capture — making an epoch one instant of the source.
 *
 * A tracked epoch is read in rounds (sender.c): the first round reads what was
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

enum capture_mode {
	CAPTURE_AUTO = 0,   /* freeze where a file system is mounted from the device, else none */
	CAPTURE_NONE = 1,   /* live reads: not one instant (said so in status) */
	CAPTURE_FREEZE = 2, /* FIFREEZE of the file system on the device, or an error */
};

struct capture_config {
	enum capture_mode mode;
	const char *freeze_path;    /* NULL: the mount point found for the device */
	uint32_t freeze_timeout_ms; /* 0: CAPTURE_FREEZE_TIMEOUT_MS_DEFAULT */
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
};

/*
 * Resolves the mode for the volume on device (a block device: its st_rdev
 * names the file system). freeze: the mount point is freeze_path (checked to
 * be a file system on that device) or found in /proc/self/mountinfo; auto
 * falls back to none, with the reason in why_none, where there is none (or
 * tracking is off: rounds need the tracker). Returns 0, or -errno with a
 * sentence in err naming the device, the path and the fix.
 */
int capture_open(struct capture *c, const struct capture_config *cfg, const char *volume,
		 const char *device, bool tracking, char *err, size_t err_len);
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

/* "none", "freeze", "auto" <-> the enum; 0 or -EINVAL. */
int capture_mode_parse(const char *s, enum capture_mode *m);
const char *capture_mode_name(enum capture_mode m);

#endif
