// SPDX-License-Identifier: Apache-2.0
/*
 * capture — the freeze of an epoch's last round (see capture.h for the
 * method and why the standby is then one instant of the source).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "clock.h"
#include "devid.h"
#include "pvrepl_assert.h"

/* The watchdog's exit codes. */
#define WATCHDOG_RELEASED 0 /* the sender thawed and told it */
#define WATCHDOG_TIMEOUT  2 /* it thawed on the timeout */
#define WATCHDOG_ORPHANED 3 /* it thawed because the sender went away */

int capture_mode_parse(const char *s, enum capture_mode *m)
{
	if (!strcmp(s, "auto"))
		*m = CAPTURE_AUTO;
	else if (!strcmp(s, "none"))
		*m = CAPTURE_NONE;
	else if (!strcmp(s, "freeze"))
		*m = CAPTURE_FREEZE;
	else if (!strcmp(s, "reflink"))
		*m = CAPTURE_REFLINK;
	else if (!strcmp(s, "snapshot"))
		*m = CAPTURE_SNAPSHOT;
	else
		return -EINVAL;
	return 0;
}

const char *capture_mode_name(enum capture_mode m)
{
	switch (m) {
	case CAPTURE_AUTO:
		return "auto";
	case CAPTURE_NONE:
		return "none";
	case CAPTURE_FREEZE:
		return "freeze";
	case CAPTURE_REFLINK:
		return "reflink";
	case CAPTURE_SNAPSHOT:
		return "snapshot";
	}
	return "?";
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * The mount point of the file system on rdev from /proc/self/mountinfo: the
 * first mount of its root ("/"), else the first of any of its directories.
 * Returns 1 with out filled, 0 when none, -errno when the table cannot be read.
 */
static int find_mount(dev_t rdev, char *out, size_t out_len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int found = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char root[4096], point[4096];

		if (sscanf(line, "%*u %*u %u:%u %4095s %4095s", &maj, &min, root, point) != 4)
			continue;
		if (makedev(maj, min) != rdev)
			continue;
		unescape(point);
		if (!found || !strcmp(root, "/"))
			snprintf(out, out_len, "%s", point);
		found = 1;
		if (!strcmp(root, "/"))
			break;
	}
	fclose(f);
	return found;
}

/* Whether this thread may freeze a file system (CAP_SYS_ADMIN, effective). */
static bool can_freeze(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d))
		return true; /* unknown: FIFREEZE will say */
	return d[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32));
}

void capture_close(struct capture *c)
{
	if (c->frozen) {
		double held;
		char err[256];

		capture_thaw(c, &held, err, sizeof(err));
	}
	if (c->image_held) {
		char err[256];

		capture_image_release(c, 0, err, sizeof(err));
	}
	if (c->fd >= 0)
		close(c->fd);
	if (c->src_fd >= 0)
		close(c->src_fd);
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	c->fd = -1;
	c->src_fd = -1;
	c->dir_fd = -1;
}

/*
 * freeze: the file system mounted from device, or why not. strict (--capture
 * freeze): every reason is an error with its fix; else the reason goes to
 * why (without the fix) and 0 is returned with c->mode unchanged.
 */
