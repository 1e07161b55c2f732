/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kfio — the kmod-free block I/O engine.
 *
 * Opens block devices and regular files for O_DIRECT I/O, probes their geometry,
 * and drives an I/O queue with registered buffers addressed by index. The queue
 * sits on a substitutable backend: the real one is io_uring (registered buffers,
 * fixed files, a deep queue); a simulated one keeps un-flushed writes volatile so
 * tests can cut power at any point and choose what survives. Callers never see
 * which backend runs.
 *
 * It deliberately knows nothing of hashing, frames, TLS or journals, links only
 * liburing, never prints and never exits: every failure is a negative errno, and
 * the object involved keeps a human sentence in its err_msg.
 */
#ifndef KFIO_H
#define KFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KFIO_ERR_MSG_MAX 320
#define KFIO_PATH_MAX	 4096

/* Named limits (STYLE: every queue has a maximum). */
#define KFIO_QUEUE_DEPTH_MAX 4096u
#define KFIO_BUF_COUNT_MAX   16384u
#define KFIO_BUF_BYTES_MAX   (64u << 20)
#define KFIO_DEVS_MAX	     64u
/* O_DIRECT buffers are aligned to this in memory whatever the device asks for:
 * it is a multiple of every logical block size Linux supports (512..4096) and of
 * the page size, so a buffer from the pool is valid for any device. */
#define KFIO_MEM_ALIGN 4096u

/* ---------------------------------------------------------------- devices */

enum kfio_open_flags {
	KFIO_OPEN_WRITE = 1u << 0,    /* open read-write (default read-only) */
	KFIO_OPEN_BUFFERED = 1u << 1, /* no O_DIRECT (for filesystems that lack it) */
	KFIO_OPEN_EXCL = 1u << 2,     /* O_EXCL on a block device: fail if mounted */
};

struct kfio_dev {
	int fd;
	char path[KFIO_PATH_MAX];
	uint64_t size_bytes;	       /* BLKGETSIZE64 or st_size */
	uint32_t logical_block_bytes;  /* BLKSSZGET; 512 for files on most fs */
	uint32_t physical_block_bytes; /* BLKPBSZGET; st_blksize for files */
	uint32_t dio_offset_align;     /* offset and length alignment for O_DIRECT */
	uint32_t dio_mem_align;	       /* buffer address alignment for O_DIRECT */
	bool is_blockdev;
	bool rotational;	/* /sys/dev/block/M:m/queue/rotational */
	bool read_only;		/* opened read-only, or the device itself is read-only */
	bool device_read_only;	/* BLKROGET on a device; no write permission on a file */
	bool direct;		/* opened with O_DIRECT */
	bool discard_supported; /* device advertises discard / fs punches holes */
	char err_msg[KFIO_ERR_MSG_MAX];
};

/*
 * Opens path and probes it. On failure returns -errno and leaves a sentence naming
 * the path and the fix in dev->err_msg; dev->fd is -1 and nothing needs closing.
 */
int kfio_dev_open(struct kfio_dev *dev, const char *path, unsigned flags);
void kfio_dev_close(struct kfio_dev *dev);

/*
 * Checks an O_DIRECT request against the device's alignment rules and its size.
 * Returns 0 or -EINVAL (misaligned) / -ERANGE (beyond the end) with a sentence such
 * as "offset 4100 is not aligned to the device's 512-byte logical block size" in
 * dev->err_msg. A read may extend past the end (it completes short); pass
 * allow_past_end for that.
 */
int kfio_dev_check_io(struct kfio_dev *dev, uint64_t offset, uint64_t len, const void *buf,
		      bool allow_past_end);

/* Synchronous helpers; each returns 0 or -errno with dev->err_msg set. */
int kfio_dev_flush(struct kfio_dev *dev); /* fdatasync */
int kfio_dev_discard(struct kfio_dev *dev, uint64_t offset,
		     uint64_t len); /* BLKDISCARD / punch hole */
int kfio_dev_zero_out(struct kfio_dev *dev, uint64_t offset,
		      uint64_t len); /* BLKZEROOUT / zero range */
int kfio_dev_pread_all(struct kfio_dev *dev, void *buf, uint64_t len, uint64_t offset);
int kfio_dev_pwrite_all(struct kfio_dev *dev, const void *buf, uint64_t len, uint64_t offset);

