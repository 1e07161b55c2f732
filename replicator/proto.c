/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto — pure encode and decode of replication frames (see replicator/proto.h,
 * include/proto_format.h and docs/PROTOCOL.md, the contract). Bytes are read
 * through a bounds-checked reader (bgpd's ibuf: every get returns -EBADMSG on
 * overrun) and written through a writer whose room is checked once, up front,
 * against the frame's exact size. Checksums go through delta (xxh3); codec is
 * included for its enum values only.
 *
 * It knows nothing of sockets, TLS, maps, journals or the state of a connection:
 * a decoder checks what a frame says about itself, the receiver checks whether it
 * fits the volume and the epoch.
 *
 * Invariants:
 *   1. Every decoder bounds-checks every read against the bytes it was given;
 *      a malformed input returns -EBADMSG (-EAGAIN: an incomplete frame), never
 *      asserts, never reads outside the buffer, never allocates.
 *   2. Encodings are canonical: reserved fields and padding are zero and checked,
 *      names are NUL-padded, the payload length is exact, so decode-then-encode
 *      reproduces the input bytes.
 *   3. Encoder and decoder enforce one rule set (proto_*_valid): an encoder
 *      refuses (-EINVAL) what a decoder would refuse, so a frame we send is never
 *      rejected for its shape by a peer of the same version.
 *   4. A header is trusted only after its checksum matches; its payload length
 *      is checked against the type's bounds before any payload byte is awaited.
 *   5. DATA decoding copies nothing: hashes and data point into the caller's
 *      buffer, and a run's count, its hashes and its data length are consistent.
 *
 * The conversation and the functions that carry each transition (the sender's
 * and receiver's states are in PROTOCOL.md; they own the control flow):
 *
 *   sender                                              receiver
 *   CONNECTING                                          WAIT_HELLO
 *     proto_encode_hello ──────── HELLO ──────────────►   proto_decode → proto_decode_hello
 *                                                         checks; proto_version_choose
 *   WAIT_WELCOME ◄──── WELCOME ── proto_encode_welcome ◄─┤ accepted → IDLE
 *     proto_decode_welcome → IDLE                         │
 *   REFUSED ◄───────── REFUSE ─── proto_encode_refuse ◄──┘ refused → closed
 *     proto_decode_refuse, proto_refuse_name
 *   IDLE                                                IDLE
 *     proto_encode_epoch_begin ── EPOCH_BEGIN ────────►   proto_decode_epoch_begin → RECEIVING
 *   SENDING                                             RECEIVING
 *     proto_encode_data_prefix ── DATA ───────────────►   proto_decode_data, proto_data_hash,
 *     proto_encode_zero ───────── ZERO ───────────────►   proto_decode_zero: verify, journal
 *     proto_encode_round ──────── ROUND ──────────────►   proto_decode_round: the next round
 *     proto_encode_epoch_end ──── EPOCH_END ──────────►   proto_decode_epoch_end → COMMITTING
 *   WAIT_ACK                                            COMMITTING: journal, commit, flush
 *     proto_decode_epoch_ack ◄─── EPOCH_ACK ───────────   proto_encode_epoch_ack → IDLE
 *     → IDLE (map_commit)
 *   any state: proto_encode_keepalive / proto_encode_error ⇄ proto_decode_keepalive /
 *   proto_decode_error; an ERROR or a decode failure closes the connection.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "delta.h"
#include "proto.h"
#include "pvrepl_assert.h"

_Static_assert((int)PROTO_CODEC_RAW == (int)CODEC_RAW, "codec values on the wire");
_Static_assert((int)PROTO_CODEC_LZ4 == (int)CODEC_LZ4, "codec values on the wire");
_Static_assert(PROTO_DATA_BLOCKS_MAX * 8ull + PROTO_DATA_FIXED_BYTES + PROTO_DATA_PLAINTEXT_MAX <=
		       PROTO_FRAME_PAYLOAD_MAX,
	       "the largest DATA fits a frame");
_Static_assert(PROTO_FRAME_BYTES_MAX <= 0x7fffffffu, "frame lengths fit an int");
_Static_assert(PROTO_MESSAGE_BYTES_MAX <= 0xffffu, "message_len is a u16");
_Static_assert(PROTO_ZERO_BLOCKS_MAX <= PROTO_BLOCK_COUNT_MAX, "zero run bound");
_Static_assert(PROTO_ROUND_BYTES == 4u + 4u + 8u, "ROUND: round, flags, capture_unix_ms");

/* Bytes of the header covered by header_checksum. */
#define PROTO_HEADER_CHECKED_BYTES offsetof(struct proto_header, header_checksum)

/* ---------------------------------------------------------- type table */

struct proto_type_info {
	const char *name;
	uint32_t payload_min; /* bytes */
	uint32_t payload_max;
	bool handshake; /* always PROTO_VERSION_HANDSHAKE */
};

static const struct proto_type_info proto_types[PROTO_TYPE_MAX + 1] = {
	[PROTO_HELLO] = { "HELLO", PROTO_HELLO_FIXED_BYTES + PROTO_HISTORY_ENTRY_BYTES,
			  PROTO_HELLO_PAYLOAD_MAX, true },
	[PROTO_WELCOME] = { "WELCOME", PROTO_WELCOME_BYTES, PROTO_WELCOME_BYTES, true },
	[PROTO_REFUSE] = { "REFUSE", PROTO_REFUSE_FIXED_BYTES,
			   PROTO_REFUSE_FIXED_BYTES + PROTO_MESSAGE_BYTES_MAX, true },
	[PROTO_EPOCH_BEGIN] = { "EPOCH_BEGIN", PROTO_EPOCH_BEGIN_V1_BYTES, PROTO_EPOCH_BEGIN_BYTES,
				false },
	/* one block, its hash and at least one byte of data */
	[PROTO_DATA] = { "DATA", PROTO_DATA_FIXED_BYTES + 8u + 1u, PROTO_DATA_PAYLOAD_MAX, false },
	[PROTO_ZERO] = { "ZERO", PROTO_ZERO_BYTES, PROTO_ZERO_BYTES, false },
	[PROTO_EPOCH_END] = { "EPOCH_END", PROTO_EPOCH_END_BYTES, PROTO_EPOCH_END_BYTES, false },
	[PROTO_EPOCH_ACK] = { "EPOCH_ACK", PROTO_EPOCH_ACK_BYTES, PROTO_EPOCH_ACK_BYTES, false },
	[PROTO_KEEPALIVE] = { "KEEPALIVE", 0, 0, false },
	[PROTO_ERROR] = { "ERROR", PROTO_ERROR_FIXED_BYTES,
			  PROTO_ERROR_FIXED_BYTES + PROTO_MESSAGE_BYTES_MAX, false },
	/* one page entry and at least one byte of data */
	[PROTO_PAGES] = { "PAGES", PROTO_PAGES_FIXED_BYTES + PROTO_PAGE_ENTRY_BYTES + 1u,
			  PROTO_PAGES_PAYLOAD_MAX, false },
	[PROTO_ROUND] = { "ROUND", PROTO_ROUND_BYTES, PROTO_ROUND_BYTES, false },
};

static const struct proto_type_info *proto_type_info(uint16_t type)
{
	if (type == 0 || type > PROTO_TYPE_MAX)
		return NULL;
	return &proto_types[type];
}

const char *proto_type_name(uint16_t type)
{
	const struct proto_type_info *t = proto_type_info(type);

	return t != NULL ? t->name : "unknown";
}

const char *proto_refuse_name(uint16_t reason)
{
	static const char *const names[] = {
		[PROTO_REFUSE_VERSION] = "VERSION",
		[PROTO_REFUSE_VOLUME_ID] = "VOLUME_ID",
		[PROTO_REFUSE_SIZE] = "SIZE",
		[PROTO_REFUSE_BLOCK_SIZE] = "BLOCK_SIZE",
		[PROTO_REFUSE_GENERATION] = "GENERATION",
		[PROTO_REFUSE_CERTIFICATE] = "CERTIFICATE",
		[PROTO_REFUSE_SPLIT_BRAIN] = "SPLIT_BRAIN",
		[PROTO_REFUSE_BUSY] = "BUSY",
	};

	if (reason < ARRAY_SIZE(names) && names[reason] != NULL)
		return names[reason];
	return "unknown";
}

const char *proto_error_name(uint16_t code)
{
	static const char *const names[] = {
		[PROTO_ERR_PROTOCOL] = "PROTOCOL",
		[PROTO_ERR_VERIFY] = "VERIFY",
		[PROTO_ERR_IO] = "IO",
		[PROTO_ERR_EPOCH] = "EPOCH",
		[PROTO_ERR_SHUTDOWN] = "SHUTDOWN",
		[PROTO_ERR_INTERNAL] = "INTERNAL",
		[PROTO_ERR_TIMEOUT] = "TIMEOUT",
		[PROTO_ERR_PAGES] = "PAGES",
		[PROTO_ERR_JOURNAL_FULL] = "JOURNAL_FULL",
	};

	if (code < ARRAY_SIZE(names) && names[code] != NULL)
		return names[code];
	return "unknown";
}

uint16_t proto_version_choose(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max)
{
	uint16_t lo = a_min > b_min ? a_min : b_min;
	uint16_t hi = a_max < b_max ? a_max : b_max;

	/* hi == 0 (version 0 does not exist) also means none. */
	return hi >= lo ? hi : 0;
}

/* ------------------------------------------------------------- reader */

/* A bounds-checked cursor over untrusted bytes: every get fails with -EBADMSG
 * rather than read past len, and leaves the cursor where it was. */
struct proto_reader {
	const uint8_t *buf;
	size_t len;
	size_t off;
};

static void proto_reader_init(struct proto_reader *r, const uint8_t *buf, size_t len)
{
	ASSERT(buf != NULL || len == 0);
	r->buf = buf;
	r->len = len;
	r->off = 0;
}

static int proto_get_ptr(struct proto_reader *r, const uint8_t **p, size_t n)
{
	/* off <= len always holds, so len - off cannot wrap. */
	if (n > r->len - r->off)
		return -EBADMSG;
	*p = r->buf + r->off;
	r->off += n;
	return 0;
}

static int proto_get_bytes(struct proto_reader *r, void *dst, size_t n)
{
	const uint8_t *p;

	if (proto_get_ptr(r, &p, n) < 0)
		return -EBADMSG;
	memcpy(dst, p, n);
	return 0;
}

static int proto_get_u8(struct proto_reader *r, uint8_t *v)
{
	return proto_get_bytes(r, v, 1);
}

static int proto_get_u16(struct proto_reader *r, uint16_t *v)
{
	uint16_t le;

	if (proto_get_bytes(r, &le, sizeof(le)) < 0)
		return -EBADMSG;
	*v = le16toh(le);
	return 0;
}

static int proto_get_u32(struct proto_reader *r, uint32_t *v)
{
	uint32_t le;

	if (proto_get_bytes(r, &le, sizeof(le)) < 0)
		return -EBADMSG;
	*v = le32toh(le);
	return 0;
}

static int proto_get_u64(struct proto_reader *r, uint64_t *v)
{
	uint64_t le;

	if (proto_get_bytes(r, &le, sizeof(le)) < 0)
		return -EBADMSG;
	*v = le64toh(le);
	return 0;
}

/* Reserved bytes: present and zero (invariant 2). */
static int proto_get_zero(struct proto_reader *r, size_t n)
{
	const uint8_t *p;

	if (proto_get_ptr(r, &p, n) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return -EBADMSG;
	return 0;
}

/* The payload must be consumed exactly: trailing bytes are an error too. */
static int proto_reader_end(const struct proto_reader *r)
{
	return r->off == r->len ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------- writer */

/* The frame's exact size is checked against cap before anything is written, so a
 * put that would overrun is a bug in this file: it asserts. */
struct proto_writer {
	uint8_t *buf;
	size_t end; /* the frame's length */
	size_t off;
};

static void proto_put_bytes(struct proto_writer *w, const void *src, size_t n)
{
	ASSERT(n <= w->end - w->off);
	if (n > 0)
		memcpy(w->buf + w->off, src, n);
	w->off += n;
}

static void proto_put_zero(struct proto_writer *w, size_t n)
{
	ASSERT(n <= w->end - w->off);
	memset(w->buf + w->off, 0, n);
	w->off += n;
}

static void proto_put_u8(struct proto_writer *w, uint8_t v)
{
	proto_put_bytes(w, &v, 1);
}

static void proto_put_u16(struct proto_writer *w, uint16_t v)
{
	uint16_t le = htole16(v);

	proto_put_bytes(w, &le, sizeof(le));
}

static void proto_put_u32(struct proto_writer *w, uint32_t v)
{
	uint32_t le = htole32(v);

	proto_put_bytes(w, &le, sizeof(le));
}

static void proto_put_u64(struct proto_writer *w, uint64_t v)
{
	uint64_t le = htole64(v);

	proto_put_bytes(w, &le, sizeof(le));
}

/* ------------------------------------------------------------- strings */

static bool proto_char_printable(uint8_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* A struct's volume name: NUL within the field, 1..63 printable bytes before it. */
static bool proto_name_valid(const char name[PROTO_VOLUME_NAME_BYTES])
{
	size_t n = strnlen(name, PROTO_VOLUME_NAME_BYTES);

	if (n == 0 || n == PROTO_VOLUME_NAME_BYTES)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!proto_char_printable((uint8_t)name[i]))
			return false;
	return true;
}

/* A struct's message: NUL within the field, printable bytes before it. */
static bool proto_message_valid(const char msg[PROTO_MESSAGE_BYTES_MAX + 1])
{
	size_t n = strnlen(msg, PROTO_MESSAGE_BYTES_MAX + 1);

	if (n > PROTO_MESSAGE_BYTES_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!proto_char_printable((uint8_t)msg[i]))
			return false;
	return true;
}

static int proto_get_name(struct proto_reader *r, char name[PROTO_VOLUME_NAME_BYTES])
{
	const uint8_t *p;
	size_t n;

	if (proto_get_ptr(r, &p, PROTO_VOLUME_NAME_BYTES) < 0)
		return -EBADMSG;
	n = strnlen((const char *)p, PROTO_VOLUME_NAME_BYTES);
	if (n == 0 || n == PROTO_VOLUME_NAME_BYTES)
		return -EBADMSG; /* empty, or no NUL in the field */
	for (size_t i = n; i < PROTO_VOLUME_NAME_BYTES; i++)
		if (p[i] != 0)
			return -EBADMSG; /* padding must be NUL */
	memcpy(name, p, PROTO_VOLUME_NAME_BYTES);
	return proto_name_valid(name) ? 0 : -EBADMSG;
}

static void proto_put_name(struct proto_writer *w, const char name[PROTO_VOLUME_NAME_BYTES])
{
	size_t n = strnlen(name, PROTO_VOLUME_NAME_BYTES);

	ASSERT(n < PROTO_VOLUME_NAME_BYTES);
	proto_put_bytes(w, name, n);
	proto_put_zero(w, PROTO_VOLUME_NAME_BYTES - n);
}

/* Message bytes (no NUL on the wire) into a NUL-terminated field. */
static int proto_get_message(struct proto_reader *r, uint16_t len,
			     char msg[PROTO_MESSAGE_BYTES_MAX + 1])
{
	const uint8_t *p;

	if (len > PROTO_MESSAGE_BYTES_MAX)
		return -EBADMSG;
	if (proto_get_ptr(r, &p, len) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++)
		if (!proto_char_printable(p[i]))
			return -EBADMSG; /* a NUL or a control byte */
	memcpy(msg, p, len);
	msg[len] = 0;
	return 0;
}

void proto_message_format(char dst[PROTO_MESSAGE_BYTES_MAX + 1], const char *fmt, ...)
{
	va_list ap;

	ASSERT(dst != NULL);
	ASSERT(fmt != NULL);
	va_start(ap, fmt);
	vsnprintf(dst, PROTO_MESSAGE_BYTES_MAX + 1, fmt, ap);
	va_end(ap);
	for (char *c = dst; *c != 0; c++)
		if (!proto_char_printable((uint8_t)*c))
			*c = '?';
}

/* --------------------------------------------------------------- frame */

static int proto_frame_open(struct proto_writer *w, uint8_t *buf, size_t cap, size_t payload_bytes)
{
	ASSERT(payload_bytes <= PROTO_FRAME_PAYLOAD_MAX);
	ASSERT(buf != NULL || cap == 0);
	if (cap < PROTO_HEADER_BYTES + payload_bytes)
		return -ENOSPC;
	w->buf = buf;
	w->end = PROTO_HEADER_BYTES + payload_bytes;
	w->off = PROTO_HEADER_BYTES; /* the header is written last, over the payload's checksum */
	return 0;
}

static void proto_header_write(uint8_t *buf, uint16_t type, uint32_t payload_bytes,
			       uint64_t payload_checksum)
{
	const struct proto_type_info *t = proto_type_info(type);
	struct proto_writer w = { .buf = buf, .end = PROTO_HEADER_BYTES, .off = 0 };
	struct proto_header h;

	ASSERT(t != NULL);
	ASSERT(payload_bytes >= t->payload_min);
	ASSERT(payload_bytes <= t->payload_max);
	proto_put_u32(&w, PROTO_MAGIC);
	proto_put_u16(&w, t->handshake ? PROTO_VERSION_HANDSHAKE : PROTO_VERSION_MAX);
	proto_put_u16(&w, type);
	proto_put_u32(&w, 0); /* flags */
	proto_put_u32(&w, payload_bytes);
	proto_put_u64(&w, payload_checksum);
	ASSERT(w.off == PROTO_HEADER_CHECKED_BYTES);
	proto_put_u64(&w, delta_hash_seeded(buf, PROTO_HEADER_CHECKED_BYTES, PROTO_SEED_HEADER));
	ASSERT(w.off == PROTO_HEADER_BYTES);
	/* Read the header back, as a peer will (pair assertion). */
	ASSERT(proto_decode_header(buf, PROTO_HEADER_BYTES, &h) == 0);
	ASSERT(h.type == type);
	ASSERT(h.payload_bytes == payload_bytes);
}

/* Checksums the payload written through w and writes the header in front of it. */
static int proto_frame_close(struct proto_writer *w, uint16_t type)
{
	size_t payload_bytes = w->end - PROTO_HEADER_BYTES;

	ASSERT(w->off == w->end);
	proto_header_write(
		w->buf, type, (uint32_t)payload_bytes,
		delta_hash_seeded(w->buf + PROTO_HEADER_BYTES, payload_bytes, PROTO_SEED_PAYLOAD));
	return (int)w->end;
}

int proto_decode_header(const uint8_t *buf, size_t len, struct proto_header *h)
{
	const struct proto_type_info *t;
	struct proto_reader r;

	ASSERT(h != NULL);
	if (len < PROTO_HEADER_BYTES)
		return -EAGAIN;
	proto_reader_init(&r, buf, PROTO_HEADER_BYTES);
	if (proto_get_u32(&r, &h->magic) < 0 || proto_get_u16(&r, &h->version) < 0 ||
	    proto_get_u16(&r, &h->type) < 0 || proto_get_u32(&r, &h->flags) < 0 ||
	    proto_get_u32(&r, &h->payload_bytes) < 0 ||
	    proto_get_u64(&r, &h->payload_checksum) < 0 ||
	    proto_get_u64(&r, &h->header_checksum) < 0)
		return -EBADMSG;
	ASSERT(proto_reader_end(&r) == 0);
	if (h->magic != PROTO_MAGIC)
		return -EBADMSG;
	/* Invariant 4: nothing below is believed before the checksum matches. */
	if (h->header_checksum !=
	    delta_hash_seeded(buf, PROTO_HEADER_CHECKED_BYTES, PROTO_SEED_HEADER))
		return -EBADMSG;
	if (h->version < PROTO_VERSION_MIN || h->version > PROTO_VERSION_MAX)
		return -EBADMSG;
	t = proto_type_info(h->type);
	if (t == NULL)
		return -EBADMSG;
	if (t->handshake && h->version != PROTO_VERSION_HANDSHAKE)
		return -EBADMSG;
	if ((h->flags & ~PROTO_FRAME_FLAGS_KNOWN) != 0)
		return -EBADMSG;
	if (h->payload_bytes > PROTO_FRAME_PAYLOAD_MAX)
		return -EBADMSG;
	if (h->payload_bytes < t->payload_min || h->payload_bytes > t->payload_max)
		return -EBADMSG;
	return 0;
}

int proto_check_payload(const struct proto_header *h, const uint8_t *payload, size_t len)
{
	ASSERT(h != NULL);
	ASSERT(payload != NULL || len == 0);
	if (len != h->payload_bytes)
		return -EBADMSG;
	if (delta_hash_seeded(payload, len, PROTO_SEED_PAYLOAD) != h->payload_checksum)
		return -EBADMSG;
	return 0;
}

/* --------------------------------------------------------------- HELLO */

static bool proto_hello_valid(const struct proto_hello *m)
{
	if (m->version_min == 0 || m->version_min > m->version_max)
		return false;
	if (!proto_name_valid(m->volume_name))
		return false;
	if (m->block_bytes < PROTO_BLOCK_BYTES_MIN || m->block_bytes > PROTO_BLOCK_BYTES_MAX)
		return false;
	if ((m->block_bytes & (m->block_bytes - 1)) != 0)
		return false;
	if (m->size_bytes == 0)
		return false;
	/* ceil(size / block) <= PROTO_BLOCK_COUNT_MAX, without overflow */
	if ((m->size_bytes - 1) / m->block_bytes >= PROTO_BLOCK_COUNT_MAX)
		return false;
	if (m->history_count == 0 || m->history_count > PROTO_HISTORY_MAX)
		return false;
	for (uint32_t i = 1; i < m->history_count; i++) {
		if (m->history[i].generation <= m->history[i - 1].generation)
			return false;
		if (m->history[i].start_epoch < m->history[i - 1].start_epoch)
			return false;
	}
	if (m->history[m->history_count - 1].generation != m->generation)
		return false;
	if (m->history[m->history_count - 1].start_epoch > m->epoch)
		return false;
	return true;
}

int proto_encode_hello(const struct proto_hello *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_hello_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap,
			       PROTO_HELLO_FIXED_BYTES +
				       m->history_count * PROTO_HISTORY_ENTRY_BYTES);
	if (err < 0)
		return err;
	proto_put_u16(&w, m->version_min);
	proto_put_u16(&w, m->version_max);
	proto_put_u16(&w, (uint16_t)m->history_count);
	proto_put_zero(&w, 2);
	proto_put_u64(&w, m->capabilities);
	proto_put_bytes(&w, m->volume_id, PROTO_VOLUME_ID_BYTES);
	proto_put_name(&w, m->volume_name);
	proto_put_u64(&w, m->size_bytes);
	proto_put_u32(&w, m->block_bytes);
	proto_put_zero(&w, 4);
	proto_put_u64(&w, m->generation);
	proto_put_u64(&w, m->epoch);
	proto_put_u64(&w, m->merkle_root);
	ASSERT(w.off == PROTO_HEADER_BYTES + PROTO_HELLO_FIXED_BYTES);
	for (uint32_t i = 0; i < m->history_count; i++) {
		proto_put_u64(&w, m->history[i].generation);
		proto_put_u64(&w, m->history[i].start_epoch);
	}
	return proto_frame_close(&w, PROTO_HELLO);
}

int proto_decode_hello(const uint8_t *payload, size_t len, struct proto_hello *m)
{
	struct proto_reader r;
	uint16_t count;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u16(&r, &m->version_min) < 0 || proto_get_u16(&r, &m->version_max) < 0 ||
	    proto_get_u16(&r, &count) < 0 || proto_get_zero(&r, 2) < 0 ||
	    proto_get_u64(&r, &m->capabilities) < 0 ||
	    proto_get_bytes(&r, m->volume_id, PROTO_VOLUME_ID_BYTES) < 0 ||
	    proto_get_name(&r, m->volume_name) < 0 || proto_get_u64(&r, &m->size_bytes) < 0 ||
	    proto_get_u32(&r, &m->block_bytes) < 0 || proto_get_zero(&r, 4) < 0 ||
	    proto_get_u64(&r, &m->generation) < 0 || proto_get_u64(&r, &m->epoch) < 0 ||
	    proto_get_u64(&r, &m->merkle_root) < 0)
		return -EBADMSG;
	ASSERT(r.off == PROTO_HELLO_FIXED_BYTES);
	/* The count bounds the loop before a single entry is read. */
	if (count == 0 || count > PROTO_HISTORY_MAX)
		return -EBADMSG;
	m->history_count = count;
	for (uint32_t i = 0; i < count; i++)
		if (proto_get_u64(&r, &m->history[i].generation) < 0 ||
		    proto_get_u64(&r, &m->history[i].start_epoch) < 0)
			return -EBADMSG;
	if (proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_hello_valid(m) ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------- WELCOME */

static bool proto_welcome_valid(const struct proto_welcome *m)
{
	if (m->version_min == 0 || m->version_min > m->version_max)
		return false;
	if (m->version < m->version_min || m->version > m->version_max)
		return false;
	if (m->state > PROTO_STATE_CONSISTENT)
		return false;
	if (m->state == PROTO_STATE_EMPTY &&
	    (m->epoch != 0 || m->resume_epoch != 0 || m->resume_block != 0))
		return false;
	if (m->resume_block > PROTO_BLOCK_COUNT_MAX)
		return false;
	if (m->resume_block != 0 && m->resume_epoch == 0)
		return false;
	if (m->resume_epoch != 0 && m->resume_epoch <= m->epoch)
		return false;
	return true;
}

int proto_encode_welcome(const struct proto_welcome *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_welcome_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, PROTO_WELCOME_BYTES);
	if (err < 0)
		return err;
	proto_put_u16(&w, m->version);
	proto_put_u16(&w, m->version_min);
	proto_put_u16(&w, m->version_max);
	proto_put_u8(&w, m->state);
	proto_put_zero(&w, 1);
	proto_put_u64(&w, m->capabilities);
	proto_put_u64(&w, m->generation);
	proto_put_u64(&w, m->epoch);
	proto_put_u64(&w, m->merkle_root);
	proto_put_u64(&w, m->resume_epoch);
	proto_put_u64(&w, m->resume_block);
	proto_put_bytes(&w, m->volume_id, PROTO_VOLUME_ID_BYTES);
	return proto_frame_close(&w, PROTO_WELCOME);
}

int proto_decode_welcome(const uint8_t *payload, size_t len, struct proto_welcome *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u16(&r, &m->version) < 0 || proto_get_u16(&r, &m->version_min) < 0 ||
	    proto_get_u16(&r, &m->version_max) < 0 || proto_get_u8(&r, &m->state) < 0 ||
	    proto_get_zero(&r, 1) < 0 || proto_get_u64(&r, &m->capabilities) < 0 ||
	    proto_get_u64(&r, &m->generation) < 0 || proto_get_u64(&r, &m->epoch) < 0 ||
	    proto_get_u64(&r, &m->merkle_root) < 0 || proto_get_u64(&r, &m->resume_epoch) < 0 ||
	    proto_get_u64(&r, &m->resume_block) < 0 ||
	    proto_get_bytes(&r, m->volume_id, PROTO_VOLUME_ID_BYTES) < 0 ||
	    proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_welcome_valid(m) ? 0 : -EBADMSG;
}

/* -------------------------------------------------------------- REFUSE */

static bool proto_refuse_valid(const struct proto_refuse *m)
{
	if (m->reason == 0)
		return false;
	if (m->version_min == 0 || m->version_min > m->version_max)
		return false;
	return proto_message_valid(m->message);
}

int proto_encode_refuse(const struct proto_refuse *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	size_t n;
	int err;

	ASSERT(m != NULL);
	if (!proto_refuse_valid(m))
		return -EINVAL;
	n = strlen(m->message);
	err = proto_frame_open(&w, buf, cap, PROTO_REFUSE_FIXED_BYTES + n);
	if (err < 0)
		return err;
	proto_put_u16(&w, m->reason);
	proto_put_u16(&w, (uint16_t)n);
	proto_put_u16(&w, m->version_min);
	proto_put_u16(&w, m->version_max);
	proto_put_bytes(&w, m->message, n);
	return proto_frame_close(&w, PROTO_REFUSE);
}

int proto_decode_refuse(const uint8_t *payload, size_t len, struct proto_refuse *m)
{
	struct proto_reader r;
	uint16_t n;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u16(&r, &m->reason) < 0 || proto_get_u16(&r, &n) < 0 ||
	    proto_get_u16(&r, &m->version_min) < 0 || proto_get_u16(&r, &m->version_max) < 0 ||
	    proto_get_message(&r, n, m->message) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_refuse_valid(m) ? 0 : -EBADMSG;
}

/* --------------------------------------------------------- EPOCH_BEGIN */

static bool proto_epoch_begin_valid(const struct proto_epoch_begin *m)
{
	bool resumed = (m->flags & PROTO_EPOCH_RESUMED) != 0;

	if (m->epoch == 0 || m->base_epoch >= m->epoch)
		return false;
	if ((m->flags & ~PROTO_EPOCH_FLAGS_KNOWN) != 0)
		return false;
	if ((m->flags & PROTO_EPOCH_INITIAL_SYNC) != 0 && m->base_epoch != 0)
		return false;
	if (m->block_count > PROTO_BLOCK_COUNT_MAX || m->resume_block > PROTO_BLOCK_COUNT_MAX)
		return false;
	if (resumed != (m->resume_block != 0))
		return false;
	return true;
}

int proto_encode_epoch_begin(const struct proto_epoch_begin *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_epoch_begin_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap,
			       m->capture_unix_ms ? PROTO_EPOCH_BEGIN_BYTES
						  : PROTO_EPOCH_BEGIN_V1_BYTES);
	if (err < 0)
		return err;
	proto_put_u64(&w, m->epoch);
	proto_put_u64(&w, m->base_epoch);
	proto_put_u64(&w, m->generation);
	proto_put_u32(&w, m->flags);
	proto_put_zero(&w, 4);
	proto_put_u64(&w, m->block_count);
	proto_put_u64(&w, m->resume_block);
	if (m->capture_unix_ms)
		proto_put_u64(&w, m->capture_unix_ms);
	return proto_frame_close(&w, PROTO_EPOCH_BEGIN);
}

int proto_decode_epoch_begin(const uint8_t *payload, size_t len, struct proto_epoch_begin *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->epoch) < 0 || proto_get_u64(&r, &m->base_epoch) < 0 ||
	    proto_get_u64(&r, &m->generation) < 0 || proto_get_u32(&r, &m->flags) < 0 ||
	    proto_get_zero(&r, 4) < 0 || proto_get_u64(&r, &m->block_count) < 0 ||
	    proto_get_u64(&r, &m->resume_block) < 0 ||
	    (len == PROTO_EPOCH_BEGIN_BYTES && proto_get_u64(&r, &m->capture_unix_ms) < 0) ||
	    proto_reader_end(&r) < 0)
		return -EBADMSG;
	/* Canonical: a capture time of 0 is sent as the 48-byte form. */
	if (len == PROTO_EPOCH_BEGIN_BYTES && m->capture_unix_ms == 0)
		return -EBADMSG;
	return proto_epoch_begin_valid(m) ? 0 : -EBADMSG;
}

