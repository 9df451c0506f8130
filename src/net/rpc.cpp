#include "net/rpc.hpp"

#include <cstdint>
#include <cstdio>

#include "sage/error.hpp"

namespace sage::net {

// Keepalive pings find peers that vanished without closing their connection
// (a machine that lost power or its network), so streams to them end.
constexpr int kKeepaliveMs = 10'000;
constexpr int kKeepaliveTimeoutMs = 5'000;

std::shared_ptr<grpc::Channel> make_channel(const std::string& address, const TlsFiles& tls) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetMaxReceiveMessageSize(kMaxRpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxRpcMessageBytes);
  if (!tls.enabled()) {
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = read_pem(tls.ca);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  tls.require_server();
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({read_pem(tls.key), read_pem(tls.cert)});
  return grpc::SslServerCredentials(options);  // clients prove themselves with the token
}

void check_token_text(std::string_view token, const std::string& where) {
  const std::string what_a_token_is =
      "; a cluster token is printable ASCII without spaces, like the 32 hex digits of the token "
      "file a head writes in its state directory";
  if (token.empty()) throw Error(where + " is empty" + what_a_token_is);
  if (token.size() > kMaxTokenBytes) {
    throw Error(where + " has " + std::to_string(token.size()) + " bytes, over the " +
                std::to_string(kMaxTokenBytes) + " a token may have" + what_a_token_is);
  }
  for (std::size_t i = 0; i < token.size(); ++i) {
    const auto byte = static_cast<unsigned char>(token[i]);
    if (byte <= 0x20 || byte >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", byte);
      throw Error(where + " has the byte " + hex + " at position " + std::to_string(i) +
                  what_a_token_is);
    }
  }
}

std::unique_ptr<grpc::ClientContext> make_context(const std::string& token) {
  // No token is the head's to refuse (the caller then says why it had none).
  if (!token.empty()) check_token_text(token, "the cluster token");
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata(kTokenMetadata, token);
  return context;
}

bool same_token(std::string_view given, const std::string& token) {
  // Constant time in the token's length, so timing does not reveal a prefix.
  unsigned difference = given.size() == token.size() ? 0 : 1;
  for (std::size_t i = 0; i < token.size(); ++i) {
    difference |= static_cast<unsigned char>(i < given.size() ? given[i] : 0) ^
                  static_cast<unsigned char>(token[i]);
  }
  return difference == 0;
}

grpc::Status check_token(const grpc::ServerContext& context, const std::string& token) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kTokenMetadata);
  if (found == metadata.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "no cluster token: set SAGE_TOKEN or pass the token file of the head "
            "(sage cluster start prints where it is)"};
  }
  if (!same_token(std::string_view(found->second.data(), found->second.size()), token)) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "wrong cluster token: use the token the head created (its token file, or "
            "SAGE_TOKEN)"};
  }
  return grpc::Status::OK;
}

void configure_server(grpc::ServerBuilder& builder) {
  // gRPC would otherwise share a port with another server (SO_REUSEPORT),
  // silently splitting clients between two heads.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kKeepaliveMs / 2);
  builder.SetMaxReceiveMessageSize(kMaxRpcMessageBytes);
  builder.SetMaxSendMessageSize(kMaxRpcMessageBytes);
}

std::string describe(const grpc::Status& status, const std::string& what,
                     const std::string& address) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return what + ": no sage head answers at " + address +
           "; start one with `sage cluster start --head` or check the address" +
           (TlsFiles::from_environment().enabled()
                ? " (with TLS on, also that the head uses TLS, with a certificate that names "
                  "this address, signed by the CA)"
                : " (a head started with TLS needs --tls-ca or SAGE_TLS_CA here)");
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // gRPC's own message is empty: the service there lacks the method.
    return what + " at " + address +
           ": the server there does not serve this call, so it is another port of a sage head or "
           "another program; clients (sage job, RemoteEnvironment) use the head's JobManager "
           "port (19001 unless --jobmanager-port, \"jobmanager\" in head.json), workers join "
           "its cluster port (10001 unless --port, \"cluster\" in head.json)";
  }
  return what + " at " + address + ": " + status.error_message();
}

std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    std::uint32_t code = 0, smallest = 0;
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      ++i;
      continue;
    } else if ((lead & 0xe0) == 0xc0) {
      length = 2, code = lead & 0x1f, smallest = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3, code = lead & 0x0f, smallest = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4, code = lead & 0x07, smallest = 0x10000;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (byte(i + k) & 0xc0) == 0x80;
      code = (code << 6) | (byte(i + k) & 0x3f);
    }
    // Not overlong, not a surrogate, not beyond Unicode.
    valid = valid && code >= smallest && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff);
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

}  // namespace sage::net