static int freeze_open(struct capture *c, const struct capture_config *cfg, const char *volume,
		       const char *device, bool tracking, bool strict, char *why, size_t why_len,
		       char *err, size_t err_len)
{
	struct stat dst, pst;
	int rc;

	if (!tracking) {
		if (strict) {
			snprintf(
				err, err_len,
				"volume %s: --capture freeze reads the last changes in rounds, which needs the write tracker, and tracking is off here; use --track bpf or auto where it can run, or another --capture",
				volume);
			return -EOPNOTSUPP;
		}
		snprintf(why, why_len, "write tracking is off, and a freeze needs it");
		return 0;
	}
	if (stat(device, &dst)) {
		rc = -errno;
		snprintf(err, err_len, "volume %s: %s: %s", volume, device, strerror(-rc));
		return rc;
	}
	if (!S_ISBLK(dst.st_mode)) {
		if (strict) {
			snprintf(
				err, err_len,
				"volume %s: %s is not a block device: no file system is mounted from it to freeze; use --capture reflink or none",
				volume, device);
			return -EOPNOTSUPP;
		}
		snprintf(why, why_len, "%s is not a block device: nothing to freeze", device);
		return 0;
	}
	if (cfg->freeze_path) {
		if (stat(cfg->freeze_path, &pst)) {
			rc = -errno;
			snprintf(err, err_len, "volume %s: --freeze-path %s: %s", volume,
				 cfg->freeze_path, strerror(-rc));
			return rc;
		}
		if (pst.st_dev != dst.st_rdev) {
			snprintf(
				err, err_len,
				"volume %s: --freeze-path %s is on the file system of device %u:%u, not on %s (%u:%u); give a directory of the file system mounted from %s",
				volume, cfg->freeze_path, major(pst.st_dev), minor(pst.st_dev),
				device, major(dst.st_rdev), minor(dst.st_rdev), device);
			return -EINVAL;
		}
		snprintf(c->path, sizeof(c->path), "%s", cfg->freeze_path);
	} else {
		rc = find_mount(dst.st_rdev, c->path, sizeof(c->path));
		if (rc < 0) {
			snprintf(err, err_len, "volume %s: cannot read /proc/self/mountinfo: %s",
				 volume, strerror(-rc));
			return rc;
		}
		if (rc == 0) {
			if (strict) {
				snprintf(
					err, err_len,
					"volume %s: no file system is mounted from %s (%u:%u) in this mount namespace; mount it, give --freeze-path, or use another --capture",
					volume, device, major(dst.st_rdev), minor(dst.st_rdev));
				return -ENOENT;
			}
			snprintf(why, why_len,
				 "no file system is mounted from %s: nothing to freeze", device);
			return 0;
		}
	}
	if (!can_freeze()) {
		if (strict) {
			snprintf(
				err, err_len,
				"volume %s: freezing %s needs CAP_SYS_ADMIN, which this process lacks; grant it, or use --capture none",
				volume, c->path);
			return -EPERM;
		}
		snprintf(why, why_len,
			 "freezing %.400s needs CAP_SYS_ADMIN, which this process lacks", c->path);
		return 0;
	}
	c->fd = open(c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "volume %s: cannot open %s (the file system to freeze): %s",
			 volume, c->path, strerror(-rc));
		return rc;
	}
	c->mode = CAPTURE_FREEZE;
	return 0;
}

/*
 * reflink: the file to clone (device itself, or its loop device's), open, and
 * a clone of an empty unnamed file in its directory to learn that the file
 * system can clone at all. 0 with c->mode CAPTURE_REFLINK, or -errno with the
 * reason in why.
 */
