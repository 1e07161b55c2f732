// SPDX-License-Identifier: Apache-2.0
/*
 * testutil — temp files, loop devices, mounts, commands and skips for the tests.
 *
 * Every resource made here goes into one small registry, undone in reverse order
 * of creation by tu_cleanup_all(): at exit (atexit), on SIGINT/SIGTERM/SIGHUP/
 * SIGQUIT/SIGABRT (the handler cleans then re-raises), or one by one by the
 * matching release call. Only the process that registered a resource undoes it,
 * so a forked child that exits does not tear down its parent's fixtures. Loop
 * devices are also attached with LO_FLAGS_AUTOCLEAR and their fd held open, and
 * mounts live in a private mount namespace, so even SIGKILL leaks nothing but
 * temp files.
 *
 * Nothing here knows the code under test or the test harness.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

#define TU_RES_MAX	     256
#define TU_RUN_OUTPUT_MAX    8192
#define TU_FILL_CHUNK_BYTES  (1u << 20)
#define TU_LOOP_ATTACH_TRIES 32

enum tu_res_kind {
	TU_RES_FILE = 1,
	TU_RES_DIR = 2,
	TU_RES_LOOP = 3,
	TU_RES_MOUNT = 4,
};

struct tu_res {
	enum tu_res_kind kind;
	bool live;
	int fd; /* TU_RES_LOOP: the held device fd */
	char path[TU_PATH_MAX];
};

static struct tu_res tu_res_table[TU_RES_MAX];
static unsigned tu_res_count;
static pid_t tu_owner_pid;
static bool tu_hooks_installed;
static bool tu_private_ns;

/* ------------------------------------------------------------ registry */

static const int tu_fatal_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT };

/*
 * Creating a resource and registering it is one step as far as the cleanup
 * handler is concerned: a signal in between would leak it, and one during
 * tu_res_add would see a half-written table.
 */
static void tu_sig_block(sigset_t *old)
{
	sigset_t set;
	unsigned i;

	sigemptyset(&set);
	for (i = 0; i < sizeof(tu_fatal_sigs) / sizeof(tu_fatal_sigs[0]); i++)
		sigaddset(&set, tu_fatal_sigs[i]);
	sigprocmask(SIG_BLOCK, &set, old);
}

static void tu_sig_restore(const sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
}

static void tu_res_undo(struct tu_res *r);

static void tu_signal_handler(int sig)
{
	tu_cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void tu_atexit(void)
{
	tu_cleanup_all();
}

static void tu_install_hooks(void)
{
	struct sigaction sa;
	unsigned i;

	if (tu_hooks_installed)
		return;
	tu_hooks_installed = true;
	tu_owner_pid = getpid();
	atexit(tu_atexit);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tu_signal_handler;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(tu_fatal_sigs) / sizeof(tu_fatal_sigs[0]); i++)
		sigaction(tu_fatal_sigs[i], &sa, NULL);
}

static struct tu_res *tu_res_add(enum tu_res_kind kind, const char *path, int fd)
{
	struct tu_res *r;
	unsigned i, kept = 0;

	tu_install_hooks();
	if (tu_res_count == TU_RES_MAX) {
		/* Squeeze out released entries, keeping creation order. */
		for (i = 0; i < tu_res_count; i++) {
			if (tu_res_table[i].live)
				tu_res_table[kept++] = tu_res_table[i];
		}
		tu_res_count = kept;
	}
	if (tu_res_count == TU_RES_MAX) {
		fprintf(stderr, "testutil: more than %d resources; %s not registered\n", TU_RES_MAX,
			path);
		return NULL;
	}
	r = &tu_res_table[tu_res_count++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->live = true;
	r->fd = fd;
	snprintf(r->path, sizeof(r->path), "%s", path);
	return r;
}

static struct tu_res *tu_res_find(enum tu_res_kind kind, const char *path)
{
	unsigned i = tu_res_count;