/* ---------------------------------------------------------------- DATA */

static bool proto_codec_sizes_valid(uint16_t codec, uint32_t data_bytes, uint32_t plaintext_bytes)
{
	switch (codec) {
	case PROTO_CODEC_RAW:
		return data_bytes == plaintext_bytes;
	case PROTO_CODEC_LZ4:
		/* codec keeps lz4 only when it saves bytes: it never expands */
		return data_bytes >= 1 && data_bytes < plaintext_bytes;
	default:
		return false;
	}
}

/* The fields of a run, not its pointers (encode checks those separately). */
static bool proto_data_valid(const struct proto_data *m)
{
	if (m->block_count == 0 || m->block_count > PROTO_DATA_BLOCKS_MAX)
		return false;
	if (m->first_block > PROTO_BLOCK_COUNT_MAX - m->block_count)
		return false;
	if (m->plaintext_bytes == 0 || m->plaintext_bytes > PROTO_DATA_PLAINTEXT_MAX)
		return false;
	/* Every block but the last is whole, and no block is below the minimum size. */
	if (m->plaintext_bytes <= (uint64_t)(m->block_count - 1) * PROTO_BLOCK_BYTES_MIN)
		return false;
	return proto_codec_sizes_valid(m->codec, m->data_bytes, m->plaintext_bytes);
}

