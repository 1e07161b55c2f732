// SPDX-License-Identifier: Apache-2.0
/*
 * replicate — the daemon of `pvrepl replicate` (see replicate.h): jobs, backoff,
 * the network watcher, reloads, signals and the per-epoch metrics. One epoch is
 * sender_run_epoch's; the options and the printed results are cmd_send.c's,
 * reached through struct replicate_ops.
 *
 * Threads: the caller's runs replicate_run's loop (signals, reloads, joining the
 * jobs that ended); one per job (job_main: epochs, backoff, pause); one network
 * watcher per job (watch_main). A failed epoch is retried with exponential
 * backoff; the next epoch always covers everything changed since the last
 * confirmed one, so there is no backlog to queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "config.h"
#include "devid.h"
#include "log.h"
#include "metrics.h"
#include "netwatch.h"
#include "proto.h"
#include "pvrepl_assert.h"
#include "replicate.h"
#include "sender.h"
#include "status.h"
#include "tls.h"

#define REPLICATE_BACKOFF_MS_MIN 500u
#define REPLICATE_BACKOFF_MS_MAX 30000u

/* Set by the signal loop of replicate_run (SIGTERM, SIGINT); read by the jobs. */
static int stop_requested;

static bool stopping(void)
{
	return __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE);
}

/*
 * The network watcher of `replicate`: a thread on netwatch's netlink socket. When
 * the route to the peer disappears or its link goes down it pauses the sender
 * at once (the epoch in flight is cut, not left to time out); when the route is
 * back it wakes the main loop, which reconnects without waiting for a backoff.
 */
struct watch {
	struct netwatch *nw;
	struct sender_abort *abort;
	const char *volume;
	const char *peer;
	pthread_t thread;
	int stop_fds[2];
	int wake; /* atomic: the route came back */
};

static void watch_apply(struct watch *w)
{
	if (!netwatch_reachable(w->nw)) {
		sender_abort_now(w->abort, netwatch_reason(w->nw));
		log_msg(LOG_WARN, w->volume, w->peer, 0, "paused at %" PRId64 " ms (unix): %s",
			clock_unix_ms(), netwatch_reason(w->nw));
	} else {
		sender_abort_resume(w->abort);
		__atomic_store_n(&w->wake, 1, __ATOMIC_RELEASE);
		log_msg(LOG_INFO, w->volume, w->peer, 0, "resumed at %" PRId64 " ms (unix): %s",
			clock_unix_ms(), netwatch_reason(w->nw));
	}
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;

	if (!netwatch_reachable(w->nw))
		watch_apply(w);
	for (;;) {
		struct pollfd p[2] = { { .fd = netwatch_fd(w->nw), .events = POLLIN },
				       { .fd = w->stop_fds[0], .events = POLLIN } };
		bool changed = false;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents && netwatch_process(w->nw, &changed) < 0) {
			log_msg(LOG_WARN, w->volume, w->peer, 0,
				"network watch failed; relying on timeouts");
			break;
		}
		if (changed)
			watch_apply(w);
	}
	return NULL;
}

static int watch_start(struct watch *w, const char *peer, const char *volume,
		       struct sender_abort *abort)
{
	char err[256] = "";

	memset(w, 0, sizeof(*w));
	w->abort = abort;
	w->volume = volume;
	w->peer = peer;
	w->stop_fds[0] = w->stop_fds[1] = -1;
	if (netwatch_new(&w->nw, peer, err, sizeof(err))) {
		log_msg(LOG_WARN, volume, peer, 0,
			"cannot watch the route to %s (%s); a cut link is noticed by --timeout only",
			peer, err);
		return -1;
	}
	if (pipe2(w->stop_fds, O_CLOEXEC) || pthread_create(&w->thread, NULL, watch_main, w)) {
		netwatch_free(w->nw);
		w->nw = NULL;
		return -1;
	}
	return 0;
}

static void watch_stop(struct watch *w)
{
	if (!w->nw)
		return;
	if (write(w->stop_fds[1], "x", 1) == 1)
		pthread_join(w->thread, NULL);
	close(w->stop_fds[0]);
	close(w->stop_fds[1]);
	netwatch_free(w->nw);
	w->nw = NULL;
}

static bool woken(struct watch *w)
{
	return w && __atomic_exchange_n(&w->wake, 0, __ATOMIC_ACQ_REL);
}

static enum metrics_error_kind error_kind(const struct sender_result *r)
{
	if (r->disconnected)
		return METRICS_ERROR_NETWORK;
	if (r->outcome == SENDER_REFUSED)
		return r->refuse_reason == PROTO_REFUSE_CERTIFICATE ? METRICS_ERROR_TLS
								    : METRICS_ERROR_PROTOCOL;
	if (strstr(r->message, "TLS") || strstr(r->message, "certificate"))
		return METRICS_ERROR_TLS;
	switch (-r->err) {
	case EPROTO:
	case EBADMSG:
		return METRICS_ERROR_PROTOCOL;
	case EIO:
	case ENOSPC:
	case ENOENT:
	case ENXIO:
		return METRICS_ERROR_IO;
	default:
		return METRICS_ERROR_OTHER;
	}
}

