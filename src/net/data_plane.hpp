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
// instead of writing into the void. With TLS (net/tls.hpp) the connection is
// encrypted first, and a peer without a certificate of the cluster's CA is
// dropped before its hello. Whatever happens before a hello is accepted (a
// port scanner, garbage, silence past kHelloTimeout) is a rejection: the
// socket is closed and the rejection logged, rate-limited, and it never
// touches the job. Only a greeted peer can fail the job, e.g. by sending a
// frame over kMaxFrameBytes or vanishing before its goodbye.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/frame.hpp"
#include "net/rejection_log.hpp"
#include "net/socket.hpp"
#include "net/tls.hpp"
#include "sage/detail/batch.hpp"
#include "sage/detail/logical_graph.hpp"

namespace sage::net {

// How long a connection may take from its acceptance to a complete hello,
// TLS handshake included. A peer sends its hello as soon as it has connected
// (PeerConnection connects in greet()), so a few seconds cover a loaded
// machine; a connection silent for longer is a stranger's that holds a
// thread and a file descriptor.
constexpr auto kHelloTimeout = std::chrono::seconds(5);

// Connections accepted whose hello has not been accepted yet; beyond this,
// new connections are closed at once, so that strangers cannot use up this
// process's threads and file descriptors. A job's own peers greet within
// moments of connecting, so only a flood reaches it.
constexpr std::size_t kMaxUngreetedConnections = 64;

// The two above, for a receiver (tests shorten them).
struct ReceiverLimits {
  std::chrono::milliseconds hello_timeout = kHelloTimeout;
  std::size_t max_ungreeted = kMaxUngreetedConnections;
};

// Receives what peers send to this process. Any receiver thread may call it.
class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // May block (a full consumer queue): that is the backpressure.
  virtual void on_batch(const FrameHeader& header, std::string_view payload) = 0;
  virtual void on_end_of_stream(const FrameHeader& header) = 0;
  // Checkpoint barrier `checkpoint` on the header's channel.
  virtual void on_barrier(const FrameHeader& header, std::uint64_t checkpoint) = 0;
  // The job cannot complete because of a peer: a greeted peer's connection
  // broke or misbehaved (most often because that peer failed first).
  virtual void on_error(const std::string& message) = 0;
  // The job cannot complete because of this process: it cannot take
  // connections any more (out of descriptors, memory or threads).
  virtual void on_local_failure(const std::string& message) = 0;
  // A line for the node's log (never the job's output, never a job error):
  // a connection was turned away before its hello was accepted. Already
  // rate-limited (net/rejection_log.hpp).
  virtual void on_rejected(const std::string& line) = 0;
};

// Accepts peer connections on a listening socket and reads their frames, one
// thread per connection. A connection's socket and thread go as soon as it
// ends; until its hello is accepted it counts against `limits`.
class DataReceiver {
 public:
  // With `tls` (a server context), every connection must complete a TLS handshake.
  DataReceiver(Socket listener, PeerIdentity identity, FrameHandler& handler,
               std::shared_ptr<const TlsContext> tls = nullptr, ReceiverLimits limits = {});
  ~DataReceiver();  // closes every connection and waits for all threads to end
  int port() const { return listener_.local_port(); }
  void start();

 private:
  using Clock = std::chrono::steady_clock;
  struct Connection {
    Socket socket;
    std::string address;                              // the peer's, for rejections
    std::optional<Clock::time_point> hello_deadline;  // until the hello is accepted
    bool timed_out = false;                           // shut down at that deadline
  };
  using Connections = std::list<Connection>;

  void accept_loop();
  void admit(Socket socket);
  // Shuts down connections past their hello deadline and logs the held-back
  // rejections that are due; returns when to look again. REQUIRES: mutex_ held.
  Clock::time_point enforce_deadlines(Clock::time_point now, std::vector<std::string>* lines);
  void serve(Connections::iterator connection);  // on the connection's own thread
  std::string take_hello(Connection& connection);
  bool accept_hello(Connection& connection);
  void read_frames(Socket& socket, const std::string& peer);
  void reject(const std::string& address, const std::string& reason);
  void log(const std::vector<std::string>& lines);
  bool closing();

  Socket listener_;
  PeerIdentity identity_;
  FrameHandler& handler_;
  std::shared_ptr<const TlsContext> tls_;
  const ReceiverLimits limits_;
  std::mutex mutex_;
  std::condition_variable ended_;  // a connection's thread is about to end
  Connections connections_;        // each served by a detached thread
  std::size_t ungreeted_ = 0;
  bool closing_ = false;
  std::thread acceptor_;
  std::mutex log_mutex_;  // rejections are counted and logged in order
  RejectionLog rejections_;
};

// One connection to a peer process; any thread may send on it.
//
// Connecting, the TLS handshake and the hello all come with greet() or the
// first send, at once: the peer's receiver gives a connection kHelloTimeout
// for its hello. Task processes create their connections before their
// receivers accept, and a handshake needs the peer's receiver, so connecting
// in the constructor would also deadlock two processes that greet each other.
class PeerConnection {
 public:
  // Refused connections are retried until `deadline`. With `tls` (a client
  // context), the peer must present a certificate of the CA.
  PeerConnection(const Address& peer, const PeerIdentity& identity,
                 std::chrono::steady_clock::time_point deadline,
                 std::shared_ptr<const TlsContext> tls = nullptr);
  ~PeerConnection();  // says goodbye, so the peer knows the end was intended
  // Throws detail::PeerLostError when the peer is gone, refused this
  // connection or (TLS) is not of this cluster.
  void send(FrameHeader header, std::string_view payload);
  // Wakes a send or greet blocked on the peer (they throw), and makes later
  // ones throw; any thread may call it.
  void shutdown();
  // Connection, handshake and hello now (call it once this process's
  // receiver runs), so that the peer knows this producer from the start and
  // fails if it dies before it sent anything. Throws as send() does; a later
  // send throws the same.
  void greet();

 private:
  void greet_locked();  // connection, handshake and hello, once

  std::mutex mutex_;  // held by a send or greet
  const Address peer_;
  const std::chrono::steady_clock::time_point deadline_;
  std::shared_ptr<const TlsContext> tls_;
  std::string hello_;  // sent by greet_locked(), then cleared
  bool greeted_ = false;
  std::string greet_error_;  // why greeting failed, if it did
  std::mutex socket_mutex_;  // socket_ being connected vs. shutdown()
  Socket socket_;            // connected by greet_locked()
  bool shut_down_ = false;
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
  // Sends `batch` in one frame, or, when its bytes exceed a frame, in two
  // halves (each again so), in order.
  void send_batch(const FrameHeader& header, detail::BatchBase& batch,
                  const detail::EdgeFactory& edge);

  PeerConnection& connection_;
  std::uint32_t chain_, instance_;
  std::vector<const detail::EdgeFactory*> edges_;
};

}  // namespace sage::net
