// SPDX-License-Identifier: Apache-2.0
/*
 * pending — the sender's record of an unacknowledged epoch (see pending.h).
 *
 * File: a 96-byte header, then either every block's hash (dense, for a full
 * sync) or (block index, hash) pairs for the changed blocks, all little-endian.
 * Replaced durably (replace.c: tmp file, fsync, rename, directory fsync): a
 * crash leaves the previous file or the new one. Read back in two passes, the first
 * verifying the checksum, so a damaged file never half-applies.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "pending.h"
#include "pvrepl_assert.h"
#include "replace.h"

#define PENDING_MAGIC	   0x0a444e4550525650ull /* "PVRPEND\n" */
#define PENDING_VERSION	   1u
#define PENDING_FLAG_DENSE 1u
#define PENDING_SEED	   0x70656e64696e6701ull
#define PENDING_IO_WORDS   65536u /* 512 KiB of u64 per write or read */

struct pending_disk {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t epoch;
	uint64_t base_epoch;
	uint64_t block_count;
	uint64_t entry_count; /* dense: block_count */
	uint8_t volume_id[16];
	uint64_t body_checksum;
	uint64_t reserved[2];
	uint64_t header_checksum; /* of the bytes above */
};
_Static_assert(sizeof(struct pending_disk) == 96, "pending header size");

struct pending_writer {
	struct replace r;
	uint64_t *buf;
	uint32_t used;
	uint64_t off;
	struct delta_stream sum;
};

static int pw_flush(struct pending_writer *w)
{
	size_t len = (size_t)w->used * 8;
	int rc;

	delta_stream_update(&w->sum, w->buf, len);
	rc = replace_write(&w->r, w->buf, len, w->off);
	w->off += len;
	w->used = 0;
	return rc;
}

static int pw_put(struct pending_writer *w, uint64_t v)
{
	w->buf[w->used++] = htole64(v);
	return w->used == PENDING_IO_WORDS ? pw_flush(w) : 0;
}

static void path_of(char *dst, size_t len, const char *dir, const char *file)
{
	snprintf(dst, len, "%s/%s", dir, file);
}

int pending_save(const struct map *m, const char *state_dir, uint64_t epoch, char *err,
		 size_t err_len)
{
	/* Durable before it is renamed into place, and the rename before we ask
	 * for the ack: the ack may be lost, this record must not be. */
	struct replace_spec spec = {
		.dir = state_dir,
		.dirfd = -1,
		.name = PENDING_FILE,
		.tmp_name = PENDING_TMP_FILE,
		.mode = 0600,
		.step = "pending",
	};
	struct pending_writer w = { .off = sizeof(struct pending_disk) };
	struct pending_disk h = { 0 };
	char why[REPLACE_ERR_MAX] = "";
	bool dense;
	uint64_t entries = 0;
	int rc = 0;

	ASSERT(m != NULL);
	ASSERT(m->hashes != NULL);
	ASSERT(state_dir != NULL);
	dense = m->empty;
	w.buf = malloc(PENDING_IO_WORDS * 8);
	if (!w.buf)
		return -ENOMEM;
	rc = replace_begin(&w.r, &spec, why, sizeof(why));
	if (rc)
		goto out;
	delta_stream_init(&w.sum, PENDING_SEED);
	for (uint64_t i = 0; i < m->block_count && !rc; i++) {
		if (dense) {
			rc = pw_put(&w, m->hashes[i]);
		} else if (map_is_dirty(m, i)) {
			rc = pw_put(&w, i);
			if (!rc)
				rc = pw_put(&w, m->hashes[i]);
			entries++;
		}
	}
	if (!rc)
		rc = pw_flush(&w);
	if (rc) {
		replace_abort(&w.r);
		goto out;
	}
	h.magic = htole64(PENDING_MAGIC);
	h.version = htole32(PENDING_VERSION);
	h.flags = htole32(dense ? PENDING_FLAG_DENSE : 0);
	h.epoch = htole64(epoch);
	h.base_epoch = htole64(m->epoch);
	h.block_count = htole64(m->block_count);
	h.entry_count = htole64(dense ? m->block_count : entries);
	memcpy(h.volume_id, m->volume_id, sizeof(h.volume_id));
	h.body_checksum = htole64(delta_stream_digest(&w.sum));
	h.header_checksum = htole64(delta_hash(&h, offsetof(struct pending_disk, header_checksum)));
	rc = replace_write(&w.r, &h, sizeof(h), 0);
	if (rc) {
		replace_abort(&w.r);
		goto out;
	}
	rc = replace_commit(&w.r);
out:
	if (rc)
		snprintf(err, err_len, "recording the pending epoch %" PRIu64 " in %s failed: %s",
			 epoch, state_dir, why[0] ? why : strerror(-rc));
	free(w.buf);
	return rc;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EBADMSG;
}

