/* SPDX-License-Identifier: Apache-2.0 */
/*
 * map — a volume's block hash map and its crash-safe persistence (see map.h and
 * docs/FORMATS.md, which has the crash analysis of map_commit step by step).
 *
 * Files, all in the state directory and reached through one directory fd:
 *   map          the base: header + every hash, replaced only by rename
 *   map.log      header + one record per epoch committed since (or before) the base
 *   map.tmp, map.log.tmp   staging for the renames; ignored by map_load and
 *                overwritten by the next rewrite, so a crash can leave them
 *
 * Invariants on disk, after any crash:
 *   1. `map` is a complete base of some committed epoch B (renames are atomic and
 *      a base is renamed into place only after it is fsync'ed).
 *   2. Every record in `map.log` with epoch > B is a complete epoch, appended in
 *      epoch order after B was written; records with epoch <= B are stale (from a
 *      log the base already absorbed) and skipped.
 *   3. Only the last record can be torn (appends are fdatasync'ed one at a time,
 *      and a failed commit makes the map refuse further commits until reloaded);
 *      a torn record was never reported committed and is cut off at load.
 *
 * It knows nothing of devices or of what the hashes are hashes of; it does not
 * print or retry: every failure is -errno with a sentence for the caller.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delta.h"
#include "map.h"
#include "merkle.h"
#include "replace.h"

int (*map_crash_hook)(const char *step);

/* Hashes converted to little-endian per write or checksum step (32 KiB on the stack). */
#define MAP_IO_CHUNK_HASHES 4096u

/* --------------------------------------------------------------- helpers */

