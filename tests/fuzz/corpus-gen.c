// SPDX-License-Identifier: Apache-2.0
/*
 * corpus-gen DIR: writes the seed corpus of every fuzz target into DIR/<target>/
 * (`make fuzz` runs it before the fuzzers). Seeds come from the real encoders
 * (proto_encode_*, map_commit, journal_*, vstate_store, pending_save, status_store_nosync;
 * whole files of every section and key for the configuration parser), in the input
 * layouts of fuzz.h, so they start the
 * fuzzer deep inside each decoder and follow the formats when they change; no
 * binary seed is committed. The same seeds are written on every run (fixed ids
 * and contents), next to whatever the fuzzers added to the corpus.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "delta.h"
#include "fuzz.h"
#include "journal.h"
#include "kfio.h"
#include "map.h"
#include "pending.h"
#include "proto.h"
#include "status.h"
#include "vstate.h"

#define GEN_FRAME_MAX  (64u << 10)
#define GEN_STREAM_MAX (256u << 10)
#define GEN_FILE_MAX   (64u << 10)
#define GEN_BLOCK      512u
#define GEN_BLOCKS     4u

static const char *out_dir;

static void die(const char *what)
{
	fprintf(stderr, "corpus-gen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void need(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "corpus-gen: %s failed (%d)\n", what, rc);
		exit(1);
	}
}

/* DIR/target/name := prefix (plen bytes) + body. */
static void seed_write(const char *target, const char *name, const void *prefix, size_t plen,
		       const void *body, size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/gen-%s", out_dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL)
		die(path);
	if ((plen && fwrite(prefix, 1, plen, f) != plen) ||
	    (blen && fwrite(body, 1, blen, f) != blen) || fclose(f) != 0)
		die(path);
}

/* ------------------------------------------------------------ fuzz_proto */

struct stream {
	uint8_t b[GEN_STREAM_MAX];
	size_t n;
};

static uint8_t frame[GEN_FRAME_MAX];

/* A frame in `frame` (length n): a payload seed of its type, appended to s. */
static void proto_frame(struct stream *s, int n, const char *name)
{
	struct proto_header h;
	unsigned char mode;

	need(n, name);
	memcpy(&h, frame, sizeof(h));
	mode = fuzz_proto_mode_of(le16toh(h.type));
	seed_write("fuzz_proto", name, &mode, 1, frame + PROTO_HEADER_BYTES,
		   (size_t)n - PROTO_HEADER_BYTES);
	if (s->n + (size_t)n > sizeof(s->b)) {
		fprintf(stderr, "corpus-gen: stream too long at %s\n", name);
		exit(1);
	}
	memcpy(s->b + s->n, frame, (size_t)n);
	s->n += (size_t)n;
}

static void stream_write(struct stream *s, const char *name)
{
	unsigned char mode = 0;

	seed_write("fuzz_proto", name, &mode, 1, s->b, s->n);
	s->n = 0;
}