static int reflink_open(struct capture *c, const char *device, char *why, size_t why_len)
{
	char dir[CAPTURE_PATH_MAX], *slash;
	struct stat sst;
	struct statfs sf;
	struct devid id;
	int a = -1, b = -1, rc;

	/* The file that holds the volume's bytes (devid.h): itself, or the
	 * backing file of the loop device it is. */
	rc = devid_resolve(device, &id, why, why_len);
	if (rc)
		return rc == -EINVAL ? -EOPNOTSUPP : rc;
	if (!id.is_file) {
		snprintf(
			why, why_len,
			"%s is a block device but not a loop device: there is no file to clone (a device can be captured with --capture snapshot)",
			device);
		return -EOPNOTSUPP;
	}
	if (id.start) {
		snprintf(why, why_len,
			 "%s maps %.300s from byte %" PRIu64 ", and a clone is read from 0", device,
			 id.file[0] ? id.file : "its file", id.start);
		return -EOPNOTSUPP;
	}
	snprintf(c->clone_src, sizeof(c->clone_src), "%s", id.file);
	snprintf(dir, sizeof(dir), "%s", c->clone_src);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	c->src_fd = open(c->clone_src, O_RDONLY | O_CLOEXEC);
	c->dir_fd = c->src_fd < 0 ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->src_fd < 0 || c->dir_fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot open %.400s: %s", c->src_fd < 0 ? c->clone_src : dir,
			 strerror(-rc));
		return rc;
	}
	/* The file opened is the one that holds the volume (not one renamed
	 * over its name since, nor a name from another mount namespace). */
	if (fstat(c->src_fd, &sst) || sst.st_ino != id.ino || sst.st_dev != id.fs_dev) {
		snprintf(
			why, why_len,
			"%.220s is not the file behind %.160s here (deleted, renamed, or in another mount namespace)",
			c->clone_src, device);
		return -ESTALE;
	}
	a = openat(c->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	b = a < 0 ? -1 : openat(c->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (a < 0 || b < 0) {
		rc = -errno;
		snprintf(why, why_len,
			 "cannot make an unnamed file in %.200s, where %.200s is cloned: %s", dir,
			 c->clone_src, strerror(-rc));
	} else if (ioctl(b, FICLONE, a)) {
		rc = -errno;
		snprintf(
			why, why_len,
			"%.300s is on a file system that cannot clone files (FICLONE: %s; %s): reflink needs xfs made with reflink=1, or btrfs",
			c->clone_src, strerror(-rc),
			fstatfs(c->dir_fd, &sf)		? "?"
			: sf.f_type == 0x58465342	? "xfs without reflink"
			: sf.f_type == EXT4_SUPER_MAGIC ? "ext4"
							: "not xfs or btrfs");
		if (rc == -EINVAL || rc == -ENOTTY)
			rc = -EOPNOTSUPP;
	} else if (sst.st_size >= sst.st_blksize && sst.st_blksize > 0 &&
		   ioctl(a, FICLONERANGE,
			 &(struct file_clone_range){ .src_fd = c->src_fd,
						     .src_length = (uint64_t)sst.st_blksize })) {
		/* The file system clones, this file does not (one block tried). */
		rc = -errno;
		snprintf(
			why, why_len,
			"%.300s cannot be cloned (FICLONERANGE of its first block: %s)%s",
			c->clone_src, strerror(-rc),
			rc == -EINVAL
				? ": on btrfs, a NOCOW file (chattr +C) cannot be; copy it to a file without +C"
				: "");
		if (rc == -EINVAL || rc == -ENOTTY)
			rc = -EOPNOTSUPP;
	} else {
		rc = 0;
		c->mode = CAPTURE_REFLINK;
	}
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return rc;
}

void capture_init(struct capture *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = CAPTURE_NONE;
	c->fd = -1;
	c->watchdog_fd = -1;
	c->src_fd = -1;
	c->dir_fd = -1;
	c->image_fd = -1;
}

int capture_open(struct capture *c, const struct capture_config *cfg, const char *volume,
		 const char *device, bool tracking, char *err, size_t err_len)
{
	char why_freeze[CAPTURE_WHY_MAX] = "", why[CAPTURE_WHY_MAX] = "";
	struct stat st;
	int rc;

	capture_init(c);
	c->volume = volume;
	c->device = device;
	c->mode = CAPTURE_NONE;
	c->timeout_ms =
		cfg->freeze_timeout_ms ? cfg->freeze_timeout_ms : CAPTURE_FREEZE_TIMEOUT_MS_DEFAULT;
	if (cfg->mode != CAPTURE_SNAPSHOT && (cfg->snapshot_cmd || cfg->snapshot_release_cmd)) {
		snprintf(
			err, err_len,
			"volume %s: a snapshot command is set, but the capture is %s: use --capture snapshot, or drop the command",
			volume, capture_mode_name(cfg->mode));
		return -EINVAL;
	}
	switch (cfg->mode) {
	case CAPTURE_NONE:
		return 0;
	case CAPTURE_FREEZE:
		return freeze_open(c, cfg, volume, device, tracking, true, why, sizeof(why), err,
				   err_len);
	case CAPTURE_SNAPSHOT:
		if (!cfg->snapshot_cmd || !cfg->snapshot_cmd[0]) {
			snprintf(
				err, err_len,
				"volume %s: --capture snapshot needs --snapshot-cmd, a command that prints the path of a read-only point-in-time device of the volume",
				volume);
			return -EINVAL;
		}
		if (stat(device, &st)) {
			rc = -errno;
			snprintf(err, err_len, "volume %s: %s: %s", volume, device, strerror(-rc));
			return rc;
		}
		c->device_rdev = S_ISBLK(st.st_mode) ? st.st_rdev : 0;
		c->snapshot_cmd = cfg->snapshot_cmd;
		c->snapshot_release_cmd = cfg->snapshot_release_cmd;
		c->mode = CAPTURE_SNAPSHOT;
		return 0;
	case CAPTURE_REFLINK:
		rc = reflink_open(c, device, why, sizeof(why));
		if (rc) {
			capture_close(c);
			snprintf(
				err, err_len,
				"volume %s: --capture reflink: %s; use --capture freeze, snapshot or none",
				volume, why);
		}
		return rc;
	case CAPTURE_AUTO:
		break;
	}
	rc = freeze_open(c, cfg, volume, device, tracking, false, why_freeze, sizeof(why_freeze),
			 err, err_len);
	if (rc || c->mode == CAPTURE_FREEZE)
		return rc;
	rc = reflink_open(c, device, why, sizeof(why));
	if (!rc)
		return 0;
	capture_close(c);
	c->mode = CAPTURE_NONE;
	snprintf(c->why_none, sizeof(c->why_none), "%.240s, and %.240s (epochs are live reads)",
		 why_freeze, why);
	return 0;
}

int capture_sync(struct capture *c, char *err, size_t err_len)
{
	if (c->mode != CAPTURE_FREEZE)
		return 0;
	if (syncfs(c->fd)) {
		int rc = -errno;

		snprintf(err, err_len, "syncfs of %s failed: %s", c->path, strerror(-rc));
		return rc;
	}
	return 0;
}

/*
 * The watchdog, in the child: only async-signal-safe calls. It leaves the
 * terminal's process group and ignores its signals, so a ^C that stops the
 * sender still finds it there to thaw.
 */
static void watchdog_main(int fs_fd, int pipe_fd, uint32_t timeout_ms)
{
	struct sigaction sa;
	struct pollfd p = { .fd = pipe_fd, .events = POLLIN };
	char b;
	int n;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	setpgid(0, 0);
	do
		n = poll(&p, 1, (int)timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 1 && read(pipe_fd, &b, 1) == 1)
		_exit(WATCHDOG_RELEASED);
	ioctl(fs_fd, FITHAW, 0);
	_exit(n == 0 ? WATCHDOG_TIMEOUT : WATCHDOG_ORPHANED);
}

int capture_freeze(struct capture *c, char *err, size_t err_len)
{
	int p[2], rc;
	pid_t pid;

	ASSERT(c->mode == CAPTURE_FREEZE);
	ASSERT(!c->frozen);
	if (pipe2(p, O_CLOEXEC)) {
		rc = -errno;
		snprintf(err, err_len, "cannot make the freeze watchdog's pipe: %s", strerror(-rc));
		return rc;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(p[0]);
		close(p[1]);
		snprintf(err, err_len, "cannot start the freeze watchdog: %s", strerror(-rc));
		return rc;
	}
	if (pid == 0) {
		close(p[1]);
		watchdog_main(c->fd, p[0], c->timeout_ms);
	}
	close(p[0]);
	c->watchdog = pid;
	c->watchdog_fd = p[1];
	c->freeze_t0 = clock_mono_s();
	if (ioctl(c->fd, FIFREEZE, 0)) {
		rc = -errno;
		snprintf(err, err_len, "FIFREEZE of %s failed: %s%s", c->path, strerror(-rc),
			 rc == -EPERM	? " (freezing needs CAP_SYS_ADMIN)"
			 : rc == -EBUSY ? " (is it frozen already, by fsfreeze or another sender?)"
					: "");
		/* Released at once: the watchdog must not thaw a freeze of someone else. */
		if (write(c->watchdog_fd, "r", 1) != 1) {
			/* closing the pipe below makes it thaw, which is no worse */
		}
		close(c->watchdog_fd);
		c->watchdog_fd = -1;
		waitpid(c->watchdog, NULL, 0);
		c->watchdog = 0;
		return rc;
	}
	c->frozen = true;
	c->freeze_unix_ms = clock_unix_ms();
	return 0;
}

int capture_thaw(struct capture *c, double *held_ms, char *err, size_t err_len)
{
	int rc = 0, status = 0, thaw_errno = 0;

	ASSERT(c->frozen);
	if (ioctl(c->fd, FITHAW, 0))
		thaw_errno = errno;
	*held_ms = (clock_mono_s() - c->freeze_t0) * 1e3;
	c->frozen = false;
	if (write(c->watchdog_fd, "r", 1) != 1) {
		/* the watchdog is gone already: its status says why */
	}
	close(c->watchdog_fd);
	c->watchdog_fd = -1;
	while (waitpid(c->watchdog, &status, 0) < 0 && errno == EINTR)
		;
	c->watchdog = 0;
	if ((WIFEXITED(status) && WEXITSTATUS(status) == WATCHDOG_TIMEOUT) ||
	    thaw_errno == EINVAL) {
		snprintf(
			err, err_len,
			"%s stayed frozen past --freeze-timeout %u ms: the watchdog thawed it, and the epoch is aborted (the standby keeps its previous instant)",
			c->path, c->timeout_ms);
		return -ETIMEDOUT;
	}
	if (thaw_errno) {
		rc = -thaw_errno;
		snprintf(err, err_len, "FITHAW of %s failed: %s", c->path, strerror(thaw_errno));
	}
	return rc;
}

bool capture_reads_image(const struct capture *c)
{
	return c->mode == CAPTURE_REFLINK || c->mode == CAPTURE_SNAPSHOT;
}

/* What a command printed and how it ended. */
struct cmd_run {
	char out[CAPTURE_PATH_MAX]; /* stdout's first bytes */
	char err_tail[256];	    /* stderr's last line */
	int status;		    /* waitpid's */
	bool timed_out;
};

/* Keeps the last non-empty line of what stderr printed so far in tail. */
static void keep_tail(char *tail, size_t tail_len, char *acc, size_t *acc_len, const char *buf,
		      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			if (*acc_len) {
				acc[*acc_len] = '\0';
				snprintf(tail, tail_len, "%s", acc);
			}
			*acc_len = 0;
		} else if (*acc_len + 1 < tail_len) {
			acc[(*acc_len)++] = buf[i];
		}
	}
}

