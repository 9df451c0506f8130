// The data plane in one process: frames reach the handler in order, peers of
// another job or with a wrong token are turned away, and with TLS so are
// peers without a certificate of the cluster's CA.
#include "net/data_plane.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "support/temp_dir.hpp"
#include "support/test_certificates.hpp"

namespace sage::net {
namespace {

using Clock = std::chrono::steady_clock;

// Records what arrives and lets the test wait for it.
class Recorder final : public FrameHandler {
 public:
  void on_batch(const FrameHeader& h, std::string_view payload) override {
    add("batch " + std::to_string(h.chain) + "/" + std::to_string(h.instance) + "/" +
        std::to_string(h.channel) + " " + std::to_string(payload.size()));
  }
  void on_end_of_stream(const FrameHeader& h) override { add("end " + std::to_string(h.channel)); }
  void on_error(const std::string& message) override { add("error " + message); }

  // The first `n` events, waiting up to 10 s for them.
  std::vector<std::string> wait_for(std::size_t n) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, Clock::now() + std::chrono::seconds(10),
                        [&] { return events_.size() >= n; });
    return events_;
  }

 private:
  void add(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
    changed_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> events_;
};

const PeerIdentity kJob{"job-1", "00ff", "secret"};

using testing::TempDir;

// Sends one end-of-stream on channel `channel`; false if the send failed.
bool send_end_of_stream(PeerConnection& peer, std::uint32_t channel, std::string* error) {
  FrameHeader h;
  h.kind = static_cast<std::uint32_t>(FrameKind::kEndOfStream);
  h.channel = channel;
  try {
    peer.send(h, {});
    return true;
  } catch (const Error& e) {
    *error = e.what();
    return false;
  }
}

// Through a RemoteTaskSink for task 2/1: a batch of 3 ints on channel 1,
// then the end of channel 0.
void send_sample(PeerConnection& peer) {
  detail::TypedEdgeFactory<int> edge;
  RemoteTaskSink sink(peer, 2, 1, {&edge, &edge});
  sink.push(detail::Message{1, std::make_unique<detail::Batch<int>>(std::vector<int>{1, 2, 3})});
  sink.push(detail::Message{0, nullptr});
}

// What the receiver must have seen of send_sample(), and nothing else.
void expect_sample(Recorder& recorder) {
  const auto events = recorder.wait_for(2);
  ASSERT_EQ(events.size(), 2u);
  // 3 ints: a one-byte count and 12 bytes.
  EXPECT_EQ(events[0], "batch 2/1/1 13");
  EXPECT_EQ(events[1], "end 0");
}

TEST(DataPlaneTest, FramesArriveInOrderThroughRemoteTaskSink) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  {
    PeerConnection peer({"127.0.0.1", receiver.port()}, kJob,
                        Clock::now() + std::chrono::seconds(10));
    send_sample(peer);
  }
  expect_sample(recorder);
}

TEST(DataPlaneTest, WrongTokenOrJobIsTurnedAway) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  for (const PeerIdentity& intruder :
       {PeerIdentity{"job-1", "00ff", "guess"}, PeerIdentity{"job-2", "00ff", "secret"},
        PeerIdentity{"job-1", "0f0f", "secret"}}) {
    PeerConnection peer({"127.0.0.1", receiver.port()}, intruder,
                        Clock::now() + std::chrono::seconds(10));
    std::string error;
    EXPECT_FALSE(send_end_of_stream(peer, 0, &error)) << "an intruder's send succeeded";
    EXPECT_NE(error.find("the peer closed this data-plane connection without accepting it"), std::string::npos)
        << error;
  }
  // A legitimate peer afterwards is still served, and is the only one heard.
  PeerConnection peer({"127.0.0.1", receiver.port()}, kJob,
                      Clock::now() + std::chrono::seconds(10));
  FrameHeader h;
  h.kind = static_cast<std::uint32_t>(FrameKind::kEndOfStream);
  h.channel = 7;
  peer.send(h, {});
  const auto events = recorder.wait_for(1);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0], "end 7");
  EXPECT_EQ(events.size(), 1u);
}