static void gen_proto(void)
{
	static struct stream s;
	static uint8_t plain[GEN_BLOCKS * GEN_BLOCK], packed[GEN_BLOCKS * GEN_BLOCK];
	uint64_t hashes[GEN_BLOCKS];
	struct proto_hello hello = {
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.capabilities = PROTO_CAP_LZ4 | PROTO_CAP_RESUME | PROTO_CAP_CAPTURE_TIME |
				PROTO_CAP_ROUNDS,
		.volume_id = { 0x70, 0x76, 0x72, 0x65, 0x70, 0x6c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 },
		.volume_name = "fuzzvol",
		.size_bytes = GEN_BLOCKS * GEN_BLOCK * 1000ull - 100,
		.block_bytes = GEN_BLOCK,
		.generation = 2,
		.epoch = 7,
		.merkle_root = 0x1234567890abcdefull,
		.history_count = 2,
		.history = { { 1, 0 }, { 2, 5 } },
	};
	struct proto_welcome welcome = {
		.version = PROTO_VERSION_MAX,
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.state = PROTO_STATE_CONSISTENT,
		.capabilities = PROTO_CAP_LZ4 | PROTO_CAP_CAPTURE_TIME | PROTO_CAP_ROUNDS,
		.generation = 2,
		.epoch = 7,
		.merkle_root = 0x1234567890abcdefull,
		.resume_epoch = 8,
		.resume_block = 40,
	};
	struct proto_refuse refuse = {
		.reason = PROTO_REFUSE_SIZE,
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.message = "the standby is smaller than the volume",
	};
	struct proto_epoch_begin begin = {
		.epoch = 8,
		.base_epoch = 7,
		.generation = 2,
		.block_count = 6,
	};
	struct proto_data data = { .first_block = 10, .block_count = GEN_BLOCKS };
	struct proto_zero zero = { .first_block = 20, .block_count = 2 };
	struct proto_round round = { .round = 2 };
	struct proto_round round_final = { .round = 3,
					   .flags = PROTO_ROUND_FINAL,
					   .capture_unix_ms = 1700000000456ull };
	struct proto_epoch_end end = { .epoch = 8, .block_count = 6, .merkle_root = 42 };
	struct proto_epoch_ack ack = { .epoch = 8, .generation = 2, .merkle_root = 42 };
	struct proto_error error = { .code = PROTO_ERR_VERIFY, .message = "block 11 mismatch" };
	enum codec_kind kind;
	int n;

	memcpy(welcome.volume_id, hello.volume_id, sizeof(welcome.volume_id));
	/* the handshake, accepted and refused */
	proto_frame(&s, proto_encode_hello(&hello, frame, sizeof(frame)), "hello");
	proto_frame(&s, proto_encode_welcome(&welcome, frame, sizeof(frame)), "welcome");
	stream_write(&s, "stream-handshake");
	proto_frame(&s, proto_encode_hello(&hello, frame, sizeof(frame)), "hello");
	proto_frame(&s, proto_encode_refuse(&refuse, frame, sizeof(frame)), "refuse");
	stream_write(&s, "stream-refused");

	/* an epoch: both EPOCH_BEGIN sizes, raw and lz4 data, pages, a zero run, a second
	 * round and a final one (ROUND), the end */
	proto_frame(&s, proto_encode_epoch_begin(&begin, frame, sizeof(frame)), "epoch-begin-v1");
	begin.capture_unix_ms = 1700000000123ull;
	proto_frame(&s, proto_encode_epoch_begin(&begin, frame, sizeof(frame)), "epoch-begin");
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i % 7 == 0 ? i : 'a');
	for (uint32_t i = 0; i < GEN_BLOCKS; i++)
		hashes[i] = delta_hash(plain + i * GEN_BLOCK, GEN_BLOCK);
	data.hashes = hashes;
	data.plaintext_bytes = sizeof(plain);
	data.codec = PROTO_CODEC_RAW;
	data.data = plain;
	data.data_bytes = sizeof(plain);
	proto_frame(&s, proto_encode_data(&data, frame, sizeof(frame)), "data-raw");
	n = codec_compress(plain, sizeof(plain), packed, sizeof(packed), &kind);
	need(n, "codec_compress");
	if (kind != CODEC_LZ4) {
		fprintf(stderr, "corpus-gen: the sample data did not compress\n");
		exit(1);
	}
	data.codec = PROTO_CODEC_LZ4;
	data.data = packed;
	data.data_bytes = (uint32_t)n;
	proto_frame(&s, proto_encode_data(&data, frame, sizeof(frame)), "data-lz4");
	/* a short last block: the volume's tail */
	data.codec = PROTO_CODEC_RAW;
	data.data = plain;
	data.plaintext_bytes = data.data_bytes = sizeof(plain) - 100;
	proto_frame(&s, proto_encode_data(&data, frame, sizeof(frame)), "data-tail");
	/* pages 1 and 3 of a block, raw */
	{
		static const uint32_t idx[] = { 1, 3 };
		static uint8_t pages_plain[2 * PROTO_PAGE_BYTES];
		uint64_t ph[2];
		struct proto_pages pg = { .block = 12,
					  .block_hash = 99,
					  .codec = PROTO_CODEC_RAW,
					  .page_count = 2,
					  .plaintext_bytes = 2 * PROTO_PAGE_BYTES,
					  .page_index = idx,
					  .page_hashes = ph,
					  .data = pages_plain,
					  .data_bytes = 2 * PROTO_PAGE_BYTES };

		memset(pages_plain, 'p', sizeof(pages_plain));
		ph[0] = delta_hash(pages_plain, PROTO_PAGE_BYTES);
		ph[1] = delta_hash(pages_plain + PROTO_PAGE_BYTES, PROTO_PAGE_BYTES);
		proto_frame(&s, proto_encode_pages(&pg, frame, sizeof(frame)), "pages");
	}
	proto_frame(&s, proto_encode_zero(&zero, frame, sizeof(frame)), "zero");
	/* two more rounds, the last one final, each repeating block 10 */
	proto_frame(&s, proto_encode_round(&round, frame, sizeof(frame)), "round");
	data.block_count = 1;
	data.plaintext_bytes = data.data_bytes = GEN_BLOCK;
	proto_frame(&s, proto_encode_data(&data, frame, sizeof(frame)), "data-round-2");
	proto_frame(&s, proto_encode_round(&round_final, frame, sizeof(frame)), "round-final");
	proto_frame(&s, proto_encode_data(&data, frame, sizeof(frame)), "data-round-3");
	proto_frame(&s, proto_encode_keepalive(frame, sizeof(frame)), "keepalive");
	proto_frame(&s, proto_encode_epoch_end(&end, frame, sizeof(frame)), "epoch-end");
	proto_frame(&s, proto_encode_epoch_ack(&ack, frame, sizeof(frame)), "epoch-ack");
	proto_frame(&s, proto_encode_error(&error, frame, sizeof(frame)), "error");
	stream_write(&s, "stream-epoch");
}

