// SPDX-License-Identifier: Apache-2.0
/*
 * vstate — the receiver volume's state record (see vstate.h). Knows nothing of
 * devices, journals or the network.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "delta.h"
#include "pvrepl_assert.h"
#include "replace.h"
#include "status.h"
#include "vstate.h"

struct vstate_disk {
	uint32_t magic;
	uint16_t version;
	uint8_t kind;
	uint8_t crash_consistent;
	uint64_t epoch;
	uint64_t generation;
	uint64_t sync_epoch;
	uint64_t sync_cursor;
	int64_t committed_unix;
	uint8_t volume_id[16];
	int64_t consistent_point_ms; /* 0 in records written before it existed */
	int64_t sync_capture_ms;     /* likewise */
	uint8_t reserved[40];
	uint64_t checksum; /* xxh3 of the bytes before it */
};
_Static_assert(sizeof(struct vstate_disk) == 128, "vstate record size");

const char *vstate_kind_name(enum vstate_kind k)
{
	switch (k) {
	case VSTATE_EMPTY:
		return "empty";
	case VSTATE_SYNCING:
		return "syncing";
	case VSTATE_CONSISTENT:
		return "consistent";
	}
	return "unknown";
}

int vstate_load(struct vstate *s, const char *dir, char *err, size_t err_len)
{
	struct vstate_disk d;
	char path[4200];
	ssize_t n;
	int fd, rc = 0;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "%s/%s", dir, VSTATE_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc != -ENOENT)
			snprintf(err, err_len, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	n = pread(fd, &d, sizeof(d), 0);
	close(fd);
	if (n != (ssize_t)sizeof(d) || le32toh(d.magic) != VSTATE_MAGIC ||
	    le64toh(d.checksum) != delta_hash(&d, offsetof(struct vstate_disk, checksum)) ||
	    le16toh(d.version) != VSTATE_VERSION || d.kind > VSTATE_CONSISTENT) {
		snprintf(
			err, err_len,
			"%s is damaged (bad size, magic, version or checksum); the standby cannot be trusted: remove the volume's state directory to resync it from scratch",
			path);
		return -EBADMSG;
	}
	s->kind = d.kind;
	s->capture = status_capture_of_byte(d.crash_consistent);
	s->crash_consistent = s->capture != STATUS_CAPTURE_LIVE;
	s->epoch = le64toh(d.epoch);
	s->generation = le64toh(d.generation);
	s->sync_epoch = le64toh(d.sync_epoch);
	s->sync_cursor = le64toh(d.sync_cursor);
	s->committed_unix = (int64_t)le64toh((uint64_t)d.committed_unix);
	s->consistent_point_ms = (int64_t)le64toh((uint64_t)d.consistent_point_ms);
	s->sync_capture_ms = (int64_t)le64toh((uint64_t)d.sync_capture_ms);
	/* Records from before the field: the commit time (a time from disk: no
	 * overflow whatever it holds). */
	if (!s->consistent_point_ms && s->committed_unix > 0 &&
	    s->committed_unix < INT64_MAX / 1000)
		s->consistent_point_ms = s->committed_unix * 1000;
	memcpy(s->volume_id, d.volume_id, sizeof(s->volume_id));
	return 0;
}

int vstate_store(const struct vstate *s, const char *dir, char *err, size_t err_len)
{
	struct replace_spec spec = {
		.dir = dir,
		.dirfd = -1,
		.name = VSTATE_FILE,
		.tmp_name = VSTATE_TMP_FILE,
		.mode = 0600,
		.step = "state",
	};
	struct vstate_disk d;

	ASSERT(s != NULL);
	ASSERT(dir != NULL);
	ASSERT(s->kind <= VSTATE_CONSISTENT);
	memset(&d, 0, sizeof(d));
	d.magic = htole32(VSTATE_MAGIC);
	d.version = htole16(VSTATE_VERSION);
	d.kind = (uint8_t)s->kind;
	d.crash_consistent = status_capture_byte(s->crash_consistent, s->capture);
	d.epoch = htole64(s->epoch);
	d.generation = htole64(s->generation);
	d.sync_epoch = htole64(s->sync_epoch);
	d.sync_cursor = htole64(s->sync_cursor);
	d.committed_unix = (int64_t)htole64((uint64_t)s->committed_unix);
	d.consistent_point_ms = (int64_t)htole64((uint64_t)s->consistent_point_ms);
	d.sync_capture_ms = (int64_t)htole64((uint64_t)s->sync_capture_ms);
	memcpy(d.volume_id, s->volume_id, sizeof(d.volume_id));
	d.checksum = htole64(delta_hash(&d, offsetof(struct vstate_disk, checksum)));

	/* The record is durable in the tmp file before the rename makes it current:
	 * a crash leaves either the old state or the complete new one. */
	return replace_file(&spec, &d, sizeof(d), err, err_len);
}
