// sage::rag benchmarks with same-run baselines (docs/performance.md, "RAG"):
//   R1 HashEmbedder: chunks/s on one core, against a loop that only splits the
//      text into tokens and SHA-256es each one (the work it cannot avoid).
//   R2 OpenAIGenerator against the test server (its own process) answering in 50 ms:
//      answers/s of `instances` generators with max_in_flight 32, against the
//      bound instances x 32 / 50 ms; the same generators with max_in_flight 1
//      (one blocking call per instance, as SAGE makes) run beside as baseline;
//      CPU per answer of the client (this process) and of the server.
//   R2s The same generators with GeneratorConfig::stream (answers read as
//      server-sent events, a word per event) against the same generators
//      reading whole answers, alternating in the same run: answers/s and the
//      client's CPU per answer.
//   R3 Retrieval on --records clustered unit vectors of dimension 384 (default
//      100 000; 1000 Gaussian clusters, like text embeddings, not uniform noise):
//      HnswIndex queries/s at top_k 10 and default ef against raw hnswlib
//      searching the same saved graph, and HnswIndex's recall@10 against ExactIndex.
//
//   build/bench/rag_bench [--records N] [--repeat R] [--json FILE]
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sage/rag.hpp>

#include "bench_options.hpp"
#include "measure.hpp"
#include "rag/raw_hnswlib.hpp"

extern char** environ;

namespace {

using sage::bench::cpu_seconds;
using sage::bench::median;
using sage::bench::seconds_of;

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kDim = 384;
constexpr int kTopK = 10;

struct Figure {
  std::string workload;
  std::string unit;
  double sage = 0;
  double baseline = 0;
  std::string baseline_name;
  std::string note;
};

// --- R1

std::vector<std::string> chunk_texts(int count) {
  std::mt19937_64 random(1);
  std::vector<std::string> vocabulary;
  std::uniform_int_distribution<int> letter('a', 'z'), length(2, 10);
  for (int i = 0; i < 5000; ++i) {
    std::string word;
    for (int n = length(random); n > 0; --n) word += static_cast<char>(letter(random));
    vocabulary.push_back(word);
  }
  std::uniform_int_distribution<std::size_t> pick(0, vocabulary.size() - 1);
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string text;
    while (text.size() < 500)
      text += vocabulary[pick(random)] + (pick(random) % 12 == 0 ? ". " : " ");
    texts.push_back(text);
  }
  return texts;
}

Figure hash_embedder(int repeat) {
  const auto texts = chunk_texts(20000);
  const sage::rag::HashEmbedder embedder;
  float checksum = 0;
  std::vector<double> sage_rates, floor_rates;
  for (int r = 0; r < repeat; ++r) {
    sage_rates.push_back(static_cast<double>(texts.size()) / seconds_of([&] {
                           for (const auto& text : texts) checksum += embedder.embed(text)[0];
                         }));
    floor_rates.push_back(static_cast<double>(texts.size()) / seconds_of([&] {
                            unsigned char digest[SHA256_DIGEST_LENGTH];
                            unsigned int length = 0;
                            EVP_MD* algorithm = EVP_MD_fetch(nullptr, "SHA256", nullptr);
                            EVP_MD_CTX* context = EVP_MD_CTX_new();
                            for (const auto& text : texts) {
                              std::size_t start = 0;
                              while (start < text.size()) {
                                std::size_t end = start;
                                while (end < text.size() &&
                                       std::isalnum(static_cast<unsigned char>(text[end])))
                                  ++end;
                                if (end > start) {
                                  EVP_DigestInit_ex2(context, algorithm, nullptr);
                                  EVP_DigestUpdate(context, text.data() + start, end - start);
                                  EVP_DigestFinal_ex(context, digest, &length);
                                  checksum += digest[0];
                                }
                                start = end + 1;
                              }
                            }
                            EVP_MD_CTX_free(context);
                            EVP_MD_free(algorithm);
                          }));
  }
  std::printf("  (checksum %g)\n", static_cast<double>(checksum));
  return Figure{
      .workload = "R1 hash embedder, 1 core",
      .unit = "chunks/s",
      .sage = median(sage_rates),
      .baseline = median(floor_rates),
      .baseline_name = "split at non-alphanumerics + SHA-256 per token (EVP, fetched once)",
      .note = "500-byte chunks, ~80 tokens each"};
}

