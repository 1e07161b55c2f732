// SPDX-License-Identifier: Apache-2.0
/*
 * recv_check — the receiver's checks of a sender's frames (see recv_check.h).
 * Pure but for decompressing into the caller's buffer: no I/O, no logging, no
 * frames sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "delta.h"
#include "pvrepl_assert.h"
#include "recv_check.h"
#include "scan.h"

int recv_verdict_set(struct recv_verdict *vd, enum recv_verdict_kind kind, uint16_t code,
		     const char *fmt, ...)
{
	va_list ap;

	ASSERT(vd != NULL);
	ASSERT(kind != RECV_VERDICT_NONE);
	vd->kind = kind;
	vd->code = code;
	va_start(ap, fmt);
	vsnprintf(vd->message, sizeof(vd->message), fmt, ap);
	va_end(ap);
	return kind == RECV_VERDICT_REFUSE ? -EACCES : -EPROTO;
}

static void hex_id(const uint8_t id[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

int recv_check_hello(const struct standby *v, const struct proto_hello *h, struct recv_verdict *vd)
{
	char a[33], b[33];

	ASSERT(v != NULL);
	ASSERT(h != NULL);
	if (!proto_version_choose(h->version_min, h->version_max, PROTO_VERSION_MIN,
				  PROTO_VERSION_MAX))
		return recv_verdict_set(
			vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_VERSION,
			"no common protocol version: sender speaks %u..%u, receiver %u..%u",
			h->version_min, h->version_max, PROTO_VERSION_MIN, PROTO_VERSION_MAX);
	if (v->failed)
		return recv_verdict_set(
			vd, RECV_VERDICT_ERROR, PROTO_ERR_IO,
			"volume %s is not served: %s; restart the receiver once that is fixed",
			v->cfg->name, v->fail_msg);
	if (v->have_map && memcmp(h->volume_id, v->map.volume_id, 16)) {
		hex_id(h->volume_id, a);
		hex_id(v->map.volume_id, b);
		return recv_verdict_set(
			vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_VOLUME_ID,
			"volume %s here has id %s but the sender's has id %s; point the sender at the right receiver or reinitialise the standby",
			v->cfg->name, b, a);
	}
	if (h->size_bytes != v->dev.size_bytes)
		return recv_verdict_set(
			vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_SIZE,
			"volume %s: the source is %" PRIu64 " bytes but the standby %s is %" PRIu64
			" bytes; resize the standby to match",
			v->cfg->name, h->size_bytes, v->cfg->device, v->dev.size_bytes);
	if (v->have_map && h->block_bytes != v->map.block_bytes)
		return recv_verdict_set(
			vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_BLOCK_SIZE,
			"volume %s: the sender uses %u-byte blocks, the standby's map %u-byte blocks",
			v->cfg->name, h->block_bytes, v->map.block_bytes);
	if (h->block_bytes < SCAN_BLOCK_BYTES_MIN || h->block_bytes > SCAN_BLOCK_BYTES_MAX)
		return recv_verdict_set(vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_BLOCK_SIZE,
					"volume %s: block size %u is outside %u..%u", v->cfg->name,
					h->block_bytes, SCAN_BLOCK_BYTES_MIN, SCAN_BLOCK_BYTES_MAX);
	if (v->have_map && v->map.generation > h->generation)
		return recv_verdict_set(
			vd, RECV_VERDICT_REFUSE, PROTO_REFUSE_GENERATION,
			"volume %s: the standby is at generation %" PRIu64
			", newer than the sender's %" PRIu64
			"; the sender is the stale side: demote it or reverse the direction",
			v->cfg->name, v->map.generation, h->generation);
	return 0;
}

int recv_check_begin(const struct standby *v, const struct proto_hello *h,
		     const struct proto_msg *msg, struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(msg != NULL);
	if (msg->header.type != PROTO_EPOCH_BEGIN)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: expected EPOCH_BEGIN, got %s", v->cfg->name,
					proto_type_name(msg->header.type));
	if (msg->u.epoch_begin.generation != h->generation)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_EPOCH,
					"volume %s: EPOCH_BEGIN generation %" PRIu64
					" differs from HELLO's %" PRIu64,
					v->cfg->name, msg->u.epoch_begin.generation, h->generation);
	return 0;
}

int recv_check_delta(const struct standby *v, const struct proto_epoch_begin *eb,
		     struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(eb != NULL);
	if (v->vs.kind != VSTATE_CONSISTENT || !v->have_map || eb->base_epoch != v->map.epoch ||
	    eb->generation != v->map.generation)
		return recv_verdict_set(
			vd, RECV_VERDICT_ERROR, PROTO_ERR_EPOCH,
			"volume %s: epoch %" PRIu64 " is a delta against epoch %" PRIu64
			" but the standby is %s at epoch %" PRIu64 "; the sender must resync",
			v->cfg->name, eb->epoch, eb->base_epoch, vstate_kind_name(v->vs.kind),
			v->have_map ? v->map.epoch : 0);
	return 0;
}

int recv_check_resume(const struct standby *v, const struct proto_hello *h,
		      const struct proto_epoch_begin *eb, struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(h != NULL);
	ASSERT(eb != NULL);
	/* After a restart the map is the last committed one, or none (a first
	 * sync): the resumed sync rebuilds its own from the standby. It must be
	 * this side's sync, of this volume, and come after what is committed
	 * (epochs only move forward). */
	if (v->vs.kind != VSTATE_SYNCING || eb->epoch != v->vs.sync_epoch ||
	    eb->resume_block > v->vs.sync_cursor ||
	    memcmp(v->vs.volume_id, h->volume_id, sizeof(h->volume_id)) ||
	    (v->have_map && eb->epoch <= v->map.epoch))
		return recv_verdict_set(
			vd, RECV_VERDICT_ERROR, PROTO_ERR_EPOCH,
			"volume %s: cannot resume epoch %" PRIu64 " at block %" PRIu64
			" (this side: %s epoch %" PRIu64 " cursor %" PRIu64 ")",
			v->cfg->name, eb->epoch, eb->resume_block, vstate_kind_name(v->vs.kind),
			v->vs.sync_epoch, v->vs.sync_cursor);
	return 0;
}

