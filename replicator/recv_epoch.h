/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recv_epoch — the standby side's epoch module: one epoch from EPOCH_BEGIN to
 * EPOCH_ACK on a connection the daemon (receiver.c) accepted and handed over.
 * One frame loop serves both kinds of epoch through a sink per mode:
 *
 *   EPOCH_BEGIN ─► sink.begin ─► loop: DATA ─► recv_check_run, recv_check_data
 *                                       │       ─► sink.data ─► map_set
 *                                       ├ ZERO ─► recv_check_run ─► sink.zero ─► map_set
 *                                       └ EPOCH_END ─► recv_check_end ─► sink.durable
 *                                           ─► commit tail (standby_commit) and
 *                                              EPOCH_ACK, in the sink's order
 *
 *   sync sink (the volume says `syncing`): writes the standby directly through
 *     its queue, persists a resume cursor every PROTO_CURSOR_SYNC_BYTES; durable
 *     = every write reaped and the device flushed; then the map and state are
 *     committed, then the ack.
 *   journal sink (a delta on a consistent volume): appends to the journal;
 *     durable = journal_commit; then the ack, then the apply, then the map and
 *     state.
 *
 * Every verdict of recv_check.c reaches the sender through recv_epoch_reply(),
 * the one place that sends ERROR and REFUSE frames and logs them.
 */
#ifndef PVREPL_RECV_EPOCH_H
#define PVREPL_RECV_EPOCH_H

#include <stdint.h>

#include "conn.h"
#include "proto.h"
#include "recv_check.h"
#include "standby.h"

/* A sender's connection as the epoch module sees it. */
struct recv_peer {
	struct conn c;
	char addr[64];
	char name[256];	  /* the certificate's identity, "" without one */
	uint64_t *hashes; /* PROTO_DATA_BLOCKS_MAX scratch */
	uint8_t *plain;	  /* PROTO_DATA_PLAINTEXT_MAX, aligned */
};

/* Sends vd's frame (ERROR or REFUSE) and logs it; returns vd's -errno
 * (-EPROTO, -EACCES), or 0 for RECV_VERDICT_NONE. */
int recv_epoch_reply(struct recv_peer *p, const struct recv_verdict *vd);
/* WELCOME: what this side holds, and where a sync can resume. */
int recv_epoch_welcome(struct recv_peer *p, const struct standby *v, const struct proto_hello *h);
/*
 * Receives one epoch announced by eb (checked by recv_check_begin) and, when the
 * sender proves it whole, commits it durably and acknowledges it. Returns 0 once
 * acked, or -errno: a verdict was sent, or the connection is gone (v keeps what
 * is durable: its committed epoch, or a sync's cursor).
 */
int recv_epoch_run(struct recv_peer *p, struct standby *v, const struct proto_hello *h,
		   const struct proto_epoch_begin *eb);

#endif