/* The same mapping as sender.c's record_status() for `pvrepl status`. */
static enum metrics_state epoch_state(const struct sender_result *r)
{
	if (r->outcome == SENDER_OK)
		return METRICS_STATE_REPLICATING;
	if (r->outcome == SENDER_REFUSED && r->refuse_reason == PROTO_REFUSE_SPLIT_BRAIN)
		return METRICS_STATE_SPLIT_BRAIN;
	if (r->disconnected)
		return METRICS_STATE_DISCONNECTED;
	if (r->initial_sync && r->outcome != SENDER_REFUSED)
		return METRICS_STATE_INITIAL_SYNC;
	return METRICS_STATE_ERROR;
}

static enum metrics_full_scan_reason full_scan_reason(enum tracking_full_reason r)
{
	switch (r) {
	case TRACKING_FULL_INITIAL:
		return METRICS_FULL_SCAN_INITIAL;
	case TRACKING_FULL_NEW:
		return METRICS_FULL_SCAN_NEW;
	case TRACKING_FULL_LOSS:
		return METRICS_FULL_SCAN_LOSS;
	case TRACKING_FULL_PERIODIC:
		return METRICS_FULL_SCAN_PERIODIC;
	case TRACKING_FULL_REQUESTED:
		return METRICS_FULL_SCAN_REQUESTED;
	case TRACKING_FULL_OFF:
	case TRACKING_FULL_NONE:
		break;
	}
	return METRICS_FULL_SCAN_OFF;
}

static void tls_expiry_update(struct metrics_volume *mv, const char *tls_dir)
{
	int64_t not_after;

	if (!tls_dir_cert_expiry(tls_dir, &not_after))
		metrics_set(&mv->tls_certificate_expiry_timestamp_seconds, (double)not_after);
}

/* One epoch's outcome into the registry: per epoch, never per block. */
static void epoch_metrics(struct metrics_volume *mv, const struct replicate_opts *o,
			  const struct sender_result *r, double lag_s)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (r->size_bytes)
		metrics_set(&mv->volume_size_bytes, (double)r->size_bytes);
	metrics_add(&mv->changed_blocks_total, r->blocks_changed);
	if (r->outcome == SENDER_OK)
		metrics_set_capture(mv, metrics_capture_of(sender_capture_kind(r)));
	metrics_add(&mv->payload_bytes_total, r->payload_bytes);
	metrics_add(&mv->sent_bytes_total, r->wire_bytes);
	metrics_add(&mv->source_read_bytes_total, r->read_bytes);
	metrics_add(&mv->tracked_bytes_total, r->tracked_bytes);
	metrics_add(&mv->tracker_missed_blocks_total, r->tracker_missed_blocks);
	metrics_set(&mv->write_tracking, r->tracking ? 1 : 0);
	if (r->scan == TRACKING_SCAN_FULL && r->full_scan_reason != TRACKING_FULL_NONE)
		metrics_add(&mv->full_scans_total[full_scan_reason(r->full_scan_reason)], 1);
	metrics_add_f64(&mv->throttled_seconds_total, r->throttled_seconds);
	metrics_observe(&mv->scan_duration_seconds, r->scan_seconds);
	metrics_set(&mv->replication_lag_seconds, lag_s);
	metrics_set(&mv->rpo_target_seconds, o->cfg.rpo_target_seconds);
	metrics_set_state(mv, epoch_state(r));
	tls_expiry_update(mv, o->cfg.tls_dir);
	if (r->outcome == SENDER_OK) {
		metrics_count_sync(mv, METRICS_SYNC_SUCCESS);
		metrics_observe(&mv->sync_duration_seconds, r->seconds);
		metrics_set(&mv->last_sync_success_timestamp_seconds,
			    (double)now.tv_sec + (double)now.tv_nsec / 1e9);
		metrics_set(&mv->out_of_sync_bytes, 0);
		metrics_set(&mv->peer_connected, 1);
		return;
	}
	metrics_count_sync(mv, METRICS_SYNC_FAILURE);
	metrics_count_error(mv, error_kind(r));
	if (r->blocks_changed)
		metrics_set(&mv->out_of_sync_bytes, (double)(r->blocks_changed * r->block_bytes));
	if (r->disconnected)
		metrics_set(&mv->peer_connected, 0);
}

/* One volume's strings, owned: a reload replaces them between epochs. */
struct job_strings {
	char volume[CONFIG_NAME_MAX];
	char device[CONFIG_PATH_MAX];
	char state_dir[CONFIG_PATH_MAX];
	char peer[CONFIG_ADDR_MAX];
	char tls_dir[CONFIG_PATH_MAX];
	char server_name[CONFIG_ADDR_MAX];
	char track_pin_dir[CONFIG_PATH_MAX];
	char freeze_path[CONFIG_PATH_MAX];
	char snapshot_cmd[CONFIG_PATH_MAX];
	char snapshot_release_cmd[CONFIG_PATH_MAX];
};

