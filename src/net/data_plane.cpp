#include "net/data_plane.hpp"

#include <spdlog/spdlog.h>

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
                           std::shared_ptr<const TlsContext> tls)
    : listener_(std::move(listener)),
      identity_(std::move(identity)),
      handler_(handler),
      tls_(std::move(tls)) {}

void DataReceiver::start() {
  acceptor_ = std::thread([this] { accept_loop(); });
}

DataReceiver::~DataReceiver() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
    for (auto& c : connections_) c->shutdown();
  }
  listener_.shutdown();
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& t : threads_) t.join();
}

void DataReceiver::accept_loop() {
  while (true) {
    Socket connection = listener_.accept();
    std::lock_guard lock(mutex_);
    if (closing_ || !connection.valid()) return;
    connections_.push_back(std::make_unique<Socket>(std::move(connection)));
    Socket& c = *connections_.back();
    threads_.emplace_back([this, &c] { read_loop(c); });
  }
}

void DataReceiver::read_loop(Socket& connection) {
  const auto closing = [this] {
    std::lock_guard lock(mutex_);
    return closing_;
  };
  // However this ends, the peer learns it: one turned away must not wait
  // for an answer (a TLS handshake) that will not come.
  const std::unique_ptr<Socket, void (*)(Socket*)> hang_up(&connection,
                                                           [](Socket* s) { s->shutdown(); });
  try {
    if (tls_) {
      block_sigpipe_in_this_thread();
      // A peer that connected and closed without a word (its job ended
      // before it sent anything) is not an intruder.
      if (!connection.wait_for_data()) return;
      try {
        connection.start_tls(*tls_);
      } catch (const Error& e) {
        // Not a node of this cluster (or not speaking TLS): like a wrong hello.
        spdlog::warn("data plane: rejected a connection to job {}: {}", identity_.job_id, e.what());
        return;
      }
    }
    FrameHeader header;
    if (!connection.receive_all(&header, sizeof header)) return;
    const std::string expected = identity_.credentials();
    const std::size_t longest = expected.size() + PeerIdentity::kMaxPeerName;
    std::string hello(std::min<std::size_t>(header.length, longest), '\0');
    if (header.kind != static_cast<std::uint32_t>(FrameKind::kHello) || header.length > longest ||
        !connection.receive_all(hello.data(), hello.size()) ||
        hello.compare(0, expected.size(), expected) != 0) {
      // Not a peer of this job: wrong token, another job, or another plan.
      spdlog::warn("data plane: rejected a connection whose hello does not match job {}",
                   identity_.job_id);
      return;
    }
    iovec accepted{const_cast<char*>(&kHelloAccepted), 1};
    connection.send_all(&accepted, 1);
    std::string payload;
    while (connection.receive_all(&header, sizeof header)) {
      if (header.length > kMaxFrameBytes) {
        throw Error("a peer sent a frame of " + std::to_string(header.length) +
                    " bytes, over the limit of " + std::to_string(kMaxFrameBytes));
      }
      payload.resize(header.length);
      if (header.length > 0 && !connection.receive_all(payload.data(), header.length)) {
        throw Error("connection closed in the middle of a frame");
      }
      switch (static_cast<FrameKind>(header.kind)) {
        case FrameKind::kBatch:
          handler_.on_batch(header, payload);
          break;
        case FrameKind::kEndOfStream:
          handler_.on_end_of_stream(header);
          break;
        case FrameKind::kGoodbye:
          return;
        default:
          throw Error("a peer sent an unknown frame kind " + std::to_string(header.kind));
      }
    }
    if (!closing()) {
      handler_.on_error("the data-plane connection from " + hello.substr(expected.size()) +
                        " broke before the end of its streams (did that process die?)");
    }
  } catch (const detail::JobCancelledError&) {
    // The job is being torn down; nothing to report.
  } catch (const std::exception& e) {
    if (!closing()) handler_.on_error(std::string("data plane: ") + e.what());
  }
}

PeerConnection::PeerConnection(const Address& peer, const PeerIdentity& identity,
                               std::chrono::steady_clock::time_point deadline,
                               std::shared_ptr<const TlsContext> tls)
    : socket_(Socket::connect(peer, deadline)), tls_(std::move(tls)), hello_(identity.hello()) {}

void PeerConnection::greet() {
  std::lock_guard lock(mutex_);
  greet_locked();
}

void PeerConnection::greet_locked() {
  if (greeted_) return;
  // A failure says so now and at every later send.
  if (!greet_error_.empty()) throw Error(greet_error_);
  try {
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
  greet_locked();
  send_frame(socket_, header, payload);
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
  if (!message.batch) {
    header.kind = static_cast<std::uint32_t>(FrameKind::kEndOfStream);
    connection_.send(header, {});
    return;
  }
  header.kind = static_cast<std::uint32_t>(FrameKind::kBatch);
  // Encoded outside the connection's lock, so producers encode in parallel.
  thread_local Writer writer;
  writer.buffer().clear();
  edges_.at(message.channel)->encode(*message.batch, writer);
  if (writer.size() > kMaxFrameBytes) {
    throw Error("a batch of " + std::to_string(message.batch->size()) + " records encodes to " +
                std::to_string(writer.size()) + " bytes, over the frame limit of " +
                std::to_string(kMaxFrameBytes) + "; lower ExecutionConfig::batch_size");
  }
  connection_.send(header, writer.buffer());
}

}  // namespace sage::net
