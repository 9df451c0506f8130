// TLS for a cluster that spans machines: the files a node is configured with,
// and the OpenSSL contexts the data plane uses. The control plane (gRPC) takes
// the same files (net/rpc.hpp). Off unless configured; every node of one
// cluster must agree.
//
// Each node presents a certificate signed by the cluster's CA. On the data
// plane both ends check that the other's certificate chains to that CA; on
// the control plane clients check the head's (and that it names the address
// dialed), and the head checks the cluster token, which TLS keeps secret on
// the wire.
#pragma once

#include <memory>
#include <string>
#include <vector>

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
  // The entries ("SAGE_TLS_CA=...") from which from_environment() in a child
  // process reads these files; none when TLS is off.
  std::vector<std::string> environment() const;
  // Throws sage::Error naming the missing flag unless a server can run.
  void require_server() const;
};

// Reads a whole file. Throws sage::Error naming it.
std::string read_pem(const std::string& path);

// An OpenSSL context for the data plane (TLS 1.2 or later), mutual: a server
// presents files.cert/key and accepts only clients with a certificate of
// files.ca; a client verifies the server against files.ca and presents
// files.cert/key when set.
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