static size_t proto_data_payload_bytes(const struct proto_data *m)
{
	return PROTO_DATA_FIXED_BYTES + (size_t)m->block_count * 8u + m->data_bytes;
}

/* Writes the fixed part and the hashes (everything before the data). */
static void proto_data_put_prefix(struct proto_writer *w, const struct proto_data *m)
{
	proto_put_u64(w, m->first_block);
	proto_put_u32(w, m->block_count);
	proto_put_u16(w, m->codec);
	proto_put_zero(w, 2);
	proto_put_u32(w, m->plaintext_bytes);
	proto_put_u32(w, m->data_bytes);
	ASSERT(w->off == PROTO_HEADER_BYTES + PROTO_DATA_FIXED_BYTES);
	for (uint32_t i = 0; i < m->block_count; i++)
		proto_put_u64(w, m->hashes[i]);
}

static bool proto_data_encodable(const struct proto_data *m)
{
	return proto_data_valid(m) && m->hashes != NULL && m->data != NULL;
}

int proto_encode_data(const struct proto_data *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_data_encodable(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, proto_data_payload_bytes(m));
	if (err < 0)
		return err;
	proto_data_put_prefix(&w, m);
	proto_put_bytes(&w, m->data, m->data_bytes);
	return proto_frame_close(&w, PROTO_DATA);
}