	while (i-- > 0) {
		struct tu_res *r = &tu_res_table[i];

		if (r->live && r->kind == kind && strcmp(r->path, path) == 0)
			return r;
	}
	return NULL;
}

static int tu_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP || type == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void tu_res_undo(struct tu_res *r)
{
	int fd;

	if (!r->live)
		return;
	r->live = false;
	switch (r->kind) {
	case TU_RES_FILE:
		unlink(r->path);
		break;
	case TU_RES_DIR:
		/* FTW_MOUNT: never descend into something still mounted there. */
		nftw(r->path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		rmdir(r->path);
		break;
	case TU_RES_LOOP:
		if (r->fd >= 0) {
			int rw = 0;

			/*
			 * BLKROSET's flag belongs to the block device, which outlives
			 * the attachment: clear it or the next user of loopN inherits it.
			 */
			ioctl(r->fd, BLKROSET, &rw);
			ioctl(r->fd, LOOP_CLR_FD, 0);
			close(r->fd);
			r->fd = -1;
		}
		break;
	case TU_RES_MOUNT:
		/* A frozen superblock outlives its mount and pins the loop device. */
		fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			ioctl(fd, FITHAW, 0);
			close(fd);
		}
		if (umount2(r->path, 0) != 0 && errno == EBUSY)
			umount2(r->path, MNT_DETACH);
		rmdir(r->path);
		break;
	}
}

void tu_cleanup_all(void)
{
	unsigned i = tu_res_count;

	sigset_t old;

	if (!tu_hooks_installed || getpid() != tu_owner_pid)
		return;
	tu_sig_block(&old);
	while (i-- > 0)
		tu_res_undo(&tu_res_table[i]);
	tu_res_count = 0;
	tu_sig_restore(&old);
}

/* -------------------------------------------------------------- skipping */

void tu_skip(const char *fmt, ...)
{
	va_list ap;

	fflush(stderr);
	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(TU_EXIT_SKIP);
}

void tu_require_root(void)
{
	if (geteuid() != 0)
		tu_skip("needs root (loop devices, mounts, ioctls); running as uid %u",
			(unsigned)geteuid());
}

void tu_require_prog(const char *prog)
{
	static const char *const extra[] = { "/sbin", "/usr/sbin", "/usr/local/sbin" };
	char dirs[TU_PATH_MAX], path[TU_PATH_MAX + 256];
	const char *env = getenv("PATH");
	char *save = NULL, *dir;
	unsigned i;

	snprintf(dirs, sizeof(dirs), "%s", env ? env : "/usr/bin:/bin");
	for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		snprintf(path, sizeof(path), "%s/%s", dir, prog);
		if (access(path, X_OK) == 0)
			return;
	}
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", extra[i], prog);
		if (access(path, X_OK) == 0)
			return;
	}
	tu_skip("needs the program %s (not found in PATH or sbin)", prog);
}

void tu_require_fs(const char *fstype)
{
	char line[256];
	FILE *f = fopen("/proc/filesystems", "re");
	bool found = false;

	if (f == NULL)
		tu_skip("cannot read /proc/filesystems: %s", strerror(errno));
	while (!found && fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');

		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = '\0';
		found = strcmp(name, fstype) == 0;
	}
	fclose(f);
	if (!found)
		tu_skip("the kernel does not support the %s filesystem", fstype);
}

void tu_require_loop(void)
{
	int fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		tu_skip("needs loop devices: cannot open /dev/loop-control: %s", strerror(errno));
	close(fd);
}

/* -------------------------------------------------------------- patterns */

static uint64_t tu_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t tu_rand_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return tu_mix(*state);
}

uint64_t tu_rand_below(uint64_t *state, uint64_t bound)
{
	return bound ? tu_rand_next(state) % bound : 0;
}

static uint64_t tu_pattern_word(uint64_t seed, uint64_t word_idx)
{
	return tu_mix(seed * 0x9e3779b97f4a7c15ull ^ tu_mix(word_idx + 1));
}

void tu_pattern_fill(void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	unsigned char *p = buf;
	size_t i = 0;

	while (i < len) {
		uint64_t pos = offset + i, word = tu_pattern_word(seed, pos / 8);
		unsigned b;

		for (b = pos % 8; b < 8 && i < len; b++, i++)
			p[i] = (unsigned char)(word >> (8 * b));
	}
}

long tu_pattern_mismatch(const void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	const unsigned char *p = buf;
	size_t i = 0;

	while (i < len) {
		uint64_t pos = offset + i, word = tu_pattern_word(seed, pos / 8);
		unsigned b;

		for (b = pos % 8; b < 8 && i < len; b++, i++) {
			if (p[i] != (unsigned char)(word >> (8 * b)))
				return (long)i;
		}
	}
	return -1;
}

