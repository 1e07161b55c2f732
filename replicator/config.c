// SPDX-License-Identifier: Apache-2.0
/*
 * config — reads the daemons' INI file with libinih and checks every value with
 * the command line's rules, collecting all problems with their lines.
 *
 * libinih does the parsing; this file feeds it lines through its own reader so
 * that it knows the line number of every key (libinih's handler is not told it),
 * the header line of every section (so that a section with no keys, a repeated
 * section and a missing key are reported at the header), and which lines libinih
 * rejected (a content line for which the handler was not called is a syntax
 * error). The handler never returns 0: it records its own problems and goes on.
 * One table of keys drives both the file and the PVREPL_* environment.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opt.h"
#include "capture.h"
#include "config.h"
#include "pvrepl_assert.h"
#include "scan.h"

enum config_sec {
	SEC_NONE = 0, /* before the first header */
	SEC_RECEIVER,
	SEC_SENDER,
	SEC_VOLUME,
	SEC_IGNORE, /* an unknown or refused section: its keys are not checked */
};

enum config_type {
	TYPE_ADDR,     /* HOST:PORT, [V6]:PORT or :PORT */
	TYPE_PEER,     /* HOST:PORT with a host */
	TYPE_HOST,     /* a host name, no spaces */
	TYPE_PATH,     /* non-empty */
	TYPE_ABSPATH,  /* starts with '/' */
	TYPE_DURATION, /* cli_parse_duration, in [min, max] ms */
	TYPE_SIZE,     /* cli_parse_size, in [min, max] bytes */
	TYPE_RATE,     /* cli_parse_rate, in [min, max] bytes per second */
	TYPE_BLOCK,    /* a power of two from SCAN_BLOCK_BYTES_MIN to _MAX */
	TYPE_ALLOW,    /* a comma list of certificate names, repeatable */
	TYPE_TRACK,    /* auto, bpf or off */
	TYPE_CAPTURE,  /* auto, none, freeze, reflink or snapshot */
};

struct config_key {
	enum config_sec sec;
	const char *key;
	enum config_type type;
	size_t offset; /* in struct config_receiver, _sender or _volume */
	size_t size;   /* of the string buffer */
	uint64_t min, max;
	bool required;
	const char *hint; /* what a good value looks like */
};

#define STR_KEY(sec, st, key, field, type, req, hint)                                              \
	{                                                                                          \
		sec, key, type, offsetof(struct st, field), sizeof(((struct st *)0)->field), 0, 0, \
			req, hint                                                                  \
	}
#define NUM_KEY(sec, st, key, field, type, min, max, req, hint)                                   \
	{                                                                                         \
		sec, key, type, offsetof(struct st, field), sizeof(uint64_t), min, max, req, hint \
	}