/* Filesystem helpers for the capture modes; err receives a sentence on failure. */
int kfio_fs_freeze(const char *mountpoint, char *err, size_t err_len); /* FIFREEZE */
int kfio_fs_thaw(const char *mountpoint, char *err, size_t err_len);   /* FITHAW */
/* FICLONE: makes dst_path (created or truncated) a reflink copy of src_path. */
int kfio_fs_clone(const char *src_path, const char *dst_path, char *err, size_t err_len);

/* Allocates len bytes aligned to KFIO_MEM_ALIGN; free with kfio_buf_free. */
void *kfio_buf_alloc(size_t len);
void kfio_buf_free(void *buf, size_t len);

/* --------------------------------------------------------- write tracking */

/*
 * The write tracker (track.c, bpf/track.bpf.c): an eBPF program marks one bit per
 * KFIO_TRACK_PAGE_BYTES of a block device when a write to it completes, into a
 * bitmap pinned in bpffs, so tracking survives the process (a restart or an
 * upgrade picks it up) but not a reboot. A harvest moves the live bits into a
 * pinned pending bitmap, which the caller reads and clears only once what it
 * read is safe (kfio_track_settle): a crash or a failed epoch loses nothing.
 *
 * One owner per tracker at a time. Anything that may have escaped the tracker is
 * reported as a loss (enum kfio_track_loss), and the loss stays owed, across
 * restarts too, until the caller settles an epoch that read the whole device.
 * Needs CAP_BPF and CAP_PERFMON (root), BTF, and a blk-mq block device.
 */
#define KFIO_TRACK_PAGE_BYTES	    4096u
#define KFIO_TRACK_PIN_ROOT_DEFAULT "/sys/fs/bpf/pvrepl"
#define KFIO_TRACK_NAME_MAX	    96u
/* One request can mark at most this much (bpf_loop's bound): larger ones are an
 * overflow loss. Volumes are limited to it too, so a whole-volume discard fits. */
#define KFIO_TRACK_VOLUME_BYTES_MAX (2ull << 40)

enum kfio_track_loss {
	KFIO_TRACK_LOSS_ATTACHED = 1u << 0,    /* attached now: earlier writes unseen */
	KFIO_TRACK_LOSS_RECURSION = 1u << 1,   /* the kernel skipped the program */
	KFIO_TRACK_LOSS_PASSTHROUGH = 1u << 2, /* SG_IO / NVMe passthrough writes */
	KFIO_TRACK_LOSS_OVERFLOW = 1u << 3,    /* a request too large to mark */
	KFIO_TRACK_LOSS_DETACHED = 1u << 4,    /* pinned programs found detached */
};

struct kfio_track;

struct kfio_track_info {
	uint64_t instance_id;  /* random, new at every attach */
	uint64_t created_unix; /* when this instance was attached */
	uint64_t pages;	       /* bits in each bitmap */
	uint32_t disk_major;   /* the whole disk the program filters on */
	uint32_t disk_minor;
	uint64_t first_sector; /* the volume's range on that disk */
	uint64_t nr_sectors;
	uint64_t settled_tag; /* the tag of the last kfio_track_settle (0: none) */
	bool attached_now;    /* kfio_track_open attached it (no pins were usable) */
	char why_new[256];    /* when attached_now: why (no pins, device changed, ...) */
	char pin_dir[KFIO_PATH_MAX];
};

/* One harvest: what was moved to pending, and every loss seen or still owed. */
struct kfio_track_harvest {
	uint64_t pending_pages;	   /* bits set in pending after the harvest */
	uint64_t harvested_pages;  /* bits moved from live by this harvest */
	unsigned loss;		   /* enum kfio_track_loss bits owed a full scan */
	uint64_t recursion_misses; /* totals of this instance, for metrics */
	uint64_t passthrough;
	uint64_t overflows;
	uint64_t marks;
	char reason[320]; /* the losses in words, when loss != 0 */
};

/*
 * Whether dev can be tracked at all: 0, or -EOPNOTSUPP with the reason in why
 * (a regular file, a bio-based device such as device-mapper or md, a volume past
 * KFIO_TRACK_VOLUME_BYTES_MAX). No BPF is touched.
 */
int kfio_track_supported(const struct kfio_dev *dev, char *why, size_t why_len);