/*
 * Runs cmd under /bin/sh -c with the environment plus env (NULL-terminated
 * "NAME=value" strings), stdin from /dev/null, default signal dispositions
 * and an empty signal mask, in a process group of its own. Past
 * CAPTURE_CMD_TIMEOUT_MS the group gets SIGTERM, and SIGKILL 2 s later; a
 * command that exits in time leaves its background helpers alone. tick (may
 * be NULL) is called about once a second while it runs (the sender keeps its
 * connection alive). Returns 0 with r filled (the command's status is in
 * r->status), or -errno when it could not be run.
 */
static int run_cmd(const char *cmd, const char *const *env, void (*tick)(void *), void *tick_ctx,
		   struct cmd_run *r)
{
	extern char **environ;
	size_t nenv = 0, nadd = 0, out_len = 0, acc_len = 0;
	char acc[sizeof(r->err_tail)];
	int out[2] = { -1, -1 }, errp[2] = { -1, -1 }, rc = 0;
	const char **envp;
	double deadline = clock_mono_s() + CAPTURE_CMD_TIMEOUT_MS / 1e3,
	       next_tick = clock_mono_s() + 1.0;
	bool exited = false;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	while (environ[nenv])
		nenv++;
	while (env[nadd])
		nadd++;
	envp = calloc(nenv + nadd + 1, sizeof(*envp));
	if (!envp)
		return -ENOMEM;
	for (size_t i = 0; i < nadd; i++)
		envp[i] = env[i];
	for (size_t i = 0, k = nadd; i < nenv; i++) {
		bool ours = false;

		for (size_t j = 0; j < nadd && !ours; j++)
			ours = !strncmp(environ[i], env[j], strcspn(env[j], "=") + 1);
		if (!ours)
			envp[k++] = environ[i];
	}
	if (pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
		rc = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		static const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD };
		int null = open("/dev/null", O_RDONLY);
		sigset_t none;

