#include "net/frame.hpp"

#include <openssl/crypto.h>

#include "sage/error.hpp"

namespace sage::net {

std::size_t hello_payload_length(const FrameHeader& first, const PeerIdentity& identity) {
  if (first.kind != static_cast<std::uint32_t>(FrameKind::kHello)) {
    throw Error("its first frame is not a hello (kind " + std::to_string(first.kind) + ")");
  }
  const std::size_t longest = identity.credentials().size() + PeerIdentity::kMaxPeerName;
  if (first.length > longest) {
    throw Error("its hello announces " + std::to_string(first.length) + " bytes, over the " +
                std::to_string(longest) + " a hello of this job can have");
  }
  return first.length;
}

std::string check_hello(std::string_view payload, const PeerIdentity& identity) {
  const std::string expected = identity.credentials();
  if (payload.size() < expected.size() ||
      CRYPTO_memcmp(payload.data(), expected.data(), expected.size()) != 0) {
    throw Error("its hello does not match job " + identity.job_id +
                " (another token, job or plan)");
  }
  const std::string_view name = payload.substr(expected.size());
  return name.empty() ? "an unnamed peer" : std::string(name);
}

FrameKind check_frame_header(const FrameHeader& header) {
  if (header.length > kMaxFrameBytes) {
    throw Error("a frame of " + std::to_string(header.length) + " bytes, over the limit of " +
                std::to_string(kMaxFrameBytes));
  }
  switch (static_cast<FrameKind>(header.kind)) {
    case FrameKind::kBarrier:
      if (header.length != kBarrierPayloadBytes) {
        throw Error("a barrier frame of " + std::to_string(header.length) + " bytes, not " +
                    std::to_string(kBarrierPayloadBytes));
      }
      return FrameKind::kBarrier;
    case FrameKind::kBatch:
    case FrameKind::kEndOfStream:
    case FrameKind::kGoodbye:
      return static_cast<FrameKind>(header.kind);
    default:
      throw Error("an unknown frame kind " + std::to_string(header.kind));
  }
}

}  // namespace sage::net