// --- R2

double generate(const std::string& base_url, int instances, int max_in_flight, int calls,
                bool stream = false) {
  std::vector<sage::Metrics> metrics(static_cast<std::size_t>(instances));
  std::vector<std::unique_ptr<sage::RuntimeContext>> contexts;
  std::vector<std::unique_ptr<sage::rag::OpenAIGenerator>> generators;
  for (int i = 0; i < instances; ++i) {
    contexts.push_back(std::make_unique<sage::RuntimeContext>(
        sage::RuntimeContext::Identity{
            .operator_name = "generator", .parallel_index = i, .parallelism = instances},
        metrics[static_cast<std::size_t>(i)], nullptr));
    generators.push_back(std::make_unique<sage::rag::OpenAIGenerator>(sage::rag::GeneratorConfig{
        .model = "bench", .base_url = base_url, .max_in_flight = max_in_flight, .stream = stream}));
    generators.back()->open(*contexts.back());
  }
  std::mutex mutex;
  std::condition_variable done;
  int completed = 0, failed = 0;
  std::vector<int> issued(static_cast<std::size_t>(instances), 0);
  // Each instance keeps max_in_flight calls out, as the engine's asynchronous map does.
  std::function<void(int)> issue;
  issue = [&](int instance) {
    const int n = issued[static_cast<std::size_t>(instance)]++;
    sage::rag::Prompt prompt{
        .query = "question " + std::to_string(instance) + "." + std::to_string(n),
        .messages = {{"user", "Question: what is sage?"}}};
    generators[static_cast<std::size_t>(instance)]->invoke(
        prompt, sage::AsyncResult<sage::rag::Answer>(
                    [&, instance](std::optional<sage::rag::Answer> answer, std::exception_ptr) {
                      std::lock_guard lock(mutex);
                      ++completed;
                      failed += !answer;
                      if (issued[static_cast<std::size_t>(instance)] < calls / instances)
                        issue(instance);
                      done.notify_all();
                    }));
  };
  const double elapsed = seconds_of([&] {
    {
      std::lock_guard lock(mutex);
      for (int i = 0; i < instances; ++i)
        for (int k = 0;
             k < max_in_flight && issued[static_cast<std::size_t>(i)] < calls / instances; ++k)
          issue(i);
    }
    std::unique_lock lock(mutex);
    done.wait(lock, [&] { return completed == calls / instances * instances; });
  });
  for (auto& generator : generators) generator->close();
  if (failed > 0) {
    std::fprintf(stderr, "R2: %d calls failed\n", failed);
    std::exit(1);
  }
  return calls / instances * instances / elapsed;
}

// The test server as a process of its own (sage-openai-test-server), so that
// its CPU time and the client's can be told apart.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& flags) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("R2: pipe failed");
    std::vector<std::string> args{SAGE_OPENAI_TEST_SERVER_BINARY};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc != 0) throw std::runtime_error(std::string("R2: cannot start ") + argv[0]);
    FILE* stream = fdopen(out[0], "r");
    if (std::fscanf(stream, "%d", &port_) != 1) throw std::runtime_error("R2: no port printed");
    std::fclose(stream);
  }
  ~ServerProcess() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // Its CPU time so far, user and system.
  double cpu_seconds() const {
    std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
    std::string line;
    std::getline(stat, line);
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    }
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