/* Pass 1 verifies the body checksum; pass 2 (apply) sets the hashes. */
static int walk_body(int fd, const struct pending_disk *h, struct map *m, bool apply, uint64_t *buf)
{
	uint64_t words = (le32toh(h->flags) & PENDING_FLAG_DENSE) ? le64toh(h->block_count)
								  : 2 * le64toh(h->entry_count);
	uint64_t off = sizeof(*h), done = 0, pair_idx = 0;
	bool dense = le32toh(h->flags) & PENDING_FLAG_DENSE;
	struct delta_stream sum;
	int rc;

	delta_stream_init(&sum, PENDING_SEED);
	while (done < words) {
		uint32_t n = words - done < PENDING_IO_WORDS ? (uint32_t)(words - done)
							     : PENDING_IO_WORDS;

		rc = read_at(fd, buf, (size_t)n * 8, off);
		if (rc)
			return rc;
		delta_stream_update(&sum, buf, (size_t)n * 8);
		for (uint32_t i = 0; apply && i < n; i++) {
			uint64_t v = le64toh(buf[i]);

			if (dense) {
				map_set(m, done + i, v);
			} else if ((done + i) % 2 == 0) {
				pair_idx = v;
				if (pair_idx >= m->block_count)
					return -EBADMSG;
			} else {
				map_set(m, pair_idx, v);
			}
		}
		off += (uint64_t)n * 8;
		done += n;
	}
	return !apply && delta_stream_digest(&sum) != le64toh(h->body_checksum) ? -EBADMSG : 0;
}

int pending_apply(struct map *m, const char *state_dir, uint64_t epoch, char *err, size_t err_len)
{
	struct pending_disk h;
	struct stat st;
	char path[4200];
	uint64_t *buf = NULL;
	uint64_t words;
	int fd, rc;

	ASSERT(m != NULL);
	ASSERT(m->hashes != NULL);
	ASSERT(state_dir != NULL);
	path_of(path, sizeof(path), state_dir, PENDING_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = read_at(fd, &h, sizeof(h), 0);
	if (rc || le64toh(h.magic) != PENDING_MAGIC || le32toh(h.version) != PENDING_VERSION ||
	    le64toh(h.header_checksum) !=
		    delta_hash(&h, offsetof(struct pending_disk, header_checksum))) {
		rc = -EBADMSG;
		goto out;
	}
	/* Only a change for exactly this epoch, on top of exactly our map, fits. */
	if (le64toh(h.epoch) != epoch || le64toh(h.base_epoch) != m->epoch ||
	    le64toh(h.block_count) != m->block_count ||
	    memcmp(h.volume_id, m->volume_id, sizeof(h.volume_id))) {
		rc = -ENOENT;
		goto out;
	}
	words = (le32toh(h.flags) & PENDING_FLAG_DENSE) ? m->block_count
							: 2 * le64toh(h.entry_count);
	if (words > 2 * m->block_count || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_size != sizeof(h) + words * 8) {
		rc = -EBADMSG;
		goto out;
	}
	buf = malloc(PENDING_IO_WORDS * 8);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = walk_body(fd, &h, m, false, buf);
	if (!rc)
		rc = walk_body(fd, &h, m, true, buf);
out:
	if (rc == -EBADMSG)
		snprintf(err, err_len, "%s is damaged; it is ignored (the next epoch resyncs)",
			 path);
	free(buf);
	close(fd);
	return rc;
}

void pending_drop(const char *state_dir)
{
	char path[4200];

	ASSERT(state_dir != NULL);
	path_of(path, sizeof(path), state_dir, PENDING_FILE);
	unlink(path);
}