/* -------------------------------------------------------------- fuzz_map */

static size_t read_file(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
	char path[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(path);
	n = read(fd, buf, cap);
	if (n < 0 || (size_t)n == cap)
		die(path);
	close(fd);
	return (size_t)n;
}

static void map_seed(const char *name, unsigned flags, const uint8_t *base, size_t base_n,
		     const uint8_t *log, size_t log_n)
{
	static uint8_t in[FUZZ_MAP_PREFIX_BYTES + 2 * GEN_FILE_MAX];

	in[0] = (uint8_t)flags;
	in[1] = (uint8_t)base_n;
	in[2] = (uint8_t)(base_n >> 8);
	memcpy(in + FUZZ_MAP_PREFIX_BYTES, base, base_n);
	memcpy(in + FUZZ_MAP_PREFIX_BYTES + base_n, log, log_n);
	seed_write("fuzz_map", name, NULL, 0, in, FUZZ_MAP_PREFIX_BYTES + base_n + log_n);
}

/*
 * A map of 64 blocks (the last one short), committed three times: the base at
 * epoch 1, then two log records (3 and 2 entries: small enough against the base
 * that map_commit appends instead of rewriting it).
 */
static void gen_map(void)
{
	static uint8_t base[GEN_FILE_MAX], log[GEN_FILE_MAX];
	const uint64_t changes[2][3] = { { 3, 40, 63 }, { 0, 40, 0 } };
	char dir[] = "/tmp/pvrepl-corpus-gen-XXXXXX", path[4096], err[512] = "";
	size_t base_n, log_n;
	struct map m;

	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	need(map_create(&m, "fuzzvol", 63 * 4096ull + 1000, 4096), "map_create");
	memset(m.volume_id, 0x5a, sizeof(m.volume_id));
	m.generation = 3;
	for (uint64_t b = 0; b < m.block_count; b++)
		map_set(&m, b, 0x1000 + b);
	if (map_commit(&m, dir, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "corpus-gen: %s\n", err);
		exit(1);
	}
	for (unsigned e = 0; e < 2; e++) {
		for (unsigned i = 0; i < 3 - e; i++)
			map_set(&m, changes[e][i], 0xbeef00 + 16 * e + i);
		if (map_commit(&m, dir, 2 + e, err, sizeof(err)) != 0) {
			fprintf(stderr, "corpus-gen: %s\n", err);
			exit(1);
		}
	}
	map_release(&m);
	base_n = read_file(dir, MAP_FILE, base, sizeof(base));
	log_n = read_file(dir, MAP_LOG_FILE, log, sizeof(log));
	map_seed("base-log", 0, base, base_n, log, log_n);
	map_seed("base-log-resigned", FUZZ_MAP_FIX_ALL, base, base_n, log, log_n);
	map_seed("base-only", FUZZ_MAP_FIX_ALL | FUZZ_MAP_NO_LOG, base, base_n, log, 0);
	/* the append of a third commit cut by a crash: a torn tail to drop */
	map_seed("torn-tail", FUZZ_MAP_FIX_ALL, base, base_n, log, log_n - 20);
	/* an empty log (only its header), as the first commit leaves it */
	map_seed("empty-log", FUZZ_MAP_FIX_ALL, base, base_n, log,
		 sizeof(struct map_disk_log_header));
	snprintf(path, sizeof(path), "%s/%s", dir, MAP_FILE);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, MAP_LOG_FILE);
	unlink(path);
	rmdir(dir);
}