		/* A daemon's blocked and ignored signals are not the command's. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		setpgid(0, 0);
		if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(127);
		execve("/bin/sh", (char *const[]){ "sh", "-c", (char *)cmd, NULL },
		       (char *const *)envp);
		_exit(127);
	}
	setpgid(pid, pid); /* both sides: no window where a kill misses it */
	close(out[1]);
	close(errp[1]);
	out[1] = errp[1] = -1;
	/* Until the command exits and its pipes are drained (or the deadline):
	 * what it left running in the background is killed with its group. */
	for (;;) {
		struct pollfd p[2] = { { .fd = out[0], .events = POLLIN },
				       { .fd = errp[0], .events = POLLIN } };
		char buf[1024];
		double left = deadline - clock_mono_s();
		int n;

		if (!exited && waitpid(pid, &r->status, WNOHANG) == pid)
			exited = true;
		if (tick && !exited && clock_mono_s() >= next_tick) {
			tick(tick_ctx);
			next_tick = clock_mono_s() + 1.0;
		}
		if (left <= 0) {
			r->timed_out = !exited;
			break;
		}
		if (p[0].fd < 0 && p[1].fd < 0 && exited)
			break;
		n = poll(p, 2, exited ? 0 : (left > 0.05 ? 50 : 1));
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0) {
			if (exited)
				break; /* drained: its background children may keep them open */
			continue;
		}
		for (int i = 0; i < 2; i++) {
			ssize_t got;

			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = read(p[i].fd, buf, sizeof(buf));
			if (got <= 0) {
				close(i ? errp[0] : out[0]);
				if (i)
					errp[0] = -1;
				else
					out[0] = -1;
				continue;
			}
			if (i) {
				keep_tail(r->err_tail, sizeof(r->err_tail), acc, &acc_len, buf,
					  (size_t)got);
			} else {
				size_t k = (size_t)got;

				if (k > sizeof(r->out) - 1 - out_len)
					k = sizeof(r->out) - 1 - out_len;
				memcpy(r->out + out_len, buf, k);
				out_len += k;
			}
		}
	}
	keep_tail(r->err_tail, sizeof(r->err_tail), acc, &acc_len, "\n", 1);
	if (!exited) {
		/* Past its time: asked to stop, then made to. */
		kill(-pid, SIGTERM);
		for (int i = 0; i < 40 && !exited; i++) {
			struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000000L };

			if (waitpid(pid, &r->status, WNOHANG) == pid)
				exited = true;
			else
				nanosleep(&ts, NULL);
		}
		if (!exited) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
				;
		}
	}
out:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	free(envp);
	return rc;
}

/* "exited with status 3: <its last stderr line>" and the like, into buf. */
static const char *cmd_outcome(const struct cmd_run *r, char *buf, size_t len)
{
	if (r->timed_out)
		snprintf(buf, len, "was killed after %u s", CAPTURE_CMD_TIMEOUT_MS / 1000);
	else if (WIFSIGNALED(r->status))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(r->status));
	else if (WEXITSTATUS(r->status) == 127 && !r->err_tail[0])
		snprintf(buf, len, "could not run (exit status 127)");
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(r->status));
	if (r->err_tail[0]) {
		size_t n = strlen(buf);

		snprintf(buf + n, len - n, ": %s", r->err_tail);
	}
	return buf;
}

static int snapshot_take(struct capture *c, uint64_t epoch, void (*tick)(void *), void *tick_ctx,
			 char *err, size_t err_len)
{
	char e_vol[300], e_dev[CAPTURE_PATH_MAX + 16], e_epoch[48], how[400];
	const char *env[] = { e_vol, e_dev, e_epoch, NULL };
	struct cmd_run r;
	struct stat st;
	double t0 = clock_mono_s();
	char *line;
	int rc;

	snprintf(e_vol, sizeof(e_vol), "PVREPL_VOLUME=%s", c->volume);
	snprintf(e_dev, sizeof(e_dev), "PVREPL_DEVICE=%s", c->device);
	snprintf(e_epoch, sizeof(e_epoch), "PVREPL_EPOCH=%" PRIu64, epoch);
	c->image_unix_ms = clock_unix_ms();
	rc = run_cmd(c->snapshot_cmd, env, tick, tick_ctx, &r);
	c->image_ms = (clock_mono_s() - t0) * 1e3;
	if (rc) {
		snprintf(err, err_len, "volume %s: cannot run the snapshot command (%.200s): %s",
			 c->volume, c->snapshot_cmd, strerror(-rc));
		return rc;
	}
	line = r.out + strspn(r.out, " \t\r\n");
	line[strcspn(line, "\r\n")] = '\0';
	for (size_t n = strlen(line); n && (line[n - 1] == ' ' || line[n - 1] == '\t'); n--)
		line[n - 1] = '\0';
	if (line[0]) {
		struct devid img, vol;
		char why[400];

		snprintf(c->image, sizeof(c->image), "%s", line);
		/* Never the volume itself (a symlink, its file, a loop device over
		 * its file): not read as a snapshot, and never released. */
		if (!devid_resolve(c->image, &img, why, sizeof(why)) &&
		    !devid_resolve(c->device, &vol, why, sizeof(why)) &&
		    devid_overlap(&img, &vol)) {
			snprintf(
				err, err_len,
				"volume %s: the snapshot command (%.200s) printed %.300s, which is the volume's own storage, not a snapshot of it (the release command was not run on it)",
				c->volume, c->snapshot_cmd, c->image);
			return -EINVAL;
		}
	}
	/* Printed a path, then failed: it may hold a snapshot all the same, and
	 * one killed for its time may have made one: the release command runs
	 * (with PVREPL_SNAPSHOT empty when nothing was printed). */
	c->image_held = line[0] != '\0' || r.timed_out;
	if (r.timed_out || !WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
		snprintf(err, err_len, "volume %s: the snapshot command (%.200s) %s", c->volume,
			 c->snapshot_cmd, cmd_outcome(&r, how, sizeof(how)));
		return -EIO;
	}
	if (!line[0]) {
		snprintf(
			err, err_len,
			"volume %s: the snapshot command (%.200s) printed no path; it must print the path of the snapshot's device on its first line",
			c->volume, c->snapshot_cmd);
		return -EINVAL;
	}
	if (stat(c->image, &st)) {
		rc = -errno;
		snprintf(
			err, err_len,
			"volume %s: the snapshot command (%.200s) printed %.300s, which is not there: %s",
			c->volume, c->snapshot_cmd, c->image, strerror(-rc));
		return rc;
	}
	snprintf(c->image_name, sizeof(c->image_name),
		 "snapshot %.*s (printed by the snapshot command, %.200s)", CAPTURE_PATH_MAX - 512,
		 c->image, c->snapshot_cmd);
	return 0;
}

