/* SPDX-License-Identifier: Apache-2.0 */
/*
 * progress — how long work shows itself. On a terminal, a line redrawn a few times
 * a second with bytes, percent, rate and ETA (like rsync --info=progress2);
 * otherwise a structured key=value log line every PROGRESS_LOG_INTERVAL_MS, so a
 * sidecar's logs show an initial sync moving. Writes to stderr; stdout stays for
 * results (-o json).
 */
#ifndef PVREPL_PROGRESS_H
#define PVREPL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PROGRESS_TTY_INTERVAL_MS 200
#define PROGRESS_LOG_INTERVAL_MS 5000

enum progress_mode {
	PROGRESS_AUTO = 0, /* tty line if stderr is a terminal, else log lines */
	PROGRESS_TTY,
	PROGRESS_LOG,
	PROGRESS_NONE,
};

struct progress {
	char label[64];
	char subject[256]; /* e.g. the device or volume */
	enum progress_mode mode;
	FILE *f;
	uint64_t total_bytes;
	double start_s;
	double last_s;
	bool drawn;
};

void progress_init(struct progress *p, enum progress_mode mode, const char *label,
		   const char *subject, uint64_t total_bytes);
void progress_update(struct progress *p, uint64_t done_bytes);
/* Final line (tty: terminates the redrawn line). */
void progress_finish(struct progress *p, uint64_t done_bytes);
/* Adapter for callbacks of the form (done, total, ctx) with ctx a struct progress. */
void progress_cb(uint64_t done_bytes, uint64_t total_bytes, void *ctx);
int progress_parse_mode(const char *s, enum progress_mode *mode);

#endif