/* ---------------------------------------------------------- fuzz_journal */

enum gen_journal_stop { GEN_EMPTY, GEN_OPEN, GEN_COMMITTED, GEN_APPLIED };

static void jneed(struct journal *j, int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "corpus-gen: %s: %s\n", what, journal_err(j));
		exit(1);
	}
}

/*
 * A journal of fuzz_journal_config's volume left at stop: epoch 5 with two data
 * runs and a zero run (records of 8 + 4 + 8 KiB); with barrier, the last data
 * run is a second round behind a barrier (4 KiB) that writes block 3 again with
 * other bytes. The file is sized so that the seed, with its trailing zeros cut,
 * gives fuzz_journal the same file back.
 */
static void journal_seed(const char *name, enum gen_journal_stop stop, bool barrier)
{
	static uint8_t plain[3 * FUZZ_JOURNAL_BLOCK_BYTES];
	static uint8_t file[JOURNAL_DISK_RECORDS_OFFSET + FUZZ_JOURNAL_AREA_MAX];
	static uint8_t in[FUZZ_JOURNAL_PREFIX_BYTES + FUZZ_JOURNAL_AREA_MAX];
	const uint64_t area[] = { [GEN_EMPTY] = 8 << 10,
				  [GEN_OPEN] = 12 << 10,
				  [GEN_COMMITTED] = 20 << 10,
				  [GEN_APPLIED] = 20 << 10 };
	char dir[] = "/tmp/pvrepl-corpus-gen-XXXXXX", path[4096], err[JOURNAL_ERR_MAX] = "";
	uint64_t hashes[3];
	struct journal_config cfg;
	struct journal_recovery rec;
	struct kfio_dev dev;
	struct journal *j;
	uint64_t area_bytes = area[stop] + (barrier ? JOURNAL_DISK_ALIGN_BYTES : 0);
	size_t n, used;
	int fd;

	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	snprintf(path, sizeof(path), "%s/standby", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, FUZZ_JOURNAL_VOLUME_BYTES) < 0 || close(fd) < 0)
		die(path);
	need(kfio_dev_open(&dev, path, KFIO_OPEN_WRITE), "kfio_dev_open");
	fuzz_journal_config(&cfg);
	cfg.journal_max_bytes = JOURNAL_DISK_RECORDS_OFFSET + area_bytes;
	if (journal_open(&j, dir, &cfg, &dev, err, sizeof(err)) != 0) {
		fprintf(stderr, "corpus-gen: journal_open: %s\n", err);
		exit(1);
	}
	jneed(j, journal_recover(j, &rec, NULL, NULL), "journal_recover");
	if (stop != GEN_EMPTY) {
		for (size_t i = 0; i < sizeof(plain); i++)
			plain[i] = (uint8_t)(i * 7 + 1);
		for (unsigned i = 0; i < 3; i++)
			hashes[i] = delta_hash(plain + i * FUZZ_JOURNAL_BLOCK_BYTES,
					       FUZZ_JOURNAL_BLOCK_BYTES);
		jneed(j, journal_begin(j, 5, 2, 4), "journal_begin");
		jneed(j, journal_add_data(j, 3, 3, plain, sizeof(plain), hashes),
		      "journal_add_data");
		jneed(j, journal_add_zero(j, 10, 4), "journal_add_zero");
	}
	if (stop >= GEN_COMMITTED && barrier) {
		jneed(j, journal_add_barrier(j), "journal_add_barrier");
		jneed(j,
		      journal_add_data(j, 3, 1, plain + FUZZ_JOURNAL_BLOCK_BYTES,
				       FUZZ_JOURNAL_BLOCK_BYTES, hashes + 1),
		      "journal_add_data");
	} else if (stop >= GEN_COMMITTED) {
		jneed(j, journal_add_data(j, 100, 1, plain, FUZZ_JOURNAL_BLOCK_BYTES, hashes),
		      "journal_add_data");
	}
	if (stop >= GEN_COMMITTED)
		jneed(j, journal_commit(j), "journal_commit");
	if (stop == GEN_APPLIED)
		jneed(j, journal_apply(j, NULL, NULL), "journal_apply");
	journal_close(j);
	kfio_dev_close(&dev);
	unlink(path);

	snprintf(path, sizeof(path), "%s/%s", dir, JOURNAL_FILE);
	n = read_file(dir, JOURNAL_FILE, file, sizeof(file));
	unlink(path);
	rmdir(dir);
	if (n != JOURNAL_DISK_RECORDS_OFFSET + area_bytes) {
		fprintf(stderr, "corpus-gen: %s: the journal is %zu bytes\n", name, n);
		exit(1);
	}
	for (used = area_bytes; used > 0 && file[JOURNAL_DISK_RECORDS_OFFSET + used - 1] == 0;)
		used--;
	for (unsigned k = 0; k < JOURNAL_DISK_SLOTS; k++)
		memcpy(in + 1 + k * FUZZ_JOURNAL_SUPER_BYTES, file + k * JOURNAL_DISK_SLOT_BYTES,
		       FUZZ_JOURNAL_SUPER_BYTES);
	memcpy(in + FUZZ_JOURNAL_PREFIX_BYTES, file + JOURNAL_DISK_RECORDS_OFFSET, used);
	in[0] = 0;
	seed_write("fuzz_journal", name, NULL, 0, in, FUZZ_JOURNAL_PREFIX_BYTES + used);
	snprintf(path, sizeof(path), "%s-resigned", name);
	in[0] = FUZZ_JOURNAL_FIX_ALL;
	seed_write("fuzz_journal", path, NULL, 0, in, FUZZ_JOURNAL_PREFIX_BYTES + used);
}