static const struct config_key config_keys[] = {
	STR_KEY(SEC_RECEIVER, config_receiver, "listen", listen, TYPE_ADDR, true,
		"HOST:PORT, e.g. 0.0.0.0:7400"),
	STR_KEY(SEC_RECEIVER, config_receiver, "tls_dir", tls_dir, TYPE_PATH, true,
		"a directory with tls.crt, tls.key and ca.crt"),
	STR_KEY(SEC_RECEIVER, config_receiver, "state_dir", state_dir, TYPE_ABSPATH, true,
		"an absolute path of a directory, e.g. /var/lib/pvrepl (a daemon's working directory is not a place for state)"),
	NUM_KEY(SEC_RECEIVER, config_receiver, "journal_size", journal_bytes, TYPE_SIZE, 16u << 20,
		UINT64_MAX, false, "a size of at least 16M, e.g. 1G"),
	NUM_KEY(SEC_RECEIVER, config_receiver, "timeout", timeout_ms, TYPE_DURATION, 100, 3600000,
		false, "a duration from 100ms to 1h, e.g. 30s"),
	STR_KEY(SEC_RECEIVER, config_receiver, "metrics_addr", metrics_addr, TYPE_ADDR, false,
		"HOST:PORT or :PORT, e.g. :9500"),

	STR_KEY(SEC_SENDER, config_sender, "tls_dir", tls_dir, TYPE_PATH, true,
		"a directory with tls.crt, tls.key and ca.crt"),
	STR_KEY(SEC_SENDER, config_sender, "peer", peer, TYPE_PEER, true,
		"the receiver's HOST:PORT, e.g. standby.example:7400"),
	STR_KEY(SEC_SENDER, config_sender, "server_name", server_name, TYPE_HOST, false,
		"the name in the receiver's certificate"),
	NUM_KEY(SEC_SENDER, config_sender, "interval", interval_ms, TYPE_DURATION, 1, UINT64_MAX,
		true, "a duration such as 30s or 5m"),
	NUM_KEY(SEC_SENDER, config_sender, "rpo", rpo_ms, TYPE_DURATION, 1, UINT64_MAX, false,
		"a duration such as 30s or 5m"),
	NUM_KEY(SEC_SENDER, config_sender, "timeout", timeout_ms, TYPE_DURATION, 100, 3600000,
		false, "a duration from 100ms to 1h, e.g. 30s"),
	NUM_KEY(SEC_SENDER, config_sender, "max_rate", max_rate_bytes_per_s, TYPE_RATE, 4096,
		UINT64_MAX, false,
		"a rate of at least 4k bytes per second, e.g. 50M (MiB/s) or 400Mbit"),
	NUM_KEY(SEC_SENDER, config_sender, "max_read_rate", max_read_bytes_per_s, TYPE_RATE, 4096,
		UINT64_MAX, false, "bytes per second, at least 4k, e.g. 200M"),
	STR_KEY(SEC_SENDER, config_sender, "metrics_addr", metrics_addr, TYPE_ADDR, false,
		"HOST:PORT or :PORT, e.g. :9501"),
	NUM_KEY(SEC_SENDER, config_sender, "block_size", block_bytes, TYPE_BLOCK,
		SCAN_BLOCK_BYTES_MIN, SCAN_BLOCK_BYTES_MAX, false,
		"a power of two from 4k to 1M, e.g. 16k"),
	STR_KEY(SEC_SENDER, config_sender, "track", track, TYPE_TRACK, false, "auto, bpf or off"),
	NUM_KEY(SEC_SENDER, config_sender, "full_scan_interval", full_scan_interval_ms,
		TYPE_DURATION, 1000, UINT64_MAX, false, "a duration of at least 1s, e.g. 24h"),
	STR_KEY(SEC_SENDER, config_sender, "track_pin_dir", track_pin_dir, TYPE_ABSPATH, false,
		"an absolute path on bpffs, e.g. /sys/fs/bpf/pvrepl"),
	STR_KEY(SEC_SENDER, config_sender, "capture", capture, TYPE_CAPTURE, false,
		"auto, none, freeze, reflink or snapshot"),
	NUM_KEY(SEC_SENDER, config_sender, "freeze_timeout", freeze_timeout_ms, TYPE_DURATION,
		CAPTURE_FREEZE_TIMEOUT_MS_MIN, CAPTURE_FREEZE_TIMEOUT_MS_MAX, false,
		"a duration from 10ms to 60s, e.g. 2s"),

	STR_KEY(SEC_VOLUME, config_volume, "device", device, TYPE_ABSPATH, true,
		"an absolute path, e.g. /dev/vg0/data"),
	STR_KEY(SEC_VOLUME, config_volume, "state_dir", state_dir, TYPE_ABSPATH, false,
		"an absolute path: the sender's state directory for this volume"),
	STR_KEY(SEC_VOLUME, config_volume, "capture", capture, TYPE_CAPTURE, false,
		"auto, none, freeze, reflink or snapshot"),
	STR_KEY(SEC_VOLUME, config_volume, "freeze_path", freeze_path, TYPE_ABSPATH, false,
		"an absolute path in the file system on the device, e.g. /var/lib/postgresql"),
	STR_KEY(SEC_VOLUME, config_volume, "snapshot_cmd", snapshot_cmd, TYPE_PATH, false,
		"a shell command that prints the path of a point-in-time device of the volume"),
	STR_KEY(SEC_VOLUME, config_volume, "snapshot_release_cmd", snapshot_release_cmd, TYPE_PATH,
		false, "a shell command that releases the snapshot named by $PVREPL_SNAPSHOT"),
	{ SEC_VOLUME, "allow", TYPE_ALLOW, 0, 0, 0, 0, false,
	  "certificate names, one per line or a comma list" },
};
_Static_assert(ARRAY_SIZE(config_keys) <= 32, "the seen mask is a uint32_t");