bool tu_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i])
			return false;
	}
	return true;
}

/* ------------------------------------------------------ files and dirs */

static const char *tu_tmp_base(void)
{
	const char *t = getenv("TMPDIR");

	return t && *t ? t : "/tmp";
}

int tu_tmpdir(char *out, size_t out_len)
{
	char path[TU_PATH_MAX];

	sigset_t old;

	snprintf(path, sizeof(path), "%s/pvrepl-test-%d-XXXXXX", tu_tmp_base(), (int)getpid());
	tu_install_hooks();
	tu_sig_block(&old);
	if (mkdtemp(path) == NULL) {
		int err = errno;

		tu_sig_restore(&old);
		fprintf(stderr, "testutil: mkdtemp %s: %s\n", path, strerror(err));
		return -err;
	}
	tu_res_add(TU_RES_DIR, path, -1);
	tu_sig_restore(&old);
	snprintf(out, out_len, "%s", path);
	return 0;
}

int tu_file_fill(const char *path, uint64_t offset, uint64_t len, uint64_t seed)
{
	unsigned char *buf;
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fprintf(stderr, "testutil: open %s: %s\n", path, strerror(-ret));
		return ret;
	}
	buf = malloc(TU_FILL_CHUNK_BYTES);
	if (buf == NULL) {
		ret = -ENOMEM;
		goto out_close;
	}
	while (len > 0) {
		size_t n = len < TU_FILL_CHUNK_BYTES ? (size_t)len : TU_FILL_CHUNK_BYTES;
		ssize_t w;

		tu_pattern_fill(buf, n, offset, seed);
		w = pwrite(fd, buf, n, (off_t)offset);
		if (w != (ssize_t)n) {
			ret = w < 0 ? -errno : -EIO;
			fprintf(stderr, "testutil: pwrite %s at %llu: %s\n", path,
				(unsigned long long)offset, strerror(-ret));
			goto out_free;
		}
		offset += n;
		len -= n;
	}
	if (fsync(fd) != 0)
		ret = -errno;
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}

int tu_file_read(const char *path, void *buf, size_t len, uint64_t offset)
{
	size_t done = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fprintf(stderr, "testutil: open %s: %s\n", path, strerror(-ret));
		return ret;
	}
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (r <= 0) {
			ret = r < 0 ? -errno : -ENODATA;
			fprintf(stderr, "testutil: pread %s at %llu: %s\n", path,
				(unsigned long long)(offset + done), strerror(-ret));
			break;
		}
		done += (size_t)r;
	}
	close(fd);
	return ret;
}

int tu_tmpfile(char *out, size_t out_len, uint64_t size_bytes, uint64_t seed)
{
	char path[TU_PATH_MAX];
	sigset_t old;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/pvrepl-test-%d-XXXXXX", tu_tmp_base(), (int)getpid());
	tu_install_hooks();
	tu_sig_block(&old);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		tu_sig_restore(&old);
		fprintf(stderr, "testutil: mkstemp %s: %s\n", path, strerror(-ret));
		return ret;
	}
	tu_res_add(TU_RES_FILE, path, -1);
	tu_sig_restore(&old);
	if (ftruncate(fd, (off_t)size_bytes) != 0) {
		ret = -errno;
		fprintf(stderr, "testutil: ftruncate %s: %s\n", path, strerror(-ret));
		close(fd);
		return ret;
	}
	close(fd);
	if (seed != 0) {
		ret = tu_file_fill(path, 0, size_bytes, seed);
		if (ret)
			return ret;
	}
	snprintf(out, out_len, "%s", path);
	return 0;
}

void tu_tmpfile_release(const char *path)
{
	struct tu_res *r = tu_res_find(TU_RES_FILE, path);

	if (r)
		tu_res_undo(r);
}

int tu_statx_dio(int fd, uint32_t *mem_align, uint32_t *offset_align)
{
	struct statx stx;

	memset(&stx, 0, sizeof(stx));
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0)
		return -errno;
	if (!(stx.stx_mask & STATX_DIOALIGN))
		return -EOPNOTSUPP;
	*mem_align = stx.stx_dio_mem_align;
	*offset_align = stx.stx_dio_offset_align;
	return 0;
}

