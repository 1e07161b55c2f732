// SPDX-License-Identifier: Apache-2.0
/*
 * track — the write tracker's user-space half (the program is bpf/track.bpf.c,
 * whose header says why it marks what it marks).
 *
 * Per volume, a directory of pins under the pin root (bpffs):
 *
 *   <root>/<name>/meta             identity and bookkeeping (struct track_meta)
 *   <root>/<name>/live             bitmap the program marks (mmapped here)
 *   <root>/<name>/pending          bitmap harvested and not yet settled (mmapped)
 *   <root>/<name>/stats            the program's counters (mmapped, read-only use)
 *   <root>/<name>/link_complete    the block_rq_complete attachment
 *   <root>/<name>/link_issue       the block_rq_issue attachment (passthrough)
 *   <root>/<name>/prog_complete    the programs themselves: opening a pin needs no
 *   <root>/<name>/prog_issue       CAP_SYS_ADMIN, unlike a lookup by program id
 *
 * A new tracker is built under "<name>@new" (bpffs refuses names with a dot) and renamed into place, so a reader
 * finds a whole tracker or none; a crash part-way leaves a "@new" that the next
 * open removes. Pins live as long as the kernel: a restart of the process picks
 * them up, a reboot loses them (the next open attaches a new instance, whose
 * ATTACHED loss makes the caller scan everything).
 *
 * Harvest (two phases, so nothing is lost by a crash or a failed epoch):
 *   live ──xchg per word──► pending (OR) ──caller reads──► settle: pending = 0
 * pending is a pinned map too: a process that dies between harvest and settle
 * leaves its bits for the next one.
 *
 * Losses: the program's own counters (passthrough writes, oversized requests)
 * and the kernel's recursion_misses of each program are compared with what the
 * previous harvest saw; any increase, an attach, or a program found detached is
 * recorded in meta as owed, and stays owed until a settle after a full scan.
 *
 * Knows devices, sectors and bitmaps only: nothing of blocks, hashes or epochs.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "kfio.h"
#include "kfio_internal.h"
#include "track.skel.h"
#include "track_types.h"

#define TRACK_META_MAGIC   0x314b434152545650ull /* "PVTRACK1" */
#define TRACK_META_VERSION 2u
#define TRACK_BPFFS	   "/sys/fs/bpf"
#define TRACK_PINS	   8

_Static_assert(KFIO_TRACK_PAGE_BYTES == 1u << TRACK_PAGE_SHIFT, "one page size on both sides");
_Static_assert(KFIO_TRACK_VOLUME_BYTES_MAX ==
		       (unsigned long long)TRACK_LOOP_WORDS_MAX * 64 * KFIO_TRACK_PAGE_BYTES,
	       "a whole-volume request fits one bpf_loop");

static const char *const pin_names[TRACK_PINS] = {
	"meta",		 "live",       "pending",	"stats",
	"link_complete", "link_issue", "prog_complete", "prog_issue",
};

/* The value of the pinned meta map; written only by user space. */
struct track_meta {
	uint64_t magic;
	uint32_t version;
	uint32_t owed; /* enum kfio_track_loss bits */
	uint32_t disk_major, disk_minor;
	uint32_t vol_major, vol_minor;
	uint64_t first_sector, nr_sectors;
	uint64_t size_bytes;
	uint64_t pages;
	uint64_t instance_id;
	uint64_t created_unix;
	uint64_t seen_misses, seen_passthrough, seen_overflows;
	uint64_t settled_tag; /* the caller's tag of the last settle */
	uint64_t diskseq;     /* BLKGETDISKSEQ: new at every attach of a loop device */
};
_Static_assert(sizeof(struct track_meta) == 120, "meta layout is pinned across versions");

struct kfio_track {
	char dir[KFIO_PATH_MAX];
	int meta_fd, live_fd, pending_fd, stats_fd;
	int link_fd[2];
	int prog_fd[2];
	uint64_t words;
	size_t bitmap_bytes;
	uint64_t *live;
	uint64_t *pending;
	struct track_stats *stats;
	size_t stats_bytes;
	struct track_meta meta;
	struct kfio_track_info info;
	bool detached; /* a link no longer holds its program */
};

/* Where the volume sits: the whole disk the block layer reports, and the range. */
struct track_geom {
	uint32_t vol_major, vol_minor;
	uint32_t disk_major, disk_minor;
	uint64_t first_sector, nr_sectors;
	uint64_t size_bytes;
	uint64_t pages;
	uint64_t diskseq; /* 0 where the kernel has none */
};

/* libbpf's warnings, kept for the error sentence instead of printed (a library
 * never prints). One per thread: trackers open on several threads at once. */