/*
 * Zero-copy encoders write the header and the payload up to the data, and the
 * caller sends the data from where it lies. The writer ends where the data
 * would start; the payload checksum covers the prefix and the data in place.
 */
static int proto_prefix_open(struct proto_writer *w, uint8_t *buf, size_t cap, size_t payload_bytes,
			     uint32_t data_bytes)
{
	size_t prefix_bytes = PROTO_HEADER_BYTES + payload_bytes - data_bytes;

	ASSERT(buf != NULL || cap == 0);
	if (cap < prefix_bytes)
		return -ENOSPC;
	w->buf = buf;
	w->end = prefix_bytes;
	w->off = PROTO_HEADER_BYTES;
	return 0;
}

static int proto_prefix_close(struct proto_writer *w, uint16_t type, size_t payload_bytes,
			      const uint8_t *data, uint32_t data_bytes)
{
	struct delta_stream s;

	ASSERT(w->off == w->end);
	delta_stream_init(&s, PROTO_SEED_PAYLOAD);
	delta_stream_update(&s, w->buf + PROTO_HEADER_BYTES, w->end - PROTO_HEADER_BYTES);
	delta_stream_update(&s, data, data_bytes);
	proto_header_write(w->buf, type, (uint32_t)payload_bytes, delta_stream_digest(&s));
	return (int)w->end;
}