__attribute__((format(printf, 3, 4))) static void map_err(char *err, size_t err_len,
							  const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

static int map_step(const char *step)
{
	return map_crash_hook != NULL ? map_crash_hook(step) : 0;
}

static int map_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Reads exactly len bytes; a short file here means it changed under us: -EIO. */
static int map_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void map_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static bool map_geometry_valid(uint64_t size_bytes, uint32_t block_bytes)
{
	if (block_bytes < MAP_BLOCK_BYTES_MIN || block_bytes > MAP_BLOCK_BYTES_MAX)
		return false;
	if ((block_bytes & (block_bytes - 1)) != 0)
		return false;
	if (size_bytes == 0)
		return false;
	return (size_bytes - 1) / block_bytes + 1 <= MAP_BLOCK_COUNT_MAX;
}

static uint64_t map_block_count_of(uint64_t size_bytes, uint32_t block_bytes)
{
	return (size_bytes - 1) / block_bytes + 1;
}

static uint64_t map_dirty_words(uint64_t block_count)
{
	return (block_count + 63) / 64;
}

static uint64_t map_base_bytes(uint64_t block_count)
{
	return sizeof(struct map_disk_header) + block_count * sizeof(uint64_t);
}

static uint64_t map_record_bytes(uint64_t entry_count)
{
	return sizeof(struct map_disk_record) + entry_count * sizeof(struct map_disk_entry);
}

/* Allocates the arrays for m's geometry (already set); 0 or -ENOMEM. */
static int map_alloc(struct map *m)
{
	m->hashes = calloc(m->block_count, sizeof(*m->hashes));
	m->dirty = calloc(map_dirty_words(m->block_count), sizeof(*m->dirty));
	if (m->hashes == NULL || m->dirty == NULL) {
		map_release(m);
		return -ENOMEM;
	}
	return 0;
}

/* Checksum of the hashes as they are on disk (little-endian), in bounded chunks. */
static uint64_t map_body_checksum(const uint64_t *hashes, uint64_t count)
{
	uint64_t le[MAP_IO_CHUNK_HASHES];
	struct delta_stream s;

	delta_stream_init(&s, MAP_DISK_SEED_BASE_BODY);
	for (uint64_t i = 0; i < count; i += MAP_IO_CHUNK_HASHES) {
		uint64_t n = count - i < MAP_IO_CHUNK_HASHES ? count - i : MAP_IO_CHUNK_HASHES;

		for (uint64_t j = 0; j < n; j++)
			le[j] = htole64(hashes[i + j]);
		delta_stream_update(&s, le, n * sizeof(le[0]));
	}
	return delta_stream_digest(&s);
}

static uint64_t map_header_checksum(const struct map_disk_header *h)
{
	return delta_hash_seeded(h, offsetof(struct map_disk_header, header_checksum),
				 MAP_DISK_SEED_BASE_HEADER);
}

static uint64_t map_log_header_checksum(const struct map_disk_log_header *h)
{
	return delta_hash_seeded(h, offsetof(struct map_disk_log_header, checksum),
				 MAP_DISK_SEED_LOG_HEADER);
}

/* Checksum of a record as laid out on disk: header with checksum 0, entries. */
static uint64_t map_record_checksum(const unsigned char *rec, uint64_t entry_count)
{
	struct map_disk_record h;
	struct delta_stream s;

	memcpy(&h, rec, sizeof(h));
	h.checksum = 0;
	delta_stream_init(&s, MAP_DISK_SEED_RECORD);
	delta_stream_update(&s, &h, sizeof(h));
	delta_stream_update(&s, rec + sizeof(h), entry_count * sizeof(struct map_disk_entry));
	return delta_stream_digest(&s);
}

/*
 * Whether a whole, checksummed record starts at buf[off] (len bytes in buf); if so
 * its decoded header goes to *out and its size to *rec_bytes. Says nothing of
 * whether its content makes sense for this map.
 */
static bool map_record_valid(const unsigned char *buf, uint64_t len, uint64_t off,
			     struct map_disk_record *out, uint64_t *rec_bytes)
{
	struct map_disk_record r;
	uint64_t room;

	if (off > len || len - off < sizeof(r))
		return false;
	memcpy(&r, buf + off, sizeof(r));
	if (le64toh(r.magic) != MAP_DISK_RECORD_MAGIC)
		return false;
	room = len - off - sizeof(r);
	r.entry_count = le64toh(r.entry_count);
	if (r.entry_count > room / sizeof(struct map_disk_entry))
		return false;
	if (map_record_checksum(buf + off, r.entry_count) != le64toh(r.checksum))
		return false;
	out->magic = MAP_DISK_RECORD_MAGIC;
	out->epoch = le64toh(r.epoch);
	out->generation = le64toh(r.generation);
	out->entry_count = r.entry_count;
	out->checksum = le64toh(r.checksum);
	*rec_bytes = map_record_bytes(r.entry_count);
	return true;
}

/* ------------------------------------------------------------ create/free */

int map_create(struct map *m, const char *volume_name, uint64_t size_bytes, uint32_t block_bytes)
{
	size_t name_len;
	int rc;

	ASSERT(m != NULL);
	ASSERT(volume_name != NULL);
	memset(m, 0, sizeof(*m));
	name_len = strnlen(volume_name, MAP_DISK_VOLUME_NAME_BYTES);
	if (name_len == 0 || name_len > MAP_VOLUME_NAME_MAX)
		return -EINVAL;
	if (!map_geometry_valid(size_bytes, block_bytes))
		return -EINVAL;
	memcpy(m->volume_name, volume_name, name_len);
	m->size_bytes = size_bytes;
	m->block_bytes = block_bytes;
	m->block_count = map_block_count_of(size_bytes, block_bytes);
	m->empty = true;
	rc = map_alloc(m);
	if (rc < 0)
		return rc;
	for (size_t got = 0; got < sizeof(m->volume_id);) {
		ssize_t n = getrandom(m->volume_id + got, sizeof(m->volume_id) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			map_release(m);
			return rc;
		}
		got += (size_t)n;
	}
	return 0;
}

void map_release(struct map *m)
{
	if (m == NULL)
		return;
	free(m->hashes);
	free(m->dirty);
	memset(m, 0, sizeof(*m));
}

uint64_t map_dirty_count(const struct map *m)
{
	uint64_t n = 0;

	ASSERT(m != NULL);
	for (uint64_t w = 0; w < map_dirty_words(m->block_count); w++)
		n += (uint64_t)__builtin_popcountll(m->dirty[w]);
	return n;
}

int map_check_geometry(const struct map *m, uint64_t size_bytes, uint32_t block_bytes, char *err,
		       size_t err_len)
{
	ASSERT(m != NULL);
	if (block_bytes != m->block_bytes) {
		map_err(err, err_len,
			"volume %s: the map uses %u-byte blocks but %u-byte blocks are "
			"configured; configure %u-byte blocks again, or remove the map "
			"(files map and map.log in the volume's state directory) to "
			"start over with a full resync",
			m->volume_name, m->block_bytes, block_bytes, m->block_bytes);
		return -EINVAL;
	}
	if (size_bytes != m->size_bytes) {
		map_err(err, err_len,
			"volume %s: the map was made for a device of %llu bytes but the "
			"device has %llu bytes; if it was resized on purpose, remove the "
			"map (files map and map.log in the volume's state directory) to "
			"start over with a full resync, otherwise check that the right "
			"device is configured",
			m->volume_name, (unsigned long long)m->size_bytes,
			(unsigned long long)size_bytes);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ load */

static int map_load_base(struct map *m, int dirfd, const char *dir, char *err, size_t err_len)
{
	struct map_disk_header h;
	struct stat st;
	uint64_t count, want;
	int fd, rc;

	fd = openat(dirfd, MAP_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			map_err(err, err_len, "%s: no map (file %s is missing)", dir, MAP_FILE);
		else
			map_err(err, err_len, "%s/%s: cannot open: %s", dir, MAP_FILE,
				strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		map_err(err, err_len, "%s/%s: cannot stat: %s", dir, MAP_FILE, strerror(-rc));
		goto close_fd;
	}
	rc = -EBADMSG;
	if ((uint64_t)st.st_size < sizeof(h)) {
		map_err(err, err_len,
			"%s/%s: the file is %llu bytes, shorter than its %zu-byte header", dir,
			MAP_FILE, (unsigned long long)st.st_size, sizeof(h));
		goto close_fd;
	}
	rc = map_pread_all(fd, &h, sizeof(h), 0);
	if (rc < 0) {
		map_err(err, err_len, "%s/%s: cannot read the header: %s", dir, MAP_FILE,
			strerror(-rc));
		goto close_fd;
	}
	rc = -EBADMSG;
	if (le64toh(h.magic) != MAP_DISK_BASE_MAGIC) {
		map_err(err, err_len, "%s/%s: not a pvrepl map (bad magic)", dir, MAP_FILE);
		goto close_fd;
	}
	if (le32toh(h.format_version) != MAP_DISK_VERSION) {
		map_err(err, err_len, "%s/%s: format version %u, this pvrepl reads version %u", dir,
			MAP_FILE, le32toh(h.format_version), MAP_DISK_VERSION);
		goto close_fd;
	}
	if (le64toh(h.header_checksum) != map_header_checksum(&h)) {
		map_err(err, err_len, "%s/%s: the header checksum does not match (corrupt header)",
			dir, MAP_FILE);
		goto close_fd;
	}
	m->block_bytes = le32toh(h.block_bytes);
	m->size_bytes = le64toh(h.size_bytes);
	count = le64toh(h.block_count);
	if (!map_geometry_valid(m->size_bytes, m->block_bytes) ||
	    count != map_block_count_of(m->size_bytes, m->block_bytes)) {
		map_err(err, err_len,
			"%s/%s: the header has an impossible geometry (%llu bytes, %u-byte "
			"blocks, %llu blocks)",
			dir, MAP_FILE, (unsigned long long)m->size_bytes, m->block_bytes,
			(unsigned long long)count);
		goto close_fd;
	}
	if (memchr(h.volume_name, 0, sizeof(h.volume_name)) == NULL || h.volume_name[0] == 0) {
		map_err(err, err_len, "%s/%s: the header's volume name is not a string", dir,
			MAP_FILE);
		goto close_fd;
	}
	want = map_base_bytes(count);
	if ((uint64_t)st.st_size != want) {
		map_err(err, err_len,
			"%s/%s: the file is %llu bytes but its header says %llu blocks, "
			"which take %llu bytes",
			dir, MAP_FILE, (unsigned long long)st.st_size, (unsigned long long)count,
			(unsigned long long)want);
		goto close_fd;
	}
	m->block_count = count;
	m->generation = le64toh(h.generation);
	m->epoch = le64toh(h.epoch);
	memcpy(m->volume_id, h.volume_id, sizeof(m->volume_id));
	memcpy(m->volume_name, h.volume_name, sizeof(m->volume_name));
	rc = map_alloc(m);
	if (rc < 0) {
		map_err(err, err_len, "%s/%s: no memory for %llu hashes", dir, MAP_FILE,
			(unsigned long long)count);
		goto close_fd;
	}
	rc = map_pread_all(fd, m->hashes, count * sizeof(*m->hashes), sizeof(h));
	if (rc < 0) {
		map_err(err, err_len, "%s/%s: cannot read the hashes: %s", dir, MAP_FILE,
			strerror(-rc));
		goto close_fd;
	}
	for (uint64_t i = 0; i < count; i++)
		m->hashes[i] = le64toh(m->hashes[i]);
	if (map_body_checksum(m->hashes, count) != le64toh(h.body_checksum)) {
		rc = -EBADMSG;
		map_err(err, err_len,
			"%s/%s: the checksum of the hashes does not match the header (corrupt "
			"body)",
			dir, MAP_FILE);
		goto close_fd;
	}
	rc = 0;
close_fd:
	close(fd);
	return rc;
}

/* Applies a valid record at buf[off] to m; -EBADMSG if its content is impossible. */
static int map_replay_record(struct map *m, const unsigned char *buf, uint64_t off,
			     const struct map_disk_record *r, uint64_t *last_epoch, const char *dir,
			     char *err, size_t err_len)
{
	const unsigned char *p = buf + off + sizeof(struct map_disk_record);
	uint64_t base_epoch = m->epoch;

	/* epochs only grow along the log, stale records included */
	if (r->epoch <= *last_epoch) {
		map_err(err, err_len,
			"%s/%s: the record at byte %llu has epoch %llu, not after the "
			"previous record's epoch %llu",
			dir, MAP_LOG_FILE, (unsigned long long)off, (unsigned long long)r->epoch,
			(unsigned long long)*last_epoch);
		return -EBADMSG;
	}
	*last_epoch = r->epoch;
	/* stale: the base already holds it (a crash came between base and log) */
	if (r->epoch <= base_epoch)
		return 0;
	/* check every index before changing anything, so a bad record leaves m as is */
	for (uint64_t i = 0; i < r->entry_count; i++) {
		struct map_disk_entry e;

		memcpy(&e, p + i * sizeof(e), sizeof(e));
		if (le64toh(e.block) >= m->block_count) {
			map_err(err, err_len,
				"%s/%s: the record at byte %llu names block %llu, beyond the "
				"map's %llu blocks",
				dir, MAP_LOG_FILE, (unsigned long long)off,
				(unsigned long long)le64toh(e.block),
				(unsigned long long)m->block_count);
			return -EBADMSG;
		}
	}
	for (uint64_t i = 0; i < r->entry_count; i++) {
		struct map_disk_entry e;

		memcpy(&e, p + i * sizeof(e), sizeof(e));
		m->hashes[le64toh(e.block)] = le64toh(e.hash);
	}
	return 1;
}

static int map_load_log(struct map *m, int dirfd, const char *dir, char *err, size_t err_len)
{
	struct map_disk_log_header h;
	uint64_t last_epoch = 0, applied_epoch = 0, applied_generation = 0;
	uint64_t len, off, base_bytes = map_base_bytes(m->block_count);
	unsigned char *buf = NULL;
	struct stat st;
	int fd, rc;

	/* O_RDWR: a torn tail is cut off here, so the next append starts clean */
	fd = openat(dirfd, MAP_LOG_FILE, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* a crash between the first base and its log: the base is the map */
		m->log_bytes = 0;
		return 0;
	}
	if (fd < 0) {
		rc = -errno;
		map_err(err, err_len, "%s/%s: cannot open: %s", dir, MAP_LOG_FILE, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		map_err(err, err_len, "%s/%s: cannot stat: %s", dir, MAP_LOG_FILE, strerror(-rc));
		goto close_fd;
	}
	len = (uint64_t)st.st_size;
	rc = -EBADMSG;
	/* the log is created whole by rename, so a short header is not a torn write */
	if (len < sizeof(h)) {
		map_err(err, err_len,
			"%s/%s: the file is %llu bytes, shorter than its %zu-byte header", dir,
			MAP_LOG_FILE, (unsigned long long)len, sizeof(h));
		goto close_fd;
	}
	/* map_commit rewrites the base before the log outgrows it (memory bound) */
	if (len > base_bytes + MAP_LOG_RECORD_BYTES_MAX) {
		map_err(err, err_len,
			"%s/%s: the file is %llu bytes, more than pvrepl ever lets it grow for "
			"this map",
			dir, MAP_LOG_FILE, (unsigned long long)len);
		goto close_fd;
	}
	buf = malloc(len);
	if (buf == NULL) {
		rc = -ENOMEM;
		map_err(err, err_len, "%s/%s: no memory to read %llu bytes", dir, MAP_LOG_FILE,
			(unsigned long long)len);
		goto close_fd;
	}
	rc = map_pread_all(fd, buf, len, 0);
	if (rc < 0) {
		map_err(err, err_len, "%s/%s: cannot read: %s", dir, MAP_LOG_FILE, strerror(-rc));
		goto free_buf;
	}
	memcpy(&h, buf, sizeof(h));
	rc = -EBADMSG;
	if (le64toh(h.magic) != MAP_DISK_LOG_MAGIC) {
		map_err(err, err_len, "%s/%s: not a pvrepl map log (bad magic)", dir, MAP_LOG_FILE);
		goto free_buf;
	}
	if (le32toh(h.format_version) != MAP_DISK_VERSION) {
		map_err(err, err_len, "%s/%s: format version %u, this pvrepl reads version %u", dir,
			MAP_LOG_FILE, le32toh(h.format_version), MAP_DISK_VERSION);
		goto free_buf;
	}
	if (le64toh(h.checksum) != map_log_header_checksum(&h)) {
		map_err(err, err_len, "%s/%s: the header checksum does not match (corrupt header)",
			dir, MAP_LOG_FILE);
		goto free_buf;
	}
	if (memcmp(h.volume_id, m->volume_id, sizeof(h.volume_id)) != 0) {
		map_err(err, err_len, "%s/%s: the log belongs to another volume than %s/%s", dir,
			MAP_LOG_FILE, dir, MAP_FILE);
		goto free_buf;
	}

	off = sizeof(h);
	while (off < len) {
		struct map_disk_record r;
		uint64_t rec_bytes;

		if (!map_record_valid(buf, len, off, &r, &rec_bytes))
			break;
		rc = map_replay_record(m, buf, off, &r, &last_epoch, dir, err, err_len);
		if (rc < 0)
			goto free_buf;
		if (rc > 0) {
			applied_epoch = r.epoch;
			applied_generation = r.generation;
		}
		off += rec_bytes;
	}
	if (off < len) {
		/*
		 * The record at off is short or fails its checksum. If it is the tail
		 * (no whole record after it) it is the append of a commit that never
		 * completed: drop it. A whole record after it means a committed epoch
		 * was damaged in place: that is corruption, not a crash.
		 */
		for (uint64_t q = off + 8; q < len; q += 8) {
			struct map_disk_record r;
			uint64_t rec_bytes;

			if (map_record_valid(buf, len, q, &r, &rec_bytes)) {
				rc = -EBADMSG;
				map_err(err, err_len,
					"%s/%s: the record at byte %llu is corrupt but a whole "
					"record follows at byte %llu",
					dir, MAP_LOG_FILE, (unsigned long long)off,
					(unsigned long long)q);
				goto free_buf;
			}
		}
		/* durable before anything is appended at off: otherwise a crash could
		 * bring the old tail back behind a newer record */
		if (ftruncate(fd, (off_t)off) < 0 || fsync(fd) < 0) {
			rc = -errno;
			map_err(err, err_len,
				"%s/%s: cannot cut off the torn record at byte %llu: %s", dir,
				MAP_LOG_FILE, (unsigned long long)off, strerror(-rc));
			goto free_buf;
		}
	}
	if (applied_epoch > 0) {
		m->epoch = applied_epoch;
		m->generation = applied_generation;
	}
	m->log_bytes = off;
	rc = 0;
free_buf:
	free(buf);
close_fd:
	close(fd);
	return rc;
}

int map_load(struct map *m, const char *state_dir, char *err, size_t err_len)
{
	int dirfd, rc;

	ASSERT(m != NULL);
	ASSERT(state_dir != NULL);
	memset(m, 0, sizeof(*m));
	dirfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = -errno;
		map_err(err, err_len, "%s: cannot open the state directory: %s", state_dir,
			strerror(-rc));
		return rc;
	}
	rc = map_load_base(m, dirfd, state_dir, err, err_len);
	if (rc == 0)
		rc = map_load_log(m, dirfd, state_dir, err, err_len);
	close(dirfd);
	if (rc < 0) {
		/* Damage says what to do: the map is only a cache of what the
		 * volume holds, and a full resync rebuilds it. */
		if (rc == -EBADMSG && err) {
			size_t n = strnlen(err, err_len);

			if (n + 1 < err_len)
				snprintf(
					err + n, err_len - n,
					"; the map is damaged: remove the files map and map.log from %s and the volume resyncs in full (its standby is kept until the resync overwrites it)",
					state_dir);
		}
		map_release(m);
		return rc;
	}
	m->empty = false;
	return 0;
}

/* ---------------------------------------------------------------- commit */

/* The state of one commit: what it has open, to close on every path. */
struct map_commit_io {
	int dirfd;
	int fd;
	const char *dir;
	char *err;
	size_t err_len;
	uint64_t bytes_written;
};

/* Reports a failed system call of a commit step; rc is -errno. */
static int map_commit_fail(struct map_commit_io *io, const char *file, const char *what, int rc)
{
	map_err(io->err, io->err_len,
		"%s/%s: %s failed: %s; the epoch is not committed, reload the map", io->dir, file,
		what, strerror(-rc));
	return rc;
}

/* A replace of the map's files goes through map_crash_hook, with the step names
 * ("base.fsync", "log.rename", ...) the crash tests enumerate. */
static int map_replace_hook(const char *step)
{
	return map_step(step);
}

/* After a failed replace: the replace's sentence, and what it means for the map. */
static int map_replace_fail(struct map_commit_io *io, const char *why, int rc)
{
	if (why[0])
		map_err(io->err, io->err_len, "%s; the epoch is not committed, reload the map",
			why);
	return rc;
}

/*
 * Writes the whole map as `map.tmp`, fsyncs it and renames it over `map`, then
 * fsyncs the directory (replace.c, which comments each ordering). The rename must
 * be durable before the log is replaced: an empty log with the old base (rename
 * lost) would forget the epochs the old log held. Until that directory fsync a
 * crash gives old base + old log, the old epoch, whole. On return 0 the new base
 * is the durable map.
 */
static int map_write_base(struct map *m, struct map_commit_io *io, uint64_t epoch)
{
	struct replace_spec spec = {
		.dir = io->dir,
		.dirfd = io->dirfd,
		.name = MAP_FILE,
		.tmp_name = MAP_TMP_FILE,
		.mode = 0644,
		.step = "base",
		.hook = map_replace_hook,
	};
	uint64_t le[MAP_IO_CHUNK_HASHES];
	struct map_disk_header h;
	struct replace r;
	char why[REPLACE_ERR_MAX] = "";
	int rc;

	rc = replace_begin(&r, &spec, why, sizeof(why));
	if (rc != 0)
		return map_replace_fail(io, why, rc);

	memset(&h, 0, sizeof(h));
	h.magic = htole64(MAP_DISK_BASE_MAGIC);
	h.format_version = htole32(MAP_DISK_VERSION);
	h.block_bytes = htole32(m->block_bytes);
	memcpy(h.volume_id, m->volume_id, sizeof(h.volume_id));
	memcpy(h.volume_name, m->volume_name, sizeof(h.volume_name));
	h.size_bytes = htole64(m->size_bytes);
	h.block_count = htole64(m->block_count);
	h.generation = htole64(m->generation);
	h.epoch = htole64(epoch);
	h.body_checksum = htole64(map_body_checksum(m->hashes, m->block_count));
	h.header_checksum = htole64(map_header_checksum(&h));

	rc = replace_write(&r, &h, sizeof(h), 0);
	for (uint64_t i = 0; rc == 0 && i < m->block_count; i += MAP_IO_CHUNK_HASHES) {
		uint64_t n = m->block_count - i;

		if (n > MAP_IO_CHUNK_HASHES)
			n = MAP_IO_CHUNK_HASHES;
		for (uint64_t j = 0; j < n; j++)
			le[j] = htole64(m->hashes[i + j]);
		rc = replace_write(&r, le, n * sizeof(le[0]), sizeof(h) + i * sizeof(le[0]));
	}
	if (rc != 0) {
		replace_abort(&r);
		return map_replace_fail(io, why, rc);
	}
	io->bytes_written += map_base_bytes(m->block_count);
	rc = replace_commit(&r);
	return rc ? map_replace_fail(io, why, rc) : 0;
}

/*
 * Replaces `map.log` with one holding only its header. Runs after the new base is
 * durable, so a crash here leaves the old log, whose records all have epochs <= the
 * new base's and are skipped at load. The next commit appends to this file and
 * fdatasyncs only it: if the rename were still volatile, a crash could bring back
 * the old log and lose that appended epoch, so the replace ends with the
 * directory's fsync.
 */
static int map_write_empty_log(struct map *m, struct map_commit_io *io)
{
	struct replace_spec spec = {
		.dir = io->dir,
		.dirfd = io->dirfd,
		.name = MAP_LOG_FILE,
		.tmp_name = MAP_LOG_TMP_FILE,
		.mode = 0644,
		.step = "log",
		.hook = map_replace_hook,
	};
	struct map_disk_log_header h;
	char why[REPLACE_ERR_MAX] = "";
	int rc;

	memset(&h, 0, sizeof(h));
	h.magic = htole64(MAP_DISK_LOG_MAGIC);
	h.format_version = htole32(MAP_DISK_VERSION);
	memcpy(h.volume_id, m->volume_id, sizeof(h.volume_id));
	h.checksum = htole64(map_log_header_checksum(&h));

	rc = replace_file(&spec, &h, sizeof(h), why, sizeof(why));
	if (rc != 0)
		return map_replace_fail(io, why, rc);
	io->bytes_written += sizeof(h);
	return 0;
}

/*
 * Appends one record with every dirty entry to `map.log` in one write and
 * fdatasyncs it. The record's checksum makes a torn append detectable, and
 * map_load drops it; so the epoch is committed exactly when fdatasync returns.
 */
static int map_append_record(struct map *m, struct map_commit_io *io, uint64_t epoch,
			     uint64_t entry_count)
{
	uint64_t rec_bytes = map_record_bytes(entry_count);
	struct map_disk_record r, check;
	struct map_disk_entry *e;
	unsigned char *buf;
	uint64_t n = 0, check_bytes;
	int rc;

	buf = malloc(rec_bytes);
	if (buf == NULL) {
		map_err(io->err, io->err_len, "%s/%s: no memory for a %llu-byte record", io->dir,
			MAP_LOG_FILE, (unsigned long long)rec_bytes);
		return -ENOMEM;
	}
	e = (struct map_disk_entry *)(void *)(buf + sizeof(r));
	for (uint64_t w = 0; w < map_dirty_words(m->block_count); w++) {
		uint64_t bits = m->dirty[w];

		while (bits != 0) {
			uint64_t idx = w * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			ASSERT(n < entry_count);
			e[n].block = htole64(idx);
			e[n].hash = htole64(m->hashes[idx]);
			n++;
		}
	}
	ASSERT(n == entry_count);
	r.magic = htole64(MAP_DISK_RECORD_MAGIC);
	r.epoch = htole64(epoch);
	r.generation = htole64(m->generation);
	r.entry_count = htole64(entry_count);
	r.checksum = 0;
	memcpy(buf, &r, sizeof(r));
	r.checksum = htole64(map_record_checksum(buf, entry_count));
	memcpy(buf, &r, sizeof(r));
	/* paired with the read-back check in map_load_log */
	ASSERT(map_record_valid(buf, rec_bytes, 0, &check, &check_bytes));
	ASSERT(check_bytes == rec_bytes);

	rc = map_step("log.open");
	if (rc != 0)
		goto free_buf;
	io->fd = openat(io->dirfd, MAP_LOG_FILE, O_WRONLY | O_CLOEXEC);
	if (io->fd < 0) {
		rc = map_commit_fail(io, MAP_LOG_FILE, "open", -errno);
		goto free_buf;
	}
	/* At m->log_bytes, not O_APPEND: the map, not the file size, knows where
	 * the valid records end. */
	rc = map_step("log.append");
	if (rc != 0)
		goto free_buf;
	rc = map_pwrite_all(io->fd, buf, rec_bytes, m->log_bytes);
	if (rc < 0) {
		rc = map_commit_fail(io, MAP_LOG_FILE, "append", rc);
		goto free_buf;
	}
	io->bytes_written += rec_bytes;

	/* fdatasync, not fsync: it persists the data and the new file size (needed
	 * to read it back), skipping only timestamps. The epoch is committed when it
	 * returns, and not before. */
	rc = map_step("log.fdatasync");
	if (rc != 0)
		goto free_buf;
	if (fdatasync(io->fd) < 0) {
		rc = map_commit_fail(io, MAP_LOG_FILE, "fdatasync", -errno);
		goto free_buf;
	}
	rc = 0;
free_buf:
	free(buf);
	return rc;
}

int map_commit(struct map *m, const char *state_dir, uint64_t epoch, char *err, size_t err_len)
{
	struct map_commit_io io = {
		.dirfd = -1,
		.fd = -1,
		.dir = state_dir,
		.err = err,
		.err_len = err_len,
	};
	uint64_t entry_count, rec_bytes, base_bytes;
	bool rewrite;
	int rc;

	ASSERT(m != NULL);
	ASSERT(m->hashes != NULL);
	ASSERT(state_dir != NULL);
	/* Epoch 0 may be committed once, by an empty map: it records the volume's
	 * identity before its first sync. Epochs can come from disk (a journal's
	 * superblock): an error, never an assert. */
	if (!(epoch > m->epoch || (m->empty && epoch == 0))) {
		map_err(err, err_len,
			"%s: cannot commit epoch %" PRIu64 " over the map's epoch %" PRIu64
			" (epochs only go forward)",
			state_dir, epoch, m->epoch);
		return -EINVAL;
	}
	if (m->failed) {
		map_err(err, err_len,
			"%s: an earlier commit of this map failed; reload the map before "
			"committing again",
			state_dir);
		return -EIO;
	}
	entry_count = map_dirty_count(m);
	rec_bytes = map_record_bytes(entry_count);
	base_bytes = map_base_bytes(m->block_count);
	/* The log is worth it while a record is small next to the base and the
	 * whole log stays below the base's size (which bounds load time and memory,
	 * and makes a rewrite cost at most as much as the appends it replaces). */
	rewrite = m->empty || m->log_bytes == 0 || rec_bytes > MAP_LOG_RECORD_BYTES_MAX ||
		  rec_bytes > base_bytes / MAP_LOG_RECORD_BASE_DIVISOR ||
		  m->log_bytes + rec_bytes > base_bytes;

	io.dirfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (io.dirfd < 0) {
		rc = -errno;
		map_err(err, err_len, "%s: cannot open the state directory: %s", state_dir,
			strerror(-rc));
		return rc;
	}
	if (rewrite) {
		rc = map_write_base(m, &io, epoch);
		if (rc == 0)
			rc = map_write_empty_log(m, &io);
	} else {
		rc = map_append_record(m, &io, epoch, entry_count);
	}
	map_close(&io.fd);
	map_close(&io.dirfd);
	if (rc != 0) {
		/* -ENOMEM comes before anything is written. Any other failure (or a
		 * test crash) may have left part of this commit in the files, and only
		 * a reload knows which epoch they hold: sticky. */
		if (rc != -ENOMEM)
			m->failed = true;
		return rc;
	}
	m->log_bytes = rewrite ? sizeof(struct map_disk_log_header) : m->log_bytes + rec_bytes;
	m->epoch = epoch;
	m->empty = false;
	m->last_commit_rewrote_base = rewrite;
	m->last_commit_bytes = io.bytes_written;
	memset(m->dirty, 0, map_dirty_words(m->block_count) * sizeof(*m->dirty));
	return 0;
}

uint64_t map_merkle_root(const struct map *m)
{
	struct merkle t;
	uint64_t root;

	if (merkle_init(&t, m->hashes, m->block_count))
		return 0;
	root = merkle_root(&t);
	merkle_release(&t);
	return root;
}