static __thread char libbpf_last[256];

static int libbpf_keep(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN) {
		size_t n;

		vsnprintf(libbpf_last, sizeof(libbpf_last), fmt, ap);
		n = strlen(libbpf_last);
		while (n && (libbpf_last[n - 1] == '\n' || libbpf_last[n - 1] == ' '))
			libbpf_last[--n] = '\0';
	}
	return 0;
}

static int read_sysfs_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int rc = 0;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f))
		rc = -EIO;
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return rc;
}

static bool sysfs_exists(uint32_t maj, uint32_t min, const char *leaf)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/%s", maj, min, leaf);
	return stat(p, &st) == 0;
}

/* The disk and sector range of dev, from sysfs; -EOPNOTSUPP with why. */
static int track_geometry(const struct kfio_dev *dev, struct track_geom *g, char *why,
			  size_t why_len)
{
	char p[256], line[64];
	struct stat st;
	bool part;

	memset(g, 0, sizeof(*g));
	if (fstat(dev->fd, &st))
		return -errno;
	if (!S_ISBLK(st.st_mode)) {
		kfio_fmt(
			why, why_len,
			"%s is a regular file: its writes do not pass through a block device the tracker can see (track the loop device over it instead)",
			dev->path);
		return -EOPNOTSUPP;
	}
	g->vol_major = major(st.st_rdev);
	g->vol_minor = minor(st.st_rdev);
	/* The same dev_t and size can be another disk: a loop device detached and
	 * attached to another file. The disk sequence number tells them apart. */
	if (ioctl(dev->fd, BLKGETDISKSEQ, &g->diskseq))
		g->diskseq = 0;
	g->size_bytes = dev->size_bytes;
	g->nr_sectors = dev->size_bytes >> TRACK_SECTOR_SHIFT;
	g->pages = (dev->size_bytes + KFIO_TRACK_PAGE_BYTES - 1) / KFIO_TRACK_PAGE_BYTES;
	if (dev->size_bytes > KFIO_TRACK_VOLUME_BYTES_MAX) {
		kfio_fmt(
			why, why_len,
			"%s is %" PRIu64
			" bytes, more than the tracker's limit of %llu (one request must fit one marking loop)",
			dev->path, dev->size_bytes, KFIO_TRACK_VOLUME_BYTES_MAX);
		return -EOPNOTSUPP;
	}
	part = sysfs_exists(g->vol_major, g->vol_minor, "partition");
	g->disk_major = g->vol_major;
	g->disk_minor = g->vol_minor;
	if (part) {
		/* A partition: the block layer reports its disk, at absolute sectors. */
		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/start", g->vol_major, g->vol_minor);
		if (read_sysfs_line(p, line, sizeof(line)) ||
		    sscanf(line, "%" SCNu64, &g->first_sector) != 1)
			goto unknown;
		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../dev", g->vol_major, g->vol_minor);
		if (read_sysfs_line(p, line, sizeof(line)) ||
		    sscanf(line, "%u:%u", &g->disk_major, &g->disk_minor) != 2)
			goto unknown;
	}
	if (sysfs_exists(g->disk_major, g->disk_minor, "dm")) {
		kfio_fmt(
			why, why_len,
			"%s is a device-mapper device: it is bio-based, its writes never complete as requests, and the tracker cannot see them",
			dev->path);
		return -EOPNOTSUPP;
	}
	if (!sysfs_exists(g->disk_major, g->disk_minor, "mq")) {
		kfio_fmt(
			why, why_len,
			"%s (%u:%u) is not a blk-mq device (no mq/ in sysfs): bio-based devices such as md never complete writes as requests, so the tracker cannot see them",
			dev->path, g->disk_major, g->disk_minor);
		return -EOPNOTSUPP;
	}
	return 0;
unknown:
	kfio_fmt(why, why_len, "%s: cannot read its partition's disk and start from sysfs",
		 dev->path);
	return -EOPNOTSUPP;
}

int kfio_track_supported(const struct kfio_dev *dev, char *why, size_t why_len)
{
	struct track_geom g;

	return track_geometry(dev, &g, why, why_len);
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= KFIO_TRACK_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC;
}

/* The pin root exists on bpffs; under /sys/fs/bpf, bpffs is mounted there when
 * nothing is (a fresh sysfs, as in `ip netns exec`: such a private mount lives
 * only as long as its mount namespace, and so do the pins in it). */