int proto_encode_data_prefix(const struct proto_data *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	size_t payload_bytes;

	ASSERT(m != NULL);
	if (!proto_data_encodable(m))
		return -EINVAL;
	payload_bytes = proto_data_payload_bytes(m);
	if (proto_prefix_open(&w, buf, cap, payload_bytes, m->data_bytes))
		return -ENOSPC;
	proto_data_put_prefix(&w, m);
	return proto_prefix_close(&w, PROTO_DATA, payload_bytes, m->data, m->data_bytes);
}

int proto_decode_data(const uint8_t *payload, size_t len, struct proto_data *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->first_block) < 0 || proto_get_u32(&r, &m->block_count) < 0 ||
	    proto_get_u16(&r, &m->codec) < 0 || proto_get_zero(&r, 2) < 0 ||
	    proto_get_u32(&r, &m->plaintext_bytes) < 0 || proto_get_u32(&r, &m->data_bytes) < 0)
		return -EBADMSG;
	ASSERT(r.off == PROTO_DATA_FIXED_BYTES);
	/* Bound the run before its length is used to find the data (invariant 5). */
	if (!proto_data_valid(m))
		return -EBADMSG;
	if (len != proto_data_payload_bytes(m))
		return -EBADMSG;
	if (proto_get_ptr(&r, &m->hashes_le, (size_t)m->block_count * 8u) < 0 ||
	    proto_get_ptr(&r, &m->data, m->data_bytes) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return 0;
}

