// The data plane in one process: frames reach the handler in order, peers of
// another job or with a wrong token are turned away, and with TLS so are
// peers without a certificate of the cluster's CA. Whatever comes before a
// hello is accepted (garbage, silence, a flood) is a logged rejection, never
// a job error, and what it held is given back at once.
#include "net/data_plane.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <fcntl.h>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>

#include "support/eventually.hpp"
#include "support/stranger.hpp"
#include "support/temp_dir.hpp"
#include "support/test_certificates.hpp"

namespace sage::net {
namespace {

using Clock = std::chrono::steady_clock;

// Records what arrives (events; rejection lines apart) and lets the test wait for it.
class Recorder final : public FrameHandler {
 public:
  void on_batch(const FrameHeader& h, std::string_view payload) override {
    add(events_, "batch " + std::to_string(h.chain) + "/" + std::to_string(h.instance) + "/" +
                     std::to_string(h.channel) + " " + std::to_string(payload.size()));
  }
  void on_end_of_stream(const FrameHeader& h) override {
    add(events_, "end " + std::to_string(h.channel));
  }
  void on_barrier(const FrameHeader& h, std::uint64_t checkpoint) override {
    add(events_, "barrier " + std::to_string(h.channel) + " " + std::to_string(checkpoint));
  }
  void on_error(const std::string& message) override { add(events_, "error " + message); }
  void on_local_failure(const std::string& message) override {
    add(events_, "local failure " + message);
  }
  void on_rejected(const std::string& line) override { add(rejections_, line); }

  // The first `n` events, waiting up to 10 s for them.
  std::vector<std::string> wait_for(std::size_t n) { return wait_for(events_, n); }
  // The first `n` rejection lines, waiting up to 10 s for them.
  std::vector<std::string> wait_for_rejections(std::size_t n) { return wait_for(rejections_, n); }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<std::string> rejections() {
    std::lock_guard lock(mutex_);
    return rejections_;
  }

 private:
  void add(std::vector<std::string>& lines, std::string line) {
    std::lock_guard lock(mutex_);
    lines.push_back(std::move(line));
    changed_.notify_all();
  }
  std::vector<std::string> wait_for(std::vector<std::string>& lines, std::size_t n) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, Clock::now() + std::chrono::seconds(10),
                        [&] { return lines.size() >= n; });
    return lines;
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> events_, rejections_;
};

const PeerIdentity kJob{"job-1", "00ff", "secret"};

using testing::Stranger;
using testing::TempDir;
using namespace std::chrono_literals;

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
  sink.push(detail::Message::of_batch(
      1, std::make_unique<detail::Batch<int>>(std::vector<int>{1, 2, 3})));
  sink.push(detail::Message::end_of_stream(0));
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

// Records whose batch is larger than a frame (the default batch of large
// records) go as several frames, in order, rather than failing the job.
TEST(DataPlaneTest, ABatchOverTheFrameLimitGoesAsSeveralFramesInOrder) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  // Three records of 30 MiB: 90 MiB in all, over the 64 MiB frame; one
  // record, then two, each fit.
  constexpr std::size_t kRecordBytes = 30u << 20;
  static_assert(3 * kRecordBytes > kMaxFrameBytes && 2 * kRecordBytes < kMaxFrameBytes);
  std::vector<std::string> records;
  for (char c : {'a', 'b', 'c'}) records.emplace_back(kRecordBytes, c);
  {
    PeerConnection peer({"127.0.0.1", receiver.port()}, kJob,
                        Clock::now() + std::chrono::seconds(10));
    detail::TypedEdgeFactory<std::string> edge;
    RemoteTaskSink sink(peer, 2, 1, {&edge});
    sink.push(detail::Message::of_batch(
        0, std::make_unique<detail::Batch<std::string>>(std::move(records))));
    sink.push(detail::Message::end_of_stream(0));
  }
  const auto events = recorder.wait_for(3);
  // A count byte, then per record a 4-byte length and its bytes.
  const std::size_t one = 1 + 4 + kRecordBytes;
  const std::size_t two = 1 + 2 * (4 + kRecordBytes);
  EXPECT_EQ(events, (std::vector<std::string>{"batch 2/1/0 " + std::to_string(one),
                                              "batch 2/1/0 " + std::to_string(two), "end 0"}));
}

// One record over the frame limit cannot be cut: the send fails saying so.
TEST(DataPlaneTest, ARecordOverTheFrameLimitFailsTheSendSayingWhy) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  PeerConnection peer({"127.0.0.1", receiver.port()}, kJob,
                      Clock::now() + std::chrono::seconds(10));
  detail::TypedEdgeFactory<std::string> edge;
  RemoteTaskSink sink(peer, 2, 1, {&edge});
  std::vector<std::string> records{"small", std::string(kMaxFrameBytes + 1, 'x')};
  try {
    sink.push(detail::Message::of_batch(
        0, std::make_unique<detail::Batch<std::string>>(std::move(records))));
    FAIL() << "a record over the frame limit was sent";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a record encodes to"), std::string::npos) << e.what();
  }
  // The record before it, which fits, went in its own frame first.
  EXPECT_EQ(recorder.wait_for(1), std::vector<std::string>{"batch 2/1/0 7"});
}