/*
 * Opens the tracker of volume `name` (1..KFIO_TRACK_NAME_MAX-1 of [A-Za-z0-9_-]: bpffs refuses dots)
 * under pin_root (NULL: KFIO_TRACK_PIN_ROOT_DEFAULT; a root under /sys/fs/bpf
 * mounts bpffs there when nothing is mounted): picks up its pins when they are
 * for this device (disk, range, size) and still attached, else removes them and
 * attaches a new instance (info.attached_now, with a loss owed). *out is the
 * caller's, freed with kfio_track_free (which leaves the pins). Returns 0, or
 * -errno with a sentence in err: -EPERM without CAP_BPF/CAP_PERFMON,
 * -EOPNOTSUPP for a device kfio_track_supported refuses.
 */
int kfio_track_open(struct kfio_track **out, const struct kfio_dev *dev, const char *pin_root,
		    const char *name, char *err, size_t err_len);
void kfio_track_free(struct kfio_track *t);
void kfio_track_get_info(const struct kfio_track *t, struct kfio_track_info *info);

/*
 * Moves every live bit into pending (per-word atomic exchange), checks the loss
 * counters since the last harvest and records new losses as owed. Returns 0 or
 * -errno with the sentence in err.
 */
int kfio_track_harvest(struct kfio_track *t, struct kfio_track_harvest *h, char *err,
		       size_t err_len);
/*
 * The same, and moved_bits (kfio_track_words() words) receives exactly the bits
 * this harvest moved from live: what was written since the previous harvest,
 * for an epoch read in rounds.
 */
int kfio_track_harvest_round(struct kfio_track *t, struct kfio_track_harvest *h,
			     uint64_t *moved_bits, char *err, size_t err_len);
/* Words (uint64_t) of the tracker's bitmaps. */
uint64_t kfio_track_words(const struct kfio_track *t);

/* The pending bitmap (pages bits, one per KFIO_TRACK_PAGE_BYTES; owned by t). */
const uint64_t *kfio_track_pending(const struct kfio_track *t);
/*
 * Marks bits (kfio_track_words() words) live again, as if written now: what an
 * epoch harvested but must read again in the next one. Atomic per word, so
 * marks of the program meanwhile are kept.
 */
void kfio_track_mark_live(struct kfio_track *t, const uint64_t *bits);
/* True when any page of [offset, offset + len) is marked live now (no harvest). */
bool kfio_track_live_any(const struct kfio_track *t, uint64_t offset, uint64_t len);

/*
 * What the caller read since the last harvest is safe (durable where it
 * matters): clears pending, and with full_scan (the epoch read every block after
 * that harvest) clears the owed losses too. tag is the caller's (an epoch, say),
 * kept with the tracker for kfio_track_info.settled_tag. Returns 0 or -errno
 * with err.
 */
int kfio_track_settle(struct kfio_track *t, bool full_scan, uint64_t tag, char *err,
		      size_t err_len);

/* Unpins the tracker of `name` (its programs detach once nothing holds them).
 * 0 when there was none to remove too; -errno with err otherwise. */
int kfio_track_remove(const char *pin_root, const char *name, char *err, size_t err_len);

/* What a pinned tracker holds, read without its device (pvrepl track list). */
struct kfio_track_pinned {
	struct kfio_track_info info;
	bool attached;		/* both programs still attached */
	unsigned owed;		/* enum kfio_track_loss bits owed a full scan */
	uint64_t pending_pages; /* harvested, not yet settled */
	uint64_t live_pages;	/* marked since the last harvest */
	uint64_t marks;		/* write completions marked since the attach */
	uint32_t vol_major, vol_minor;
	uint64_t size_bytes;
};

/* Reads the tracker `name` under pin_root (NULL: the default): 0, -ENOENT, or
 * -errno with err (-EBADMSG for pins of an unknown format). */
int kfio_track_inspect(const char *pin_root, const char *name, struct kfio_track_pinned *out,
		       char *err, size_t err_len);

/* The pinned trackers under pin_root: calls fn for each name; 0 or -errno. */
int kfio_track_list(const char *pin_root, int (*fn)(const char *name, void *ctx), void *ctx,
		    char *err, size_t err_len);

/* ------------------------------------------------------------------ queue */

enum kfio_op {
	KFIO_OP_READ = 1,
	KFIO_OP_WRITE = 2,
	KFIO_OP_FLUSH = 3,
};

enum kfio_backend_kind {
	KFIO_BACKEND_URING = 0, /* the real one */
	KFIO_BACKEND_SIM = 1,	/* synchronous pread/pwrite with a volatile write cache */
};