uint64_t proto_data_hash(const struct proto_data *m, uint32_t i)
{
	uint64_t le;

	ASSERT(m != NULL);
	ASSERT(i < m->block_count);
	if (m->hashes != NULL)
		return m->hashes[i];
	ASSERT(m->hashes_le != NULL);
	memcpy(&le, m->hashes_le + (size_t)i * 8u, sizeof(le));
	return le64toh(le);
}

/* --------------------------------------------------------------- PAGES */

static bool proto_pages_valid(const struct proto_pages *m)
{
	if (m->page_count == 0 || m->page_count > PROTO_PAGES_MAX)
		return false;
	if (m->block >= PROTO_BLOCK_COUNT_MAX)
		return false;
	/* Every page but the last is whole; the last has at least one sector. */
	if (m->plaintext_bytes > m->page_count * PROTO_PAGE_BYTES ||
	    m->plaintext_bytes < (m->page_count - 1) * PROTO_PAGE_BYTES + PROTO_BLOCK_BYTES_MIN)
		return false;
	return proto_codec_sizes_valid(m->codec, m->data_bytes, m->plaintext_bytes);
}

static size_t proto_pages_payload_bytes(const struct proto_pages *m)
{
	return PROTO_PAGES_FIXED_BYTES + (size_t)m->page_count * PROTO_PAGE_ENTRY_BYTES +
	       m->data_bytes;
}

static bool proto_pages_encodable(const struct proto_pages *m)
{
	if (!proto_pages_valid(m) || !m->page_index || !m->page_hashes || !m->data)
		return false;
	for (uint32_t i = 0; i < m->page_count; i++)
		if (m->page_index[i] >= PROTO_PAGES_MAX ||
		    (i && m->page_index[i] <= m->page_index[i - 1]))
			return false;
	return true;
}