static int clone_take(struct capture *c, char *err, size_t err_len)
{
	double t0;
	int rc;

	c->image_fd = openat(c->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (c->image_fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "volume %s: cannot make an unnamed file beside %s: %s",
			 c->volume, c->clone_src, strerror(-rc));
		return rc;
	}
	c->image_held = true;
	t0 = clock_mono_s();
	c->image_unix_ms = clock_unix_ms();
	rc = ioctl(c->image_fd, FICLONE, c->src_fd) ? -errno : 0;
	c->image_ms = (clock_mono_s() - t0) * 1e3;
	if (rc) {
		snprintf(err, err_len, "volume %s: cloning %s failed: %s%s", c->volume,
			 c->clone_src, strerror(-rc),
			 rc == -ENOSPC	 ? " (the file system needs room for the clone's metadata)"
			 : rc == -EDQUOT ? " (a quota charges the clone's blocks to its directory)"
			 : rc == -EINVAL ? " (on btrfs: a NOCOW file, chattr +C, cannot be cloned)"
					 : "");
		return rc;
	}
	snprintf(c->image, sizeof(c->image), "/proc/self/fd/%d", c->image_fd);
	snprintf(c->image_name, sizeof(c->image_name), "the clone of %s", c->clone_src);
	return 0;
}