Figure generator_throughput(int repeat) {
  constexpr int kInstances = 2, kInFlight = 32;
  constexpr auto kLatency = 50ms;
  const ServerProcess server({"--port", "0", "--latency-ms", "50", "--threads", "512"});
  constexpr int kCalls = 4000;
  std::vector<double> rates, blocking, client_ms, server_ms;
  for (int r = 0; r < repeat; ++r) {
    const double client = cpu_seconds();
    const double served = server.cpu_seconds();
    rates.push_back(generate(server.base_url(), kInstances, kInFlight, kCalls));
    client_ms.push_back((cpu_seconds() - client) * 1000 / kCalls);
    server_ms.push_back((server.cpu_seconds() - served) * 1000 / kCalls);
    blocking.push_back(generate(server.base_url(), kInstances, 1, 100));
  }
  const double bound = kInstances * kInFlight / std::chrono::duration<double>(kLatency).count();
  char note[400];
  std::snprintf(note, sizeof note,
                "bound %d x %d / 50 ms = %.0f answers/s; sage reaches %.2f of it; CPU per answer "
                "%.3f ms in the client, %.3f ms in the test server (its own process)",
                kInstances, kInFlight, bound, median(rates) / bound, median(client_ms),
                median(server_ms));
  return Figure{.workload = "R2 generator, 2 instances x max_in_flight 32, 50 ms server",
                .unit = "answers/s",
                .sage = median(rates),
                .baseline = median(blocking),
                .baseline_name = "the same, max_in_flight 1 (one blocking call per instance)",
                .note = note};
}

Figure streamed_generator(int repeat) {
  constexpr int kInstances = 2, kInFlight = 32, kCalls = 4000;
  const ServerProcess server({"--port", "0", "--latency-ms", "50", "--threads", "512"});
  std::vector<double> streamed, whole, streamed_ms, whole_ms;
  for (int r = 0; r < repeat; ++r) {
    for (const bool stream : {true, false}) {
      const double client = cpu_seconds();
      const double rate = generate(server.base_url(), kInstances, kInFlight, kCalls, stream);
      const double ms = (cpu_seconds() - client) * 1000 / kCalls;
      (stream ? streamed : whole).push_back(rate);
      (stream ? streamed_ms : whole_ms).push_back(ms);
    }
  }
  char note[300];
  std::snprintf(note, sizeof note,
                "client CPU per answer %.3f ms streamed, %.3f ms whole (%.2fx); answers of ~6 "
                "words, a word per event",
                median(streamed_ms), median(whole_ms), median(streamed_ms) / median(whole_ms));
  return Figure{.workload = "R2s generator streamed, 2 x max_in_flight 32, 50 ms server",
                .unit = "answers/s",
                .sage = median(streamed),
                .baseline = median(whole),
                .baseline_name = "the same generators reading whole answers, alternating",
                .note = note};
}

// --- R3

std::vector<float> clustered_vectors(std::size_t count, std::uint64_t seed,
                                     const std::vector<float>& centers) {
  std::mt19937_64 random(seed);
  std::normal_distribution<float> noise(0.0f, 0.08f);
  const std::size_t clusters = centers.size() / kDim;
  std::uniform_int_distribution<std::size_t> pick(0, clusters - 1);
  std::vector<float> vectors(count * kDim);
  for (std::size_t i = 0; i < count; ++i) {
    const float* center = &centers[pick(random) * kDim];
    float* v = &vectors[i * kDim];
    float norm = 0;
    for (int d = 0; d < kDim; ++d) {
      v[d] = center[d] + noise(random);
      norm += v[d] * v[d];
    }
    norm = std::sqrt(norm);
    for (int d = 0; d < kDim; ++d) v[d] /= norm;
  }
  return vectors;
}

