// SPDX-License-Identifier: Apache-2.0
/*
 * progress — rate-limited progress reporting for long work (see progress.h).
 * Knows bytes and time only, nothing of what is being done.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "out.h"
#include "progress.h"

void progress_init(struct progress *p, enum progress_mode mode, const char *label,
		   const char *subject, uint64_t total_bytes)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->label, sizeof(p->label), "%s", label);
	snprintf(p->subject, sizeof(p->subject), "%s", subject ? subject : "");
	p->f = stderr;
	if (mode == PROGRESS_AUTO)
		mode = isatty(fileno(stderr)) ? PROGRESS_TTY : PROGRESS_LOG;
	p->mode = mode;
	p->total_bytes = total_bytes;
	p->start_s = clock_mono_s();
	p->last_s = p->start_s;
}

static void fmt_eta(double s, char *buf, size_t len)
{
	unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);

	snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
}

static void draw(struct progress *p, uint64_t done, double now, bool final)
{
	double el = now - p->start_s;
	double rate = el > 0 ? (double)done / el : 0;
	double pct = p->total_bytes ? 100.0 * (double)done / (double)p->total_bytes : 100.0;
	double eta = rate > 0 ? (double)(p->total_bytes - done) / rate : 0;
	char hb[32], eb[32];

	if (p->mode == PROGRESS_TTY) {
		fmt_eta(final ? el : eta, eb, sizeof(eb));
		fprintf(p->f, "\r%s %s  %12s %5.1f%%  %8.1f MB/s  %s %s\033[K", p->label,
			p->subject, out_human_bytes(done, hb, sizeof(hb)), pct, rate / 1e6,
			final ? "in" : "ETA", eb);
		if (final)
			fputc('\n', p->f);
	} else {
		fprintf(p->f,
			"progress op=%s subject=%s done_bytes=%" PRIu64 " total_bytes=%" PRIu64
			" percent=%.1f rate_bytes_per_s=%.0f eta_s=%.0f%s\n",
			p->label, p->subject, done, p->total_bytes, pct, rate, final ? 0 : eta,
			final ? " done=true" : "");
	}
	fflush(p->f);
	p->drawn = true;
}

void progress_update(struct progress *p, uint64_t done_bytes)
{
	double now, interval_s;

	if (p->mode == PROGRESS_NONE)
		return;
	now = clock_mono_s();
	interval_s =
		(p->mode == PROGRESS_TTY ? PROGRESS_TTY_INTERVAL_MS : PROGRESS_LOG_INTERVAL_MS) /
		1e3;
	/* The first log line comes after one second, so a sync never sits silent at
	 * 0% for a whole interval, and quick jobs print nothing but the final line. */
	if (!p->drawn && p->mode == PROGRESS_LOG && now - p->start_s >= 1.0) {
		p->last_s = now;
		draw(p, done_bytes, now, false);
		return;
	}
	if (now - p->last_s < interval_s)
		return;
	p->last_s = now;
	draw(p, done_bytes, now, false);
}

void progress_finish(struct progress *p, uint64_t done_bytes)
{
	if (p->mode == PROGRESS_NONE || (p->mode == PROGRESS_LOG && !p->drawn))
		return;
	draw(p, done_bytes, clock_mono_s(), true);
}

int progress_parse_mode(const char *s, enum progress_mode *mode)
{
	static const char *const names[] = { "auto", "tty", "log", "none" };

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*mode = (enum progress_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

void progress_cb(uint64_t done_bytes, uint64_t total_bytes, void *ctx)
{
	(void)total_bytes;
	progress_update(ctx, done_bytes);
}