/*
 * One replicated volume of `replicate`: its own thread, epochs, backoff, network
 * watch and metrics series. Several run side by side for a multi-volume --config.
 */
struct job {
	char name[CONFIG_NAME_MAX]; /* the volume's: fixed for the job's life */
	struct replicate_opts o;    /* cfg's strings point into s */
	struct job_strings s;
	pthread_mutex_t lock;	    /* guards next, next_s, have_next */
	struct replicate_opts next; /* a reload's settings, taken before the next epoch */
	struct job_strings next_s;
	bool have_next;
	int stop;   /* atomic: removed by a reload */
	int done;   /* atomic, set under lock: the loop ended for good */
	bool fatal; /* ended by a refusal: rc says why */
	bool started;
	struct metrics *m; /* NULL without --metrics-addr */
	struct metrics_volume *mv;
	struct sender_abort abort;
	/* The TLS context of the epochs (cfg.tls), made at the first and again
	 * after a reload (which may change the directory or the name). */
	struct tls_ctx *tls;
	double last_beat; /* the status record's last heartbeat (cli_now_s) */
	struct watch watch;
	const struct replicate_ops *ops; /* the output hooks */
	pthread_t thread;
	int rc;
};

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static bool job_stopping(struct job *j)
{
	return stopping() || __atomic_load_n(&j->stop, __ATOMIC_ACQUIRE);
}

/* Points o's strings (those it has) at s's, which already hold them. */
static void opts_point(struct replicate_opts *o, struct job_strings *s)
{
	o->cfg.volume = o->cfg.volume ? s->volume : NULL;
	o->cfg.device = o->cfg.device ? s->device : NULL;
	o->cfg.state_dir = o->cfg.state_dir ? s->state_dir : NULL;
	o->cfg.peer = o->cfg.peer ? s->peer : NULL;
	o->cfg.tls_dir = o->cfg.tls_dir ? s->tls_dir : NULL;
	o->cfg.server_name = o->cfg.server_name ? s->server_name : NULL;
	o->cfg.tracking.pin_root = o->cfg.tracking.pin_root ? s->track_pin_dir : NULL;
	o->cfg.capture.freeze_path = o->cfg.capture.freeze_path ? s->freeze_path : NULL;
	o->cfg.capture.snapshot_cmd = o->cfg.capture.snapshot_cmd ? s->snapshot_cmd : NULL;
	o->cfg.capture.snapshot_release_cmd =
		o->cfg.capture.snapshot_release_cmd ? s->snapshot_release_cmd : NULL;
}

/* Copies o's strings into s and points o at them. */
static void opts_own(struct replicate_opts *o, struct job_strings *s)
{
#define COPY(field)                                                               \
	do {                                                                      \
		if (o->cfg.field && o->cfg.field != s->field)                     \
			snprintf(s->field, sizeof(s->field), "%s", o->cfg.field); \
	} while (0)
	COPY(volume);
	COPY(device);
	COPY(state_dir);
	COPY(peer);
	COPY(tls_dir);
	COPY(server_name);
	if (o->cfg.tracking.pin_root && o->cfg.tracking.pin_root != s->track_pin_dir)
		snprintf(s->track_pin_dir, sizeof(s->track_pin_dir), "%s",
			 o->cfg.tracking.pin_root);
	if (o->cfg.capture.freeze_path && o->cfg.capture.freeze_path != s->freeze_path)
		snprintf(s->freeze_path, sizeof(s->freeze_path), "%s", o->cfg.capture.freeze_path);
	if (o->cfg.capture.snapshot_cmd && o->cfg.capture.snapshot_cmd != s->snapshot_cmd)
		snprintf(s->snapshot_cmd, sizeof(s->snapshot_cmd), "%s",
			 o->cfg.capture.snapshot_cmd);
	if (o->cfg.capture.snapshot_release_cmd &&
	    o->cfg.capture.snapshot_release_cmd != s->snapshot_release_cmd)
		snprintf(s->snapshot_release_cmd, sizeof(s->snapshot_release_cmd), "%s",
			 o->cfg.capture.snapshot_release_cmd);
#undef COPY
	opts_point(o, s);
}

static bool job_has_reload(struct job *j)
{
	bool r;

	pthread_mutex_lock(&j->lock);
	r = j->have_next;
	pthread_mutex_unlock(&j->lock);
	return r;
}

/*
 * Sleeps ms in steps until stopped, or until the watcher says the route is back.
 * Each 200 ms step is a heartbeat (j->m is NULL without --metrics-addr).
 */
/* The volume's status record says the job still runs (STATUS_HEARTBEAT_S);
 * the job's thread is its only writer. */
static void job_heartbeat(struct job *j)
{
	double now = cli_now_s();

	if (now - j->last_beat < STATUS_HEARTBEAT_S)
		return;
	j->last_beat = now;
	status_heartbeat_nosync(j->o.cfg.state_dir);
}

/* A long epoch (an initial sync) keeps /livez and the status record fresh
 * through the scan's progress updates. */