std::vector<Figure> retrieval(std::size_t count, int repeat) {
  std::mt19937_64 random(7);
  std::normal_distribution<float> gaussian;
  std::vector<float> centers(1000 * kDim);
  for (std::size_t c = 0; c < 1000; ++c) {
    float norm = 0;
    for (int d = 0; d < kDim; ++d) norm += std::pow(centers[c * kDim + d] = gaussian(random), 2.0f);
    for (int d = 0; d < kDim; ++d) centers[c * kDim + d] /= std::sqrt(norm);
  }
  const auto data = clustered_vectors(count, 1, centers);
  constexpr std::size_t kQueries = 500;
  const auto queries = clustered_vectors(kQueries, 2, centers);
  const sage::rag::HnswConfig config;

  // Built once with hnswlib on every core (its insertions may run in parallel;
  // HnswIndex inserts one at a time), saved, and loaded by both sides.
  const auto file = std::filesystem::temp_directory_path() /
                    ("rag_bench_" + std::to_string(::getpid()) + ".hnsw");
  const double build_s = seconds_of([&] {
    sage::rag::detail::build_raw_hnsw(data.data(), count, kDim, config,
                                      std::thread::hardware_concurrency(), file);
  });
  std::printf("  (HNSW of %zu vectors built in %.1f s on %u threads)\n", count, build_s,
              std::thread::hardware_concurrency());
  const auto index = sage::rag::HnswIndex::load(file, kDim, config.ef);
  const sage::rag::detail::RawHnsw raw(file, kDim, config.ef);
  std::filesystem::remove(file);

  sage::rag::ExactIndex exact(kDim);
  for (std::size_t i = 0; i < count; ++i) exact.add({&data[i * kDim], kDim}, i);
  double recall = 0;
  for (std::size_t q = 0; q < kQueries; ++q) {
    const std::span<const float> query(&queries[q * kDim], kDim);
    std::vector<std::string> truth, found;
    for (const auto& n : exact.search(query, kTopK)) truth.push_back(std::to_string(n.label));
    for (const auto& n : index->search(query, kTopK)) found.push_back(std::to_string(n.label));
    recall += sage::rag::recall_at_k(found, truth, kTopK);
  }
  recall /= kQueries;

  std::vector<double> sage_rates, raw_rates;
  std::uint64_t checksum = 0;
  for (int r = 0; r < repeat; ++r) {
    sage_rates.push_back(kQueries / seconds_of([&] {
                           for (std::size_t q = 0; q < kQueries; ++q)
                             checksum += index->search({&queries[q * kDim], kDim}, kTopK)[0].label;
                         }));
    raw_rates.push_back(kQueries / seconds_of([&] {
                          for (std::size_t q = 0; q < kQueries; ++q)
                            checksum += raw.search_top(&queries[q * kDim], kTopK);
                        }));
  }
  std::printf("  (checksum %llu)\n", static_cast<unsigned long long>(checksum));
  char note[200];
  std::snprintf(note, sizeof note, "recall@10 %.4f against ExactIndex, ef %d, M %d, %zu vectors",
                recall, config.ef, config.m, count);
  return {Figure{.workload = "R3 HNSW search, top_k 10, 1 thread",
                 .unit = "queries/s",
                 .sage = median(sage_rates),
                 .baseline = median(raw_rates),
                 .baseline_name = "raw hnswlib searchKnn on the same graph",
                 .note = note}};
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = sage::bench::parse_bench_options(argc, argv, 100'000);
  std::vector<Figure> figures;
  std::printf("R1 ...\n");
  figures.push_back(hash_embedder(options.repeat));
  std::printf("R2 ...\n");
  figures.push_back(generator_throughput(options.repeat));
  std::printf("R2s ...\n");
  figures.push_back(streamed_generator(options.repeat));
  std::printf("R3 ...\n");
  for (auto& figure : retrieval(static_cast<std::size_t>(options.records), options.repeat))
    figures.push_back(figure);

  std::printf("\n%-60s %14s %14s %7s\n", "workload", "sage", "baseline", "ratio");
  for (const Figure& f : figures) {
    std::printf("%-60s %14.0f %14.0f %7.2f  %s\n    baseline: %s; %s\n", f.workload.c_str(), f.sage,
                f.baseline, f.sage / f.baseline, f.unit.c_str(), f.baseline_name.c_str(),
                f.note.c_str());
  }
  if (!options.json_path.empty()) {
    std::ofstream out(options.json_path);
    out << "[\n";
    for (std::size_t i = 0; i < figures.size(); ++i) {
      const Figure& f = figures[i];
      out << "  {\"workload\": \"" << f.workload << "\", \"unit\": \"" << f.unit
          << "\", \"sage\": " << f.sage << ", \"baseline\": " << f.baseline
          << ", \"baseline_name\": \"" << f.baseline_name << "\", \"note\": \"" << f.note << "\"}"
          << (i + 1 < figures.size() ? ",\n" : "\n");
    }
    out << "]\n";
  }
  return 0;
}