/* ---------------------------------------------------------- loop devices */

int tu_loop_attach(struct tu_loop *lp, const char *file, uint32_t block_bytes, bool read_only)
{
	struct loop_info64 info;
	int ctl = -1, bfd = -1, lfd = -1, ret = 0, n = -1;
	unsigned attempt;
	sigset_t old;

	memset(lp, 0, sizeof(*lp));
	lp->fd = -1;
	tu_install_hooks();
	tu_sig_block(&old);
	bfd = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (bfd < 0) {
		ret = -errno;
		tu_sig_restore(&old);
		fprintf(stderr, "testutil: open %s: %s\n", file, strerror(-ret));
		return ret;
	}
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		ret = -errno;
		fprintf(stderr, "testutil: open /dev/loop-control: %s\n", strerror(-ret));
		goto out;
	}
	for (attempt = 0; attempt < TU_LOOP_ATTACH_TRIES; attempt++) {
		struct loop_config cfg;

		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			ret = -errno;
			fprintf(stderr, "testutil: LOOP_CTL_GET_FREE: %s\n", strerror(-ret));
			goto out;
		}
		snprintf(lp->dev, sizeof(lp->dev), "/dev/loop%d", n);
		lfd = open(lp->dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0) {
			ret = -errno;
			fprintf(stderr, "testutil: open %s: %s\n", lp->dev, strerror(-ret));
			goto out;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (uint32_t)bfd;
		cfg.block_size = block_bytes;
		cfg.info.lo_flags = LO_FLAGS_DIRECT_IO | LO_FLAGS_AUTOCLEAR;
		if (read_only)
			cfg.info.lo_flags |= LO_FLAGS_READ_ONLY;
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", file);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
			break;
		ret = -errno;
		close(lfd);
		lfd = -1;
		/* Someone else took this free device between the two calls. */
		if (ret != -EBUSY) {
			fprintf(stderr, "testutil: LOOP_CONFIGURE %s on %s (block %u): %s\n", file,
				lp->dev, block_bytes, strerror(-ret));
			goto out;
		}
	}
	if (lfd < 0) {
		fprintf(stderr, "testutil: no free loop device after %d tries\n",
			TU_LOOP_ATTACH_TRIES);
		ret = -EBUSY;
		goto out;
	}
	ret = 0;
	lp->fd = lfd;
	tu_res_add(TU_RES_LOOP, lp->dev, lfd);
	/* A BLKROSET left by an earlier user of loopN (LO_FLAGS_READ_ONLY is separate). */
	if (ioctl(lfd, BLKROSET, &(int){ 0 }) != 0)
		fprintf(stderr, "testutil: BLKROSET 0 on %s: %s\n", lp->dev, strerror(errno));
	memset(&info, 0, sizeof(info));
	if (ioctl(lfd, LOOP_GET_STATUS64, &info) == 0)
		lp->direct = (info.lo_flags & LO_FLAGS_DIRECT_IO) != 0;
	lp->block_bytes = block_bytes;
	lp->read_only = read_only;
	snprintf(lp->file, sizeof(lp->file), "%s", file);
out:
	if (ctl >= 0)
		close(ctl);
	/* The loop device holds its own reference to the backing file. */
	close(bfd);
	tu_sig_restore(&old);
	return ret;
}

void tu_loop_detach(struct tu_loop *lp)
{
	struct tu_res *r;

	if (lp->fd < 0)
		return;
	r = tu_res_find(TU_RES_LOOP, lp->dev);
	if (r)
		tu_res_undo(r);
	else
		close(lp->fd);
	lp->fd = -1;
}

int tu_loop_set_ro(struct tu_loop *lp, bool ro)
{
	int v = ro ? 1 : 0;

	if (ioctl(lp->fd, BLKROSET, &v) != 0) {
		int err = errno;

		fprintf(stderr, "testutil: BLKROSET %s: %s\n", lp->dev, strerror(err));
		return -err;
	}
	return 0;
}

/* ------------------------------------------------ backings (file or loop) */

const char *tu_backing_name(enum tu_backing_kind kind)
{
	switch (kind) {
	case TU_BACKING_FILE:
		return "file";
	case TU_BACKING_LOOP512:
		return "loop512";
	case TU_BACKING_LOOP4096:
		return "loop4096";
	}
	return "?";
}