static void proto_pages_put_prefix(struct proto_writer *w, const struct proto_pages *m)
{
	proto_put_u64(w, m->block);
	proto_put_u64(w, m->block_hash);
	proto_put_u16(w, m->codec);
	proto_put_zero(w, 2);
	proto_put_u32(w, m->page_count);
	proto_put_u32(w, m->plaintext_bytes);
	proto_put_u32(w, m->data_bytes);
	ASSERT(w->off == PROTO_HEADER_BYTES + PROTO_PAGES_FIXED_BYTES);
	for (uint32_t i = 0; i < m->page_count; i++) {
		proto_put_u32(w, m->page_index[i]);
		proto_put_zero(w, 4);
		proto_put_u64(w, m->page_hashes[i]);
	}
}

int proto_encode_pages(const struct proto_pages *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_pages_encodable(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, proto_pages_payload_bytes(m));
	if (err < 0)
		return err;
	proto_pages_put_prefix(&w, m);
	proto_put_bytes(&w, m->data, m->data_bytes);
	return proto_frame_close(&w, PROTO_PAGES);
}

int proto_encode_pages_prefix(const struct proto_pages *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	size_t payload_bytes;

	ASSERT(m != NULL);
	if (!proto_pages_encodable(m))
		return -EINVAL;
	payload_bytes = proto_pages_payload_bytes(m);
	if (proto_prefix_open(&w, buf, cap, payload_bytes, m->data_bytes))
		return -ENOSPC;
	proto_pages_put_prefix(&w, m);
	return proto_prefix_close(&w, PROTO_PAGES, payload_bytes, m->data, m->data_bytes);
}

int proto_decode_pages(const uint8_t *payload, size_t len, struct proto_pages *m)
{
	struct proto_reader r;
	uint32_t prev = 0;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->block) < 0 || proto_get_u64(&r, &m->block_hash) < 0 ||
	    proto_get_u16(&r, &m->codec) < 0 || proto_get_zero(&r, 2) < 0 ||
	    proto_get_u32(&r, &m->page_count) < 0 || proto_get_u32(&r, &m->plaintext_bytes) < 0 ||
	    proto_get_u32(&r, &m->data_bytes) < 0)
		return -EBADMSG;
	ASSERT(r.off == PROTO_PAGES_FIXED_BYTES);
	if (!proto_pages_valid(m) || len != proto_pages_payload_bytes(m))
		return -EBADMSG;
	if (proto_get_ptr(&r, &m->entries_le, (size_t)m->page_count * PROTO_PAGE_ENTRY_BYTES) < 0 ||
	    proto_get_ptr(&r, &m->data, m->data_bytes) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	/* Indexes ascending and in range, reserved words zero: checked here, so a
	 * consumer can walk them without checks of its own (invariant 6). */
	for (uint32_t i = 0; i < m->page_count; i++) {
		uint32_t idx, zero;

		memcpy(&idx, m->entries_le + (size_t)i * PROTO_PAGE_ENTRY_BYTES, 4);
		memcpy(&zero, m->entries_le + (size_t)i * PROTO_PAGE_ENTRY_BYTES + 4, 4);
		idx = le32toh(idx);
		if (zero || idx >= PROTO_PAGES_MAX || (i && idx <= prev))
			return -EBADMSG;
		prev = idx;
	}
	return 0;
}

uint32_t proto_pages_index(const struct proto_pages *m, uint32_t i)
{
	uint32_t le;

	ASSERT(m != NULL);
	ASSERT(i < m->page_count);
	if (m->page_index)
		return m->page_index[i];
	memcpy(&le, m->entries_le + (size_t)i * PROTO_PAGE_ENTRY_BYTES, sizeof(le));
	return le32toh(le);
}

uint64_t proto_pages_hash(const struct proto_pages *m, uint32_t i)
{
	uint64_t le;

	ASSERT(m != NULL);
	ASSERT(i < m->page_count);
	if (m->page_hashes)
		return m->page_hashes[i];
	memcpy(&le, m->entries_le + (size_t)i * PROTO_PAGE_ENTRY_BYTES + 8, sizeof(le));
	return le64toh(le);
}

/* ---------------------------------------------------------------- ZERO */

static bool proto_zero_valid(const struct proto_zero *m)
{
	if (m->block_count == 0 || m->block_count > PROTO_ZERO_BLOCKS_MAX)
		return false;
	return m->first_block <= PROTO_BLOCK_COUNT_MAX - m->block_count;
}

int proto_encode_zero(const struct proto_zero *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_zero_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, PROTO_ZERO_BYTES);
	if (err < 0)
		return err;
	proto_put_u64(&w, m->first_block);
	proto_put_u32(&w, m->block_count);
	proto_put_zero(&w, 4);
	return proto_frame_close(&w, PROTO_ZERO);
}

int proto_decode_zero(const uint8_t *payload, size_t len, struct proto_zero *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->first_block) < 0 || proto_get_u32(&r, &m->block_count) < 0 ||
	    proto_get_zero(&r, 4) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_zero_valid(m) ? 0 : -EBADMSG;
}

/* --------------------------------------------------------------- ROUND */

static bool proto_round_valid(const struct proto_round *m)
{
	bool final = (m->flags & PROTO_ROUND_FINAL) != 0;

	/* Round 1 starts implicitly after EPOCH_BEGIN: no frame names it. */
	if (m->round < 2 || m->round > PROTO_ROUNDS_MAX)
		return false;
	if ((m->flags & ~PROTO_ROUND_FLAGS_KNOWN) != 0)
		return false;
	/* How the source was captured: named by a final round only. */
	if (PROTO_ROUND_CAPTURE(m->flags) &&
	    (!final || PROTO_ROUND_CAPTURE(m->flags) < PROTO_CAPTURE_FREEZE ||
	     PROTO_ROUND_CAPTURE(m->flags) > PROTO_CAPTURE_SNAPSHOT))
		return false;
	/* The capture instant belongs to the final round alone (invariant 2). */
	return final == (m->capture_unix_ms != 0);
}

int proto_encode_round(const struct proto_round *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_round_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, PROTO_ROUND_BYTES);
	if (err < 0)
		return err;
	proto_put_u32(&w, m->round);
	proto_put_u32(&w, m->flags);
	proto_put_u64(&w, m->capture_unix_ms);
	return proto_frame_close(&w, PROTO_ROUND);
}

