#include "net/data_plane.hpp"

#include <algorithm>
#include <cstring>
#include <system_error>

#include "sage/error.hpp"
#include "sage/serialization.hpp"

namespace sage::net {
namespace {

void send_frame(const Socket& socket, FrameHeader header, std::string_view payload) {
  header.length = static_cast<std::uint32_t>(payload.size());
  iovec parts[2] = {{&header, sizeof header}, {const_cast<char*>(payload.data()), payload.size()}};
  socket.send_all(parts, payload.empty() ? 1 : 2);
}

}  // namespace

DataReceiver::DataReceiver(Socket listener, PeerIdentity identity, FrameHandler& handler,
                           std::shared_ptr<const TlsContext> tls, ReceiverLimits limits)
    : listener_(std::move(listener)),
      identity_(std::move(identity)),
      handler_(handler),
      tls_(std::move(tls)),
      limits_(limits),
      rejections_("data plane of job " + identity_.job_id) {}

void DataReceiver::start() {
  acceptor_ = std::thread([this] { accept_loop(); });
}

DataReceiver::~DataReceiver() {
  std::unique_lock lock(mutex_);
  closing_ = true;
  for (auto& c : connections_) c.socket.shutdown();
  lock.unlock();
  listener_.shutdown();
  if (acceptor_.joinable()) acceptor_.join();
  lock.lock();
  ended_.wait(lock, [this] { return connections_.empty(); });
  lock.unlock();
  std::lock_guard log_lock(log_mutex_);
  if (auto line = rejections_.summary(Clock::time_point::max())) handler_.on_rejected(*line);
}

bool DataReceiver::closing() {
  std::lock_guard lock(mutex_);
  return closing_;
}

void DataReceiver::accept_loop() {
  while (true) {
    Clock::time_point wake;
    std::vector<std::string> due;
    {
      std::lock_guard lock(mutex_);
      if (closing_) return;
      wake = enforce_deadlines(Clock::now(), &due);
    }
    log(due);
    Socket connection;
    try {
      connection = listener_.accept(wake);
    } catch (const Error& e) {
      // Peers that cannot connect would leave the job short: it fails.
      if (!closing()) handler_.on_local_failure(std::string("data plane: ") + e.what());
      return;
    }
    if (connection.valid()) admit(std::move(connection));
  }
}

DataReceiver::Clock::time_point DataReceiver::enforce_deadlines(Clock::time_point now,
                                                                std::vector<std::string>* lines) {
  auto wake = Clock::time_point::max();
  for (auto& c : connections_) {
    if (!c.hello_deadline || c.timed_out) continue;
    if (*c.hello_deadline <= now) {
      c.timed_out = true;
      c.socket.shutdown();  // its thread rejects it
    } else {
      wake = std::min(wake, *c.hello_deadline);
    }
  }
  std::lock_guard log_lock(log_mutex_);
  if (auto line = rejections_.summary(now)) lines->push_back(std::move(*line));
  if (auto due = rejections_.summary_due()) wake = std::min(wake, *due);
  return wake;
}

void DataReceiver::admit(Socket socket) {
  std::string address = socket.peer_address();
  std::unique_lock lock(mutex_);
  if (closing_) return;
  if (ungreeted_ >= limits_.max_ungreeted) {
    lock.unlock();
    reject(address, std::to_string(ungreeted_) +
                        " connections are waiting for their hello already; closed at once");
    return;
  }
  const auto deadline = Clock::now() + limits_.hello_timeout;
  const auto connection =
      connections_.insert(connections_.end(), Connection{std::move(socket), address, deadline});
  ++ungreeted_;
  try {
    std::thread([this, connection] { serve(connection); }).detach();
  } catch (const std::system_error& e) {
    connections_.erase(connection);
    --ungreeted_;
    lock.unlock();
    handler_.on_local_failure("data plane: cannot start a thread for the connection from " +
                              address + ": " + e.what() +
                              "; raise the node's limit on processes and threads");
  }
}

void DataReceiver::serve(Connections::iterator connection) {
  Connection& c = *connection;
  if (tls_) block_sigpipe_in_this_thread();
  std::string peer, reason;
  bool greeted = false;
  try {
    peer = take_hello(c);
    greeted = accept_hello(c);
  } catch (const std::exception& e) {
    reason = e.what();
  }
  if (greeted) {
    read_frames(c.socket, peer);
  } else {
    bool timed_out = false;
    {
      std::lock_guard lock(mutex_);
      timed_out = c.timed_out;
    }
    if (timed_out) {
      reason =
          "it sent no valid hello within " + std::to_string(limits_.hello_timeout.count()) + " ms";
    }
    if (!closing()) reject(c.address, reason);
  }
  // The socket closes and the thread ends now, not when the receiver does.
  std::lock_guard lock(mutex_);
  if (c.hello_deadline) --ungreeted_;
  connections_.erase(connection);
  ended_.notify_all();
}

std::string DataReceiver::take_hello(Connection& c) {
  Socket& socket = c.socket;
  const char* const silent = "it closed the connection without sending anything";
  if (tls_) {
    if (!socket.wait_for_data()) throw Error(silent);
    socket.start_tls(*tls_);
  }
  FrameHeader header;
  if (!socket.receive_all(&header, sizeof header)) throw Error(silent);
  std::string hello(hello_payload_length(header, identity_), '\0');
  if (!hello.empty() && !socket.receive_all(hello.data(), hello.size())) {
    throw Error("it closed the connection before the rest of its hello");
  }
  return check_hello(hello, identity_);
}

bool DataReceiver::accept_hello(Connection& c) {
  std::lock_guard lock(mutex_);
  if (c.timed_out || closing_) return false;
  c.hello_deadline.reset();
  --ungreeted_;
  return true;
}

void DataReceiver::read_frames(Socket& socket, const std::string& peer) {
  try {
    iovec accepted{const_cast<char*>(&kHelloAccepted), 1};
    socket.send_all(&accepted, 1);
    FrameHeader header;
    std::string payload;
    while (socket.receive_all(&header, sizeof header)) {
      const FrameKind kind = check_frame_header(header);
      payload.resize(header.length);
      if (header.length > 0 && !socket.receive_all(payload.data(), header.length)) {
        throw Error("connection closed in the middle of a frame");
      }
      switch (kind) {
        case FrameKind::kBatch:
          handler_.on_batch(header, payload);
          break;
        case FrameKind::kEndOfStream:
          handler_.on_end_of_stream(header);
          break;
        case FrameKind::kBarrier: {
          std::uint64_t checkpoint = 0;
          std::memcpy(&checkpoint, payload.data(), sizeof checkpoint);
          handler_.on_barrier(header, checkpoint);
          break;
        }
        default:  // kGoodbye
          return;
      }
    }
    if (!closing()) {
      handler_.on_error("the data-plane connection from " + peer +
                        " broke before the end of its streams (did that process die?)");
    }
  } catch (const detail::JobCancelledError&) {
    // The job is being torn down; nothing to report.
  } catch (const std::exception& e) {
    if (!closing()) handler_.on_error("data plane, from " + peer + ": " + e.what());
  }
}

void DataReceiver::reject(const std::string& address, const std::string& reason) {
  std::lock_guard log_lock(log_mutex_);
  for (const auto& line : rejections_.add(address, reason, Clock::now())) {
    handler_.on_rejected(line);
  }
}

void DataReceiver::log(const std::vector<std::string>& lines) {
  for (const auto& line : lines) handler_.on_rejected(line);
}

PeerConnection::PeerConnection(const Address& peer, const PeerIdentity& identity,
                               std::chrono::steady_clock::time_point deadline,
                               std::shared_ptr<const TlsContext> tls)
    : peer_(peer), deadline_(deadline), tls_(std::move(tls)), hello_(identity.hello()) {}

void PeerConnection::greet() {
  std::lock_guard lock(mutex_);
  greet_locked();
}

void PeerConnection::shutdown() {
  std::lock_guard lock(socket_mutex_);
  shut_down_ = true;
  socket_.shutdown();
}

void PeerConnection::greet_locked() {
  if (greeted_) return;
  // A failure says so now and at every later send.
  if (!greet_error_.empty()) throw Error(greet_error_);
  {
    // Shut down before it connected (its job was cancelled): no connecting.
    std::lock_guard lock(socket_mutex_);
    if (shut_down_) throw Error("the connection to " + peer_.to_string() + " was shut down");
  }
  try {
    Socket connected = Socket::connect(peer_, deadline_);
    {
      std::lock_guard lock(socket_mutex_);
      if (shut_down_) throw Error("the connection to " + peer_.to_string() + " was shut down");
      socket_ = std::move(connected);
    }
    if (tls_) socket_.start_tls(*tls_);
  } catch (const Error& e) {
    greet_error_ = e.what();
    throw;
  }
  FrameHeader hello;
  hello.kind = static_cast<std::uint32_t>(FrameKind::kHello);
  char answer = 0;
  bool answered = false;
  try {
    send_frame(socket_, hello, hello_);
    answered = socket_.receive_all(&answer, 1) && answer == kHelloAccepted;
  } catch (const Error&) {
    // Closed (with TLS 1.3 the peer checks this side's certificate only
    // after the handshake seemed done): refused, as below.
  }
  if (!answered) {
    greet_error_ =
        "the peer closed this data-plane connection without accepting it: it refused it "
        "(another token, job or plan, or with TLS a certificate it does not accept; see that "
        "node's log) or it ended";
    throw Error(greet_error_);
  }
  greeted_ = true;
}

PeerConnection::~PeerConnection() {
  std::lock_guard lock(mutex_);
  if (!greeted_) return;  // nothing sent: the peer expects nothing
  try {
    FrameHeader goodbye;
    goodbye.kind = static_cast<std::uint32_t>(FrameKind::kGoodbye);
    send_frame(socket_, goodbye, {});
  } catch (const std::exception&) {
    // The peer is gone already; it has nothing left to receive from us.
  }
}

void PeerConnection::send(FrameHeader header, std::string_view payload) {
  std::lock_guard lock(mutex_);
  try {
    greet_locked();
    send_frame(socket_, header, payload);
  } catch (const detail::PeerLostError&) {
    throw;
  } catch (const Error& e) {
    throw detail::PeerLostError(e.what());
  }
}

RemoteTaskSink::RemoteTaskSink(PeerConnection& connection, int chain, int instance,
                               std::vector<const detail::EdgeFactory*> edges)
    : connection_(connection),
      chain_(static_cast<std::uint32_t>(chain)),
      instance_(static_cast<std::uint32_t>(instance)),
      edges_(std::move(edges)) {}

void RemoteTaskSink::push(detail::Message message) {
  FrameHeader header;
  header.chain = chain_;
  header.instance = instance_;
  header.channel = message.channel;
  if (message.kind == detail::Message::Kind::kEndOfStream) {
    header.kind = static_cast<std::uint32_t>(FrameKind::kEndOfStream);
    connection_.send(header, {});
    return;
  }
  if (message.kind == detail::Message::Kind::kBarrier) {
    header.kind = static_cast<std::uint32_t>(FrameKind::kBarrier);
    char payload[kBarrierPayloadBytes];
    std::memcpy(payload, &message.checkpoint, sizeof payload);
    connection_.send(header, std::string_view(payload, sizeof payload));
    return;
  }
  header.kind = static_cast<std::uint32_t>(FrameKind::kBatch);
  send_batch(header, *message.batch, *edges_.at(message.channel));
}

void RemoteTaskSink::send_batch(const FrameHeader& header, detail::BatchBase& batch,
                                const detail::EdgeFactory& edge) {
  // Encoded outside the connection's lock, so producers encode in parallel.
  thread_local Writer writer;
  writer.buffer().clear();
  edge.encode(batch, writer);
  if (writer.size() > kMaxFrameBytes) {
    if (batch.size() == 1) {
      throw Error("a record encodes to " + std::to_string(writer.size()) +
                  " bytes, over the data plane's frame limit of " + std::to_string(kMaxFrameBytes) +
                  " bytes for what crosses processes; keep large blobs elsewhere (a file, an "
                  "object store) and pass references to them");
    }
    // Large records: the batch goes as several frames, records in order.
    const std::unique_ptr<detail::BatchBase> back = edge.split_off_back_half(batch);
    send_batch(header, batch, edge);
    send_batch(header, *back, edge);
    return;
  }
  connection_.send(header, writer.buffer());
}

}  // namespace sage::net
