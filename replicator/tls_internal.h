/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls internals: what the files of the TLS module share — tls.c (contexts,
 * handshakes, connections, reading credentials) and tls_issue.c (the CA and
 * certificates `pvrepl certs` makes). Only tls*.c include this header, and with
 * it OpenSSL's: no other module sees either.
 */
#ifndef PVREPL_TLS_INTERNAL_H
#define PVREPL_TLS_INTERNAL_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TLS_PATH_BYTES 4096

/* snprintf into err (NULL or err_len 0: nothing). */
__attribute__((format(printf, 3, 4))) void tls_errf(char *err, size_t err_len, const char *fmt,
						    ...);
/* The reason of the most recent OpenSSL error, for messages; clears the queue. */
const char *tls_ossl_reason(char *buf, size_t len);
/* An ASN1 time as "YYYY-MM-DD HH:MM:SS UTC", for messages. */
void tls_time_str(const ASN1_TIME *t, char *buf, size_t len);
/*
 * Reads path whole into a NUL-terminated heap buffer (*len excludes the NUL); name
 * (TLS_CA_FILE...) picks the hint in err. The caller frees *out; callers holding
 * a key wipe it with tls_free_secret (tls.c).
 */
int tls_read_file(const char *path, const char *name, char **out, size_t *len, char *err,
		  size_t err_len);
/* Parses every PEM certificate of buf; at least one is required. */
int tls_parse_certs(const char *buf, size_t len, const char *path, STACK_OF(X509) * *out, char *err,
		    size_t err_len);
/* Reads an unencrypted PEM private key from path into *out (the caller frees it). */
int tls_load_key(const char *path, const char *name, EVP_PKEY **out, char *err, size_t err_len);

#endif
