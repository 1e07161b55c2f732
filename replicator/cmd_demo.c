// SPDX-License-Identifier: Apache-2.0
/*
 * `pvrepl demo`: the README's first command, a real replication on the built-in
 * default. In a temporary directory it makes a 256 MiB source image with mixed
 * content (random, text, zeros) and an empty standby image, a throwaway CA and
 * certificates, and starts a receiver (this binary, `pvrepl receive`) on
 * loopback with mutual TLS. Then: the initial sync with live progress; a
 * scattered 1% change and an incremental epoch; another change during which the
 * receiver is killed with SIGKILL mid-epoch, to show the standby still holds
 * exactly one epoch; a restart (recovery) and the epoch again. After every epoch
 * the standby is compared with the source. It prints a summary and removes all
 * it made, the receiver included.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "delta.h"
#include "sender.h"
#include "tls_issue.h"
#include "vstate.h"
#include "kfio.h"
#include "map.h"
#include "out.h"
#include "progress.h"
#include "scan.h"

#define DEMO_SIZE_BYTES	     (256ull << 20)
#define DEMO_CHANGE_BYTES    4096u
#define DEMO_CHANGE_PERMILLE 10u /* 1% of the 4 KiB blocks */

static uint64_t demo_rand(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fills a 1 MiB piece: pieces cycle random, text, zero, random (half, quarter, quarter). */
static void fill_piece(char *buf, size_t len, uint64_t piece, uint64_t *seed)
{
	static const char *const words[] = {
		"replica ", "epoch ",	"block ",
		"volume ",  "standby ", "journal ",
		"commit ",  "ack ",	"INSERT INTO t VALUES (42, 'x'); ",
		"\n"
	};
	size_t i = 0;

	switch (piece % 4) {
	case 0:
	case 3:
		for (; i + 8 <= len; i += 8) {
			uint64_t r = demo_rand(seed);

			memcpy(buf + i, &r, 8);
		}
		break;
	case 1:
		while (i < len) {
			const char *w = words[demo_rand(seed) % (sizeof(words) / sizeof(words[0]))];
			size_t n = strlen(w);

			if (n > len - i)
				n = len - i;
			memcpy(buf + i, w, n);
			i += n;
		}
		break;
	default:
		memset(buf, 0, len);
	}
}

static int make_image(const char *path, uint64_t size, char *err, size_t err_len)
{
	size_t piece = 1u << 20;
	char *buf = malloc(piece);
	uint64_t seed = 42;
	int fd, rc = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	for (uint64_t off = 0; off < size; off += piece) {
		fill_piece(buf, piece, off / piece, &seed);
		if (pwrite(fd, buf, piece, (off_t)off) != (ssize_t)piece) {
			rc = -errno ? -errno : -EIO;
			snprintf(err, err_len, "writing %s failed: %s (is the disk full?)", path,
				 strerror(errno));
			break;
		}
	}
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
out:
	free(buf);
	return rc;
}

/* Writes random data to a scattered 1% of the 4 KiB blocks. */
static int change_scattered(const char *path, uint64_t seed, uint64_t *changes)
{
	uint64_t nsmall = DEMO_SIZE_BYTES / DEMO_CHANGE_BYTES;
	uint64_t want = nsmall * DEMO_CHANGE_PERMILLE / 1000;
	char buf[DEMO_CHANGE_BYTES];
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (uint64_t i = 0; i < want; i++) {
		uint64_t blk = demo_rand(&seed) % nsmall;

		for (size_t j = 0; j < sizeof(buf); j += 8) {
			uint64_t r = demo_rand(&seed);

			memcpy(buf + j, &r, 8);
		}
		if (pwrite(fd, buf, sizeof(buf), (off_t)(blk * DEMO_CHANGE_BYTES)) !=
		    (ssize_t)sizeof(buf)) {
			close(fd);
			return -EIO;
		}
	}
	*changes = want;
	if (fsync(fd) < 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	return 0;
}

/* xxh3 of a whole file, to compare the standby with the source. */
static int hash_file(const char *path, uint64_t *out)
{
	struct delta_stream st;
	size_t piece = 1u << 20;
	char *buf = malloc(piece);
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	ssize_t n;

	if (!buf || fd < 0) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	delta_stream_init(&st, 0);
	while ((n = read(fd, buf, piece)) > 0)
		delta_stream_update(&st, buf, (size_t)n);
	if (n < 0)
		rc = -errno;
	*out = delta_stream_digest(&st);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

struct demo {
	char dir[64];
	char src[128], dst[128], rstate[128], sstate[128], ca[128], rtls[128], stls[128];
	char ready[128], rlog[128];
	char peer[64];
	pid_t receiver;
	struct sender_config cfg;
	struct sender_result res[4];
	unsigned epochs;
	char err[640];
};

static int start_receiver(struct demo *d)
{
	char vol[160], allow[64];
	struct timespec ts = { 0, 50 * 1000000L };
	pid_t pid;
	FILE *f;

	unlink(d->ready);
	snprintf(vol, sizeof(vol), "demo=%s", d->dst);
	snprintf(allow, sizeof(allow), "demo=demo-sender");
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(d->rlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		execl("/proc/self/exe", "pvrepl", "receive", "--listen", "127.0.0.1:0", "--tls-dir",
		      d->rtls, "--state-dir", d->rstate, "--volume", vol, "--allow", allow,
		      "--journal-size", "64M", "--ready-file", d->ready, (char *)NULL);
		_exit(127);
	}
	d->receiver = pid;
	/* Bounded wait for the receiver to listen (it writes its address). */
	for (int i = 0; i < 200; i++) {
		f = fopen(d->ready, "r");
		if (f) {
			bool ok = fgets(d->peer, sizeof(d->peer), f) != NULL;

			fclose(f);
			d->peer[strcspn(d->peer, "\n")] = '\0';
			if (ok)
				return 0;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			d->receiver = 0;
			snprintf(d->err, sizeof(d->err), "the receiver exited; its log is %s",
				 d->rlog);
			return -ECHILD;
		}
		nanosleep(&ts, NULL);
	}
	snprintf(d->err, sizeof(d->err), "the receiver did not start within 10 s; see %s", d->rlog);
	return -ETIMEDOUT;
}

static void stop_receiver(struct demo *d, int sig)
{
	if (d->receiver <= 0)
		return;
	kill(d->receiver, sig);
	waitpid(d->receiver, NULL, 0);
	d->receiver = 0;
}

static int run_epoch(struct demo *d, const char *what)
{
	struct sender_result *r = &d->res[d->epochs < 4 ? d->epochs : 3];
	int rc;

	d->cfg.peer = d->peer;
	rc = sender_run_epoch(&d->cfg, r);
	if (rc) {
		snprintf(d->err, sizeof(d->err), "%s: %s", what, r->message);
		return rc;
	}
	d->epochs++;
	printf("  %-22s epoch %" PRIu64 ": %" PRIu64 " blocks sent, %.2f MiB on the wire, %.2f s\n",
	       what, r->epoch, r->blocks_sent, (double)r->wire_bytes / (1 << 20), r->seconds);
	return 0;
}

/*
 * The receiver acknowledges an epoch once it is durable in its journal and
 * applies it to the standby right after; wait (bounded) until its state says the
 * epoch is applied before comparing images.
 */
static int wait_applied(struct demo *d, uint64_t epoch)
{
	struct timespec ts = { 0, 20 * 1000000L };
	char dir[160], err[256];
	struct vstate vs;

	snprintf(dir, sizeof(dir), "%s/demo", d->rstate);
	for (int i = 0; i < 500; i++) {
		if (vstate_load(&vs, dir, err, sizeof(err)) == 0 && vs.epoch >= epoch)
			return 0;
		nanosleep(&ts, NULL);
	}
	snprintf(d->err, sizeof(d->err), "the receiver did not apply epoch %" PRIu64 " within 10 s",
		 epoch);
	return -ETIMEDOUT;
}

static int verify(struct demo *d, const char *when)
{
	uint64_t a, b;
	int rc = wait_applied(d, d->res[d->epochs - 1].epoch);

	if (rc)
		return rc;
	rc = hash_file(d->src, &a);

	if (!rc)
		rc = hash_file(d->dst, &b);
	if (rc) {
		snprintf(d->err, sizeof(d->err), "cannot read the images: %s", strerror(-rc));
		return rc;
	}
	if (a != b) {
		snprintf(d->err, sizeof(d->err), "after %s the standby differs from the source",
			 when);
		return -EBADMSG;
	}
	printf("  %-22s standby == source (xxh3 %016" PRIx64 ")\n", "verified:", a);
	return 0;
}

/* Kills the receiver while an epoch is in flight, then shows the standby holds
 * either the previous epoch or the new one, never a mix. */
static int crash_epoch(struct demo *d, uint64_t old_hash, uint64_t new_hash, bool *was_new)
{
	struct timespec ts = { 0, 60 * 1000000L };
	pid_t child;
	int status;
	uint64_t h;
	int rc;

	fflush(stdout);
	child = fork();
	if (child < 0)
		return -errno;
	if (child == 0) {
		struct sender_result r;

		d->cfg.peer = d->peer;
		d->cfg.progress = PROGRESS_NONE;
		_exit(sender_run_epoch(&d->cfg, &r) ? 1 : 0);
	}
	nanosleep(&ts, NULL);
	stop_receiver(d, SIGKILL);
	waitpid(child, &status, 0);
	printf("  %-22s receiver killed with SIGKILL %s\n", "crash:",
	       WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "after it acknowledged the epoch"
							     : "in the middle of the epoch");
	rc = hash_file(d->dst, &h);
	if (rc)
		return rc;
	if (h != old_hash && h != new_hash) {
		snprintf(d->err, sizeof(d->err), "after the crash the standby is neither epoch");
		return -EBADMSG;
	}
	*was_new = h == new_hash;
	printf("  %-22s standby holds the %s epoch exactly (consistent)\n",
	       "after the crash:", *was_new ? "new" : "previous");
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

/* Stops the receiver, then removes the demo's directory and all in it. */
static void cleanup(struct demo *d)
{
	stop_receiver(d, SIGTERM);
	nftw(d->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int demo_run(struct demo *d)
{
	uint64_t changes, h_old, h_new;
	bool was_new = false;
	double t0;
	int fd, rc;

	t0 = cli_now_s();
	rc = make_image(d->src, DEMO_SIZE_BYTES, d->err, sizeof(d->err));
	if (rc)
		return rc;
	fd = open(d->dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)DEMO_SIZE_BYTES) < 0) {
		rc = -errno;
		snprintf(d->err, sizeof(d->err), "cannot create %s: %s", d->dst, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	printf("  %-22s %llu MiB source (half random, a quarter text, a quarter zeros) and an empty standby, %.2f s\n",
	       "images:", DEMO_SIZE_BYTES >> 20, cli_now_s() - t0);

	rc = tls_ca_create(d->ca, false, d->err, sizeof(d->err));
	if (!rc)
		rc = tls_cert_issue(d->ca, "demo-receiver", d->rtls, 1, false, d->err,
				    sizeof(d->err));
	if (!rc)
		rc = tls_cert_issue(d->ca, "demo-sender", d->stls, 1, false, d->err,
				    sizeof(d->err));
	if (rc)
		return rc;
	printf("  %-22s a throwaway CA, certificates for demo-receiver and demo-sender\n",
	       "certificates:");
	rc = start_receiver(d);
	if (rc)
		return rc;
	printf("  %-22s pvrepl receive on %s (mutual TLS 1.3, pid %d)\n", "receiver:", d->peer,
	       (int)d->receiver);

	rc = run_epoch(d, "initial sync:");
	if (!rc)
		rc = verify(d, "the initial sync");
	if (rc)
		return rc;

	rc = change_scattered(d->src, 7, &changes);
	if (rc)
		return rc;
	printf("  %-22s %" PRIu64 " random 4 KiB writes at scattered offsets (1%%)\n",
	       "change:", changes);
	rc = run_epoch(d, "incremental:");
	if (!rc)
		rc = verify(d, "the incremental epoch");
	if (rc)
		return rc;

	rc = hash_file(d->src, &h_old);
	if (!rc)
		rc = change_scattered(d->src, 8, &changes);
	if (!rc)
		rc = hash_file(d->src, &h_new);
	if (rc)
		return rc;
	printf("  %-22s another %" PRIu64 " scattered writes\n", "change:", changes);
	rc = crash_epoch(d, h_old, h_new, &was_new);
	if (rc)
		return rc;
	rc = start_receiver(d);
	if (rc)
		return rc;
	printf("  %-22s receiver restarted (pid %d): committed epochs replayed, uncommitted discarded\n",
	       "recovery:", (int)d->receiver);
	rc = run_epoch(d, "after restart:");
	if (!rc)
		rc = verify(d, "the restart");
	return rc;
}

static void print_summary(const struct demo *d)
{
	uint64_t scanned = 0, changed = 0, payload = 0, data = 0, wire = 0;
	struct out *o = out_new();
	/* out keeps pointers to keys and labels until out_free. */
	char key[4][32], label[4][64];

	if (!o)
		return;
	for (unsigned i = 0; i < d->epochs && i < 4; i++) {
		scanned += d->res[i].blocks_scanned * d->res[i].block_bytes;
		changed += d->res[i].blocks_changed;
		payload += d->res[i].payload_bytes;
		data += d->res[i].data_bytes;
		wire += d->res[i].wire_bytes;
	}
	out_u64(o, "volume_bytes", "Volume", DEMO_SIZE_BYTES, OUT_UNIT_BYTES);
	out_u64(o, "block_size", "Block size", d->res[0].block_bytes, OUT_UNIT_BYTES);
	out_u64(o, "epochs", "Epochs replicated", d->epochs, OUT_UNIT_NONE);
	out_u64(o, "bytes_scanned", "Bytes scanned", scanned, OUT_UNIT_BYTES);
	out_u64(o, "blocks_changed", "Blocks changed", changed, OUT_UNIT_NONE);
	out_u64(o, "payload_bytes", "Payload sent (plaintext)", payload, OUT_UNIT_BYTES);
	out_u64(o, "wire_bytes", "Bytes on the wire (TLS)", wire, OUT_UNIT_BYTES);
	out_f64(o, "compression_ratio", "Compression ratio",
		data ? (double)payload / (double)data : 1.0, OUT_UNIT_RATIO);
	for (unsigned i = 0; i < d->epochs && i < 4; i++) {
		snprintf(key[i], sizeof(key[i]), "epoch%u_seconds", i + 1);
		snprintf(label[i], sizeof(label[i]), "Epoch %" PRIu64 " (%s)", d->res[i].epoch,
			 d->res[i].initial_sync ? "full sync" : "incremental");
		out_f64(o, key[i], label[i], d->res[i].seconds, OUT_UNIT_SECONDS);
	}
	out_str(o, "result", "Result", "ok");
	printf("\nSummary\n");
	out_print(o, OUT_TEXT, stdout);
	out_free(o);
}

int cmd_demo(int argc, char **argv)
{
	static struct demo d;
	int rc;

	if (argc > 1) {
		bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");

		fprintf(help ? stdout : stderr,
			"Usage: pvrepl demo\n\n"
			"Replicates a 256 MiB image to a standby image over mutual TLS on loopback:\n"
			"initial sync, a 1%% incremental epoch, a receiver killed mid-epoch and\n"
			"restarted, with the standby verified after each. Cleans up after itself.\n");
		return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	memset(&d, 0, sizeof(d));
	snprintf(d.dir, sizeof(d.dir), "/var/tmp/pvrepl-demo-XXXXXX");
	if (!mkdtemp(d.dir)) {
		cli_err("cannot create a temporary directory under /var/tmp: %s", strerror(errno));
		return CLI_EXIT_IOERR;
	}
#define DEMO_PATH(f, name) snprintf(d.f, sizeof(d.f), "%s/" name, d.dir)
	DEMO_PATH(src, "source.img");
	DEMO_PATH(dst, "standby.img");
	DEMO_PATH(rstate, "rstate");
	DEMO_PATH(sstate, "sstate");
	DEMO_PATH(ca, "ca");
	DEMO_PATH(rtls, "rtls");
	DEMO_PATH(stls, "stls");
	DEMO_PATH(ready, "receiver.addr");
	DEMO_PATH(rlog, "receiver.log");
#undef DEMO_PATH
	d.cfg = (struct sender_config){
		.volume = "demo",
		.device = d.src,
		.state_dir = d.sstate,
		.tls_dir = d.stls,
		.server_name = "demo-receiver",
		.timeout_ms = 10000,
		.progress = PROGRESS_AUTO,
	};
	scan_config_defaults(&d.cfg.scan);
	printf("pvrepl demo: replicating a volume to a standby in %s\n", d.dir);
	rc = demo_run(&d);
	if (!rc)
		print_summary(&d);
	if (rc) {
		FILE *f = fopen(d.rlog, "r");
		char line[512];

		fflush(stdout);
		cli_err("demo failed: %s", d.err[0] ? d.err : strerror(-rc));
		if (f) {
			fprintf(stderr, "receiver log:\n");
			while (fgets(line, sizeof(line), f))
				fprintf(stderr, "  %s", line);
			fclose(f);
		}
	}
	cleanup(&d);
	if (rc)
		return cli_exit_for(rc);
	printf("\nThe standby matched the source after every epoch, and after a receiver\n"
	       "killed mid-epoch it held exactly one epoch. Run `pvrepl --help` for more.\n");
	return CLI_EXIT_OK;
}