static void alive_heartbeat(void *ctx)
{
	struct job *j = ctx;

	if (j->m)
		metrics_heartbeat(j->m);
	job_heartbeat(j);
}

static void job_sleep(struct job *j, uint64_t ms, bool wake_on_route)
{
	while (ms && !job_stopping(j) && !(wake_on_route && woken(&j->watch))) {
		uint64_t step = ms < 200 ? ms : 200;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

		nanosleep(&ts, NULL);
		ms -= step;
		if (j->m)
			metrics_heartbeat(j->m);
		job_heartbeat(j);
	}
}

/*
 * A reload's settings, at an epoch boundary. The job's thread is the only writer
 * of j->o and j->s (under the lock, which the reload takes to read them). The
 * watcher reads the peer and volume strings, so it is stopped first and started
 * afresh after (a new watcher pauses again at once if the peer is unreachable).
 */
static void job_take_reload(struct job *j)
{
	if (!job_has_reload(j))
		return;
	watch_stop(&j->watch);
	sender_abort_resume(&j->abort);
	pthread_mutex_lock(&j->lock);
	/* Not reloadable: the server runs, and the block size is the map's. */
	j->next.metrics_addr = j->o.metrics_addr;
	j->next.cfg.block_bytes = j->o.cfg.block_bytes;
	j->s = j->next_s;
	j->o = j->next;
	opts_point(&j->o, &j->s);
	j->have_next = false;
	pthread_mutex_unlock(&j->lock);
	j->o.cfg.abort = &j->abort;
	tls_ctx_free(j->tls);
	j->tls = NULL;
	j->o.cfg.alive = alive_heartbeat;
	j->o.cfg.alive_ctx = j;
	if (j->m)
		metrics_set(&j->mv->rpo_target_seconds, j->o.cfg.rpo_target_seconds);
	if (j->o.cfg.progress == PROGRESS_AUTO)
		j->o.cfg.progress = PROGRESS_LOG;
	if (!j->o.no_netwatch)
		watch_start(&j->watch, j->o.cfg.peer, j->o.cfg.volume, &j->abort);
	log_msg(LOG_INFO, j->o.cfg.volume, j->o.cfg.peer, 0,
		"reloaded: interval %.1f s, rpo %.1f s, max-rate %" PRIu64
		" B/s, max-read-rate %" PRIu64 " B/s",
		(double)j->o.interval_ms / 1e3, (double)j->o.rpo_ms / 1e3,
		j->o.cfg.max_rate_bytes_per_s, j->o.cfg.scan.max_read_bytes_per_s);
}

/* What a job's loop carries from one epoch to the next. */
struct job_loop {
	uint64_t done;	     /* successful epochs */
	uint64_t backoff_ms; /* the wait after the next failure */
	double last_ok;	     /* cli_now_s() at the start of the last good epoch; 0: none */
	bool retry;	     /* the last epoch failed: the next one is a reconnect */
	bool said_untracked; /* the reason for running without a tracker was logged */
	bool said_live;	     /* the reason epochs are not one instant was logged */
	double rpo_warned;   /* cli_now_s() of the last RPO warning during an outage */
	double rpo_checked;  /* and of the last look at the record (once a second) */
};

/* Seconds between two RPO warnings while no epoch succeeds. */
#define REPLICATE_RPO_WARN_EVERY_S 60.0

/*
 * During an outage (failed epochs, or paused for the route): once the standby's
 * consistent point (the status record's, kept across restarts) is older than
 * the RPO target, a warning, then one a minute; why: what stops the epochs.
 */
static void job_rpo_outage(struct job *j, struct job_loop *loop, const char *why)
{
	struct status_record s;
	double lag;

	if (!j->o.rpo_ms || cli_now_s() - loop->rpo_checked < 1.0)
		return;
	loop->rpo_checked = cli_now_s();
	if (status_load(&s, j->o.cfg.state_dir) || !s.consistent_point_ms)
		return;
	lag = (double)(clock_unix_ms() - s.consistent_point_ms) / 1e3;
	if (lag * 1e3 <= (double)j->o.rpo_ms ||
	    (loop->rpo_warned && cli_now_s() - loop->rpo_warned < REPLICATE_RPO_WARN_EVERY_S))
		return;
	loop->rpo_warned = cli_now_s();
	log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, s.epoch,
		"no epoch confirmed: the standby is %.0f s behind, past the RPO target of %.1f s (%s)",
		lag, (double)j->o.rpo_ms / 1e3, why);
}