int recv_check_run(const struct standby *v, struct recv_runs *runs, uint64_t first, uint32_t count,
		   struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(runs != NULL);
	ASSERT(v->have_map);
	if (count == 0 || first >= v->map.block_count || count > v->map.block_count - first)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: run %" PRIu64
					"+%u is outside the volume's %" PRIu64 " blocks",
					v->cfg->name, first, count, v->map.block_count);
	if (first < runs->next_block)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: run at block %" PRIu64
					" is out of order (expected >= %" PRIu64 ")",
					v->cfg->name, first, runs->next_block);
	runs->next_block = first + count;
	runs->blocks += count;
	return 0;
}

int recv_check_data(const struct standby *v, const struct proto_data *d, void *dst,
		    uint64_t *hashes, struct recv_verdict *vd)
{
	uint64_t expect = 0;
	uint32_t off = 0;

	ASSERT(v != NULL);
	ASSERT(d != NULL);
	ASSERT(dst != NULL);
	ASSERT(hashes != NULL);
	/* recv_check_run() came first: the run is inside the volume. */
	ASSERT(d->first_block < v->map.block_count);
	ASSERT(d->block_count <= v->map.block_count - d->first_block);
	ASSERT(d->block_count <= PROTO_DATA_BLOCKS_MAX);
	for (uint32_t i = 0; i < d->block_count; i++)
		expect += standby_block_len(v, d->first_block + i);
	if (expect != d->plaintext_bytes || expect > PROTO_DATA_PLAINTEXT_MAX)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: DATA at block %" PRIu64
					" carries %u plaintext bytes, the geometry says %" PRIu64,
					v->cfg->name, d->first_block, d->plaintext_bytes, expect);
	if (codec_decompress(d->codec == PROTO_CODEC_LZ4 ? CODEC_LZ4 : CODEC_RAW, d->data,
			     d->data_bytes, dst, d->plaintext_bytes))
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
					"volume %s: DATA at block %" PRIu64 " does not decompress",
					v->cfg->name, d->first_block);
	for (uint32_t i = 0; i < d->block_count; i++) {
		uint32_t len = standby_block_len(v, d->first_block + i);
		uint64_t want = proto_data_hash(d, i);

		if (delta_hash((const char *)dst + off, len) != want)
			return recv_verdict_set(
				vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
				"volume %s: block %" PRIu64
				" does not match the sender's xxh3; epoch aborted, nothing applied",
				v->cfg->name, d->first_block + i);
		hashes[i] = want;
		off += len;
	}
	return (int)d->plaintext_bytes;
}

int recv_check_pages(const struct standby *v, const struct proto_pages *pg, void *dst,
		     struct recv_verdict *vd)
{
	uint32_t block_len, pages, off = 0;
	uint64_t expect = 0;

