// How the head runs each RPC of its two services: the caller must bring the
// cluster token, the request must pass its checks (request_validation.hpp)
// before the handler sees it, and an exception that escapes the handler (a damaged job
// database, a bug) is logged, naming the RPC, and answered with INTERNAL and
// its message. Also the statuses the handlers share.
#pragma once

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <string>

#include "cluster/request_validation.hpp"
#include "net/rpc.hpp"

namespace sage::cluster {

template <class Handler>
grpc::Status serve(const char* rpc, grpc::ServerContext* context, const std::string& token,
                   Handler&& handler) {
  if (auto s = net::check_token(*context, token); !s.ok()) return s;
  try {
    return handler();
  } catch (const std::exception& e) {
    spdlog::error("{} failed: {}", rpc, e.what());
    return {grpc::StatusCode::INTERNAL,
            std::string(rpc) + " failed on the head: " + e.what() + " (see the head's log)"};
  }
}

inline grpc::Status invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

inline grpc::Status unknown_job(const std::string& id) {
  return {grpc::StatusCode::NOT_FOUND,
          "no job '" + id + "'; `sage job list` shows the jobs this head knows"};
}

// serve() for a request whose fields are checked first: a bad one is
// refused with INVALID_ARGUMENT naming the field, and the handler never runs.
template <class Request, class Handler>
grpc::Status serve(const char* rpc, grpc::ServerContext* context, const std::string& token,
                   const Request& request, Handler&& handler) {
  return serve(rpc, context, token, [&]() -> grpc::Status {
    if (auto problem = problem_in(request)) return invalid(*problem);
    return handler();
  });
}

}  // namespace sage::cluster