/* What an epoch read and why, in the log: tracking off once, full scans each. */
static void job_log_scan(struct job *j, struct job_loop *loop, const struct sender_result *r)
{
	if (r->outcome != SENDER_OK)
		return;
	if (!r->tracking && !loop->said_untracked) {
		log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"%s: every epoch reads the whole device", r->tracking_off);
		loop->said_untracked = true;
	} else if (r->tracking) {
		loop->said_untracked = false;
	}
	if (r->scan == TRACKING_SCAN_FULL && r->tracking)
		log_msg(LOG_INFO, j->o.cfg.volume, j->o.cfg.peer, r->epoch, "full scan: %s",
			r->scan_reason);
	/* Live reads: once, until an epoch is captured again. */
	if (!r->crash_consistent && !loop->said_live) {
		log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"epochs are read live, not one instant of the source: %s",
			r->capture_note[0] ? r->capture_note : "no capture");
		loop->said_live = true;
	} else if (r->crash_consistent) {
		loop->said_live = false;
	}
	if (r->crash_consistent && r->freeze_ms > 0)
		log_msg(LOG_DEBUG, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"captured: %u rounds, frozen %.1f ms", r->rounds, r->freeze_ms);
	if (r->crash_consistent && r->clone_ms > 0)
		log_msg(LOG_DEBUG, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"captured from %s made in %.1f ms", capture_mode_name(r->capture),
			r->clone_ms);
	if (r->warning[0])
		log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, r->epoch, "%s", r->warning);
}

/* How one turn of a job's loop ended. */
enum job_turn {
	JOB_TURN_AGAIN,	   /* go on with the next turn (after any wait it did) */
	JOB_TURN_STOPPED,  /* stopping: the failed epoch was the one in flight */
	JOB_TURN_FINISHED, /* ended for good: --max-epochs reached, or refused */
};

/* Paused by the watcher: no epoch until the route is back, then at once; a
 * reload (a new peer, say) is taken at once too. */
static void job_wait_route(struct job *j, struct job_loop *loop)
{
	if (j->mv)
		metrics_set_state(j->mv, METRICS_STATE_PAUSED);
	while (sender_abort_paused(&j->abort) && !job_stopping(j) && !job_has_reload(j)) {
		job_rpo_outage(j, loop, "paused: the peer is unreachable");
		job_sleep(j, 50, false);
	}
	woken(&j->watch);
	loop->backoff_ms = REPLICATE_BACKOFF_MS_MIN;
}

/* After a good epoch: the RPO check, --max-epochs, then the wait for the next. */
static enum job_turn job_after_ok(struct job *j, struct job_loop *loop,
				  const struct sender_result *r, double start, double lag)
{
	double took_ms;

	loop->done++;
	loop->backoff_ms = REPLICATE_BACKOFF_MS_MIN;
	j->rc = CLI_EXIT_OK;
	if (j->o.rpo_ms && lag * 1e3 > (double)j->o.rpo_ms)
		log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"lag %.1f s exceeds the RPO target of %.1f s", lag,
			(double)j->o.rpo_ms / 1e3);
	if (j->o.max_epochs && loop->done >= j->o.max_epochs)
		return JOB_TURN_FINISHED;
	took_ms = (cli_now_s() - start) * 1e3;
	/* An epoch longer than the interval is followed at once by the next, which
	 * covers everything changed since: no backlog queue. */
	if (took_ms < (double)j->o.interval_ms)
		job_sleep(j, j->o.interval_ms - (uint64_t)took_ms, false);
	return JOB_TURN_AGAIN;
}

/* After a failed epoch: stop, wait for the route, end on a refusal, or back off. */
static enum job_turn job_after_failure(struct job *j, struct job_loop *loop,
				       const struct sender_result *r)
{
	if (job_stopping(j)) {
		log_msg(LOG_INFO, j->o.cfg.volume, j->o.cfg.peer, r->epoch,
			"stopping: the epoch in flight was aborted cleanly (the standby keeps its last committed epoch; the next start sends the changes again)");
		return JOB_TURN_STOPPED;
	}
	if (r->paused)
		return JOB_TURN_AGAIN; /* the watcher said why; wait for the route next turn */
	log_msg(LOG_WARN, j->o.cfg.volume, j->o.cfg.peer, r->epoch, "%s; retrying in %.1f s",
		r->message, (double)loop->backoff_ms / 1e3);
	j->rc = j->ops->exit_code(r);
	job_rpo_outage(j, loop, r->message);
	if (r->config_error) {
		log_fatal(j->o.cfg.volume, "%s; a configuration error: fix it and restart",
			  r->message);
		j->fatal = true;
		return JOB_TURN_FINISHED;
	}
	if (r->outcome == SENDER_REFUSED && r->refuse_reason != PROTO_REFUSE_BUSY) {
		log_fatal(j->o.cfg.volume, "%s; refused by the receiver: fix the cause and restart",
			  r->message);
		j->fatal = true;
		return JOB_TURN_FINISHED;
	}
	job_sleep(j, loop->backoff_ms, true);
	loop->backoff_ms = loop->backoff_ms * 2 > REPLICATE_BACKOFF_MS_MAX
				   ? REPLICATE_BACKOFF_MS_MAX
				   : loop->backoff_ms * 2;
	return JOB_TURN_AGAIN;
}

/*
 * The epoch's TLS context: the job's, made once. When it cannot be made, the
 * epoch makes its own and fails with the reason (and this is tried again at the
 * next epoch).
 */