static int ensure_root(const char *root, char *err, size_t err_len)
{
	if (!strncmp(root, TRACK_BPFFS "/", sizeof(TRACK_BPFFS)) && !is_bpffs(TRACK_BPFFS)) {
		if (mount("bpf", TRACK_BPFFS, "bpf", 0, "mode=0700")) {
			int rc = -errno;

			kfio_fmt(
				err, err_len,
				"no bpffs at %s and mounting one failed: %s (mount it: mount -t bpf bpf %s)",
				TRACK_BPFFS, strerror(-rc), TRACK_BPFFS);
			return rc;
		}
	}
	if (mkdir(root, 0700) && errno != EEXIST) {
		int rc = -errno;

		kfio_fmt(err, err_len, "cannot create the tracker pin directory %s: %s", root,
			 strerror(-rc));
		return rc;
	}
	if (!is_bpffs(root)) {
		kfio_fmt(
			err, err_len,
			"%s is not on a bpf filesystem: pins there would not hold the tracker (use a directory under %s)",
			root, TRACK_BPFFS);
		return -ENOTDIR;
	}
	return 0;
}

static int remove_dir(const char *dir, char *err, size_t err_len)
{
	char p[KFIO_PATH_MAX + 32];

	for (unsigned i = 0; i < TRACK_PINS; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, pin_names[i]);
		if (unlink(p) && errno != ENOENT) {
			int rc = -errno;

			kfio_fmt(err, err_len, "cannot unpin %s: %s", p, strerror(-rc));
			return rc;
		}
	}
	if (rmdir(dir) && errno != ENOENT) {
		int rc = -errno;

		kfio_fmt(err, err_len, "cannot remove %s: %s (is something else pinned there?)",
			 dir, strerror(-rc));
		return rc;
	}
	return 0;
}

