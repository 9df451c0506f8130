// The data plane between the processes of one job: every process listens on
// one port, and opens one connection to each consumer task in another process
// that it sends to; all channels from this process into that task share the
// connection. Frames carry a batch (or an end-of-stream) for one channel of
// that task.
//
// Flow control is TCP's: a receiver whose consumer queue is full stops
// reading, the connection's window fills, and the sender's send() blocks, so
// a slow consumer slows its producers across processes and nothing is
// dropped. Channels into one task share its input queue anyway, so sharing a
// connection adds no waiting; one connection per peer process would, and
// deadlocks when two processes exchange records both ways (a full queue on
// one side stops the records that would drain the other).
//
// Every connection opens with a hello naming the job, its plan fingerprint
// and the cluster token; the receiver answers one byte (kHelloAccepted) or
// drops connections whose hello does not match, so a refused sender fails
// instead of writing into the void. Frames larger than the limit are refused
// too. With TLS (net/tls.hpp) the connection is encrypted first, and a peer
// without a certificate of the cluster's CA is dropped before its hello.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/socket.hpp"
#include "net/tls.hpp"
#include "sage/detail/batch.hpp"
#include "sage/detail/logical_graph.hpp"

namespace sage::net {

// The largest frame a receiver accepts. A batch of 1024 records of 64 KiB
// fits; larger records need a smaller batch_size.
constexpr std::uint32_t kMaxFrameBytes = 64u << 20;

enum class FrameKind : std::uint32_t { kHello = 1, kBatch = 2, kEndOfStream = 3, kGoodbye = 4 };

// The receiver's answer to a hello it accepts. A sender waits for it as long
// as the connection stands: the peer process may still be starting (its
// program downloading, its main() loading a model); if it dies or is
// cancelled, the connection ends and so does the wait.
constexpr char kHelloAccepted = 'A';

struct FrameHeader {
  std::uint32_t kind = 0;
  std::uint32_t chain = 0;  // the consumer task: chain and instance
  std::uint32_t instance = 0;
  std::uint32_t channel = 0;  // the channel index at that task
  std::uint32_t length = 0;   // payload bytes that follow
};
static_assert(sizeof(FrameHeader) == 20);

// Who may connect: job, fingerprint and token must match the sender's hello.
// `self` names the sending process in the receiver's errors ("node 'w2'").
struct PeerIdentity {
  std::string job_id;
  std::string fingerprint;
  std::string token;
  std::string self = "a peer process";
  // What must match, and the hello a sender sends.
  std::string credentials() const { return job_id + '\n' + fingerprint + '\n' + token + '\n'; }
  std::string hello() const { return credentials() + self.substr(0, kMaxPeerName); }
  static constexpr std::size_t kMaxPeerName = 200;
};

// Receives what peers send to this process.
class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // May block (a full consumer queue): that is the backpressure.
  virtual void on_batch(const FrameHeader& header, std::string_view payload) = 0;
  virtual void on_end_of_stream(const FrameHeader& header) = 0;
  // A connection broke or misbehaved; the job cannot complete.
  virtual void on_error(const std::string& message) = 0;
};

// Accepts peer connections on a listening socket and reads their frames, one
// thread per connection.
class DataReceiver {
 public:
  // With `tls` (a server context), every connection must complete a TLS handshake.
  DataReceiver(Socket listener, PeerIdentity identity, FrameHandler& handler,
               std::shared_ptr<const TlsContext> tls = nullptr);
  ~DataReceiver();  // closes every connection and joins the threads
  int port() const { return listener_.local_port(); }
  void start();

 private:
  void accept_loop();
  void read_loop(Socket& connection);

  Socket listener_;
  PeerIdentity identity_;
  FrameHandler& handler_;
  std::shared_ptr<const TlsContext> tls_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Socket>> connections_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
  bool closing_ = false;
};

// One connection to a peer process; any thread may send on it.
//
// The constructor connects; the TLS handshake and the hello come with greet()
// or the first send. Task processes connect to each other before their
// receivers accept, and a handshake needs the peer's receiver, so doing it in
// the constructor would deadlock two processes that connect to each other.
class PeerConnection {
 public:
  // With `tls` (a client context), the peer must present a certificate of the CA.
  PeerConnection(const Address& peer, const PeerIdentity& identity,
                 std::chrono::steady_clock::time_point deadline,
                 std::shared_ptr<const TlsContext> tls = nullptr);
  ~PeerConnection();  // says goodbye, so the peer knows the end was intended
  // Throws sage::Error when the peer is gone or (TLS) not of this cluster.
  void send(FrameHeader header, std::string_view payload);
  void shutdown() { socket_.shutdown(); }
  // Handshake and hello now (call it once this process's receiver runs), so
  // that the peer knows this producer from the start and fails if it dies
  // before it sent anything. Throws as send() does; a later send throws the
  // same.
  void greet();

 private:
  void greet_locked();  // handshake and hello, once

  std::mutex mutex_;
  Socket socket_;
  std::shared_ptr<const TlsContext> tls_;
  std::string hello_;  // sent by greet_locked(), then cleared
  bool greeted_ = false;
  std::string greet_error_;  // why greeting failed, if it did
};

// The MessageSink of a consumer task in another process: encodes each batch
// with its edge's codec and sends it on the connection to that process.
class RemoteTaskSink final : public detail::MessageSink {
 public:
  // `edges[c]` is the edge factory of the task's channel c.
  RemoteTaskSink(PeerConnection& connection, int chain, int instance,
                 std::vector<const detail::EdgeFactory*> edges);
  void push(detail::Message message) override;

 private:
  PeerConnection& connection_;
  std::uint32_t chain_, instance_;
  std::vector<const detail::EdgeFactory*> edges_;
};

}  // namespace sage::net