struct config_parse {
	struct config *c;
	struct config_problem *problems;
	unsigned problems_max;
	unsigned problem_count;
	FILE *f;
	char *buf;
	size_t buf_cap;
	unsigned line;
	bool content; /* the current line should reach the handler */
	bool handled; /* ... and it did */
	enum config_sec sec;
	unsigned sec_line;
	uint32_t seen; /* bit i: config_keys[i] set in this section */
	void *base;    /* the struct the section's keys go into */
	struct config_volume *vol;
};

static void config_vproblem(struct config_problem *problems, unsigned problems_max, unsigned *count,
			    unsigned line, const char *fmt, va_list ap)
{
	if (*count < problems_max) {
		problems[*count].line = line;
		vsnprintf(problems[*count].message, sizeof(problems[*count].message), fmt, ap);
	}
	(*count)++;
}

static void __attribute__((format(printf, 3, 4)))
config_problem(struct config_parse *p, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vproblem(p->problems, p->problems_max, &p->problem_count, line, fmt, ap);
	va_end(ap);
}

static const char *config_sec_name(enum config_sec sec)
{
	switch (sec) {
	case SEC_RECEIVER:
		return "receiver";
	case SEC_SENDER:
		return "sender";
	case SEC_VOLUME:
		return "volume";
	default:
		return "?";
	}
}

/* A peer's port is 1..65535; a listening address may say 0 (any free port). */
static int config_check_port(const char *s, unsigned long min)
{
	char *end;
	unsigned long port;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	port = strtoul(s, &end, 10);
	if (errno || *end || port < min || port > 65535)
		return -EINVAL;
	return 0;
}

static bool config_is_token(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isgraph((unsigned char)s[i]))
			return false;
	return true;
}

/* HOST:PORT, [V6]:PORT, or (without need_host) :PORT. */
static int config_check_addr(const char *s, bool need_host)
{
	const char *colon;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close == s + 1 || close[1] != ':' ||
		    !config_is_token(s + 1, (size_t)(close - s - 1)))
			return -EINVAL;
		return config_check_port(close + 2, need_host ? 1 : 0);
	}
	colon = strrchr(s, ':');
	if (!colon || strchr(s, ':') != colon || (need_host && colon == s) ||
	    !config_is_token(s, (size_t)(colon - s)))
		return -EINVAL;
	return config_check_port(colon + 1, need_host ? 1 : 0);
}

/* 1..63 printable characters, no '/', not "." or "..": it names a directory. */
static bool config_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len < 1 || len >= CONFIG_NAME_MAX || !config_is_token(name, len))
		return false;
	if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	return true;
}

static int config_set_allow(struct config_volume *v, const char *value, char *err, size_t err_len)
{
	const char *s = value;

	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);

		while (len && isspace((unsigned char)*s)) {
			s++;
			len--;
		}
		while (len && isspace((unsigned char)s[len - 1]))
			len--;
		if (!len || !config_is_token(s, len) || len >= CONFIG_CERT_MAX) {
			snprintf(
				err, err_len,
				"expected certificate names (1 to %u characters, no spaces) separated by commas",
				CONFIG_CERT_MAX - 1);
			return -EINVAL;
		}
		if (v->allow_count >= CONFIG_ALLOW_MAX) {
			snprintf(err, err_len, "at most %u allow entries per volume; remove some",
				 CONFIG_ALLOW_MAX);
			return -EINVAL;
		}
		memcpy(v->allow[v->allow_count], s, len);
		v->allow[v->allow_count][len] = '\0';
		v->allow_count++;
		if (!comma)
			return 0;
		s = comma + 1;
	}
}