static void job_tls(struct job *j)
{
	struct tls_config tc = {
		.dir = j->o.cfg.tls_dir,
		.server = false,
		.server_name = j->o.cfg.server_name,
		.insecure_plaintext = j->o.cfg.insecure_plaintext,
	};
	char err[256];

	if (!j->tls && tls_ctx_new(&j->tls, &tc, err, sizeof(err)))
		j->tls = NULL;
	j->o.cfg.tls = j->tls;
}

/* One turn: a reload if one came, then the wait for the route or one epoch. */
static enum job_turn job_take_turn(struct job *j, struct job_loop *loop)
{
	struct sender_result r;
	double start, lag;

	job_take_reload(j);
	if (sender_abort_paused(&j->abort)) {
		job_wait_route(j, loop);
		return JOB_TURN_AGAIN;
	}
	start = cli_now_s();
	if (j->mv && loop->retry)
		metrics_add(&j->mv->reconnects_total, 1);
	job_tls(j);
	j->o.cfg.daemon = true;
	sender_run_epoch(&j->o.cfg, &r);
	j->last_beat = cli_now_s(); /* the epoch wrote the record */
	if (r.outcome == SENDER_OK)
		loop->last_ok = start;
	/* The standby holds the source as of the start of the last good epoch. */
	lag = loop->last_ok ? cli_now_s() - loop->last_ok : cli_now_s() - start;
	if (j->mv) {
		epoch_metrics(j->mv, &j->o, &r, lag);
		metrics_heartbeat(j->m);
	}
	loop->retry = r.outcome != SENDER_OK;
	job_log_scan(j, loop, &r);
	pthread_mutex_lock(&print_lock);
	j->ops->print(&r, &j->o, lag);
	pthread_mutex_unlock(&print_lock);
	if (r.outcome == SENDER_OK)
		return job_after_ok(j, loop, &r, start, lag);
	return job_after_failure(j, loop, &r);
}

/*
 * Whether a job whose turns stopped ends now, and if so marks it done. Finished
 * (max epochs, refused) always ends. Otherwise it was stopping or removed by a
 * reload, and maybe added back since: decided under the lock the reload takes
 * to clear stop, so a volume added back is never lost.
 */
static bool job_ends(struct job *j, bool finished)
{
	bool ends;

	pthread_mutex_lock(&j->lock);
	ends = finished || stopping() || __atomic_load_n(&j->stop, __ATOMIC_ACQUIRE);
	if (ends)
		__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&j->lock);
	return ends;
}

/* A job's thread: turns until stopped, removed or finished (job_ends decides). */
static void *job_main(void *arg)
{
	struct job *j = arg;
	struct job_loop loop = { .backoff_ms = REPLICATE_BACKOFF_MS_MIN };
	enum job_turn turn;

	j->rc = CLI_EXIT_OK;
	do {
		turn = JOB_TURN_AGAIN;
		while (turn == JOB_TURN_AGAIN && !job_stopping(j))
			turn = job_take_turn(j, &loop);
	} while (!job_ends(j, turn == JOB_TURN_FINISHED));
	return NULL;
}

/* Starts j's thread (its options already in j->o); 0 or an exit code. */
static int job_start(struct job *j, struct metrics *m, const struct replicate_ops *ops)
{
	snprintf(j->name, sizeof(j->name), "%s", j->o.cfg.volume);
	j->ops = ops;
	j->stop = j->done = 0;
	j->fatal = false;
	j->have_next = false;
	pthread_mutex_init(&j->lock, NULL);
	sender_abort_init(&j->abort);
	j->o.cfg.abort = &j->abort;
	if (j->o.cfg.progress == PROGRESS_AUTO)
		j->o.cfg.progress = PROGRESS_LOG;
	j->m = m;
	if (m) {
		j->mv = metrics_volume(m, j->o.cfg.volume, "primary", j->o.cfg.peer);
		if (!j->mv) {
			log_msg(LOG_ERROR, j->o.cfg.volume, j->o.cfg.peer, 0,
				"metrics: volume name or peer too long for a label");
			return CLI_EXIT_CONFIG;
		}
		metrics_set(&j->mv->rpo_target_seconds, j->o.cfg.rpo_target_seconds);
		tls_expiry_update(j->mv, j->o.cfg.tls_dir);
	}
	j->o.cfg.alive = alive_heartbeat;
	j->o.cfg.alive_ctx = j;
	j->watch.nw = NULL;
	if (!j->o.no_netwatch)
		watch_start(&j->watch, j->o.cfg.peer, j->o.cfg.volume, &j->abort);
	if (pthread_create(&j->thread, NULL, job_main, j)) {
		watch_stop(&j->watch);
		log_msg(LOG_ERROR, j->o.cfg.volume, NULL, 0, "cannot start a thread");
		return CLI_EXIT_FAIL;
	}
	j->started = true;
	return 0;
}

static void job_join(struct job *j)
{
	if (!j->started)
		return;
	pthread_join(j->thread, NULL);
	watch_stop(&j->watch);
	tls_ctx_free(j->tls);
	j->tls = NULL;
	pthread_mutex_destroy(&j->lock);
	j->started = false;
}

