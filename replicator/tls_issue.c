// SPDX-License-Identifier: Apache-2.0
/*
 * tls_issue — `pvrepl certs`: makes a private CA (EC P-256, self-signed) and
 * issues node certificates signed by it, then writes them as a Kubernetes TLS
 * Secret lays them out. Part of the TLS module, the one that includes OpenSSL
 * headers; the credentials reader (tls_read_file, tls_parse_certs, tls_load_key)
 * and the message helpers are tls.c's, through tls_internal.h.
 *
 * Key material: private keys are written through a secure-memory BIO that wipes
 * on free; OpenSSL wipes its EVP_PKEYs when they are freed. Every file is written
 * crash-safely (a temp file with its final mode, fsync, link or rename, then an
 * fsync of the directory) and never over an existing one without force.
 *
 * It knows nothing of contexts, handshakes or connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pvrepl_assert.h"
#include "replace.h"
#include "tls_internal.h"
#include "tls_issue.h"

/* Serial numbers of issued certificates: 128 random bits, top bit clear (positive). */
#define TLS_SERIAL_BYTES 16
/* notBefore of issued certificates is backdated for clocks slightly behind ours. */
#define TLS_BACKDATE_S 3600
#define TLS_DAY_S      86400L

/* mkdir -p, new directories 0700: they hold private keys. */
static int tls_mkdir_p(const char *dir, char *err, size_t err_len)
{
	char path[TLS_PATH_BYTES];
	struct stat st;
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path)) {
		tls_errf(err, err_len, "bad directory name '%s'", dir);
		return -EINVAL;
	}
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) && errno != EEXIST) {
			int rc = -errno;

			tls_errf(err, err_len, "cannot create directory %s: %s", path,
				 strerror(-rc));
			return rc;
		}
		path[i] = i == n ? '\0' : '/';
	}
	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		tls_errf(err, err_len, "%s exists and is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

static int tls_join(char *buf, size_t len, const char *dir, const char *name, char *err,
		    size_t err_len)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len) {
		tls_errf(err, err_len, "the path %s/%s is too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Refuses (-EEXIST) if any of names exists in dir, before anything is written. */
static int tls_check_targets(const char *dir, const char *const *names, int count, char *err,
			     size_t err_len)
{
	char path[TLS_PATH_BYTES];
	struct stat st;
	int rc;

	for (int i = 0; i < count; i++) {
		rc = tls_join(path, sizeof(path), dir, names[i], err, err_len);
		if (rc)
			return rc;
		if (!lstat(path, &st)) {
			tls_errf(err, err_len,
				 "%s already exists; refusing to overwrite it (use --force to "
				 "replace it)",
				 path);
			return -EEXIST;
		}
	}
	return 0;
}

/*
 * Writes dir/name crash-safely (replace.c): a temp file with the final mode (never
 * readable by others, even briefly), fsync, then link() (refuses an existing file
 * atomically) or, with force, rename(). The caller fsyncs dir once, after every
 * file of the set (tls_fsync_dir).
 */
static int tls_write_file(const char *dir, const char *name, const void *data, size_t len,
			  mode_t mode, bool force, char *err, size_t err_len)
{
	char tmp_name[64];
	struct replace_spec spec = {
		.dir = dir,
		.dirfd = -1,
		.name = name,
		.tmp_name = tmp_name,
		.mode = mode,
		.flags = REPLACE_NO_DIRSYNC | REPLACE_EXACT_MODE | (force ? 0 : REPLACE_EXCL),
	};
	char why[REPLACE_ERR_MAX] = "";
	int rc;

	snprintf(tmp_name, sizeof(tmp_name), ".%s.tmp.%d", name, (int)getpid());
	rc = replace_file(&spec, data, len, why, sizeof(why));
	if (rc == -EEXIST && !force)
		tls_errf(err, err_len, "%s; refusing to overwrite it (use --force to replace it)",
			 why);
	else if (rc)
		tls_errf(err, err_len, "cannot write %s/%s: %s", dir, name, why);
	return rc;
}

static int tls_fsync_dir(const char *dir, char *err, size_t err_len)
{
	return replace_sync_dir(dir, err, err_len);
}

/* PEM of a certificate, or of a private key through a BIO that wipes on free. */
static int tls_pem(X509 *x, EVP_PKEY *key, BIO **out)
{
	BIO *bio = BIO_new(key ? BIO_s_secmem() : BIO_s_mem());
	int ok;

	if (!bio)
		return -ENOMEM;
	ok = key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_bio_X509(bio, x);
	if (!ok) {
		BIO_free(bio);
		return -ENOMEM;
	}
	*out = bio;
	return 0;
}

static int tls_write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *key, bool force,
			 char *err, size_t err_len)
{
	BIO *bio;
	char *data;
	long len;
	int rc;

	rc = tls_pem(x, key, &bio);
	if (rc) {
		tls_errf(err, err_len, "cannot encode %s/%s: out of memory", dir, name);
		return rc;
	}
	len = BIO_get_mem_data(bio, &data);
	rc = tls_write_file(dir, name, data, (size_t)len, key ? 0600 : 0644, force, err, err_len);
	BIO_free(bio);
	return rc;
}

static int tls_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/* subjectAltName DNS:name, plus IP:name when name is an address. Built as
 * structures, not a config string, so a name cannot smuggle in other entries. */
static int tls_add_san(X509 *x, const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *g = NULL;
	ASN1_IA5STRING *dns = NULL;
	ASN1_OCTET_STRING *ip = NULL;
	int addr_len = 0, rc = -ENOMEM;

	if (inet_pton(AF_INET, name, addr) == 1)
		addr_len = 4;
	else if (inet_pton(AF_INET6, name, addr) == 1)
		addr_len = 16;
	if (!gens || !(g = GENERAL_NAME_new()) || !(dns = ASN1_IA5STRING_new()) ||
	    !ASN1_STRING_set(dns, name, -1))
		goto out;
	GENERAL_NAME_set0_value(g, GEN_DNS, dns);
	dns = NULL;
	if (!sk_GENERAL_NAME_push(gens, g))
		goto out;
	g = NULL;
	if (addr_len) {
		if (!(g = GENERAL_NAME_new()) || !(ip = ASN1_OCTET_STRING_new()) ||
		    !ASN1_OCTET_STRING_set(ip, addr, addr_len))
			goto out;
		GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
		ip = NULL;
		if (!sk_GENERAL_NAME_push(gens, g))
			goto out;
		g = NULL;
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	ASN1_OCTET_STRING_free(ip);
	ASN1_IA5STRING_free(dns);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	return rc;
}

/*
 * A new, unsigned certificate for key, issued by issuer (NULL: self-issued),
 * valid from an hour ago for days, with a random positive 128-bit serial.
 */
static X509 *tls_new_cert(const char *cn, EVP_PKEY *key, X509 *issuer, unsigned days)
{
	unsigned char serial[TLS_SERIAL_BYTES];
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIGNUM *bn = NULL;
	bool ok = false;

	if (!x || !name || RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f; /* positive */
	serial[0] |= 0x40; /* and a full 16 bytes long */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto out;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -TLS_BACKDATE_S) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * TLS_DAY_S) ||
	    !X509_set_pubkey(x, key))
		goto out;
	ok = true;
out:
	BN_free(bn);
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

int tls_ca_create(const char *out_dir, bool force, char *err, size_t err_len)
{
	static const char *const names[] = { TLS_CA_FILE, TLS_CA_KEY_FILE };
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char why[160];
	int rc;

	ASSERT(out_dir);
	rc = tls_mkdir_p(out_dir, err, err_len);
	if (rc)
		return rc;
	if (!force) {
		rc = tls_check_targets(out_dir, names, (int)ARRAY_SIZE(names), err, err_len);
		if (rc)
			return rc;
	}
	key = EVP_EC_gen("P-256");
	x = key ? tls_new_cert("pvrepl-ca", key, NULL, TLS_CA_DAYS) : NULL;
	if (!x || tls_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	    tls_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    tls_add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "cannot make the CA certificate: %s",
			 tls_ossl_reason(why, sizeof(why)));
		goto out;
	}
	/* Key first: a ca.crt without its key would be useless. */
	rc = tls_write_pem(out_dir, TLS_CA_KEY_FILE, NULL, key, force, err, err_len);
	if (!rc)
		rc = tls_write_pem(out_dir, TLS_CA_FILE, x, NULL, force, err, err_len);
	if (!rc)
		rc = tls_fsync_dir(out_dir, err, err_len);
out:
	X509_free(x);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

static bool tls_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > TLS_CERT_NAME_BYTES_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' || ch == ':'))
			return false;
	}
	return true;
}

