/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls_issue — the certificates behind `pvrepl certs`: a private CA, and node
 * certificates signed by it, written as the files tls.h reads (TLS_CERT_FILE,
 * TLS_KEY_FILE, TLS_CA_FILE, and TLS_CA_KEY_FILE for the CA), for tests, the demo
 * and small setups. Part of the TLS module (the OpenSSL one); it knows nothing of
 * connections, and tls.c nothing of issuing.
 */
#ifndef PVREPL_TLS_ISSUE_H
#define PVREPL_TLS_ISSUE_H

#include <stdbool.h>
#include <stddef.h>

#include "tls.h"

/* CA lifetime made by tls_ca_create, default and limit of tls_cert_issue. */
#define TLS_CA_DAYS	      3650u
#define TLS_CERT_DAYS_DEFAULT 365u
#define TLS_CERT_DAYS_MAX     3650u
/* tls_cert_issue names: 1..64 bytes (the X.509 limit of a CN). */
#define TLS_CERT_NAME_BYTES_MAX 64u

/*
 * Makes a CA in out_dir (created 0700 if missing): ca.crt and ca.key (0600),
 * EC P-256, TLS_CA_DAYS days, basicConstraints CA:TRUE critical, keyUsage
 * keyCertSign,cRLSign. Refuses (-EEXIST) to overwrite either file unless force;
 * nothing is written if any target exists.
 */
int tls_ca_create(const char *out_dir, bool force, char *err, size_t err_len);
/*
 * Issues a node certificate signed by the CA in ca_dir (ca.crt, ca.key) into
 * out_dir: tls.crt, tls.key (0600) and a copy of ca.crt. CN=name, subjectAltName
 * DNS:name (and IP:name if name is an address), extendedKeyUsage serverAuth and
 * clientAuth, a random 128-bit serial, valid for days (1..TLS_CERT_DAYS_MAX, not
 * past the CA). Same overwrite rule as tls_ca_create.
 */
int tls_cert_issue(const char *ca_dir, const char *name, const char *out_dir, unsigned days,
		   bool force, char *err, size_t err_len);

#endif
