// The data plane's wire format: the frames a connection carries, the hello
// it opens with, and the checks a receiver makes of them, as pure functions
// over bytes (the receiver, net/data_plane.hpp, reads them off a socket;
// tests/fuzz feeds them anything). Frames are sent in the host's byte order:
// every node of a cluster is little-endian (sage/serialization.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sage::net {

// The largest frame a receiver accepts. A batch of 1024 records of 64 KiB
// fits; larger records need a smaller batch_size.
constexpr std::uint32_t kMaxFrameBytes = 64u << 20;

// kBarrier's payload is the checkpoint id, 8 bytes.
enum class FrameKind : std::uint32_t {
  kHello = 1,
  kBatch = 2,
  kEndOfStream = 3,
  kGoodbye = 4,
  kBarrier = 5
};
constexpr std::uint32_t kBarrierPayloadBytes = 8;

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
  // Which run of the job (0, then one more per restart): no process of an
  // earlier run can reach one of this run.
  int attempt = 0;
  // What must match, and the hello a sender sends.
  std::string credentials() const {
    return job_id + '\n' + std::to_string(attempt) + '\n' + fingerprint + '\n' + token + '\n';
  }
  std::string hello() const { return credentials() + self.substr(0, kMaxPeerName); }
  static constexpr std::size_t kMaxPeerName = 200;
};

// The receiver's checks; each throws sage::Error saying what is wrong.
//
// The payload length that the first header of a connection announces, if it
// is a hello that a peer of `identity` could send.
std::size_t hello_payload_length(const FrameHeader& first, const PeerIdentity& identity);
// The name the sender gives itself, if `payload` carries `identity`'s
// credentials (compared in constant time: the token is among them).
std::string check_hello(std::string_view payload, const PeerIdentity& identity);
// The kind of a frame that a greeted peer announces, if a receiver takes it.
FrameKind check_frame_header(const FrameHeader& header);

}  // namespace sage::net