static void track_close_fds(struct kfio_track *t)
{
	if (t->live && t->live != MAP_FAILED)
		munmap(t->live, t->bitmap_bytes);
	if (t->pending && t->pending != MAP_FAILED)
		munmap(t->pending, t->bitmap_bytes);
	if (t->stats && (void *)t->stats != MAP_FAILED)
		munmap(t->stats, t->stats_bytes);
	t->live = t->pending = NULL;
	t->stats = NULL;
	int *fds[] = { &t->meta_fd,    &t->live_fd,    &t->pending_fd, &t->stats_fd,
		       &t->link_fd[0], &t->link_fd[1], &t->prog_fd[0], &t->prog_fd[1] };

	for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

static int write_meta(struct kfio_track *t, char *err, size_t err_len)
{
	unsigned key = 0;

	if (bpf_map_update_elem(t->meta_fd, &key, &t->meta, BPF_ANY)) {
		int rc = -errno;

		kfio_fmt(err, err_len, "cannot update the tracker's meta in %s: %s", t->dir,
			 strerror(-rc));
		return rc;
	}
	return 0;
}

/* True when the pinned link is still attached, to the pinned program. */
static bool link_holds(int link_fd, int prog_fd)
{
	struct bpf_link_info li;
	struct bpf_prog_info pi;
	__u32 len = sizeof(li), plen = sizeof(pi);

	memset(&li, 0, sizeof(li));
	memset(&pi, 0, sizeof(pi));
	if (bpf_obj_get_info_by_fd(link_fd, &li, &len) ||
	    bpf_obj_get_info_by_fd(prog_fd, &pi, &plen))
		return false;
	return li.prog_id && li.prog_id == pi.id;
}

static int map_mmap(int fd, size_t bytes, int prot, void **out)
{
	void *p = mmap(NULL, bytes, prot, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

/*
 * Opens the pins of dir and checks they are a whole tracker for geometry g
 * (NULL: any; a detached tracker is then opened too, with t->detached).
 * Returns 0, or -errno with why (the pins are then of no use: rebuild).
 */
static int pickup(struct kfio_track *t, const struct track_geom *g, char *why, size_t why_len)
{
	char p[KFIO_PATH_MAX + 32];
	int *fds[TRACK_PINS] = { &t->meta_fd,	 &t->live_fd,	 &t->pending_fd, &t->stats_fd,
				 &t->link_fd[0], &t->link_fd[1], &t->prog_fd[0], &t->prog_fd[1] };
	unsigned key = 0;
	int rc;

	for (unsigned i = 0; i < TRACK_PINS; i++) {
		snprintf(p, sizeof(p), "%s/%s", t->dir, pin_names[i]);
		*fds[i] = bpf_obj_get(p);
		if (*fds[i] < 0) {
			rc = -errno;
			kfio_fmt(why, why_len,
				 rc == -ENOENT ? "no tracker was pinned at %s"
					       : "cannot open the pin %s: %s",
				 rc == -ENOENT ? t->dir : p, strerror(-rc));
			return rc;
		}
	}
	{
		struct bpf_map_info mi;
		__u32 len = sizeof(mi);

		memset(&mi, 0, sizeof(mi));
		if (bpf_obj_get_info_by_fd(t->meta_fd, &mi, &len) ||
		    mi.value_size != sizeof(t->meta)) {
			kfio_fmt(why, why_len, "the tracker pinned at %s has an unknown format",
				 t->dir);
			return -EBADMSG;
		}
	}
	if (bpf_map_lookup_elem(t->meta_fd, &key, &t->meta)) {
		rc = -errno;
		kfio_fmt(why, why_len, "cannot read the tracker's meta in %s: %s", t->dir,
			 strerror(-rc));
		return rc;
	}
	if (t->meta.magic != TRACK_META_MAGIC || t->meta.version != TRACK_META_VERSION) {
		kfio_fmt(why, why_len, "the tracker pinned at %s has an unknown format", t->dir);
		return -EBADMSG;
	}
	if (g && (t->meta.vol_major != g->vol_major || t->meta.vol_minor != g->vol_minor ||
		  t->meta.disk_major != g->disk_major || t->meta.disk_minor != g->disk_minor ||
		  t->meta.first_sector != g->first_sector || t->meta.nr_sectors != g->nr_sectors ||
		  t->meta.size_bytes != g->size_bytes || t->meta.pages != g->pages ||
		  t->meta.diskseq != g->diskseq)) {
		kfio_fmt(why, why_len,
			 "the tracker pinned at %s was for device %u:%u (%" PRIu64
			 " bytes at sector %" PRIu64 " of %u:%u, disk sequence %" PRIu64
			 "), now it is %u:%u (%" PRIu64 " bytes at sector %" PRIu64
			 " of %u:%u, disk sequence %" PRIu64 ")",
			 t->dir, t->meta.vol_major, t->meta.vol_minor, t->meta.size_bytes,
			 t->meta.first_sector, t->meta.disk_major, t->meta.disk_minor,
			 t->meta.diskseq, g->vol_major, g->vol_minor, g->size_bytes,
			 g->first_sector, g->disk_major, g->disk_minor, g->diskseq);
		return -ESTALE;
	}
	for (unsigned i = 0; i < 2; i++) {
		if (!link_holds(t->link_fd[i], t->prog_fd[i])) {
			t->detached = true;
			if (!g)
				continue; /* inspecting: show it as detached */
			kfio_fmt(why, why_len,
				 "the tracker pinned at %s is no longer attached (%s)", t->dir,
				 pin_names[4 + i]);
			return -ENOLINK;
		}
	}
	t->words = (t->meta.pages + 63) / 64;
	t->bitmap_bytes = page_round(t->words * sizeof(uint64_t));
	t->stats_bytes = page_round(sizeof(struct track_stats));
	rc = map_mmap(t->live_fd, t->bitmap_bytes, PROT_READ | PROT_WRITE, (void **)&t->live);
	if (!rc)
		rc = map_mmap(t->pending_fd, t->bitmap_bytes, PROT_READ | PROT_WRITE,
			      (void **)&t->pending);
	if (!rc)
		rc = map_mmap(t->stats_fd, t->stats_bytes, PROT_READ | PROT_WRITE,
			      (void **)&t->stats);
	if (rc) {
		kfio_fmt(why, why_len, "cannot map the tracker's bitmaps in %s: %s", t->dir,
			 strerror(-rc));
		return rc;
	}
	return 0;
}

static int pin_into(int fd, const char *dir, const char *leaf, char *err, size_t err_len)
{
	char p[KFIO_PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/%s", dir, leaf);
	if (bpf_obj_pin(fd, p)) {
		int rc = -errno;

		kfio_fmt(err, err_len, "cannot pin %s: %s", p, strerror(-rc));
		return rc;
	}
	return 0;
}

static int load_error(int rc, const char *what, char *err, size_t err_len)
{
	if (rc == -EPERM || rc == -EACCES)
		kfio_fmt(
			err, err_len,
			"%s: permission denied: write tracking needs CAP_BPF and CAP_PERFMON (run as root, or grant both)%s%s",
			what, libbpf_last[0] ? "; libbpf: " : "", libbpf_last);
	else
		kfio_fmt(err, err_len, "%s: %s%s%s", what, strerror(-rc),
			 libbpf_last[0] ? "; libbpf: " : "", libbpf_last);
	return rc;
}

/* Loads and attaches a new instance for g and pins it at t->dir (via @new). */
static int create(struct kfio_track *t, const struct track_geom *g, char *err, size_t err_len)
{
	char tmp[KFIO_PATH_MAX + 8];
	struct track_bpf *skel;
	struct bpf_link *links[2] = { NULL, NULL };
	struct track_meta meta;
	LIBBPF_OPTS(bpf_map_create_opts, mmapable, .map_flags = BPF_F_MMAPABLE);
	int meta_fd = -1, pending_fd = -1;
	uint64_t words = (g->pages + 63) / 64;
	unsigned key = 0;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s@new", t->dir);
	rc = remove_dir(tmp, err, err_len); /* a crash part-way left one */
	if (rc)
		return rc;
	libbpf_last[0] = '\0';
	libbpf_set_print(libbpf_keep);
	skel = track_bpf__open();
	if (!skel)
		return load_error(-errno, "cannot open the tracker's BPF object", err, err_len);
	skel->rodata->target_major = g->disk_major;
	skel->rodata->target_minor = g->disk_minor;
	skel->rodata->first_sector = g->first_sector;
	skel->rodata->nr_sectors = g->nr_sectors;
	rc = bpf_map__set_max_entries(skel->maps.live, (uint32_t)words);
	if (rc) {
		load_error(rc, "cannot size the tracker's bitmap", err, err_len);
		goto destroy;
	}
	rc = track_bpf__load(skel);
	if (rc) {
		load_error(rc < 0 ? rc : -errno, "cannot load the tracker's BPF program", err,
			   err_len);
		goto destroy;
	}
	meta_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "pvrepl_meta", sizeof(key), sizeof(meta), 1,
				 NULL);
	pending_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "pvrepl_pending", sizeof(key),
				    sizeof(uint64_t), (uint32_t)words, &mmapable);
	if (meta_fd < 0 || pending_fd < 0) {
		rc = load_error(-errno, "cannot create the tracker's maps", err, err_len);
		goto close_maps;
	}
	memset(&meta, 0, sizeof(meta));
	meta.magic = TRACK_META_MAGIC;
	meta.version = TRACK_META_VERSION;
	meta.owed = KFIO_TRACK_LOSS_ATTACHED;
	meta.vol_major = g->vol_major;
	meta.vol_minor = g->vol_minor;
	meta.disk_major = g->disk_major;
	meta.disk_minor = g->disk_minor;
	meta.first_sector = g->first_sector;
	meta.nr_sectors = g->nr_sectors;
	meta.size_bytes = g->size_bytes;
	meta.pages = g->pages;
	meta.diskseq = g->diskseq;
	meta.created_unix = (uint64_t)time(NULL);
	if (getrandom(&meta.instance_id, sizeof(meta.instance_id), 0) != sizeof(meta.instance_id)) {
		rc = -EIO;
		kfio_fmt(err, err_len, "getrandom failed for the tracker's instance id");
		goto close_maps;
	}
	if (bpf_map_update_elem(meta_fd, &key, &meta, BPF_ANY)) {
		rc = load_error(-errno, "cannot write the tracker's meta", err, err_len);
		goto close_maps;
	}
	links[0] = bpf_program__attach(skel->progs.track_complete);
	if (!links[0]) {
		rc = load_error(-errno, "cannot attach the tracker to block_rq_complete", err,
				err_len);
		goto close_maps;
	}
	links[1] = bpf_program__attach(skel->progs.track_issue);
	if (!links[1]) {
		rc = load_error(-errno, "cannot attach the tracker to block_rq_issue", err,
				err_len);
		goto detach;
	}
	if (mkdir(tmp, 0700)) {
		rc = -errno;
		kfio_fmt(err, err_len, "cannot create %s: %s", tmp, strerror(-rc));
		goto detach;
	}
	/* Meta last but one and the rename last: a tracker without its meta or
	 * outside its final name is never picked up. */
	rc = pin_into(bpf_map__fd(skel->maps.live), tmp, "live", err, err_len);
	if (!rc)
		rc = pin_into(pending_fd, tmp, "pending", err, err_len);
	if (!rc)
		rc = pin_into(bpf_map__fd(skel->maps.stats), tmp, "stats", err, err_len);
	if (!rc)
		rc = pin_into(bpf_link__fd(links[0]), tmp, "link_complete", err, err_len);
	if (!rc)
		rc = pin_into(bpf_link__fd(links[1]), tmp, "link_issue", err, err_len);
	if (!rc)
		rc = pin_into(bpf_program__fd(skel->progs.track_complete), tmp, "prog_complete",
			      err, err_len);
	if (!rc)
		rc = pin_into(bpf_program__fd(skel->progs.track_issue), tmp, "prog_issue", err,
			      err_len);
	if (!rc)
		rc = pin_into(meta_fd, tmp, "meta", err, err_len);
	if (!rc && rename(tmp, t->dir)) {
		rc = -errno;
		kfio_fmt(err, err_len, "cannot rename %s to %s: %s", tmp, t->dir, strerror(-rc));
	}
	if (rc) {
		char ignored[64];

		remove_dir(tmp, ignored, sizeof(ignored));
	}
detach:
	/* The pins hold the links now; on failure this detaches them. */
	bpf_link__destroy(links[1]);
	bpf_link__destroy(links[0]);
close_maps:
	if (meta_fd >= 0)
		close(meta_fd);
	if (pending_fd >= 0)
		close(pending_fd);
destroy:
	track_bpf__destroy(skel);
	return rc;
}

static void fill_info(struct kfio_track *t)
{
	struct kfio_track_info *i = &t->info;

	i->instance_id = t->meta.instance_id;
	i->created_unix = t->meta.created_unix;
	i->pages = t->meta.pages;
	i->disk_major = t->meta.disk_major;
	i->disk_minor = t->meta.disk_minor;
	i->first_sector = t->meta.first_sector;
	i->nr_sectors = t->meta.nr_sectors;
	i->settled_tag = t->meta.settled_tag;
	snprintf(i->pin_dir, sizeof(i->pin_dir), "%s", t->dir);
}

/* An empty tracker for pin_root/name (no descriptor open); NULL: out of memory
 * or a path too long, with err. */
static struct kfio_track *track_new(const char *pin_root, const char *name, int *rc, char *err,
				    size_t err_len)
{
	struct kfio_track *t = calloc(1, sizeof(*t));

	*rc = -ENOMEM;
	if (!t)
		return NULL;
	t->meta_fd = t->live_fd = t->pending_fd = t->stats_fd = -1;
	t->link_fd[0] = t->link_fd[1] = t->prog_fd[0] = t->prog_fd[1] = -1;
	if ((size_t)snprintf(t->dir, sizeof(t->dir), "%s/%s", pin_root, name) >=
	    sizeof(t->dir) - 8) {
		kfio_fmt(err, err_len, "tracker pin path %s/%s is too long", pin_root, name);
		free(t);
		*rc = -ENAMETOOLONG;
		return NULL;
	}
	return t;
}

int kfio_track_open(struct kfio_track **out, const struct kfio_dev *dev, const char *pin_root,
		    const char *name, char *err, size_t err_len)
{
	struct kfio_track *t;
	struct track_geom g;
	char why[sizeof(t->info.why_new)];
	int rc;

	*out = NULL;
	if (!name_ok(name)) {
		kfio_fmt(
			err, err_len,
			"tracker name '%s' must be 1 to %u of A-Z a-z 0-9 _ - (bpffs refuses dots)",
			name, KFIO_TRACK_NAME_MAX - 1);
		return -EINVAL;
	}
	rc = track_geometry(dev, &g, err, err_len);
	if (rc)
		return rc;
	if (!pin_root)
		pin_root = KFIO_TRACK_PIN_ROOT_DEFAULT;
	rc = ensure_root(pin_root, err, err_len);
	if (rc)
		return rc;
	t = track_new(pin_root, name, &rc, err, err_len);
	if (!t)
		return rc;
	rc = pickup(t, &g, why, sizeof(why));
	if (rc == -EPERM || rc == -EACCES) {
		/* Not ours to judge: a tracker we may not read is left as it is. */
		load_error(rc, why, err, err_len);
		track_close_fds(t);
		free(t);
		return rc;
	}
	if (rc) {
		/* Nothing usable pinned: a new instance, with a loss owed. */
		track_close_fds(t);
		rc = remove_dir(t->dir, err, err_len);
		if (!rc)
			rc = create(t, &g, err, err_len);
		if (!rc) {
			rc = pickup(t, &g, err, err_len);
			if (rc) {
				/* Made but unusable: nothing of it may stay attached. */
				char ignored[64];

				track_close_fds(t);
				remove_dir(t->dir, ignored, sizeof(ignored));
			}
		}
		if (rc) {
			track_close_fds(t);
			free(t);
			return rc;
		}
		t->info.attached_now = true;
		snprintf(t->info.why_new, sizeof(t->info.why_new), "%s", why);
	}
	fill_info(t);
	*out = t;
	return 0;
}

void kfio_track_free(struct kfio_track *t)
{
	if (!t)
		return;
	track_close_fds(t);
	free(t);
}

void kfio_track_get_info(const struct kfio_track *t, struct kfio_track_info *info)
{
	*info = t->info;
}

static uint64_t prog_misses(int prog_fd)
{
	struct bpf_prog_info pi;
	__u32 len = sizeof(pi);

	memset(&pi, 0, sizeof(pi));
	if (bpf_obj_get_info_by_fd(prog_fd, &pi, &len))
		return UINT64_MAX; /* unreadable counts as a loss */
	return pi.recursion_misses;
}

static void loss_words(unsigned loss, const struct kfio_track_harvest *h, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
#define ADD(bit, ...)                                                                 \
	do {                                                                          \
		if ((loss & (bit)) && n < len) {                                      \
			n += (size_t)snprintf(out + n, len - n, "%s", n ? "; " : ""); \
			if (n < len)                                                  \
				n += (size_t)snprintf(out + n, len - n, __VA_ARGS__); \
		}                                                                     \
	} while (0)
	ADD(KFIO_TRACK_LOSS_ATTACHED,
	    "the tracker was attached since: earlier writes were not seen");
	ADD(KFIO_TRACK_LOSS_DETACHED, "the tracker's programs were found detached");
	ADD(KFIO_TRACK_LOSS_RECURSION, "the kernel skipped the tracker %" PRIu64 " times",
	    h->recursion_misses);
	ADD(KFIO_TRACK_LOSS_PASSTHROUGH,
	    "%" PRIu64 " passthrough commands (SG_IO/NVMe) were sent to the disk", h->passthrough);
	ADD(KFIO_TRACK_LOSS_OVERFLOW, "%" PRIu64 " requests were too large to mark", h->overflows);
#undef ADD
}

int kfio_track_harvest(struct kfio_track *t, struct kfio_track_harvest *h, char *err,
		       size_t err_len)
{
	return kfio_track_harvest_round(t, h, NULL, err, err_len);
}

int kfio_track_harvest_round(struct kfio_track *t, struct kfio_track_harvest *h,
			     uint64_t *moved_bits, char *err, size_t err_len)
{
	uint64_t misses = 0, moved = 0, pend = 0;
	unsigned loss = 0;
	struct track_stats st;

	memset(h, 0, sizeof(*h));
	for (unsigned i = 0; i < 2; i++) {
		struct bpf_link_info li;
		__u32 len = sizeof(li);
		uint64_t m;

		memset(&li, 0, sizeof(li));
		if (bpf_obj_get_info_by_fd(t->link_fd[i], &li, &len) || !li.prog_id)
			loss |= KFIO_TRACK_LOSS_DETACHED;
		m = prog_misses(t->prog_fd[i]);
		misses = m == UINT64_MAX || misses == UINT64_MAX ? UINT64_MAX : misses + m;
	}
	/* Counters first, bitmap second: a loss counted after this read is seen by
	 * the next harvest, which will also find its bits (if any) then. */
	st.marks = __atomic_load_n(&t->stats->marks, __ATOMIC_ACQUIRE);
	st.passthrough = __atomic_load_n(&t->stats->passthrough, __ATOMIC_ACQUIRE);
	st.overflows = __atomic_load_n(&t->stats->overflows, __ATOMIC_ACQUIRE);
	if (misses != t->meta.seen_misses)
		loss |= KFIO_TRACK_LOSS_RECURSION;
	if (st.passthrough != t->meta.seen_passthrough)
		loss |= KFIO_TRACK_LOSS_PASSTHROUGH;
	if (st.overflows != t->meta.seen_overflows)
		loss |= KFIO_TRACK_LOSS_OVERFLOW;
	for (uint64_t i = 0; i < t->words; i++) {
		/* A relaxed look first: most words are zero, and a write to a zero
		 * word would dirty every cache line of the bitmap. The bits go into
		 * pending before they leave live, so a process killed between the
		 * two steps leaves them in both, never in neither; only the bits
		 * seen are cleared, so one marked meanwhile stays live. */
		uint64_t w = __atomic_load_n(&t->live[i], __ATOMIC_ACQUIRE);

		if (moved_bits)
			moved_bits[i] = w;
		if (w) {
			__atomic_store_n(&t->pending[i], t->pending[i] | w, __ATOMIC_RELEASE);
			__atomic_fetch_and(&t->live[i], ~w, __ATOMIC_ACQ_REL);
			moved += (uint64_t)__builtin_popcountll(w);
		}
		pend += (uint64_t)__builtin_popcountll(t->pending[i]);
	}
	t->meta.owed |= loss;
	t->meta.seen_misses = misses;
	t->meta.seen_passthrough = st.passthrough;
	t->meta.seen_overflows = st.overflows;
	h->pending_pages = pend;
	h->harvested_pages = moved;
	h->loss = t->meta.owed;
	h->recursion_misses = misses == UINT64_MAX ? 0 : misses;
	h->passthrough = st.passthrough;
	h->overflows = st.overflows;
	h->marks = st.marks;
	loss_words(h->loss, h, h->reason, sizeof(h->reason));
	return write_meta(t, err, err_len);
}

const uint64_t *kfio_track_pending(const struct kfio_track *t)
{
	return t->pending;
}

uint64_t kfio_track_words(const struct kfio_track *t)
{
	return t->words;
}

void kfio_track_mark_live(struct kfio_track *t, const uint64_t *bits)
{
	for (uint64_t i = 0; i < t->words; i++)
		if (bits[i])
			__atomic_fetch_or(&t->live[i], bits[i], __ATOMIC_ACQ_REL);
}

bool kfio_track_live_any(const struct kfio_track *t, uint64_t offset, uint64_t len)
{
	uint64_t first, last;

	if (!len || offset >= t->meta.size_bytes)
		return false;
	first = offset / KFIO_TRACK_PAGE_BYTES;
	last = (offset + len - 1) / KFIO_TRACK_PAGE_BYTES;
	if (last >= t->meta.pages)
		last = t->meta.pages - 1;
	for (uint64_t p = first; p <= last; p++)
		if ((__atomic_load_n(&t->live[p / 64], __ATOMIC_RELAXED) >> (p % 64)) & 1)
			return true;
	return false;
}

int kfio_track_settle(struct kfio_track *t, bool full_scan, uint64_t tag, char *err, size_t err_len)
{
	memset(t->pending, 0, t->words * sizeof(uint64_t));
	if (full_scan)
		t->meta.owed = 0;
	t->meta.settled_tag = tag;
	t->info.settled_tag = tag;
	return write_meta(t, err, err_len);
}

int kfio_track_remove(const char *pin_root, const char *name, char *err, size_t err_len)
{
	char dir[KFIO_PATH_MAX], tmp[KFIO_PATH_MAX + 8];
	int rc;

	if (!name_ok(name)) {
		kfio_fmt(err, err_len, "tracker name '%s' is not valid", name);
		return -EINVAL;
	}
	if (!pin_root)
		pin_root = KFIO_TRACK_PIN_ROOT_DEFAULT;
	snprintf(dir, sizeof(dir), "%s/%s", pin_root, name);
	snprintf(tmp, sizeof(tmp), "%s@new", dir);
	rc = remove_dir(tmp, err, err_len);
	if (!rc)
		rc = remove_dir(dir, err, err_len);
	return rc;
}

static uint64_t bits_set(const uint64_t *w, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&w[i], __ATOMIC_RELAXED));
	return n;
}