/*
 * The volumes to replicate and their options (ops->build: the file, then the
 * environment, then the flags), each with the strings of its sender_config
 * copied into strs[i] (metrics_addr and termination_log still point into conf
 * and the command line). Returns 0 or an exit code, with every problem in err.
 */
static int replicate_build(const struct replicate_ops *ops, struct config *conf,
			   struct replicate_opts *specs, struct job_strings *strs, unsigned *count,
			   char *err, size_t err_len)
{
	int rc;

	*count = 0;
	rc = ops->build(ops->ctx, conf, specs, count, err, err_len);
	if (rc) {
		*count = 0;
		return rc;
	}
	ASSERT(*count > 0);
	ASSERT(*count <= CONFIG_VOLUMES_MAX);
	for (unsigned i = 0; i < *count; i++) {
		memset(&strs[i], 0, sizeof(strs[i]));
		opts_own(&specs[i], &strs[i]);
	}
	/* One source device, one volume (devid.h): resolved, not by path. */
	{
		const char *names[CONFIG_VOLUMES_MAX], *paths[CONFIG_VOLUMES_MAX];

		for (unsigned i = 0; i < *count; i++) {
			names[i] = strs[i].volume;
			paths[i] = strs[i].device;
		}
		if (devid_find_conflict(names, paths, *count, err, err_len)) {
			*count = 0;
			return CLI_EXIT_CONFIG;
		}
	}
	return 0;
}

static struct job *job_named(struct job *jobs, unsigned count, const char *name)
{
	for (unsigned i = 0; i < count; i++)
		if (jobs[i].started && !strcmp(jobs[i].name, name))
			return &jobs[i];
	return NULL;
}

/* SIGHUP: builds the configuration again and hands each job its new settings. */
static void replicate_reload(const struct replicate_ops *ops, struct job *jobs, unsigned *count,
			     struct metrics *m)
{
	static struct config conf;
	static struct replicate_opts specs[CONFIG_VOLUMES_MAX];
	static struct job_strings strs[CONFIG_VOLUMES_MAX];
	static char err[16384];
	unsigned n = 0, added = 0, removed = 0;

	log_msg(LOG_INFO, NULL, NULL, 0, "SIGHUP: reloading the configuration");
	if (replicate_build(ops, &conf, specs, strs, &n, err, sizeof(err))) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			log_msg(LOG_ERROR, NULL, NULL, 0, "reload: %s", line);
		log_msg(LOG_ERROR, NULL, NULL, 0,
			"reload refused, still running the previous configuration");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		struct job *j = job_named(jobs, *count, strs[i].volume);

		if (j) {
			/* j->o and j->s change under the lock (job_take_reload), and the
			 * job decides under it whether it ends. */
			pthread_mutex_lock(&j->lock);
			if (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
				pthread_mutex_unlock(&j->lock);
				if (j->fatal)
					continue; /* refused: its cause needs a fix and a restart */
				job_join(j);	  /* removed earlier and ended: start it afresh */
				j = NULL;
			}
		}
		if (j) {
			if (strcmp(j->o.metrics_addr ? j->o.metrics_addr : "",
				   specs[i].metrics_addr ? specs[i].metrics_addr : "") ||
			    j->o.cfg.block_bytes != specs[i].cfg.block_bytes)
				log_msg(LOG_WARN, j->s.volume, NULL, 0,
					"reload: metrics_addr and block_size apply only after a restart; kept the running ones");
			if (strcmp(j->s.device, strs[i].device) ||
			    strcmp(j->s.state_dir, strs[i].state_dir))
				log_msg(LOG_WARN, j->s.volume, NULL, 0,
					"reload: a new device or state directory needs a restart; kept %s and %s",
					j->s.device, j->s.state_dir);
			j->next = specs[i];
			j->next_s = strs[i];
			snprintf(j->next_s.device, sizeof(j->next_s.device), "%s", j->s.device);
			snprintf(j->next_s.state_dir, sizeof(j->next_s.state_dir), "%s",
				 j->s.state_dir);
			/* Nothing of this reload's static storage stays referenced. */
			opts_point(&j->next, &j->next_s);
			j->have_next = true;
			__atomic_store_n(&j->stop, 0, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&j->lock);
			continue;
		}
		unsigned slot = *count;

		for (unsigned k = 0; k < *count; k++)
			if (!jobs[k].started)
				slot = k;
		if (slot >= CONFIG_VOLUMES_MAX) {
			log_msg(LOG_ERROR, strs[i].volume, NULL, 0, "reload: too many volumes");
			continue;
		}
		memset(&jobs[slot], 0, sizeof(jobs[slot]));
		jobs[slot].o = specs[i];
		jobs[slot].s = strs[i];
		opts_own(&jobs[slot].o, &jobs[slot].s);
		if (job_start(&jobs[slot], m, ops))
			continue;
		if (slot == *count)
			(*count)++;
		added++;
	}
	for (unsigned k = 0; k < *count; k++) {
		bool keep = false;

		if (!jobs[k].started || __atomic_load_n(&jobs[k].stop, __ATOMIC_ACQUIRE))
			continue;
		for (unsigned i = 0; i < n && !keep; i++)
			keep = !strcmp(strs[i].volume, jobs[k].name);
		if (!keep) {
			__atomic_store_n(&jobs[k].stop, 1, __ATOMIC_RELEASE);
			removed++;
			log_msg(LOG_INFO, jobs[k].name, NULL, 0,
				"reload: removed from the configuration; stops after the epoch in flight");
		}
	}
	log_msg(LOG_INFO, NULL, NULL, 0,
		"reloaded the configuration: %u volume(s), %u added, %u removed", n, added,
		removed);
}

