// SPDX-License-Identifier: Apache-2.0
/*
 * tracking — full or tracked, per epoch (see tracking.h for the decision and
 * its invariant; the tracker itself is kmod-free-io/track.c).
 *
 * The `track` record (docs/FORMATS.md), little-endian, replaced durably:
 *   magic "PVTR", version, the tracker instance that covers the map since
 *   `since_epoch`, the time of the last full scan, an xxh3 of the bytes before
 *   the checksum. A record that is missing, damaged or names another instance
 *   means a full scan: it can only make an epoch cost more, never less.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "pvrepl_assert.h"
#include "replace.h"
#include "tracking.h"

#define TRACKING_MAGIC	 0x52545650u /* "PVTR" */
#define TRACKING_VERSION 1u

struct tracking_disk {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved;
	uint64_t instance_id;
	uint64_t since_epoch;
	int64_t last_full_scan_unix;
	uint64_t checksum;
};
_Static_assert(sizeof(struct tracking_disk) == 40, "the track record's layout is fixed");

static int record_load(struct tracking *t, char *err, size_t err_len)
{
	char path[4200];
	struct tracking_disk d;
	ssize_t n;
	int fd;

	t->record_valid = false;
	snprintf(path, sizeof(path), "%s/%s", t->state_dir, TRACKING_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	n = pread(fd, &d, sizeof(d), 0);
	close(fd);
	/* Damaged or short: treated as absent, so the next epoch scans everything
	 * and writes a good one. */
	if (n != (ssize_t)sizeof(d) || le32toh(d.magic) != TRACKING_MAGIC ||
	    le16toh(d.version) != TRACKING_VERSION ||
	    le64toh(d.checksum) != delta_hash(&d, offsetof(struct tracking_disk, checksum)))
		return 0;
	t->record_valid = true;
	t->record_instance = le64toh(d.instance_id);
	t->record_epoch = le64toh(d.since_epoch);
	t->record_full_unix = (int64_t)le64toh((uint64_t)d.last_full_scan_unix);
	return 0;
}

static int record_store(struct tracking *t, char *err, size_t err_len)
{
	struct replace_spec spec = {
		.dir = t->state_dir,
		.dirfd = -1,
		.name = TRACKING_FILE,
		.mode = 0600,
		.step = "track",
	};
	struct tracking_disk d;

	memset(&d, 0, sizeof(d));
	d.magic = htole32(TRACKING_MAGIC);
	d.version = htole16(TRACKING_VERSION);
	d.instance_id = htole64(t->record_instance);
	d.since_epoch = htole64(t->record_epoch);
	d.last_full_scan_unix = (int64_t)htole64((uint64_t)t->record_full_unix);
	d.checksum = htole64(delta_hash(&d, offsetof(struct tracking_disk, checksum)));
	return replace_file(&spec, &d, sizeof(d), err, err_len);
}

/*
 * The tracker's pin name: the volume name where bpffs takes it, and a hash of
 * the state directory, so two state directories of one volume (two standbys)
 * never share a pending bitmap.
 */
static void pin_name(const char *volume, const char *state_dir, char *out, size_t len)
{
	char real[4096];
	const char *dir = realpath(state_dir, real) ? real : state_dir;
	uint32_t h = (uint32_t)delta_hash(dir, strlen(dir));
	bool plain = strlen(volume) <= 48;

	for (const char *p = volume; plain && *p; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
	if (plain)
		snprintf(out, len, "%s-%08x", volume, h);
	else
		snprintf(out, len, "v%016" PRIx64 "-%08x", delta_hash(volume, strlen(volume)), h);
}

int tracking_open(struct tracking *t, const struct tracking_config *cfg, const struct kfio_dev *dev,
		  const char *volume, const char *state_dir, char *err, size_t err_len)
{
	char name[KFIO_TRACK_NAME_MAX], why[320] = "";
	int rc;

	ASSERT(t != NULL);
	ASSERT(cfg != NULL);
	ASSERT(dev != NULL);
	ASSERT(state_dir != NULL);
	memset(t, 0, sizeof(*t));
	t->cfg = *cfg;
	if (!t->cfg.full_scan_interval_ms)
		t->cfg.full_scan_interval_ms = TRACKING_FULL_SCAN_INTERVAL_MS_DEFAULT;
	t->state_dir = state_dir;
	if (cfg->mode == TRACKING_OFF) {
		snprintf(t->off_reason, sizeof(t->off_reason), "tracking is off (--track off)");
		return 0;
	}
	pin_name(volume, state_dir, name, sizeof(name));
	rc = kfio_track_open(&t->track, dev, cfg->pin_root, name, why, sizeof(why));
	if (rc) {
		t->track = NULL;
		if (cfg->mode == TRACKING_BPF) {
			snprintf(err, err_len, "--track bpf: %s (or use --track auto)", why);
			return rc;
		}
		snprintf(t->off_reason, sizeof(t->off_reason), "write tracking unavailable: %.280s",
			 why);
		return 0;
	}
	kfio_track_get_info(t->track, &t->info);
	rc = record_load(t, err, err_len);
	if (rc) {
		kfio_track_free(t->track);
		t->track = NULL;
	}
	return rc;
}

void tracking_close(struct tracking *t)
{
	if (!t)
		return;
	kfio_track_free(t->track);
	t->track = NULL;
}

static void plan_full(struct tracking *t, enum tracking_full_reason r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void plan_full(struct tracking *t, enum tracking_full_reason r, const char *fmt, ...)
{
	va_list ap;

	t->scan = TRACKING_SCAN_FULL;
	t->full_reason = r;
	va_start(ap, fmt);
	vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
	va_end(ap);
}

int tracking_plan(struct tracking *t, const struct map *m, bool initial_sync, char *err,
		  size_t err_len)
{
	int64_t now = (int64_t)time(NULL);
	int rc;

	ASSERT(t != NULL);
	ASSERT(m != NULL);
	t->scan = TRACKING_SCAN_TRACKED;
	t->full_reason = TRACKING_FULL_NONE;
	t->reason[0] = '\0';
	t->count_missed = false;
	t->candidate_count = 0;
	t->candidates_dropped = 0;
	t->block_bytes = m->block_bytes;
	t->tracked_bytes = 0;
	if (!t->track) {
		plan_full(t, TRACKING_FULL_OFF, "%s", t->off_reason);
		return 0;
	}
	/* The harvest comes before any read of this epoch: a write that completes
	 * after it is marked again, for the next epoch. */
	rc = kfio_track_harvest(t->track, &t->harvest, err, err_len);
	if (rc)
		return rc;
	t->tracked_bytes = t->harvest.pending_pages * KFIO_TRACK_PAGE_BYTES;
	if (initial_sync)
		plan_full(t, TRACKING_FULL_INITIAL, "initial sync");
	else if (!t->record_valid)
		plan_full(t, TRACKING_FULL_NEW,
			  "no tracking record in %s yet (a new or reset state directory)",
			  t->state_dir);
	else if (t->record_instance != t->info.instance_id)
		plan_full(t, TRACKING_FULL_NEW,
			  "the tracker was replaced since epoch %" PRIu64
			  " (a reboot, removed pins or a changed device): %s",
			  t->record_epoch,
			  t->info.why_new[0] ? t->info.why_new : "another instance is pinned");
	else if (t->record_epoch > m->epoch)
		plan_full(t, TRACKING_FULL_NEW,
			  "the tracking record (epoch %" PRIu64
			  ") is newer than the map (epoch %" PRIu64 ")",
			  t->record_epoch, m->epoch);
	else if (t->info.settled_tag > m->epoch)
		plan_full(t, TRACKING_FULL_NEW,
			  "the tracker settled epoch %" PRIu64 " but the map holds epoch %" PRIu64
			  " (a state directory restored from an older copy?)",
			  t->info.settled_tag, m->epoch);
	/* After the instance checks: a new instance owes ATTACHED too, and "the
	 * tracker was replaced" says more. */
	else if (t->harvest.loss)
		plan_full(t, TRACKING_FULL_LOSS, "%s", t->harvest.reason);
	else if (t->cfg.force_full)
		plan_full(t, TRACKING_FULL_REQUESTED, "a full scan was requested");
	else if (now - t->record_full_unix >= (int64_t)(t->cfg.full_scan_interval_ms / 1000))
		plan_full(t, TRACKING_FULL_PERIODIC,
			  "periodic full scan (the last was %" PRId64 " s ago, interval %" PRIu64
			  " s)",
			  now - t->record_full_unix, t->cfg.full_scan_interval_ms / 1000);
	/* A full scan over a tracker that was trusted checks it: every changed
	 * block should have been marked. */
	t->count_missed =
		t->scan == TRACKING_SCAN_FULL && (t->full_reason == TRACKING_FULL_PERIODIC ||
						  t->full_reason == TRACKING_FULL_REQUESTED);
	return 0;
}

int tracking_round(struct tracking *t, uint64_t *set, uint64_t *bytes, char *err, size_t err_len)
{
	struct kfio_track_harvest h;
	int rc;

	ASSERT(t != NULL);
	ASSERT(t->track != NULL);
	rc = kfio_track_harvest_round(t->track, &h, set, err, err_len);
	if (rc)
		return rc;
	if (h.loss & ~t->harvest.loss) {
		snprintf(
			err, err_len,
			"the write tracker lost writes during the epoch (%s): what the rounds read is not known to be complete",
			h.reason);
		return -EAGAIN;
	}
	*bytes = h.harvested_pages * KFIO_TRACK_PAGE_BYTES;
	return 0;
}

void tracking_carry(struct tracking *t, const uint64_t *set)
{
	ASSERT(t->track != NULL);
	kfio_track_mark_live(t->track, set);
}

const uint64_t *tracking_only_pages(const struct tracking *t)
{
	return t->track && t->scan == TRACKING_SCAN_TRACKED ? kfio_track_pending(t->track) : NULL;
}

static bool block_pending(const struct tracking *t, uint64_t b)
{
	const uint64_t *p = kfio_track_pending(t->track);
	uint64_t ppb = t->block_bytes / KFIO_TRACK_PAGE_BYTES;
	uint64_t first = b * ppb, last = first + ppb;

	if (last > t->info.pages)
		last = t->info.pages;
	for (uint64_t k = first; k < last; k++)
		if ((p[k / 64] >> (k % 64)) & 1)
			return true;
	return false;
}

void tracking_note_changed(struct tracking *t, uint64_t first, uint32_t count)
{
	if (!t || !t->count_missed)
		return;
	for (uint64_t b = first; b < first + count; b++) {
		if (block_pending(t, b))
			continue;
		if (t->candidate_count < TRACKING_MISSED_CANDIDATES_MAX)
			t->candidates[t->candidate_count++] = b;
		else
			t->candidates_dropped++;
	}
}

uint64_t tracking_missed_blocks(struct tracking *t)
{
	uint64_t missed = t->candidates_dropped;

	if (!t->count_missed)
		return 0;
	/* A write in flight while its block was read is marked live when it
	 * completes: that block was not missed, only caught early. */
	for (uint32_t i = 0; i < t->candidate_count; i++)
		if (!kfio_track_live_any(t->track, t->candidates[i] * t->block_bytes,
					 t->block_bytes))
			missed++;
	return missed;
}

int tracking_confirmed(struct tracking *t, uint64_t epoch, char *err, size_t err_len)
{
	bool full = t->scan == TRACKING_SCAN_FULL;
	int rc;

	if (!t->track)
		return 0;
	/* The record first: once it names this instance, the pending bits it
	 * covers may go. The other order could forget a write after a crash. */
	if (full || !t->record_valid || t->record_instance != t->info.instance_id) {
		t->record_instance = t->info.instance_id;
		t->record_epoch = epoch;
		if (full)
			t->record_full_unix = (int64_t)time(NULL);
		rc = record_store(t, err, err_len);
		if (rc)
			return rc;
		t->record_valid = true;
	}
	return kfio_track_settle(t->track, full, epoch, err, err_len);
}

/*
 * PAGES are declined after an epoch that sent some and failed: the receiver
 * may have found a block whose unsent pages changed between the harvest and
 * the read (a write racing the epoch, marked only afterwards). Whole blocks
 * cannot disagree with their hash, so the next attempt sends those. The marker
 * decides nothing after a crash (PAGES again, at worst one more retry): it is
 * created and removed without fsync.
 */
bool tracking_pages_allowed(const struct tracking *t)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", t->state_dir, TRACKING_WHOLE_FILE);
	return access(path, F_OK) != 0;
}

void tracking_pages_outcome(const struct tracking *t, bool epoch_ok, bool sent_pages)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t->state_dir, TRACKING_WHOLE_FILE);
	if (epoch_ok) {
		unlink(path);
		return;
	}
	if (!sent_pages)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

const char *tracking_scan_name(enum tracking_scan s)
{
	return s == TRACKING_SCAN_TRACKED ? "tracked" : s == TRACKING_SCAN_FULL ? "full" : "none";
}

const char *tracking_reason_label(enum tracking_full_reason r)
{
	switch (r) {
	case TRACKING_FULL_OFF:
		return "off";
	case TRACKING_FULL_INITIAL:
		return "initial";
	case TRACKING_FULL_NEW:
		return "new";
	case TRACKING_FULL_LOSS:
		return "loss";
	case TRACKING_FULL_PERIODIC:
		return "periodic";
	case TRACKING_FULL_REQUESTED:
		return "requested";
	case TRACKING_FULL_NONE:
		break;
	}
	return "none";
}

const char *tracking_mode_name(enum tracking_mode m)
{
	return m == TRACKING_BPF ? "bpf" : m == TRACKING_OFF ? "off" : "auto";
}

int tracking_mode_parse(const char *s, enum tracking_mode *m)
{
	if (!strcmp(s, "auto"))
		*m = TRACKING_AUTO;
	else if (!strcmp(s, "bpf"))
		*m = TRACKING_BPF;
	else if (!strcmp(s, "off"))
		*m = TRACKING_OFF;
	else
		return -EINVAL;
	return 0;
}
