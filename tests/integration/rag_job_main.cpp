// The job of the RAG cluster tests (rag_cluster_test.cpp), in two modes:
//   rag_job ingest COLLECTION
//     the documents of rag_job.hpp -> Chunker (p2) -> HashEmbedder (p2) -> IndexWriter (p2)
//   rag_job ask COLLECTION OUTPUT_DIR GENERATORS MAX_IN_FLIGHT [--base-url=URL] [--api-key=KEY]
//     every chunk's text as a query -> Retriever (p2) -> Promptor (p2) ->
//     OpenAIGenerator (GENERATORS instances, MAX_IN_FLIGHT each, 10 retries
//     with 10-100 ms backoff) -> one JSON line per answer, write_text into OUTPUT_DIR
// Without --base-url / --api-key the generator takes the endpoint the
// submitter's environment names ($OPENAI_BASE_URL, $OPENAI_API_KEY).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

#include "integration/paced_job.hpp"
#include "integration/rag_job.hpp"

namespace {

namespace rag = sage::rag;
using namespace std::chrono_literals;

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s ingest COLLECTION\n"
               "       %s ask COLLECTION OUTPUT_DIR GENERATORS MAX_IN_FLIGHT [--base-url=URL] "
               "[--api-key=KEY]\n",
               program, program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return usage(argv[0]);
  const std::string& collection = args[1];
  if (args[0] == "ingest" && args.size() == 2) {
    sage::RemoteEnvironment env("rag-ingest");
    env.from_collection(sage::testing::rag_documents(), {.name = "documents"})
        .flat_map<rag::Chunker>(sage::Options{.name = "chunk", .parallelism = 2},
                                sage::testing::kRagChunking)
        .map<rag::HashEmbedder>(sage::Options{.name = "embed", .parallelism = 2})
        .sink<rag::IndexWriter>(sage::Options{.name = "index", .parallelism = 2},
                                rag::IndexWriterConfig{.collection = collection});
    return sage::testing::submit_and_report(env);
  }
  if (args[0] != "ask" || args.size() < 5) return usage(argv[0]);
  rag::GeneratorConfig generator{.model = "test-model",
                                 .max_in_flight = std::atoi(args[4].c_str()),
                                 .max_retries = 10,
                                 .backoff_initial = 10ms,
                                 .backoff_max = 100ms,
                                 .request_timeout = 10s,
                                 .total_timeout = 60s};
  for (std::size_t i = 5; i < args.size(); ++i) {
    if (args[i].starts_with("--base-url=")) {
      generator.base_url = args[i].substr(11);
    } else if (args[i].starts_with("--api-key=")) {
      generator.api_key = args[i].substr(10);
    } else {
      return usage(argv[0]);
    }
  }
  std::vector<std::string> queries;
  for (const rag::Chunk& chunk : sage::testing::rag_chunks()) queries.push_back(chunk.text);
  sage::RemoteEnvironment env("rag-ask");
  env.from_collection(queries, {.name = "queries"})
      .map<rag::Retriever>(sage::Options{.name = "retrieve", .parallelism = 2},
                           rag::RetrieverConfig{.collection = collection, .top_k = 3})
      .map<rag::Promptor>(sage::Options{.name = "prompt", .parallelism = 2})
      .map<rag::OpenAIGenerator>(
          sage::Options{.name = "generate", .parallelism = std::atoi(args[3].c_str())}, generator)
      .map([](const rag::Answer& answer) { return sage::testing::rag_answer_line(answer); },
           {.name = "line"})
      .write_text(args[2], {.name = "answers", .parallelism = 1});
  return sage::testing::submit_and_report(env);
}