	ASSERT(v != NULL);
	ASSERT(pg != NULL);
	ASSERT(dst != NULL);
	/* recv_check_run() came first: the block is inside the volume. */
	ASSERT(pg->block < v->map.block_count);
	block_len = standby_block_len(v, pg->block);
	pages = (block_len + PROTO_PAGE_BYTES - 1) / PROTO_PAGE_BYTES;
	for (uint32_t i = 0; i < pg->page_count; i++) {
		uint32_t idx = proto_pages_index(pg, i), len;

		if (idx >= pages || v->map.block_bytes < PROTO_PAGE_BYTES)
			return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
						"volume %s: PAGES for block %" PRIu64
						" names page %u of a %u-byte block",
						v->cfg->name, pg->block, idx, block_len);
		len = block_len - idx * PROTO_PAGE_BYTES;
		expect += len < PROTO_PAGE_BYTES ? len : PROTO_PAGE_BYTES;
	}
	if (expect != pg->plaintext_bytes)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: PAGES for block %" PRIu64
					" carries %u plaintext bytes, the geometry says %" PRIu64,
					v->cfg->name, pg->block, pg->plaintext_bytes, expect);
	if (codec_decompress(pg->codec == PROTO_CODEC_LZ4 ? CODEC_LZ4 : CODEC_RAW, pg->data,
			     pg->data_bytes, dst, pg->plaintext_bytes))
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
					"volume %s: PAGES for block %" PRIu64
					" does not decompress",
					v->cfg->name, pg->block);
	for (uint32_t i = 0; i < pg->page_count; i++) {
		uint32_t len = block_len - proto_pages_index(pg, i) * PROTO_PAGE_BYTES;

		if (len > PROTO_PAGE_BYTES)
			len = PROTO_PAGE_BYTES;
		if (delta_hash((const char *)dst + off, len) != proto_pages_hash(pg, i))
			return recv_verdict_set(
				vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
				"volume %s: page %u of block %" PRIu64
				" does not match the sender's xxh3; epoch aborted, nothing applied",
				v->cfg->name, proto_pages_index(pg, i), pg->block);
		off += len;
	}
	return 0;
}

int recv_check_end(const struct standby *v, const struct proto_epoch_begin *eb,
		   const struct recv_runs *runs, const struct proto_epoch_end *ee, uint64_t *root,
		   struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(eb != NULL);
	ASSERT(runs != NULL);
	ASSERT(ee != NULL);
	ASSERT(root != NULL);
	if ((eb->flags & PROTO_EPOCH_CRASH_CONSISTENT) && !runs->final)
		return recv_verdict_set(
			vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
			"volume %s: epoch %" PRIu64
			" says it is one instant of the source but ended without its final (captured) round",
			v->cfg->name, eb->epoch);
	if (ee->epoch != eb->epoch || ee->block_count != runs->blocks)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_EPOCH,
					"volume %s: EPOCH_END for epoch %" PRIu64 " with %" PRIu64
					" blocks, but epoch %" PRIu64 " carried %" PRIu64,
					v->cfg->name, ee->epoch, ee->block_count, eb->epoch,
					runs->blocks);
	/* The tree covers the whole volume: built once per epoch, and the ack
	 * reuses the root. */
	*root = map_merkle_root(&v->map);
	if (*root != ee->merkle_root)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_VERIFY,
					"volume %s: after epoch %" PRIu64
					" the standby's Merkle root %016" PRIx64
					" differs from the source's %016" PRIx64,
					v->cfg->name, eb->epoch, *root, ee->merkle_root);
	return 0;
}

int recv_check_round(const struct standby *v, const struct proto_epoch_begin *eb,
		     struct recv_runs *runs, const struct proto_round *r, struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(eb != NULL);
	ASSERT(runs != NULL);
	ASSERT(r != NULL);
	if (!(eb->flags & PROTO_EPOCH_CRASH_CONSISTENT) || (eb->flags & PROTO_EPOCH_RESUMED))
		return recv_verdict_set(
			vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
			"volume %s: ROUND in epoch %" PRIu64
			", which is not an epoch captured at one instant (or is a resumed sync)",
			v->cfg->name, eb->epoch);
	if (runs->final || r->round != runs->round + 2)
		return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
					"volume %s: ROUND %u in epoch %" PRIu64 " after round %u%s",
					v->cfg->name, r->round, eb->epoch, runs->round + 1,
					runs->final ? ", the final one" : "");
	runs->round++;
	runs->final = r->flags & PROTO_ROUND_FINAL;
	runs->next_block = 0;
	return 0;
}

int recv_check_unexpected(const struct standby *v, const struct proto_epoch_begin *eb,
			  uint16_t type, struct recv_verdict *vd)
{
	ASSERT(v != NULL);
	ASSERT(eb != NULL);
	return recv_verdict_set(vd, RECV_VERDICT_ERROR, PROTO_ERR_PROTOCOL,
				"volume %s: unexpected %s during epoch %" PRIu64, v->cfg->name,
				proto_type_name(type), eb->epoch);
}
