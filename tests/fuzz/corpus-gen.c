// SPDX-License-Identifier: Apache-2.0
/*
 * corpus-gen DIR: writes the seed corpus of every fuzz target into DIR/<target>/
 * (`make fuzz` runs it before the fuzzers). Seeds come from the real encoders
 * (proto_encode_*, map_commit, journal_*), in the input layouts of fuzz.h, so they start the
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
#include "proto.h"

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
	return 0;
}
