// What every gRPC call of the control plane shares: the cluster token in the
// call's metadata, message size limits, and channel/server settings.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "net/tls.hpp"

namespace sage::net {

// Control-plane messages are small except programs and task snapshots, which
// travel in chunks of kChunkBytes; anything above the limit is refused.
constexpr int kMaxRpcMessageBytes = 8 << 20;
constexpr std::size_t kChunkBytes = 1 << 20;
// The largest task snapshot the head stores for a task process.
constexpr std::uint64_t kMaxSnapshotBytes = std::uint64_t{64} << 30;
constexpr const char* kTokenMetadata = "sage-token";

// A channel to `address` ("host:port") with the size limits applied; TLS,
// verifying the head against tls.ca, when that is set.
std::shared_ptr<grpc::Channel> make_channel(const std::string& address,
                                            const TlsFiles& tls = TlsFiles::from_environment());

// What a server listens with: TLS with tls.cert/key when TLS is on.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const TlsFiles& tls);

// `text` with every byte that is not part of a valid UTF-8 character replaced
// by U+FFFD: protobuf refuses a whole message whose string fields are not
// UTF-8, and program output or an exception's message may be anything.
std::string valid_utf8(std::string_view text);

// The longest cluster token: it travels in every call's metadata.
constexpr std::size_t kMaxTokenBytes = 1024;

// Throws sage::Error, naming `where` the token came from ("SAGE_TOKEN", a
// file, "--token"), unless `token` is 1 to kMaxTokenBytes printable ASCII
// characters without spaces: gRPC refuses other metadata by aborting.
void check_token_text(std::string_view token, const std::string& where);

// A client context carrying the token (checked with check_token_text unless
// empty).
std::unique_ptr<grpc::ClientContext> make_context(const std::string& token);

// Whether `given` is `token`, compared in constant time (in the token's length).
bool same_token(std::string_view given, const std::string& token);

// UNAUTHENTICATED unless the call carries `token` (compared in constant time).
grpc::Status check_token(const grpc::ServerContext& context, const std::string& token);

// Applies the size limits to a server being built.
void configure_server(grpc::ServerBuilder& builder);

// A client-side error as one line: what failed and the address it failed on.
std::string describe(const grpc::Status& status, const std::string& what,
                     const std::string& address);

}  // namespace sage::net
