/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pending — the epoch a sender sent but has not seen acknowledged. Before it asks
 * for the ack (EPOCH_END), the sender records the hashes the epoch changes in
 * `map.pending` (durably). If the connection dies after the receiver committed
 * but before the ack arrived, the next attempt finds the receiver one epoch
 * ahead, replays the pending hashes onto the confirmed map, and, if the Merkle
 * roots then agree, records the epoch as confirmed instead of resyncing the
 * whole volume. Written once per epoch, proportional to the blocks it changed
 * (a full sync writes every hash).
 */
#ifndef PVREPL_PENDING_H
#define PVREPL_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"

#define PENDING_FILE	 "map.pending"
#define PENDING_TMP_FILE "map.pending.tmp"

/* Records m's dirty hashes (all of them if m->empty) as epoch's pending change. */
int pending_save(const struct map *m, const char *state_dir, uint64_t epoch, char *err,
		 size_t err_len);
/*
 * If state_dir holds a pending change for epoch on top of m's confirmed epoch and
 * volume, applies it to m in memory (map_set) and returns 0; -ENOENT when there
 * is none that fits; -EBADMSG when the file is damaged (m untouched).
 */
int pending_apply(struct map *m, const char *state_dir, uint64_t epoch, char *err, size_t err_len);
/* Forgets the pending change (after the ack, or when it no longer applies). */
void pending_drop(const char *state_dir);

#endif