TEST(DataPlaneTest, WrongTokenOrJobIsTurnedAway) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  for (const PeerIdentity& intruder :
       {PeerIdentity{"job-1", "00ff", "guess"}, PeerIdentity{"job-2", "00ff", "secret"},
        PeerIdentity{"job-1", "0f0f", "secret"},
        PeerIdentity{"job-1", "00ff", "secret", "an earlier run", 1}}) {
    PeerConnection peer({"127.0.0.1", receiver.port()}, intruder,
                        Clock::now() + std::chrono::seconds(10));
    std::string error;
    EXPECT_FALSE(send_end_of_stream(peer, 0, &error)) << "an intruder's send succeeded";
    EXPECT_NE(error.find("the peer closed this data-plane connection without accepting it"),
              std::string::npos)
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

// A hello as a peer of `identity` sends it.
std::string hello_frame(const PeerIdentity& identity) {
  const std::string text = identity.hello();
  FrameHeader header;
  header.kind = static_cast<std::uint32_t>(FrameKind::kHello);
  header.length = static_cast<std::uint32_t>(text.size());
  return std::string(reinterpret_cast<const char*>(&header), sizeof header) + text;
}

std::string header_bytes(FrameKind kind, std::uint32_t length) {
  FrameHeader header;
  header.kind = static_cast<std::uint32_t>(kind);
  header.length = length;
  return std::string(reinterpret_cast<const char*>(&header), sizeof header);
}

// A peer of the job is still heard: one end-of-stream on channel 9.
void expect_a_peer_is_heard(Recorder& recorder, int port,
                            std::shared_ptr<const TlsContext> tls = nullptr) {
  PeerConnection peer({"127.0.0.1", port}, kJob, Clock::now() + 10s, std::move(tls));
  std::string error;
  ASSERT_TRUE(send_end_of_stream(peer, 9, &error)) << error;
  const auto events = recorder.wait_for(1);
  ASSERT_EQ(events.size(), 1u) << "only the peer's frame may arrive";
  EXPECT_EQ(events[0], "end 9");
}

TEST(DataPlaneTest, AnythingBeforeAnAcceptedHelloIsARejectionNeverAJobError) {
  Recorder recorder;
  const std::string hello = hello_frame(kJob);
  const std::vector<std::string> openings = {
      "",
      "x",
      std::string(19, '\x01'),  // most of a header
      "GET / HTTP/1.0\r\n\r\n",
      header_bytes(FrameKind::kBatch, 0),
      header_bytes(FrameKind::kHello, 1u << 30),
      hello.substr(0, hello.size() - 3),  // the credentials, cut short
      hello_frame(PeerIdentity{"job-1", "00ff", "guess"}),
  };
  {
    DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
    receiver.start();
    for (const std::string& bytes : openings) {
      Stranger stranger(receiver.port());
      stranger.send(bytes);
      stranger.end_sending();
      EXPECT_TRUE(stranger.closed_by_receiver(10s))
          << "not closed after " << bytes.size() << " bytes";
    }
    expect_a_peer_is_heard(recorder, receiver.port());
  }
  // Rate-limited: the first ones in full, then (here at the receiver's end) how many more.
  const auto lines = recorder.rejections();
  ASSERT_EQ(lines.size(), kRejectionsLoggedInFull + 1) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("data plane of job job-1: rejected a connection from 127.0.0.1:"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("without sending anything"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("closed in the middle"), std::string::npos) << lines[1];
  EXPECT_NE(lines[3].find("closed in the middle"), std::string::npos) << lines[3];
  EXPECT_NE(lines[4].find("not a hello"), std::string::npos) << lines[4];
  EXPECT_NE(lines[5].find("rejected " + std::to_string(openings.size() - kRejectionsLoggedInFull) +
                          " more"),
            std::string::npos)
      << lines[5];
}

TEST(DataPlaneTest, AConnectionSilentPastTheHelloTimeoutIsClosed) {
  TempDir dir;
  const TlsFiles files = testing::write_test_certificates(dir.path());
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "with TLS" : "plaintext");
    Recorder recorder;
    DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder,
                          tls ? TlsContext::server(files) : nullptr, ReceiverLimits{200ms, 8});
    receiver.start();
    Stranger silent(receiver.port()), slow(receiver.port());
    slow.send(tls ? std::string("\x16\x03\x01", 3) : std::string(10, '\0'));  // a start
    EXPECT_TRUE(silent.closed_by_receiver(10s));
    EXPECT_TRUE(slow.closed_by_receiver(10s));
    const auto lines = recorder.wait_for_rejections(2);
    ASSERT_EQ(lines.size(), 2u);
    for (const auto& line : lines) {
      EXPECT_NE(line.find("no valid hello within 200 ms"), std::string::npos) << line;
    }
    expect_a_peer_is_heard(recorder, receiver.port(), tls ? TlsContext::client(files) : nullptr);
  }
}