int replicate_run(const struct replicate_ops *ops)
{
	static struct config conf; /* large: keep them off the stack */
	static struct replicate_opts specs[CONFIG_VOLUMES_MAX];
	static struct job_strings strs[CONFIG_VOLUMES_MAX];
	static struct job jobs[CONFIG_VOLUMES_MAX];
	static struct metrics metrics;
	static char err[16384];
	struct metrics *m = NULL;
	unsigned count = 0, n;
	double stop_deadline = 0;
	bool aborted = false;
	sigset_t sigs;
	int rc, last_rc = CLI_EXIT_OK;

	ASSERT(ops != NULL);
	ASSERT(ops->build != NULL);
	ASSERT(ops->print != NULL);
	ASSERT(ops->exit_code != NULL);
	ASSERT(ops->error != NULL);
	/* Signals go to the loop below alone (sigtimedwait), never to another
	 * thread: blocked before any starts (the metrics server's included). */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	rc = replicate_build(ops, &conf, specs, strs, &n, err, sizeof(err));
	if (rc) {
		ops->error("%s", err);
		return rc;
	}
	log_init("replicate", specs[0].log_format, specs[0].verbosity, specs[0].termination_log);
	if (specs[0].metrics_addr) {
		rc = metrics_init(&metrics, PVREPL_VERSION);
		if (rc) {
			ops->error("metrics: %s", strerror(-rc));
			return cli_exit_for(rc);
		}
		rc = metrics_serve(&metrics, specs[0].metrics_addr, err, sizeof(err));
		if (rc) {
			ops->error("--metrics-addr %s: %s", specs[0].metrics_addr,
				   err[0] ? err : strerror(-rc));
			metrics_release(&metrics);
			return cli_exit_for(-EINVAL);
		}
		m = &metrics;
	}
	for (unsigned i = 0; i < n; i++) {
		jobs[i].o = specs[i];
		jobs[i].s = strs[i];
		opts_own(&jobs[i].o, &jobs[i].s);
		rc = job_start(&jobs[i], m, ops);
		if (rc) {
			last_rc = rc;
			__atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
			break;
		}
		count = i + 1;
	}
	/* Started and the options loaded; never tied to the peer being there. */
	if (m && !stopping())
		metrics_set_ready(m, true);
	for (;;) {
		struct timespec tick = { .tv_sec = 0, .tv_nsec = 200000000L };
		unsigned live = 0;
		int sig = sigtimedwait(&sigs, NULL, &tick);

		/* Jobs that ended (max epochs, refused, removed) are joined now: their
		 * watchers stop and their slots are free for volumes added later. The
		 * exit code is a refusal's, if a job ended on one. */
		for (unsigned i = 0; i < count; i++) {
			if (!jobs[i].started)
				continue;
			if (!__atomic_load_n(&jobs[i].done, __ATOMIC_ACQUIRE)) {
				live++;
				continue;
			}
			if (jobs[i].fatal)
				last_rc = jobs[i].rc;
			job_join(&jobs[i]);
		}
		if (!live)
			break;
		if (sig == SIGHUP && !stopping()) {
			replicate_reload(ops, jobs, &count, m);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (stopping() || !specs[0].stop_timeout_ms) {
				stop_deadline = cli_now_s(); /* a second signal: abort now */
			} else {
				__atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
				stop_deadline =
					cli_now_s() + (double)specs[0].stop_timeout_ms / 1e3;
				log_msg(LOG_INFO, NULL, NULL, 0,
					"%s: stopping; an epoch in flight has %.0f s to finish, then it is aborted",
					sig == SIGTERM ? "SIGTERM" : "SIGINT",
					(double)specs[0].stop_timeout_ms / 1e3);
			}
			__atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
		}
		if (stopping() && !aborted && cli_now_s() >= stop_deadline) {
			/* Cut the connections: the receiver discards what it did not
			 * commit, and nothing advances the map here. */
			for (unsigned i = 0; i < count; i++)
				if (jobs[i].started)
					sender_abort_now(&jobs[i].abort, "stopping");
			aborted = true;
		}
	}
	for (unsigned i = 0; i < count; i++) {
		if (!jobs[i].started)
			continue;
		job_join(&jobs[i]);
		if (jobs[i].fatal)
			last_rc = jobs[i].rc;
	}
	if (m)
		metrics_release(m);
	return last_rc;
}