static void gen_journal(void)
{
	journal_seed("empty", GEN_EMPTY, false);
	journal_seed("open", GEN_OPEN, false);
	journal_seed("committed", GEN_COMMITTED, false);
	journal_seed("applied", GEN_APPLIED, false);
	journal_seed("committed-barrier", GEN_COMMITTED, true);
}

/* ------------------------------------- fuzz_vstate, fuzz_pending, fuzz_status */

/* A new temp directory in dir (a mkdtemp template). */
static void gen_dir(char *dir)
{
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
}

/* The seed of target: one flag byte, then dir/name (its first cut bytes; 0: all). */
static void record_seed(const char *target, const char *seed, unsigned flags, const char *dir,
			const char *name, size_t cut)
{
	static uint8_t file[FUZZ_RECORD_FILE_MAX];
	unsigned char f = (unsigned char)flags;
	size_t n = read_file(dir, name, file, sizeof(file));

	seed_write(target, seed, &f, 1, file, cut && cut < n ? cut : n);
}

/* Removes dir/name, then dir. */
static void gen_rmdir(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) < 0 || rmdir(dir) < 0)
		die(dir);
}

/* A volume syncing (at its cursor), then consistent at an epoch captured by reflink. */
static void gen_vstate(void)
{
	char dir[] = "/tmp/pvrepl-corpus-gen-XXXXXX", err[512] = "";
	struct vstate vs = { .kind = VSTATE_SYNCING,
			     .generation = 3,
			     .sync_epoch = 7,
			     .sync_cursor = 4096,
			     .committed_unix = 1700000000,
			     .sync_capture_ms = 1700000000123ll };

	gen_dir(dir);
	memset(vs.volume_id, 0x5a, sizeof(vs.volume_id));
	for (unsigned i = 0; i < 2; i++) {
		if (vstate_store(&vs, dir, err, sizeof(err)) != 0) {
			fprintf(stderr, "corpus-gen: %s\n", err);
			exit(1);
		}
		record_seed("fuzz_vstate", i ? "consistent" : "syncing", 0, dir, VSTATE_FILE, 0);
		record_seed("fuzz_vstate", i ? "consistent-resigned" : "syncing-resigned",
			    FUZZ_VSTATE_FIX_CHECKSUM, dir, VSTATE_FILE, 0);
		vs = (struct vstate){ .kind = VSTATE_CONSISTENT,
				      .crash_consistent = true,
				      .capture = STATUS_CAPTURE_REFLINK,
				      .epoch = 7,
				      .generation = 3,
				      .committed_unix = 1700000100,
				      .consistent_point_ms = 1700000099456ll };
	}
	gen_rmdir(dir, VSTATE_FILE);
}