TEST(DataPlaneTest, ConnectionsBeyondTheCapOnUngreetedOnesAreClosedAtOnce) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder, nullptr,
                        ReceiverLimits{60s, 3});
  receiver.start();
  std::vector<std::unique_ptr<Stranger>> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(std::make_unique<Stranger>(receiver.port()));
  Stranger one_too_many(receiver.port());
  EXPECT_TRUE(one_too_many.closed_by_receiver(10s)) << "held although 3 wait for their hello";
  auto lines = recorder.wait_for_rejections(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("3 connections are waiting for their hello already"), std::string::npos)
      << lines[0];
  // Once they have gone, a peer is served again.
  waiting.clear();
  EXPECT_EQ(recorder.wait_for_rejections(4).size(), 4u);
  expect_a_peer_is_heard(recorder, receiver.port());
}

TEST(DataPlaneTest, RejectedConnectionsGiveBackTheirThreadsAndFilesAtOnce) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  const testing::ProcessHoldings before = testing::holdings_of();
  std::mt19937 random(9);
  for (int i = 0; i < 300; ++i) {
    Stranger stranger(receiver.port());
    stranger.send(testing::random_bytes(random, 64));
  }
  testing::ProcessHoldings now;
  EXPECT_TRUE(testing::eventually(
      [&] {
        now = testing::holdings_of();
        return now.at_most(before);
      },
      10s))
      << "before: " << to_string(before) << "; now: " << to_string(now);
  EXPECT_TRUE(recorder.events().empty()) << ::testing::PrintToString(recorder.events());
  expect_a_peer_is_heard(recorder, receiver.port());
}

TEST(DataPlaneTest, AFailedAcceptFailsTheJobLoudly) {
  Recorder recorder;
  DataReceiver receiver(Socket::listen({"127.0.0.1", 0}), kJob, recorder);
  receiver.start();
  // Every file descriptor in use but one, for the connection; accept then has none.
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  int highest = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(entry.path().filename().string()));
  }
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(highest) + 16;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  std::vector<int> fillers;
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
  close(fillers.back());
  fillers.pop_back();
  {
    Stranger stranger(receiver.port());
    const auto events = recorder.wait_for(1);
    for (int fd : fillers) close(fd);
    setrlimit(RLIMIT_NOFILE, &original);
    ASSERT_EQ(events.size(), 1u) << "a failed accept went unnoticed";
    // This process's own failure, the job's cause, not a peer's.
    EXPECT_NE(events[0].find("local failure data plane: cannot accept connections on port " +
                             std::to_string(receiver.port()) + ": Too many open files"),
              std::string::npos)
        << events[0];
    EXPECT_NE(events[0].find("raise the open-file limit"), std::string::npos) << events[0];
  }
}

TEST(DataPlaneTest, APeerConnectsOnlyWhenItGreetsSoThatItsHelloIsNeverLate) {
  const Socket listener = Socket::listen({"127.0.0.1", 0});
  PeerConnection peer({"127.0.0.1", listener.local_port()}, kJob, Clock::now() + 10s);
  EXPECT_FALSE(listener.accept(Clock::now()).valid())
      << "the peer connected long before it would send its hello";
}

TEST(DataPlaneTest, HelloAndFrameChecksNameWhatIsWrong) {
  const auto message = [](auto check) {
    try {
      check();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  FrameHeader header;
  header.kind = static_cast<std::uint32_t>(FrameKind::kBatch);
  EXPECT_EQ(message([&] { hello_payload_length(header, kJob); }),
            "its first frame is not a hello (kind 2)");
  header.kind = static_cast<std::uint32_t>(FrameKind::kHello);
  header.length = 100000;
  EXPECT_NE(message([&] { hello_payload_length(header, kJob); }).find("over the"),
            std::string::npos);
  EXPECT_EQ(check_hello(kJob.credentials() + "node x", kJob), "node x");
  EXPECT_EQ(message([&] { check_hello("job-1\n00ff\nsecreT\n", kJob); }),
            "its hello does not match job job-1 (another token, job or plan)");
  header.kind = 77;
  header.length = 0;
  EXPECT_EQ(message([&] { check_frame_header(header); }), "an unknown frame kind 77");
  header.kind = static_cast<std::uint32_t>(FrameKind::kBatch);
  header.length = kMaxFrameBytes + 1;
  EXPECT_NE(message([&] { check_frame_header(header); }).find("over the limit"), std::string::npos);
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
