// SPDX-License-Identifier: Apache-2.0
/*
 * replace — the one way a state file is replaced (see replace.h). Every fsync
 * ordering of the project's small files is decided here, once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pvrepl_assert.h"
#include "replace.h"

int (*replace_crash_hook)(const char *step);

__attribute__((format(printf, 2, 3))) static void replace_err(struct replace *r, const char *fmt,
							      ...)
{
	va_list ap;

	if (!r->err || !r->err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(r->err, r->err_len, fmt, ap);
	va_end(ap);
}

/* The crash hook before a step; a stop there is a crash: nothing is cleaned. */
static int replace_step(struct replace *r, const char *step)
{
	int (*hook)(const char *) = r->spec.hook ? r->spec.hook : replace_crash_hook;
	char name[REPLACE_NAME_MAX + 16];
	int rc;

	if (!hook)
		return 0;
	snprintf(name, sizeof(name), "%s.%s", r->spec.step ? r->spec.step : r->spec.name, step);
	rc = hook(name);
	if (rc) {
		r->crashed = true;
		replace_err(r, "stopped by the crash hook before %s", name);
	}
	return rc;
}

static int replace_fail(struct replace *r, const char *file, const char *what, int rc)
{
	replace_err(r, "%s/%s: %s failed: %s", r->spec.dir ? r->spec.dir : ".", file, what,
		    strerror(-rc));
	return rc;
}

static void replace_release(struct replace *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->own_dirfd && r->dirfd >= 0)
		close(r->dirfd);
	r->dirfd = -1;
	r->own_dirfd = false;
}

int replace_begin(struct replace *r, const struct replace_spec *spec, char *err, size_t err_len)
{
	int n, rc;

	ASSERT(r != NULL);
	ASSERT(spec != NULL);
	ASSERT(spec->name != NULL);
	ASSERT(spec->dir != NULL || spec->dirfd >= 0);
	memset(r, 0, sizeof(*r));
	r->spec = *spec;
	r->fd = -1;
	r->dirfd = spec->dirfd;
	r->err = err;
	r->err_len = err_len;
	if (spec->tmp_name)
		n = snprintf(r->tmp, sizeof(r->tmp), "%s", spec->tmp_name);
	else
		n = snprintf(r->tmp, sizeof(r->tmp), "%s.tmp", spec->name);
	if (n < 0 || (size_t)n >= sizeof(r->tmp)) {
		replace_err(r, "%s: file name too long", spec->name);
		return -ENAMETOOLONG;
	}
	if (r->dirfd < 0) {
		r->dirfd = open(spec->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (r->dirfd < 0) {
			rc = -errno;
			replace_err(r, "%s: cannot open the directory: %s", spec->dir,
				    strerror(-rc));
			return rc;
		}
		r->own_dirfd = true;
	}
	rc = replace_step(r, "create");
	if (rc)
		goto fail;
	/* A tmp file left by a crashed run is ours to replace; O_EXCL after the
	 * unlink makes sure no one else's file (a link to elsewhere) is reused. */
	if (unlinkat(r->dirfd, r->tmp, 0) < 0 && errno != ENOENT) {
		rc = replace_fail(r, r->tmp, "removing a stale temporary file", -errno);
		goto fail;
	}
	r->fd = openat(r->dirfd, r->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, spec->mode);
	if (r->fd < 0) {
		rc = replace_fail(r, r->tmp, "create", -errno);
		goto fail;
	}
	/* The umask may only narrow the mode; key files ask for it exactly. */
	if ((spec->flags & REPLACE_EXACT_MODE) && fchmod(r->fd, spec->mode) < 0) {
		rc = replace_fail(r, r->tmp, "chmod", -errno);
		goto unlink_tmp;
	}
	return 0;
unlink_tmp:
	(void)unlinkat(r->dirfd, r->tmp, 0);
fail:
	replace_release(r);
	return rc;
}

int replace_write(struct replace *r, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;
	int rc;

	ASSERT(r != NULL);
	ASSERT(r->fd >= 0);
	ASSERT(buf != NULL || len == 0);
	if (!r->wrote) {
		rc = replace_step(r, "write");
		if (rc)
			return rc;
		r->wrote = true;
	}
	while (len > 0) {
		ssize_t n = pwrite(r->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return replace_fail(r, r->tmp, "write", -errno);
		if (n == 0)
			return replace_fail(r, r->tmp, "write", -EIO);
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int replace_commit(struct replace *r)
{
	bool durable, excl;
	int rc;

	ASSERT(r != NULL);
	ASSERT(r->fd >= 0);
	durable = !(r->spec.flags & REPLACE_NOSYNC);
	excl = r->spec.flags & REPLACE_EXCL;
	if (durable) {
		/* The content is durable before the rename can make it the file: else
		 * a power cut after the rename could leave the name on unwritten
		 * blocks. */
		rc = replace_step(r, "fsync");
		if (rc)
			goto out;
		if (fsync(r->fd) < 0) {
			rc = replace_fail(r, r->tmp, "fsync", -errno);
			goto abort;
		}
	}
	rc = close(r->fd) < 0 ? -errno : 0;
	r->fd = -1;
	if (rc) {
		replace_fail(r, r->tmp, "close", rc);
		goto abort;
	}
	/* Atomic: a reader sees the whole old file or the whole new one. link(2)
	 * refuses an existing name in the same atomic step. */
	rc = replace_step(r, "rename");
	if (rc)
		goto out;
	if (excl ? linkat(r->dirfd, r->tmp, r->dirfd, r->spec.name, 0)
		 : renameat(r->dirfd, r->tmp, r->dirfd, r->spec.name)) {
		rc = -errno;
		if (rc == -EEXIST && excl)
			replace_err(r, "%s/%s already exists", r->spec.dir ? r->spec.dir : ".",
				    r->spec.name);
		else
			replace_fail(r, r->spec.name, excl ? "link" : "rename", rc);
		goto abort;
	}
	if (excl)
		(void)unlinkat(r->dirfd, r->tmp, 0);
	if (durable && !(r->spec.flags & REPLACE_NO_DIRSYNC)) {
		/* The rename is durable only once the directory is. */
		rc = replace_step(r, "dirsync");
		if (rc)
			goto out;
		if (fsync(r->dirfd) < 0) {
			rc = -errno;
			replace_err(r, "%s: fsync of the directory failed: %s",
				    r->spec.dir ? r->spec.dir : ".", strerror(-rc));
			goto out;
		}
	}
	rc = 0;
	goto out;
abort:
	(void)unlinkat(r->dirfd, r->tmp, 0);
out:
	replace_release(r);
	return rc;
}

void replace_abort(struct replace *r)
{
	ASSERT(r != NULL);
	if (r->dirfd >= 0 && !r->crashed)
		(void)unlinkat(r->dirfd, r->tmp, 0);
	replace_release(r);
}

int replace_file(const struct replace_spec *spec, const void *data, size_t len, char *err,
		 size_t err_len)
{
	struct replace r;
	int rc;

	rc = replace_begin(&r, spec, err, err_len);
	if (rc)
		return rc;
	rc = replace_write(&r, data, len, 0);
	if (rc) {
		replace_abort(&r);
		return rc;
	}
	return replace_commit(&r);
}

int replace_sync_dir(const char *dir, char *err, size_t err_len)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	ASSERT(dir != NULL);
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc && err && err_len)
		snprintf(err, err_len, "%s: fsync of the directory failed: %s", dir, strerror(-rc));
	return rc;
}