/* Checks value against k and stores it in base. On error writes why into err. */
static int config_set(const struct config_key *k, void *base, const char *value, char *err,
		      size_t err_len)
{
	char *field = (char *)base + k->offset;
	uint64_t v = 0;
	int rc = 0;

	switch (k->type) {
	case TYPE_ALLOW:
		return config_set_allow(base, value, err, err_len);
	case TYPE_ADDR:
	case TYPE_PEER:
		rc = config_check_addr(value, k->type == TYPE_PEER);
		break;
	case TYPE_HOST:
		rc = *value && config_is_token(value, strlen(value)) ? 0 : -EINVAL;
		break;
	case TYPE_PATH:
		rc = *value ? 0 : -EINVAL;
		break;
	case TYPE_ABSPATH:
		rc = *value == '/' ? 0 : -EINVAL;
		break;
	case TYPE_CAPTURE: {
		enum capture_mode m;

		rc = capture_mode_parse(value, &m);
	} break;
	case TYPE_TRACK:
		rc = strcmp(value, "auto") && strcmp(value, "bpf") && strcmp(value, "off") ? -EINVAL
											   : 0;
		break;
	case TYPE_DURATION:
		rc = cli_parse_duration(value, &v);
		break;
	case TYPE_SIZE:
	case TYPE_BLOCK:
		rc = cli_parse_size(value, &v);
		break;
	case TYPE_RATE:
		rc = cli_parse_rate(value, &v);
		break;
	}
	if (!rc &&
	    (k->type == TYPE_DURATION || k->type == TYPE_SIZE || k->type == TYPE_RATE ||
	     k->type == TYPE_BLOCK) &&
	    (v < k->min || v > k->max || (k->type == TYPE_BLOCK && (v & (v - 1)))))
		rc = -EINVAL;
	if (!rc && k->size != sizeof(uint64_t) && strlen(value) >= k->size) {
		snprintf(err, err_len, "longer than %zu characters", k->size - 1);
		return -EINVAL;
	}
	if (rc) {
		snprintf(err, err_len, "expected %s", k->hint);
		return rc;
	}
	if (k->type == TYPE_DURATION || k->type == TYPE_SIZE || k->type == TYPE_RATE ||
	    k->type == TYPE_BLOCK)
		memcpy(field, &v, sizeof(v));
	else
		snprintf(field, k->size, "%s", value);
	return 0;
}

static const struct config_key *config_find_key(enum config_sec sec, const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
		if (config_keys[i].sec == sec && !strcmp(config_keys[i].key, key))
			return &config_keys[i];
	return NULL;
}

/*
 * The volume's capture against its snapshot commands (after the environment
 * too: PVREPL_CAPTURE may change the capture). The problem into why; false
 * when there is none.
 */
static bool config_capture_problem(const struct config *c, const struct config_volume *v, char *why,
				   size_t why_len)
{
	const char *capture = v->capture[0] ? v->capture : c->sender.capture;
	bool snapshot = !strcmp(capture, "snapshot");

	if (snapshot && !v->snapshot_cmd[0]) {
		snprintf(
			why, why_len,
			"[volume %s] is captured by snapshot but lacks snapshot_cmd; add 'snapshot_cmd = ...', a command that prints the path of a point-in-time device of it",
			v->name);
		return true;
	}
	if (!snapshot && (v->snapshot_cmd[0] || v->snapshot_release_cmd[0])) {
		snprintf(
			why, why_len,
			"[volume %s] has a snapshot command, but its capture is %s; set 'capture = snapshot' (or PVREPL_CAPTURE=snapshot), or drop the command",
			v->name, capture[0] ? capture : "auto");
		return true;
	}
	return false;
}

static void config_close_section(struct config_parse *p)
{
	const char *name = p->sec == SEC_VOLUME ? p->vol->name : "";

	if (p->sec == SEC_NONE || p->sec == SEC_IGNORE)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
		const struct config_key *k = &config_keys[i];

		if (k->sec != p->sec || !k->required || (p->seen & (1u << i)))
			continue;
		config_problem(p, p->sec_line, "[%s%s%s] lacks %s; add '%s = ...' (%s)",
			       config_sec_name(p->sec), *name ? " " : "", name, k->key, k->key,
			       k->hint);
	}
}

