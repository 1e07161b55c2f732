/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replicate — the daemon of `pvrepl replicate`: one job (a thread) per volume
 * running one sender epoch every interval, exponential backoff after a failed
 * epoch, a network watcher (netwatch) that pauses a job while the route to its
 * peer is gone and resumes it at once when the route is back, SIGHUP reloads
 * (volumes added, changed, removed), SIGTERM/SIGINT with a grace period for the
 * epoch in flight, and the per-epoch metrics. The sender daemon module (the epoch
 * itself is sender.c's); it owns the control flow of `replicate`.
 *
 * It does not parse options or print: cmd_send.c hands it a build callback (the
 * file, the environment and the flags into one replicate_opts per volume) that it
 * calls at start and on every SIGHUP, and the output hooks for each epoch's
 * result.
 */
#ifndef PVREPL_REPLICATE_H
#define PVREPL_REPLICATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "out.h"
#include "sender.h"

/* SIGTERM: how long an epoch in flight may finish by default (--stop-timeout). */
#define REPLICATE_STOP_TIMEOUT_MS_DEFAULT 10000u

/*
 * The options of one volume, as `pvrepl send` and `pvrepl replicate` parse them
 * (send uses cfg and fmt only). The strings cfg points to belong to the caller of
 * replicate_ops.build until replicate_run copied them.
 */
struct replicate_opts {
	struct sender_config cfg;
	enum out_format fmt;
	uint64_t interval_ms;
	uint64_t rpo_ms;
	uint64_t max_epochs;
	bool no_netwatch;
	enum log_format log_format;
	int verbosity;
	const char *termination_log;
	const char *metrics_addr;
	uint64_t stop_timeout_ms; /* SIGTERM: how long an epoch in flight may finish */
	char server_name[256];
};

struct replicate_ops {
	/*
	 * The volumes to replicate and their options: fills specs[0..*count) (at most
	 * CONFIG_VOLUMES_MAX), their strings pointing into conf, the command line or
	 * the spec itself; conf is the caller's storage for the file and the
	 * environment, kept until the next build into it. Returns 0 or an exit code,
	 * with every problem in err (one per line). Called from the main thread only.
	 */
	int (*build)(void *ctx, struct config *conf, struct replicate_opts *specs, unsigned *count,
		     char *err, size_t err_len);
	/* Prints one epoch's result and the volume's lag (seconds), one call at a
	 * time, from the jobs' threads. */
	void (*print)(const struct sender_result *r, const struct replicate_opts *o, double lag_s);
	/* The exit code a failed epoch stands for. */
	int (*exit_code)(const struct sender_result *r);
	/* Prints a problem found before any job started (the options, the metrics
	 * server); replicate_run then returns its exit code. */
	void (*error)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
	void *ctx; /* build's */
};

/*
 * Runs `replicate` until every job ended (max epochs, a refusal, removed by a
 * reload) or a signal stopped them. Returns an exit code: a refusal's if a job
 * ended on one, else a job's that could not start, else CLI_EXIT_OK; or the code
 * of a problem found before any job started, which ops->error printed. SIGTERM,
 * SIGINT and SIGHUP are blocked in the calling thread (so in every thread it
 * starts) and taken by its loop with sigtimedwait.
 */
int replicate_run(const struct replicate_ops *ops);

#endif