TEST(DataPlaneTest, WithTlsOnlyPeersOfTheClustersCaAreHeard) {
  TempDir cluster_dir, foreign_dir;
  const TlsFiles cluster = testing::write_test_certificates(cluster_dir.path());
  const TlsFiles foreign = testing::write_test_certificates(foreign_dir.path());
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder,
                        TlsContext::server(cluster));
  receiver.start();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  std::string error;

  // A peer that does not speak TLS: its bytes are not a handshake.
  PeerConnection plaintext({"127.0.0.1", receiver.port()}, kJob, deadline);
  send_end_of_stream(plaintext, 1, &error);

  // Peers that trust the receiver but cannot show a certificate of its CA:
  // none at all, or one of another CA. (With TLS 1.3 their handshake may
  // seem to succeed; the receiver refuses them, and they learn it when the
  // answer to their hello does not come.)
  for (const TlsFiles& files :
       {TlsFiles{"", "", cluster.ca}, TlsFiles{foreign.cert, foreign.key, cluster.ca}}) {
    PeerConnection unknown({"127.0.0.1", receiver.port()}, kJob, deadline,
                           TlsContext::client(files));
    EXPECT_FALSE(send_end_of_stream(unknown, 3, &error))
        << "a peer without a certificate was heard";
    EXPECT_NE(error.find("refused"), std::string::npos) << error;
  }

  // A peer whose CA did not sign the receiver's certificate refuses it.
  PeerConnection distrustful({"127.0.0.1", receiver.port()}, kJob, deadline,
                             TlsContext::client(foreign));
  EXPECT_FALSE(send_end_of_stream(distrustful, 2, &error));
  EXPECT_NE(error.find("TLS handshake failed"), std::string::npos) << error;
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;

  // A peer of the cluster is heard, and is the only one.
  {
    PeerConnection peer({"127.0.0.1", receiver.port()}, kJob, deadline,
                        TlsContext::client(cluster));
    send_sample(peer);
  }
  expect_sample(recorder);
}

TEST(DataPlaneTest, ATlsPeerOfAReceiverWithoutTlsFailsClearly) {
  TempDir dir;
  const TlsFiles files = testing::write_test_certificates(dir.path());
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  PeerConnection peer({"127.0.0.1", receiver.port()}, kJob, Clock::now() + std::chrono::seconds(10),
                      TlsContext::client(files));
  std::string error;
  EXPECT_FALSE(send_end_of_stream(peer, 0, &error));
  EXPECT_NE(error.find("TLS handshake failed"), std::string::npos) << error;
}

TEST(DataPlaneTest, PeerVanishingWithoutGoodbyeIsAnError) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  {
    Socket raw =
        Socket::connect({"127.0.0.1", receiver.port()}, Clock::now() + std::chrono::seconds(10));
    FrameHeader hello;
    hello.kind = static_cast<std::uint32_t>(FrameKind::kHello);
    const std::string text = kJob.hello();
    hello.length = static_cast<std::uint32_t>(text.size());
    iovec parts[2] = {{&hello, sizeof hello}, {const_cast<char*>(text.data()), text.size()}};
    raw.send_all(parts, 2);
    FrameHeader huge;
    huge.kind = static_cast<std::uint32_t>(FrameKind::kBatch);
    huge.length = kMaxFrameBytes + 1;
    iovec part{&huge, sizeof huge};
    raw.send_all(&part, 1);
  }
  const auto events = recorder.wait_for(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("over the limit"), std::string::npos) << events[0];
}

TEST(DataPlaneTest, AddressesAndPortsInUseGiveClearErrors) {
  EXPECT_EQ(Address::parse("10.0.0.2:10001").port, 10001);
  EXPECT_THROW(Address::parse("10.0.0.2"), Error);
  EXPECT_THROW(Address::parse("host:99999"), Error);
  EXPECT_THROW(Address::parse("host:12ab"), Error);
  Socket taken = Socket::listen({"127.0.0.1", 0});
  try {
    Socket::listen({"127.0.0.1", taken.local_port()});
    FAIL() << "listening twice on one port succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Address already in use"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sage::net