static void config_open_section(struct config_parse *p, const char *header)
{
	struct config *c = p->c;
	const char *vname;

	config_close_section(p);
	p->sec = SEC_IGNORE;
	p->sec_line = p->line;
	p->seen = 0;
	p->base = NULL;
	p->vol = NULL;
	if (!strcmp(header, "receiver") || !strcmp(header, "sender")) {
		bool recv = header[0] == 'r';
		bool *present = recv ? &c->receiver.present : &c->sender.present;
		unsigned *line = recv ? &c->receiver.line : &c->sender.line;

		if (*present) {
			config_problem(p, p->line,
				       "[%s] appears twice (first on line %u); merge them", header,
				       *line);
			return;
		}
		*present = true;
		*line = p->line;
		p->sec = recv ? SEC_RECEIVER : SEC_SENDER;
		p->base = recv ? (void *)&c->receiver : (void *)&c->sender;
		return;
	}
	if (strncmp(header, "volume", 6) || (header[6] && !isspace((unsigned char)header[6]))) {
		config_problem(p, p->line,
			       "unknown section [%s]; use [receiver], [sender] or [volume NAME]",
			       header);
		return;
	}
	vname = header + 6;
	while (isspace((unsigned char)*vname))
		vname++;
	if (!config_name_ok(vname)) {
		config_problem(
			p, p->line,
			"[%s]: a volume needs a name of 1 to 63 printable characters without spaces or '/', e.g. [volume data]",
			header);
		return;
	}
	for (unsigned i = 0; i < c->volume_count; i++)
		if (!strcmp(c->volumes[i].name, vname)) {
			config_problem(
				p, p->line,
				"[volume %s] appears twice (first on line %u); rename or merge one",
				vname, c->volumes[i].line);
			return;
		}
	if (c->volume_count >= CONFIG_VOLUMES_MAX) {
		config_problem(p, p->line,
			       "[volume %s]: more than %u volumes; split the file between hosts",
			       vname, CONFIG_VOLUMES_MAX);
		return;
	}
	p->vol = &c->volumes[c->volume_count++];
	p->vol->line = p->line;
	memcpy(p->vol->name, vname, strlen(vname) + 1); /* config_name_ok: it fits */
	p->sec = SEC_VOLUME;
	p->base = p->vol;
}

/* A content line that libinih read without calling the handler was rejected. */
static void config_check_line(struct config_parse *p)
{
	if (p->content && !p->handled)
		config_problem(
			p, p->line,
			"cannot parse this line; expected 'key = value', '[section]' or a comment");
	p->content = false;
	p->handled = false;
}