int tls_cert_issue(const char *ca_dir, const char *name, const char *out_dir, unsigned days,
		   bool force, char *err, size_t err_len)
{
	static const char *const names[] = { TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE };
	char ca_path[TLS_PATH_BYTES], ca_key_path[TLS_PATH_BYTES], when[64], why[160];
	STACK_OF(X509) *cas = NULL;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *x = NULL;
	char *ca_pem = NULL;
	size_t ca_pem_len = 0;
	time_t end;
	int rc;

	ASSERT(ca_dir);
	ASSERT(name);
	ASSERT(out_dir);
	if (!tls_name_ok(name)) {
		tls_errf(err, err_len,
			 "the name '%s' must be 1..%u characters of letters, digits, '.', '-', "
			 "'_' or ':' (a DNS name or an IP address)",
			 name, TLS_CERT_NAME_BYTES_MAX);
		return -EINVAL;
	}
	if (days < 1 || days > TLS_CERT_DAYS_MAX) {
		tls_errf(err, err_len, "--days must be between 1 and %u", TLS_CERT_DAYS_MAX);
		return -EINVAL;
	}
	rc = tls_join(ca_path, sizeof(ca_path), ca_dir, TLS_CA_FILE, err, err_len);
	if (!rc)
		rc = tls_join(ca_key_path, sizeof(ca_key_path), ca_dir, TLS_CA_KEY_FILE, err,
			      err_len);
	if (rc)
		return rc;
	rc = tls_read_file(ca_path, TLS_CA_FILE, &ca_pem, &ca_pem_len, err, err_len);
	if (rc)
		return rc;
	rc = tls_parse_certs(ca_pem, ca_pem_len, ca_path, &cas, err, err_len);
	if (rc)
		goto out;
	rc = tls_load_key(ca_key_path, TLS_CA_KEY_FILE, &ca_key, err, err_len);
	if (rc)
		goto out;
	/* ca.crt may be a bundle (CA rotation): sign with the one ca.key belongs to. */
	for (int i = 0; i < sk_X509_num(cas) && !ca; i++)
		if (X509_check_private_key(sk_X509_value(cas, i), ca_key) == 1)
			ca = sk_X509_value(cas, i);
	ERR_clear_error();
	rc = -EINVAL;
	if (!ca) {
		tls_errf(err, err_len, "%s does not match any certificate in %s", ca_key_path,
			 ca_path);
		goto out;
	}
	if (X509_check_ca(ca) < 1) {
		tls_errf(err, err_len, "the certificate of %s in %s is not a CA (basicConstraints)",
			 ca_key_path, ca_path);
		goto out;
	}
	end = time(NULL) + (time_t)days * TLS_DAY_S;
	if (X509_cmp_time(X509_get0_notAfter(ca), &end) < 0) {
		tls_time_str(X509_get0_notAfter(ca), when, sizeof(when));
		tls_errf(err, err_len,
			 "a certificate valid for %u days would outlive the CA in %s (it expires "
			 "%s); use fewer --days or a new CA",
			 days, ca_path, when);
		goto out;
	}
	rc = tls_mkdir_p(out_dir, err, err_len);
	if (rc)
		goto out;
	if (!force) {
		rc = tls_check_targets(out_dir, names, (int)ARRAY_SIZE(names), err, err_len);
		if (rc)
			goto out;
	}
	key = EVP_EC_gen("P-256");
	x = key ? tls_new_cert(name, key, ca, days) : NULL;
	if (!x || tls_add_san(x, name) ||
	    tls_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	    tls_add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
	    tls_add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    tls_add_ext(x, ca, NID_subject_key_identifier, "hash") ||
	    tls_add_ext(x, ca, NID_authority_key_identifier, "keyid:always") ||
	    !X509_sign(x, ca_key, EVP_sha256())) {
		rc = -ENOMEM;
		tls_errf(err, err_len, "cannot make the certificate for '%s': %s", name,
			 tls_ossl_reason(why, sizeof(why)));
		goto out;
	}
	rc = tls_write_pem(out_dir, TLS_KEY_FILE, NULL, key, force, err, err_len);
	if (!rc)
		rc = tls_write_pem(out_dir, TLS_CERT_FILE, x, NULL, force, err, err_len);
	/* The CA file verbatim: a bundle stays a bundle. */
	if (!rc)
		rc = tls_write_file(out_dir, TLS_CA_FILE, ca_pem, ca_pem_len, 0644, force, err,
				    err_len);
	if (!rc)
		rc = tls_fsync_dir(out_dir, err, err_len);
out:
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	sk_X509_pop_free(cas, X509_free);
	free(ca_pem);
	ERR_clear_error();
	return rc;
}