/* The pending changes of fuzz_pending_map's epoch FUZZ_PENDING_EPOCH: a few blocks
 * (sparse), none, and every block (dense: the map's first sync). */
static void gen_pending(void)
{
	char dir[] = "/tmp/pvrepl-corpus-gen-XXXXXX", err[512] = "";
	static const char *const names[] = { "sparse", "none", "dense" };
	struct map m;

	gen_dir(dir);
	for (unsigned i = 0; i < 3; i++) {
		char name[64];

		need(fuzz_pending_map(&m, FUZZ_PENDING_BLOCKS), "fuzz_pending_map");
		if (i == 0) {
			map_set(&m, 3, 0xbeef03);
			map_set(&m, 40, 0xbeef40);
			map_set(&m, 63, 0xbeef63);
		}
		m.empty = i == 2;
		if (pending_save(&m, dir, FUZZ_PENDING_EPOCH, err, sizeof(err)) != 0) {
			fprintf(stderr, "corpus-gen: %s\n", err);
			exit(1);
		}
		map_release(&m);
		record_seed("fuzz_pending", names[i], 0, dir, PENDING_FILE, 0);
		snprintf(name, sizeof(name), "%s-resigned", names[i]);
		record_seed("fuzz_pending", name,
			    FUZZ_PENDING_FIX_ALL | FUZZ_PENDING_FIX_SIZE | FUZZ_PENDING_FIT_MAP,
			    dir, PENDING_FILE, 0);
	}
	gen_rmdir(dir, PENDING_FILE);
}

/* A sender's record (tracking, a heartbeat) and a receiver's, each whole and
 * resigned; the sender's also as older writers left it (552 bytes, 776). */