/* libinih's fgets-like reader: counts lines and notes section headers. */
static char *config_read_line(char *str, int num, void *stream)
{
	struct config_parse *p = stream;
	ssize_t n;
	char *s;

	config_check_line(p);
	n = getline(&p->buf, &p->buf_cap, p->f);
	if (n < 0 || num < 2)
		return NULL;
	p->line++;
	s = p->buf;
	if (p->line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if ((size_t)n + 1 > (size_t)num) {
		config_problem(p, p->line, "line longer than %d characters; shorten it", num - 2);
		snprintf(str, (size_t)num, "\n");
		return str;
	}
	/* libinih cuts a value at a ';' after whitespace (a comment): a shell
	 * command with one would run cut short, so it is refused. */
	if ((!strncmp(s, "snapshot_cmd", 12) || !strncmp(s, "snapshot_release_cmd", 20)) &&
	    (strstr(s, " ;") || strstr(s, "\t;")))
		config_problem(
			p, p->line,
			"a ';' after a space starts a comment in this file, so this command would be cut there; put the command in a script and give the script's path");
	if (*s == '[') {
		char *close = strchr(s, ']');
		char header[CONFIG_NAME_MAX + 16];
		size_t len;

		if (!close) {
			config_close_section(p);
			p->sec = SEC_IGNORE;
			config_problem(p, p->line, "section header lacks its ']'");
		} else {
			s++;
			while (s < close && isspace((unsigned char)*s))
				s++;
			len = (size_t)(close - s);
			while (len && isspace((unsigned char)s[len - 1]))
				len--;
			if (len >= sizeof(header))
				len = sizeof(header) - 1;
			memcpy(header, s, len);
			header[len] = '\0';
			config_open_section(p, header);
		}
	} else if (*s && *s != ';' && *s != '#') {
		p->content = true;
	}
	memcpy(str, p->buf, (size_t)n + 1);
	return str;
}

static int config_on_key(void *user, const char *section, const char *key, const char *value)
{
	struct config_parse *p = user;
	const struct config_key *k;
	char err[CONFIG_MESSAGE_MAX];
	size_t i;

	(void)section; /* the reader tracks sections, with their lines */
	p->handled = true;
	if (p->sec == SEC_IGNORE)
		return 1;
	if (p->sec == SEC_NONE) {
		config_problem(
			p, p->line,
			"%s is outside any section; put it under [receiver], [sender] or [volume NAME]",
			key);
		return 1;
	}
	k = config_find_key(p->sec, key);
	if (!k) {
		char known[CONFIG_MESSAGE_MAX] = "";

		for (i = 0; i < ARRAY_SIZE(config_keys); i++)
			if (config_keys[i].sec == p->sec)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
					 "%s%s", *known ? ", " : "", config_keys[i].key);
		config_problem(p, p->line, "unknown key '%s' in [%s]; known keys: %s", key,
			       config_sec_name(p->sec), known);
		return 1;
	}
	i = (size_t)(k - config_keys);
	if ((p->seen & (1u << i)) && k->type != TYPE_ALLOW) {
		config_problem(p, p->line, "%s is set twice in this section; keep one", key);
		return 1;
	}
	p->seen |= 1u << i;
	if (config_set(k, p->base, value, err, sizeof(err)))
		config_problem(p, p->line, "%s = %s: %s", key, value, err);
	return 1;
}

static void config_sort_problems(struct config_problem *problems, unsigned n)
{
	/* Insertion sort: stable, and n is small. */
	for (unsigned i = 1; i < n; i++) {
		struct config_problem t = problems[i];
		unsigned j = i;

		for (; j > 0 && problems[j - 1].line > t.line; j--)
			problems[j] = problems[j - 1];
		problems[j] = t;
	}
}

void config_init(struct config *c)
{
	ASSERT(c);
	memset(c, 0, sizeof(*c));
	c->receiver.timeout_ms = CONFIG_TIMEOUT_MS;
	c->receiver.journal_bytes = CONFIG_JOURNAL_BYTES;
	c->sender.timeout_ms = CONFIG_TIMEOUT_MS;
}

int config_load(struct config *c, const char *path, struct config_problem *problems,
		unsigned problems_max, unsigned *problem_count)
{
	struct config_parse p = { .c = c, .problems = problems, .problems_max = problems_max };
	int rc;

	ASSERT(c);
	ASSERT(path);
	ASSERT(problem_count);
	ASSERT(problems || !problems_max);
	config_init(c);
	p.f = fopen(path, "re");
	if (!p.f) {
		rc = -errno;
		config_problem(&p, 0, "cannot open %s: %s", path, strerror(-rc));
		*problem_count = p.problem_count;
		return rc;
	}
	rc = ini_parse_stream(config_read_line, &p, config_on_key, &p);
	config_check_line(&p);
	if (ferror(p.f)) {
		rc = -EIO;
		config_problem(&p, 0, "cannot read %s: %s", path, strerror(EIO));
	} else if (rc == -2) {
		rc = -ENOMEM;
		config_problem(&p, 0, "out of memory reading %s", path);
	}
	fclose(p.f);
	free(p.buf);
	if (rc < 0) {
		*problem_count = p.problem_count;
		return rc;
	}
	config_close_section(&p);
	if (!c->volume_count)
		config_problem(&p, 0, "no volume; add a [volume NAME] section with a device");
	if (!c->receiver.present && !c->sender.present)
		config_problem(&p, 0,
			       "neither [receiver] nor [sender]; add the section of this host");
	for (unsigned i = 0; c->sender.present && i < c->volume_count; i++) {
		const struct config_volume *v = &c->volumes[i];
		char why[CONFIG_MESSAGE_MAX];

		if (!v->state_dir[0])
			config_problem(
				&p, v->line,
				"[volume %s] lacks state_dir, which the sender needs; add 'state_dir = /var/lib/pvrepl/%s'",
				v->name, v->name);
		if (config_capture_problem(c, v, why, sizeof(why)))
			config_problem(&p, v->line, "%s", why);
	}
	config_sort_problems(problems,
			     p.problem_count < problems_max ? p.problem_count : problems_max);
	*problem_count = p.problem_count;
	return p.problem_count ? -EINVAL : 0;
}