int proto_decode_round(const uint8_t *payload, size_t len, struct proto_round *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u32(&r, &m->round) < 0 || proto_get_u32(&r, &m->flags) < 0 ||
	    proto_get_u64(&r, &m->capture_unix_ms) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_round_valid(m) ? 0 : -EBADMSG;
}

/* ----------------------------------------------------------- EPOCH_END */

static bool proto_epoch_end_valid(const struct proto_epoch_end *m)
{
	return m->epoch != 0 && m->block_count <= PROTO_BLOCK_COUNT_MAX;
}

int proto_encode_epoch_end(const struct proto_epoch_end *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_epoch_end_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, PROTO_EPOCH_END_BYTES);
	if (err < 0)
		return err;
	proto_put_u64(&w, m->epoch);
	proto_put_u64(&w, m->block_count);
	proto_put_u64(&w, m->merkle_root);
	return proto_frame_close(&w, PROTO_EPOCH_END);
}

int proto_decode_epoch_end(const uint8_t *payload, size_t len, struct proto_epoch_end *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->epoch) < 0 || proto_get_u64(&r, &m->block_count) < 0 ||
	    proto_get_u64(&r, &m->merkle_root) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_epoch_end_valid(m) ? 0 : -EBADMSG;
}

/* ----------------------------------------------------------- EPOCH_ACK */

static bool proto_epoch_ack_valid(const struct proto_epoch_ack *m)
{
	return m->epoch != 0;
}

int proto_encode_epoch_ack(const struct proto_epoch_ack *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	ASSERT(m != NULL);
	if (!proto_epoch_ack_valid(m))
		return -EINVAL;
	err = proto_frame_open(&w, buf, cap, PROTO_EPOCH_ACK_BYTES);
	if (err < 0)
		return err;
	proto_put_u64(&w, m->epoch);
	proto_put_u64(&w, m->generation);
	proto_put_u64(&w, m->merkle_root);
	return proto_frame_close(&w, PROTO_EPOCH_ACK);
}

int proto_decode_epoch_ack(const uint8_t *payload, size_t len, struct proto_epoch_ack *m)
{
	struct proto_reader r;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u64(&r, &m->epoch) < 0 || proto_get_u64(&r, &m->generation) < 0 ||
	    proto_get_u64(&r, &m->merkle_root) < 0 || proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_epoch_ack_valid(m) ? 0 : -EBADMSG;
}

/* ----------------------------------------------------------- KEEPALIVE */

int proto_encode_keepalive(uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	int err;

	err = proto_frame_open(&w, buf, cap, 0);
	if (err < 0)
		return err;
	return proto_frame_close(&w, PROTO_KEEPALIVE);
}

int proto_decode_keepalive(const uint8_t *payload, size_t len)
{
	(void)payload;
	return len == 0 ? 0 : -EBADMSG;
}

/* --------------------------------------------------------------- ERROR */

static bool proto_error_valid(const struct proto_error *m)
{
	return m->code != 0 && proto_message_valid(m->message);
}

int proto_encode_error(const struct proto_error *m, uint8_t *buf, size_t cap)
{
	struct proto_writer w;
	size_t n;
	int err;

	ASSERT(m != NULL);
	if (!proto_error_valid(m))
		return -EINVAL;
	n = strlen(m->message);
	err = proto_frame_open(&w, buf, cap, PROTO_ERROR_FIXED_BYTES + n);
	if (err < 0)
		return err;
	proto_put_u16(&w, m->code);
	proto_put_u16(&w, (uint16_t)n);
	proto_put_zero(&w, 4);
	proto_put_bytes(&w, m->message, n);
	return proto_frame_close(&w, PROTO_ERROR);
}

int proto_decode_error(const uint8_t *payload, size_t len, struct proto_error *m)
{
	struct proto_reader r;
	uint16_t n;

	ASSERT(m != NULL);
	memset(m, 0, sizeof(*m));
	proto_reader_init(&r, payload, len);
	if (proto_get_u16(&r, &m->code) < 0 || proto_get_u16(&r, &n) < 0 ||
	    proto_get_zero(&r, 4) < 0 || proto_get_message(&r, n, m->message) < 0 ||
	    proto_reader_end(&r) < 0)
		return -EBADMSG;
	return proto_error_valid(m) ? 0 : -EBADMSG;
}

/* --------------------------------------------------------- whole frame */

int proto_decode(const uint8_t *buf, size_t len, struct proto_msg *msg)
{
	const uint8_t *payload;
	size_t frame_bytes;
	uint32_t n;
	int err;

	ASSERT(msg != NULL);
	err = proto_decode_header(buf, len, &msg->header);
	if (err < 0)
		return err;
	n = msg->header.payload_bytes;
	frame_bytes = PROTO_HEADER_BYTES + (size_t)n;
	if (len < frame_bytes)
		return -EAGAIN;
	payload = buf + PROTO_HEADER_BYTES;
	if (proto_check_payload(&msg->header, payload, n) < 0)
		return -EBADMSG;
	switch (msg->header.type) {
	case PROTO_HELLO:
		err = proto_decode_hello(payload, n, &msg->u.hello);
		break;
	case PROTO_WELCOME:
		err = proto_decode_welcome(payload, n, &msg->u.welcome);
		break;
	case PROTO_REFUSE:
		err = proto_decode_refuse(payload, n, &msg->u.refuse);
		break;
	case PROTO_EPOCH_BEGIN:
		err = proto_decode_epoch_begin(payload, n, &msg->u.epoch_begin);
		break;
	case PROTO_DATA:
		err = proto_decode_data(payload, n, &msg->u.data);
		break;
	case PROTO_ZERO:
		err = proto_decode_zero(payload, n, &msg->u.zero);
		break;
	case PROTO_EPOCH_END:
		err = proto_decode_epoch_end(payload, n, &msg->u.epoch_end);
		break;
	case PROTO_EPOCH_ACK:
		err = proto_decode_epoch_ack(payload, n, &msg->u.epoch_ack);
		break;
	case PROTO_KEEPALIVE:
		err = proto_decode_keepalive(payload, n);
		break;
	case PROTO_ERROR:
		err = proto_decode_error(payload, n, &msg->u.error);
		break;
	case PROTO_PAGES:
		err = proto_decode_pages(payload, n, &msg->u.pages);
		break;
	case PROTO_ROUND:
		err = proto_decode_round(payload, n, &msg->u.round);
		break;
	default:
		/* proto_decode_header accepted only known types */
		ASSERT(0);
		return -EBADMSG;
	}
	if (err < 0)
		return err;
	return (int)frame_bytes;
}
