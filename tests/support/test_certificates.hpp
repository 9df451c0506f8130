// Test support: a throwaway certificate authority and a node certificate it
// signed for 127.0.0.1 and localhost, written as PEM files, so TLS tests need
// neither the openssl command nor files checked into the repository.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "net/tls.hpp"

namespace sage::testing {

namespace certificates_detail {

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertificateFree {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Certificate = std::unique_ptr<X509, CertificateFree>;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("making a test certificate: ") + what);
}

inline void add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  check(extension != nullptr, "extension");
  check(X509_add_ext(certificate, extension, -1) == 1, "add extension");
  X509_EXTENSION_free(extension);
}

// A certificate for `key` named `common_name`, signed by issuer/issuer_key
// (itself when issuer is null), valid from an hour ago for a day.
inline Certificate make_certificate(EVP_PKEY* key, const std::string& common_name, X509* issuer,
                                    EVP_PKEY* issuer_key, long serial, bool authority) {
  Certificate certificate(X509_new());
  check(certificate != nullptr, "X509_new");
  X509_set_version(certificate.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(certificate.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(certificate.get()), 24 * 3600);
  X509_set_pubkey(certificate.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(certificate.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509* signer = issuer != nullptr ? issuer : certificate.get();
  X509_set_issuer_name(certificate.get(), X509_get_subject_name(signer));
  if (authority) {
    add_extension(certificate.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(certificate.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(certificate.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(certificate.get(), signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  }
  check(X509_sign(certificate.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return certificate;
}

inline void write_file(const std::string& path, const std::function<int(FILE*)>& write) {
  FILE* file = std::fopen(path.c_str(), "w");
  check(file != nullptr, "open output file");
  const int ok = write(file);
  std::fclose(file);
  check(ok == 1, "write PEM");
}

}  // namespace certificates_detail

// Writes ca.pem, node.pem and node.key under `dir` (which must exist): a new
// CA each call, so two calls give two clusters that do not trust each other.
inline net::TlsFiles write_test_certificates(const std::string& dir) {
  using namespace certificates_detail;
  Key ca_key(EVP_EC_gen("P-256"));
  Key node_key(EVP_EC_gen("P-256"));
  check(ca_key && node_key, "EVP_EC_gen");
  const Certificate ca =
      make_certificate(ca_key.get(), "sage test CA", nullptr, ca_key.get(), 1, true);
  const Certificate node =
      make_certificate(node_key.get(), "sage test node", ca.get(), ca_key.get(), 2, false);
  net::TlsFiles files{dir + "/node.pem", dir + "/node.key", dir + "/ca.pem"};
  write_file(files.ca, [&](FILE* f) { return PEM_write_X509(f, ca.get()); });
  write_file(files.cert, [&](FILE* f) { return PEM_write_X509(f, node.get()); });
  write_file(files.key, [&](FILE* f) {
    return PEM_write_PrivateKey(f, node_key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return files;
}

}  // namespace sage::testing