/* Which key each PVREPL_* variable sets; a variable may set one key per section. */
static const struct {
	const char *env;
	enum config_sec sec;
	const char *key;
} config_env[] = {
	{ "PVREPL_LISTEN", SEC_RECEIVER, "listen" },
	{ "PVREPL_TLS_DIR", SEC_RECEIVER, "tls_dir" },
	{ "PVREPL_TLS_DIR", SEC_SENDER, "tls_dir" },
	{ "PVREPL_STATE_DIR", SEC_RECEIVER, "state_dir" },
	{ "PVREPL_STATE_DIR", SEC_VOLUME, "state_dir" },
	{ "PVREPL_JOURNAL_SIZE", SEC_RECEIVER, "journal_size" },
	{ "PVREPL_TIMEOUT", SEC_RECEIVER, "timeout" },
	{ "PVREPL_TIMEOUT", SEC_SENDER, "timeout" },
	{ "PVREPL_METRICS_ADDR", SEC_RECEIVER, "metrics_addr" },
	{ "PVREPL_METRICS_ADDR", SEC_SENDER, "metrics_addr" },
	{ "PVREPL_PEER", SEC_SENDER, "peer" },
	{ "PVREPL_SERVER_NAME", SEC_SENDER, "server_name" },
	{ "PVREPL_INTERVAL", SEC_SENDER, "interval" },
	{ "PVREPL_RPO", SEC_SENDER, "rpo" },
	{ "PVREPL_MAX_RATE", SEC_SENDER, "max_rate" },
	{ "PVREPL_MAX_READ_RATE", SEC_SENDER, "max_read_rate" },
	{ "PVREPL_BLOCK_SIZE", SEC_SENDER, "block_size" },
	{ "PVREPL_TRACK", SEC_SENDER, "track" },
	{ "PVREPL_FULL_SCAN_INTERVAL", SEC_SENDER, "full_scan_interval" },
	{ "PVREPL_TRACK_PIN_DIR", SEC_SENDER, "track_pin_dir" },
	{ "PVREPL_CAPTURE", SEC_SENDER, "capture" },
	{ "PVREPL_FREEZE_TIMEOUT", SEC_SENDER, "freeze_timeout" },
	{ "PVREPL_FREEZE_PATH", SEC_VOLUME, "freeze_path" },
	{ "PVREPL_SNAPSHOT_CMD", SEC_VOLUME, "snapshot_cmd" },
	{ "PVREPL_SNAPSHOT_RELEASE_CMD", SEC_VOLUME, "snapshot_release_cmd" },
	{ "PVREPL_DEVICE", SEC_VOLUME, "device" },
	{ "PVREPL_ALLOW", SEC_VOLUME, "allow" },
};

