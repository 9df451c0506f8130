// sage-openai-test-server: the OpenAI-compatible test server
// (rag/openai_test_server.hpp) as a command, for the example and scripts. It
// prints the port it listens on (one line), then serves until SIGINT/SIGTERM.
//
//   sage-openai-test-server [--port 0] [--api-key KEY] [--latency-ms 0]
//     [--token-delay-ms 0] [--rate-429 0] [--rate-500 0] [--rate-drop 0]
//     [--rate-hang 0] [--hang-limit-ms 60000] [--retry-after-ms -1]
//     [--retry-after-s -1] [--seed 1] [--threads 256]
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "rag/openai_test_server.hpp"

namespace {

void print_usage(std::FILE* to, const char* program) {
  std::fprintf(to,
               "usage: %s [--port N] [--api-key KEY] [--latency-ms N] "
               "[--token-delay-ms N] [--rate-429 F] [--rate-500 F] [--rate-drop F] "
               "[--rate-hang F] [--hang-limit-ms N] [--retry-after-ms N] "
               "[--retry-after-s N] [--seed N] [--threads N]\n",
               program);
}

[[noreturn]] void usage(const char* program, const std::string& problem) {
  std::fprintf(stderr, "%s: %s\n", program, problem.c_str());
  print_usage(stderr, program);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  sage::rag::OpenAITestServerOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_usage(stdout, argv[0]);
      return 0;
    }
    if (i + 1 >= argc) usage(argv[0], flag + " needs a value");
    const std::string value = argv[++i];
    try {
      if (flag == "--port") {
        options.port = std::stoi(value);
      } else if (flag == "--api-key") {
        options.api_key = value;
      } else if (flag == "--latency-ms") {
        options.latency = std::chrono::milliseconds(std::stoll(value));
      } else if (flag == "--token-delay-ms") {
        options.token_delay = std::chrono::milliseconds(std::stoll(value));
      } else if (flag == "--rate-429") {
        options.rate_429 = std::stod(value);
      } else if (flag == "--rate-500") {
        options.rate_500 = std::stod(value);
      } else if (flag == "--rate-drop") {
        options.rate_drop = std::stod(value);
      } else if (flag == "--rate-hang") {
        options.rate_hang = std::stod(value);
      } else if (flag == "--hang-limit-ms") {
        options.hang_limit = std::chrono::milliseconds(std::stoll(value));
      } else if (flag == "--retry-after-ms") {
        options.retry_after_ms = std::stoi(value);
      } else if (flag == "--retry-after-s") {
        options.retry_after_s = std::stod(value);
      } else if (flag == "--seed") {
        options.seed = std::stoull(value);
      } else if (flag == "--threads") {
        options.threads = std::stoi(value);
      } else {
        usage(argv[0], "unknown option " + flag);
      }
    } catch (const std::logic_error&) {
      usage(argv[0], flag + " needs a number, not '" + value + "'");
    }
  }
  // The signals wait for sigwait below instead of killing the process.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  try {
    sage::rag::OpenAITestServer server(options);
    std::printf("%d\n", server.port());
    std::fflush(stdout);
    int received = 0;
    sigwait(&signals, &received);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sage-openai-test-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