struct kfio_queue_config {
	enum kfio_backend_kind backend;
	uint32_t depth;	    /* max requests in flight, <= KFIO_QUEUE_DEPTH_MAX */
	uint32_t buf_count; /* registered buffers, <= KFIO_BUF_COUNT_MAX */
	uint32_t buf_bytes; /* bytes per buffer, multiple of KFIO_MEM_ALIGN */
};

/* One completion, with everything the caller gave at submission. */
struct kfio_cqe {
	uint64_t user_data;
	uint64_t offset;
	int32_t res;	  /* bytes transferred (may be short at end of device) or -errno */
	uint32_t len;	  /* bytes requested */
	uint32_t buf_idx; /* UINT32_MAX for flush */
	uint16_t dev_idx;
	uint8_t op; /* enum kfio_op */
};

struct kfio_queue;

/*
 * Creates a queue over devs (the queue borrows them; they must outlive it) and
 * registers them as fixed files and buf_count buffers of buf_bytes each.
 * *out is owned by the caller and freed with kfio_queue_free. On failure *out is
 * NULL and err (if not NULL) receives a sentence.
 */
int kfio_queue_new(struct kfio_queue **out, const struct kfio_queue_config *cfg,
		   struct kfio_dev *const *devs, unsigned dev_count, char *err, size_t err_len);
void kfio_queue_free(struct kfio_queue *q);

/* The buffer registered at idx; owned by the queue. */
void *kfio_queue_buf(struct kfio_queue *q, uint32_t idx);
uint32_t kfio_queue_buf_count(const struct kfio_queue *q);
uint32_t kfio_queue_buf_bytes(const struct kfio_queue *q);
uint32_t kfio_queue_depth(const struct kfio_queue *q);
/* Requests queued or in flight and not yet reaped. */
uint32_t kfio_queue_inflight(const struct kfio_queue *q);
/* The last error sentence of this queue. */
const char *kfio_queue_err(const struct kfio_queue *q);

/*
 * Queue a request (not yet submitted). len is at most buf_bytes and, with O_DIRECT,
 * aligned; the request is validated before it is queued. Returns 0, -EBUSY when
 * depth requests are already in flight, or -EINVAL/-ERANGE with kfio_queue_err().
 */
int kfio_queue_read(struct kfio_queue *q, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		    uint32_t len, uint64_t user_data);
int kfio_queue_write(struct kfio_queue *q, unsigned dev_idx, uint32_t buf_idx, uint64_t offset,
		     uint32_t len, uint64_t user_data);
/*
 * A flush (IORING_OP_FSYNC, DATASYNC) of dev_idx. It is submitted with
 * IOSQE_IO_DRAIN, so it starts only after every request queued before it has
 * completed: its completion means those writes are durable.
 */
int kfio_queue_flush(struct kfio_queue *q, unsigned dev_idx, uint64_t user_data);

/* Submits what was queued; returns the number submitted or -errno. */
int kfio_queue_submit(struct kfio_queue *q);
/*
 * Reaps up to max completions into out, waiting until at least min_wait are there
 * (0 = do not wait). Returns the number reaped or -errno.
 */
int kfio_queue_reap(struct kfio_queue *q, struct kfio_cqe *out, unsigned max, unsigned min_wait);

/* Which io_uring opcodes the running kernel supports, probed at run time. */
struct kfio_caps {
	bool uring;
	bool read_fixed;
	bool write_fixed;
	bool fsync;
	bool fallocate;
	bool register_files;
};
int kfio_probe(struct kfio_caps *caps);

/* ---------------------------------------------------- simulated power loss */

enum kfio_crash_mode {
	KFIO_CRASH_DROP = 0, /* every un-flushed write is lost */
	KFIO_CRASH_KEEP = 1, /* every un-flushed write made it */
	KFIO_CRASH_TORN = 2, /* each un-flushed write lost, kept, or torn at a sector */
};

/*
 * For a KFIO_BACKEND_SIM queue only: simulate power loss now. Un-flushed writes are
 * dropped, kept or torn per mode (TORN uses seed, so a failure can be replayed),
 * and the queue refuses further I/O with -EIO, as a dead machine would.
 * Returns -EOPNOTSUPP on a real queue.
 */
int kfio_queue_sim_crash(struct kfio_queue *q, enum kfio_crash_mode mode, uint64_t seed);
/* Writes that are volatile (written, not yet flushed) on a SIM queue. */
uint32_t kfio_queue_sim_pending(const struct kfio_queue *q);

#endif