static const char *config_getenv(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

static void __attribute__((format(printf, 5, 6)))
config_env_problem(struct config_problem *problems, unsigned problems_max, unsigned *count, int *rc,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vproblem(problems, problems_max, count, 0, fmt, ap);
	va_end(ap);
	*rc = -EINVAL;
}

int config_apply_env(struct config *c, char *const *envp, struct config_problem *problems,
		     unsigned problems_max, unsigned *problem_count)
{
	const char *name = config_getenv(envp, "PVREPL_VOLUME");
	char err[CONFIG_MESSAGE_MAX];
	int rc = 0;

	ASSERT(c);
	ASSERT(problem_count);
	ASSERT(problems || !problems_max);
	if (name) {
		if (!config_name_ok(name))
			config_env_problem(
				problems, problems_max, problem_count, &rc,
				"PVREPL_VOLUME=%s: expected a name of 1 to 63 printable characters without spaces or '/'",
				name);
		else if (c->volume_count > 1)
			config_env_problem(
				problems, problems_max, problem_count, &rc,
				"PVREPL_VOLUME names the single volume, but the file has %u; unset it",
				c->volume_count);
		else {
			if (!c->volume_count)
				memset(&c->volumes[c->volume_count++], 0, sizeof(c->volumes[0]));
			snprintf(c->volumes[0].name, sizeof(c->volumes[0].name), "%s", name);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(config_env); i++) {
		const char *value = config_getenv(envp, config_env[i].env);
		const struct config_key *k = config_find_key(config_env[i].sec, config_env[i].key);
		void *base;

		ASSERT(k);
		if (!value)
			continue;
		if (config_env[i].sec == SEC_RECEIVER) {
			base = &c->receiver;
		} else if (config_env[i].sec == SEC_SENDER) {
			base = &c->sender;
		} else if (c->volume_count == 1) {
			base = &c->volumes[0];
			if (k->type == TYPE_ALLOW)
				c->volumes[0].allow_count = 0; /* replace the file's list */
		} else {
			/* PVREPL_STATE_DIR also sets the receiver's: only complain if
			 * it is about the volume alone. */
			if (strcmp(config_env[i].env, "PVREPL_STATE_DIR"))
				config_env_problem(
					problems, problems_max, problem_count, &rc,
					"%s is about a single volume, but there are %u; %s",
					config_env[i].env, c->volume_count,
					c->volume_count ? "use the file" : "set PVREPL_VOLUME too");
			continue;
		}
		if (config_set(k, base, value, err, sizeof(err)))
			config_env_problem(problems, problems_max, problem_count, &rc, "%s=%s: %s",
					   config_env[i].env, value, err);
	}
	return rc;
}

int config_gather(struct config *c, const char *path, char *const *envp, char *msg, size_t msg_len)
{
	static __thread struct config_problem problems[CONFIG_PROBLEMS_MAX];
	unsigned found = 0, env_from;
	size_t used = 0;
	int rc = 0, erc;

	ASSERT(c && msg && msg_len);
	msg[0] = '\0';
	config_init(c);
	if (path)
		rc = config_load(c, path, problems, CONFIG_PROBLEMS_MAX, &found);
	if (rc && rc != -EINVAL) {
		if (found)
			snprintf(msg, msg_len, "%s", problems[0].message);
		else
			snprintf(msg, msg_len, "%s: %s", path, strerror(-rc));
		return rc;
	}
	env_from = found;
	erc = config_apply_env(c, envp, problems, CONFIG_PROBLEMS_MAX, &found);
	if (!rc)
		rc = erc;
	/* What the environment changed is checked as the file was. */
	for (unsigned i = 0; !rc && c->sender.present && i < c->volume_count; i++) {
		char why[CONFIG_MESSAGE_MAX];

		if (config_capture_problem(c, &c->volumes[i], why, sizeof(why)))
			config_env_problem(problems, CONFIG_PROBLEMS_MAX, &found, &erc, "%s", why);
		rc = erc;
	}
	for (unsigned i = 0; i < found && i < CONFIG_PROBLEMS_MAX && used < msg_len; i++) {
		int n;

		if (i >= env_from)
			n = snprintf(msg + used, msg_len - used, "%senvironment: %s", i ? "\n" : "",
				     problems[i].message);
		else if (problems[i].line)
			n = snprintf(msg + used, msg_len - used, "%s%s:%u: %s", i ? "\n" : "", path,
				     problems[i].line, problems[i].message);
		else
			n = snprintf(msg + used, msg_len - used, "%s%s: %s", i ? "\n" : "", path,
				     problems[i].message);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (found > CONFIG_PROBLEMS_MAX && used < msg_len)
		snprintf(msg + used, msg_len - used, "\n%u more problems not shown",
			 found - CONFIG_PROBLEMS_MAX);
	return rc;
}