static void gen_status(void)
{
	char dir[] = "/tmp/pvrepl-corpus-gen-XXXXXX";
	struct status_record s = { .role = STATUS_ROLE_PRIMARY,
				   .state = STATUS_REPLICATING,
				   .epoch = 7,
				   .size_bytes = 1ull << 30,
				   .state_since_unix = 1700000000,
				   .last_attempt_unix = 1700000100,
				   .last_success_unix = 1700000100,
				   .consistent_point_ms = 1700000099456ll,
				   .last_sync_duration_ms = 1234,
				   .last_sync_bytes = 1 << 20,
				   .out_of_sync_bytes = 4096,
				   .rpo_target_seconds = 300,
				   .volume = "data",
				   .peer = "standby.example:7400",
				   .tracking = STATUS_TRACKING_BPF,
				   .tracker_missed_blocks = 2,
				   .scan_note = "a full scan every 24h",
				   .daemon = true,
				   .writer_pid = 1,
				   .heartbeat_unix = 1700000100 };

	gen_dir(dir);
	need(status_store_nosync(&s, dir), "status_store_nosync");
	record_seed("fuzz_status", "primary", 0, dir, STATUS_FILE, 0);
	record_seed("fuzz_status", "primary-text-check",
		    FUZZ_STATUS_FIX_ALL | FUZZ_STATUS_TEXT | FUZZ_STATUS_CHECK, dir, STATUS_FILE,
		    0);
	record_seed("fuzz_status", "primary-v1", FUZZ_STATUS_FIX_ALL, dir, STATUS_FILE, 552);
	record_seed("fuzz_status", "primary-v2", FUZZ_STATUS_FIX_ALL, dir, STATUS_FILE, 776);
	record_seed("fuzz_status", "primary-resigned", FUZZ_STATUS_FIX_ALL, dir, STATUS_FILE, 0);
	s = (struct status_record){ .role = STATUS_ROLE_SECONDARY,
				    .state = STATUS_DISCONNECTED,
				    .consistent = true,
				    .crash_consistent = true,
				    .capture = STATUS_CAPTURE_SNAPSHOT,
				    .epoch = 7,
				    .consistent_point_ms = 1700000099456ll,
				    .volume = "data",
				    .last_error = "connection reset by peer",
				    .daemon = true,
				    .writer_pid = 1,
				    .heartbeat_unix = 1700000100 };
	need(status_store_nosync(&s, dir), "status_store_nosync");
	record_seed("fuzz_status", "secondary", 0, dir, STATUS_FILE, 0);
	record_seed("fuzz_status", "secondary-resigned", FUZZ_STATUS_FIX_ALL | FUZZ_STATUS_CHECK,
		    dir, STATUS_FILE, 0);
	gen_rmdir(dir, STATUS_FILE);
}

/* ----------------------------------------------------------- fuzz_config */

static void config_seed(const char *name, unsigned flags, const char *file, const char *env)
{
	static char in[FUZZ_CONFIG_PREFIX_BYTES + 2 * GEN_FILE_MAX];
	size_t n = strlen(file);

	in[0] = (char)flags;
	in[1] = (char)n;
	in[2] = (char)(n >> 8);
	memcpy(in + FUZZ_CONFIG_PREFIX_BYTES, file, n);
	memcpy(in + FUZZ_CONFIG_PREFIX_BYTES + n, env, strlen(env));
	seed_write("fuzz_config", name, NULL, 0, in, FUZZ_CONFIG_PREFIX_BYTES + n + strlen(env));
}

/* docs/CONFIG.md's example (every key), one side each, the environment alone, a file
 * with a problem on most lines. */