int capture_image(struct capture *c, uint64_t epoch, void (*tick)(void *), void *tick_ctx,
		  char *err, size_t err_len)
{
	ASSERT(capture_reads_image(c));
	ASSERT(!c->image_held);
	c->image[0] = '\0';
	c->image_ms = 0;
	return c->mode == CAPTURE_REFLINK ? clone_take(c, err, err_len)
					  : snapshot_take(c, epoch, tick, tick_ctx, err, err_len);
}

int capture_image_release(struct capture *c, uint64_t epoch, char *err, size_t err_len)
{
	char e_vol[300], e_dev[CAPTURE_PATH_MAX + 16], e_epoch[48], e_snap[CAPTURE_PATH_MAX + 20],
		how[400];
	const char *env[] = { e_vol, e_dev, e_epoch, e_snap, NULL };
	struct cmd_run r;
	int rc;

	if (!c->image_held)
		return 0;
	c->image_held = false;
	if (c->mode == CAPTURE_REFLINK) {
		close(c->image_fd); /* unnamed: the file system frees the clone */
		c->image_fd = -1;
		return 0;
	}
	if (!c->snapshot_release_cmd)
		return 0;
	snprintf(e_vol, sizeof(e_vol), "PVREPL_VOLUME=%s", c->volume);
	snprintf(e_dev, sizeof(e_dev), "PVREPL_DEVICE=%s", c->device);
	snprintf(e_epoch, sizeof(e_epoch), "PVREPL_EPOCH=%" PRIu64, epoch);
	snprintf(e_snap, sizeof(e_snap), "PVREPL_SNAPSHOT=%s", c->image);
	rc = run_cmd(c->snapshot_release_cmd, env, NULL, NULL, &r);
	if (rc) {
		snprintf(err, err_len,
			 "volume %s: cannot run the snapshot release command (%.200s): %s",
			 c->volume, c->snapshot_release_cmd, strerror(-rc));
		return rc;
	}
	if (r.timed_out || !WIFEXITED(r.status) || WEXITSTATUS(r.status)) {
		snprintf(
			err, err_len,
			"volume %s: the snapshot release command (%.200s) for %.300s %s; release it by hand",
			c->volume, c->snapshot_release_cmd, c->image,
			cmd_outcome(&r, how, sizeof(how)));
		return -EIO;
	}
	return 0;
}