int tu_backing_create(struct tu_backing *b, enum tu_backing_kind kind, uint64_t size_bytes,
		      uint64_t seed)
{
	int ret;

	memset(b, 0, sizeof(*b));
	b->loop.fd = -1;
	b->kind = kind;
	b->size_bytes = size_bytes;
	ret = tu_tmpfile(b->file, sizeof(b->file), size_bytes, seed);
	if (ret)
		return ret;
	if (kind == TU_BACKING_FILE) {
		snprintf(b->path, sizeof(b->path), "%s", b->file);
		return 0;
	}
	ret = tu_loop_attach(&b->loop, b->file, kind == TU_BACKING_LOOP512 ? 512 : 4096, false);
	if (ret) {
		tu_tmpfile_release(b->file);
		return ret;
	}
	snprintf(b->path, sizeof(b->path), "%s", b->loop.dev);
	return 0;
}

void tu_backing_destroy(struct tu_backing *b)
{
	if (b->kind != TU_BACKING_FILE)
		tu_loop_detach(&b->loop);
	if (b->file[0])
		tu_tmpfile_release(b->file);
	b->file[0] = '\0';
	b->path[0] = '\0';
}

/* ----------------------------------------------------- commands, mounts */

int tu_run(const char *fmt, ...)
{
	char cmd[TU_PATH_MAX], shell[TU_PATH_MAX + 16], out[TU_RUN_OUTPUT_MAX];
	size_t used = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(shell, sizeof(shell), "(%s) 2>&1", cmd);
	fflush(NULL);
	p = popen(shell, "r");
	if (p == NULL) {
		int err = errno;

		fprintf(stderr, "testutil: popen '%s': %s\n", cmd, strerror(err));
		return -err;
	}
	for (;;) {
		size_t n = fread(out + used, 1, sizeof(out) - 1 - used, p);

		if (n == 0) {
			char sink[512];

			/* Drain what does not fit so the command does not block. */
			if (fread(sink, 1, sizeof(sink), p) == 0)
				break;
			continue;
		}
		used += n;
	}
	out[used] = '\0';
	st = pclose(p);
	if (st == -1) {
		int err = errno;

		fprintf(stderr, "testutil: pclose '%s': %s\n", cmd, strerror(err));
		return -err;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "testutil: command failed (%s %d): %s\n%s",
		WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
		cmd, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void tu_private_mount_ns(void)
{
	if (tu_private_ns)
		return;
	tu_private_ns = true;
	/*
	 * Mounts made in a private namespace die with the process, even on SIGKILL.
	 * unshare fails once the process has other threads sharing its fs_struct
	 * (io_uring workers do); then the mounts stay in the shared namespace and
	 * only the registry cleans them.
	 */
	if (unshare(CLONE_NEWNS) != 0) {
		fprintf(stderr, "testutil: unshare(CLONE_NEWNS): %s; mounts are shared\n",
			strerror(errno));
		return;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fprintf(stderr, "testutil: making / private: %s\n", strerror(errno));
}

int tu_mount(const char *dev, const char *fstype, const char *options, char *mnt, size_t mnt_len)
{
	char path[TU_PATH_MAX];
	sigset_t old;
	int ret;

	tu_private_mount_ns();
	snprintf(path, sizeof(path), "%s/pvrepl-mnt-%d-XXXXXX", tu_tmp_base(), (int)getpid());
	tu_install_hooks();
	tu_sig_block(&old);
	if (mkdtemp(path) == NULL) {
		ret = -errno;
		tu_sig_restore(&old);
		fprintf(stderr, "testutil: mkdtemp %s: %s\n", path, strerror(-ret));
		return ret;
	}
	if (mount(dev, path, fstype, 0, options) != 0) {
		ret = -errno;
		rmdir(path);
		tu_sig_restore(&old);
		fprintf(stderr, "testutil: mount -t %s %s %s: %s\n", fstype, dev, path,
			strerror(-ret));
		return ret;
	}
	tu_res_add(TU_RES_MOUNT, path, -1);
	tu_sig_restore(&old);
	snprintf(mnt, mnt_len, "%s", path);
	return 0;
}

void tu_umount(const char *mnt)
{
	struct tu_res *r = tu_res_find(TU_RES_MOUNT, mnt);

	if (r)
		tu_res_undo(r);
}
