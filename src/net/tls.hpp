// TLS for a cluster that spans machines: the files a node is configured with,
// and the OpenSSL contexts the data plane uses. The control plane (gRPC) takes
// the same files (net/rpc.hpp). Off unless configured; every node of one
// cluster must agree.
//
// Each node presents a certificate signed by the cluster's CA; a client checks
// that the peer's certificate chains to that CA (for gRPC also that it names
// the address dialed). Who may take part is still decided by the cluster
// token, which TLS now keeps secret on the wire.
#pragma once

#include <memory>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;

namespace sage::net {

// PEM files. Set from the `sage cluster start` flags --tls-cert/--tls-key/
// --tls-ca or the environment (SAGE_TLS_CERT, SAGE_TLS_KEY, SAGE_TLS_CA);
// files named by this node's own configuration, never by the network.
struct TlsFiles {
  std::string cert;  // this node's certificate (servers: head, task processes)
  std::string key;   // its private key
  std::string ca;    // the CA that signed every node's certificate (clients)

  bool enabled() const { return !ca.empty(); }
  static TlsFiles from_environment();
  // Puts these into the environment, for the threads and child processes
  // that read it. Throws sage::Error when TLS is half configured.
  void export_to_environment() const;
  // Throws sage::Error naming the missing flag unless a server can run.
  void require_server() const;
};

// Reads a whole file. Throws sage::Error naming it.
std::string read_pem(const std::string& path);

// An OpenSSL context: a server that presents files.cert/key, or a client
// that verifies its peer against files.ca (TLS 1.2 or later).
class TlsContext {
 public:
  static std::shared_ptr<TlsContext> server(const TlsFiles& files);
  static std::shared_ptr<TlsContext> client(const TlsFiles& files);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return context_; }
  bool is_server() const { return server_; }

 private:
  TlsContext(SSL_CTX* context, bool server) : context_(context), server_(server) {}
  SSL_CTX* context_;
  bool server_;
};

}  // namespace sage::net
