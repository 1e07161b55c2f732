// SPDX-License-Identifier: Apache-2.0
/*
 * capture — the freeze of an epoch's last round (see capture.h for the
 * method and why the standby is then one instant of the source).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "clock.h"
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
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int capture_open(struct capture *c, const struct capture_config *cfg, const char *volume,
		 const char *device, bool tracking, char *err, size_t err_len)
{
	struct stat dst, pst;
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->watchdog_fd = -1;
	c->mode = CAPTURE_NONE;
	c->timeout_ms =
		cfg->freeze_timeout_ms ? cfg->freeze_timeout_ms : CAPTURE_FREEZE_TIMEOUT_MS_DEFAULT;
	if (cfg->mode == CAPTURE_NONE)
		return 0;
	if (!tracking) {
		if (cfg->mode == CAPTURE_FREEZE) {
			snprintf(
				err, err_len,
				"volume %s: --capture freeze reads the last changes in rounds, which needs the write tracker, and tracking is off here; use --track bpf or auto where it can run, or --capture none",
				volume);
			return -EOPNOTSUPP;
		}
		snprintf(c->why_none, sizeof(c->why_none),
			 "write tracking is off, and a freeze needs it (epochs are live reads)");
		return 0;
	}
	if (stat(device, &dst)) {
		rc = -errno;
		snprintf(err, err_len, "volume %s: %s: %s", volume, device, strerror(-rc));
		return rc;
	}
	if (!S_ISBLK(dst.st_mode)) {
		if (cfg->mode == CAPTURE_FREEZE) {
			snprintf(
				err, err_len,
				"volume %s: %s is not a block device: no file system is mounted from it to freeze; use --capture none",
				volume, device);
			return -EOPNOTSUPP;
		}
		snprintf(c->why_none, sizeof(c->why_none),
			 "%s is not a block device: nothing to freeze (epochs are live reads)",
			 device);
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
			if (cfg->mode == CAPTURE_FREEZE) {
				snprintf(
					err, err_len,
					"volume %s: no file system is mounted from %s (%u:%u) in this mount namespace; mount it, give --freeze-path, or use --capture none",
					volume, device, major(dst.st_rdev), minor(dst.st_rdev));
				return -ENOENT;
			}
			snprintf(
				c->why_none, sizeof(c->why_none),
				"no file system is mounted from %s: nothing to freeze (epochs are live reads)",
				device);
			return 0;
		}
	}
	if (!can_freeze()) {
		if (cfg->mode == CAPTURE_FREEZE) {
			snprintf(
				err, err_len,
				"volume %s: freezing %s needs CAP_SYS_ADMIN, which this process lacks; grant it, or use --capture none",
				volume, c->path);
			return -EPERM;
		}
		snprintf(
			c->why_none, sizeof(c->why_none),
			"freezing %.400s needs CAP_SYS_ADMIN, which this process lacks (epochs are live reads)",
			c->path);
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
