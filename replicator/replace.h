/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replace — how every state file is replaced: write a temporary file next to it,
 * fsync it, rename (or link) it over the name, fsync the directory. After a crash
 * at any point a reader finds the old file or the whole new one, never a torn
 * mix, and once replace_commit() returns 0 the new file survives power loss.
 *
 * The steps run in one fixed order, each announced to a crash hook first
 * ("<step>.create", ".write", ".fsync", ".rename", ".dirsync"), so the crash
 * tests can stop a replace before any of them and check what a reader sees:
 *
 *   replace_begin ──► create tmp ──► replace_write* ──► replace_commit:
 *                      (.create)     (.write, once)      fsync (.fsync), close,
 *                                                         rename|link (.rename),
 *                                                         fsync dir (.dirsync)
 *   any failure ──► replace_abort: the tmp file is closed and removed; the old
 *                   file is untouched. A stop by the crash hook leaves the tmp
 *                   file as a dying process would.
 *
 * A file that decides nothing after a crash (the status record, the ready file)
 * is replaced with REPLACE_NOSYNC: rename-atomic for readers, never fsynced; the
 * flag's name says so at every call site.
 *
 * Knows nothing of what the files hold. Errors are -errno with a sentence naming
 * the file and the failed step in the caller's buffer.
 */
#ifndef PVREPL_REPLACE_H
#define PVREPL_REPLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REPLACE_PATH_MAX 4200u
#define REPLACE_NAME_MAX 256u
/* Room for a sentence naming a file of REPLACE_PATH_MAX and what failed. */
#define REPLACE_ERR_MAX (REPLACE_PATH_MAX + 256u)

enum replace_flags {
	REPLACE_NOSYNC = 1u << 0,     /* rename only: no fsync of the file or directory */
	REPLACE_EXCL = 1u << 1,	      /* link(2): refuse (-EEXIST) if the name exists */
	REPLACE_NO_DIRSYNC = 1u << 2, /* the caller fsyncs the directory once, after
				       * several replaces (replace_sync_dir) */
	REPLACE_EXACT_MODE = 1u << 3, /* mode exactly, whatever the umask (key files) */
};

/*
 * The crash hook of every replace whose spec names none: called with the step
 * before it runs; a non-zero return stops the replace there and is returned.
 * Tests set it; NULL in production.
 */
extern int (*replace_crash_hook)(const char *step);

struct replace_spec {
	const char *dir; /* the directory of the file (opened here unless dirfd >= 0) */
	int dirfd;	 /* >= 0: an open descriptor of dir, borrowed */
	const char *name;
	const char *tmp_name;	       /* NULL: "<name>.tmp" */
	mode_t mode;		       /* of the new file (exact: the umask is overridden) */
	unsigned flags;		       /* enum replace_flags */
	const char *step;	       /* the crash hook's prefix, e.g. "state" (NULL: name) */
	int (*hook)(const char *step); /* NULL: replace_crash_hook */
};

struct replace {
	struct replace_spec spec;
	int dirfd;
	bool own_dirfd;
	int fd;
	bool wrote;
	bool crashed; /* stopped by the hook: leave the tmp file */
	char tmp[REPLACE_NAME_MAX];
	char *err;
	size_t err_len;
};

/* Creates the tmp file. On failure nothing is left open. err is kept for the
 * later calls and must outlive r. */
int replace_begin(struct replace *r, const struct replace_spec *spec, char *err, size_t err_len);
/* Writes len bytes at off of the tmp file (all of them, or an error). */
int replace_write(struct replace *r, const void *buf, size_t len, uint64_t off);
/* fsync, rename (or link), fsync dir; releases r in every case. */
int replace_commit(struct replace *r);
/* Releases r after a failure or a change of mind: the tmp file is removed. */
void replace_abort(struct replace *r);

/* The whole replace of a small file in one call. */
int replace_file(const struct replace_spec *spec, const void *data, size_t len, char *err,
		 size_t err_len);
/* fsync of a directory, after replaces made with REPLACE_NO_DIRSYNC. */
int replace_sync_dir(const char *dir, char *err, size_t err_len);

#endif