static void gen_config(void)
{
	static const char receiver[] = "# the standby\n"
				       "[receiver]\n"
				       "listen = 0.0.0.0:7400\n"
				       "tls_dir = /etc/pvrepl/tls\n"
				       "state_dir = /var/lib/pvrepl/standby\n"
				       "journal_size = 2G\n"
				       "timeout = 30s\n"
				       "metrics_addr = :9500\n"
				       "\n"
				       "[volume data]\n"
				       "device = /dev/vg0/data\n"
				       "allow = primary.example\n"
				       "allow = primary-b.example, primary-c.example\n";
	static const char sender[] = "[sender]\n"
				     "tls_dir = /etc/pvrepl/tls\n"
				     "peer = [fd00::1]:7400\n"
				     "server_name = standby.example\n"
				     "interval = 30s\n"
				     "rpo = 5m\n"
				     "timeout = 30s\n"
				     "max_rate = 400Mbit\n"
				     "max_read_rate = 200M/s\n"
				     "metrics_addr = :9501\n"
				     "block_size = 16k\n"
				     "track = auto\n"
				     "full_scan_interval = 24h\n"
				     "track_pin_dir = /sys/fs/bpf/pvrepl\n"
				     "capture = auto\n"
				     "freeze_timeout = 2s\n"
				     "\n"
				     "[volume data]\n"
				     "device = /dev/vg0/data\n"
				     "state_dir = /var/lib/pvrepl/data\n"
				     "capture = freeze\n"
				     "freeze_path = /var/lib/postgresql\n"
				     "\n"
				     "[volume logs]\n"
				     "device = /dev/vg0/logs\n"
				     "state_dir = /var/lib/pvrepl/logs\n"
				     "capture = snapshot\n"
				     "snapshot_cmd = /usr/local/bin/snap logs\n"
				     "snapshot_release_cmd = /usr/local/bin/unsnap\n";
	static const char bad[] = "\xEF\xBB\xBFkey = outside\n"
				  "[receiver\n"
				  "[receiver]\n"
				  "listen = nohost\n"
				  "timeout = 50ms\n"
				  "journal_size = 1k\n"
				  "[receiver]\n"
				  "[volume a/b]\n"
				  "[volume v]\n"
				  "device = dev\n"
				  "  continued\n"
				  "no equals sign\n"
				  "[volume v]\n"
				  "[sender]\n"
				  "peer = h:99999\n"
				  "interval = 0s\n"
				  "block_size = 12k\n"
				  "max_rate = fast\n"
				  "track = maybe\n"
				  "snapshot_cmd = x ; y\n"
				  "[elsewhere]\n"
				  "key = value\n";
	static const char env[] = "PVREPL_LISTEN=:7401\n"
				  "PVREPL_TLS_DIR=/etc/pvrepl/tls2\n"
				  "PVREPL_STATE_DIR=/srv/pvrepl\n"
				  "PVREPL_JOURNAL_SIZE=1G\n"
				  "PVREPL_TIMEOUT=10s\n"
				  "PVREPL_METRICS_ADDR=127.0.0.1:9502\n"
				  "PVREPL_PEER=standby:7400\n"
				  "PVREPL_SERVER_NAME=standby\n"
				  "PVREPL_INTERVAL=1m\n"
				  "PVREPL_RPO=10m\n"
				  "PVREPL_MAX_RATE=1Gb/s\n"
				  "PVREPL_MAX_READ_RATE=100MiB\n"
				  "PVREPL_BLOCK_SIZE=64k\n"
				  "PVREPL_TRACK=off\n"
				  "PVREPL_FULL_SCAN_INTERVAL=12h\n"
				  "PVREPL_TRACK_PIN_DIR=/sys/fs/bpf/x\n"
				  "PVREPL_CAPTURE=snapshot\n"
				  "PVREPL_FREEZE_TIMEOUT=500ms\n"
				  "PVREPL_VOLUME=data\n"
				  "PVREPL_DEVICE=/dev/vg0/other\n"
				  "PVREPL_FREEZE_PATH=/srv\n"
				  "PVREPL_SNAPSHOT_CMD=/bin/snap\n"
				  "PVREPL_SNAPSHOT_RELEASE_CMD=/bin/unsnap\n"
				  "PVREPL_ALLOW=a.example,b.example\n";

	config_seed("receiver", 0, receiver, "");
	config_seed("receiver-env", 0, receiver, env);
	config_seed("sender", 0, sender, "HOME=/root\nPVREPL_RPO=1h\n");
	config_seed("sender-env", FUZZ_CONFIG_SHORT_MSG | 2, sender, env);
	config_seed("env-only", FUZZ_CONFIG_NO_FILE, "", env);
	config_seed("problems", 0, bad, "PVREPL_VOLUME=a b\nPVREPL_TIMEOUT=1ms\n");
	config_seed("problems-kept-3", 3 | FUZZ_CONFIG_SHORT_MSG, bad, "");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: corpus-gen DIR\n");
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) < 0 && errno != EEXIST)
		die(out_dir);
	gen_proto();
	gen_map();
	gen_journal();
	gen_vstate();
	gen_pending();
	gen_status();
	gen_config();
	return 0;
}