int kfio_track_inspect(const char *pin_root, const char *name, struct kfio_track_pinned *out,
		       char *err, size_t err_len)
{
	struct kfio_track *t;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!name_ok(name)) {
		kfio_fmt(err, err_len, "tracker name '%s' is not valid", name);
		return -EINVAL;
	}
	t = track_new(pin_root ? pin_root : KFIO_TRACK_PIN_ROOT_DEFAULT, name, &rc, err, err_len);
	if (!t)
		return rc;
	rc = pickup(t, NULL, err, err_len);
	out->attached = !t->detached;
	if (!rc) {
		fill_info(t);
		out->info = t->info;
		out->owed = t->meta.owed | (out->attached ? 0 : KFIO_TRACK_LOSS_DETACHED);
		out->vol_major = t->meta.vol_major;
		out->vol_minor = t->meta.vol_minor;
		out->size_bytes = t->meta.size_bytes;
		if (t->live && t->pending) {
			out->live_pages = bits_set(t->live, t->words);
			out->pending_pages = bits_set(t->pending, t->words);
			out->marks = __atomic_load_n(&t->stats->marks, __ATOMIC_RELAXED);
		}
	}
	track_close_fds(t);
	free(t);
	return rc;
}

int kfio_track_list(const char *pin_root, int (*fn)(const char *name, void *ctx), void *ctx,
		    char *err, size_t err_len)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (!pin_root)
		pin_root = KFIO_TRACK_PIN_ROOT_DEFAULT;
	d = opendir(pin_root);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		kfio_fmt(err, err_len, "cannot list %s: %s", pin_root, strerror(-rc));
		return rc;
	}
	while (!rc && (e = readdir(d)))
		if (e->d_type == DT_DIR && name_ok(e->d_name))
			rc = fn(e->d_name, ctx);
	closedir(d);
	return rc;
}
