// SAGE's distributed RAG pipeline on sage, in two jobs over one collection:
//
//   rag_pipeline ingest <collection> <file.md>...
//     Document -> Chunker (p2) -> HashEmbedder (p4) -> IndexWriter (p2)
//   rag_pipeline ask <collection> [question]...
//     question -> Retriever (p4) -> Promptor (p4) -> OpenAIGenerator (p8) -> print
//
// Each runs on the cluster at $SAGE_ADDRESS (or the one started from the state
// directory; `--local` first: on threads of this process). The generator talks
// to the OpenAI-compatible endpoint at $OPENAI_BASE_URL with $OPENAI_API_KEY
// ($OPENAI_MODEL, default gpt-4o-mini); scripts/run-rag-example.sh points it at
// sage's own test server. Every answer is printed with its top hits, then a
// table of latency, tokens and retries per operator; the exit code is non-zero
// unless every question got exactly one answer.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

namespace {

namespace rag = sage::rag;

const std::vector<std::string> kDefaultQuestions = {
    "How do I start a cluster on two machines?",
    "What happens when a consumer is slower than its producer?",
    "How does sage recover a job after a worker dies?",
    "What does key_by do with keyed state?",
    "Which port does the dashboard listen on?",
    "How do I run a job in my own process instead of a cluster?",
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// Prints one answer, its hits and its cost as a block, so that the blocks of
// the sink's instances do not interleave line by line.
class PrintAnswer {
 public:
  void sink(const rag::Answer& answer) {
    std::ostringstream out;
    out << "Q: " << answer.query << "\nA: " << answer.text << "\n";
    for (const rag::Hit& hit : answer.hits) {
      out << "   hit " << std::fixed << std::setprecision(3) << hit.score << "  " << hit.id << "\n";
    }
    out << "   " << std::setprecision(2) << answer.latency_s << " s, " << answer.prompt_tokens
        << " prompt + " << answer.completion_tokens << " completion tokens\n";
    std::cout << out.str() << std::flush;
  }
};

std::unique_ptr<sage::Environment> make_environment(bool local, const std::string& name) {
  if (local) return std::make_unique<sage::LocalEnvironment>(name);
  return std::make_unique<sage::RemoteEnvironment>(name);
}

std::vector<rag::Document> read_documents(const std::vector<std::string>& paths) {
  std::vector<rag::Document> documents;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw sage::Error("rag_pipeline: cannot read " + path + "; name readable files");
    std::ostringstream text;
    text << in.rdbuf();
    documents.push_back({.id = std::filesystem::path(path).filename().string(), .text = text.str()});
  }
  return documents;
}

std::uint64_t records_into(const sage::JobResult& result, const std::string& operator_name) {
  std::uint64_t records = 0;
  for (const auto& instance : result.instances) {
    if (instance.operator_name == operator_name) records += instance.records_in;
  }
  return records;
}

int ingest(sage::Environment& env, const std::string& collection,
           const std::vector<std::string>& files) {
  const std::vector<rag::Document> documents = read_documents(files);
  env.from_collection(documents, {.name = "documents"})
      .flat_map<rag::Chunker>(sage::Options{.name = "chunk", .parallelism = 2},
                              rag::ChunkerConfig{.size = 512, .overlap = 128})
      .map<rag::HashEmbedder>(sage::Options{.name = "embed", .parallelism = 4})
      .sink<rag::IndexWriter>(sage::Options{.name = "index", .parallelism = 2},
                              rag::IndexWriterConfig{.collection = collection});
  const sage::JobResult result = env.execute();
  if (!sage::is_task_process()) {
    std::cout << "indexed " << records_into(result, "index") << " chunks of " << documents.size()
              << " documents into " << collection << " (" << result.duration_seconds << " s)\n";
  }
  return EXIT_SUCCESS;
}

int ask(sage::Environment& env, const std::string& collection,
        std::vector<std::string> questions) {
  if (questions.empty()) questions = kDefaultQuestions;
  env.from_collection(questions, {.name = "questions"})
      .map<rag::Retriever>(sage::Options{.name = "retrieve", .parallelism = 4},
                           rag::RetrieverConfig{.collection = collection, .top_k = 3})
      .map<rag::Promptor>(sage::Options{.name = "prompt", .parallelism = 4})
      .map<rag::OpenAIGenerator>(
          sage::Options{.name = "generate", .parallelism = 8},
          rag::GeneratorConfig{.model = env_or("OPENAI_MODEL", "gpt-4o-mini"), .max_in_flight = 32})
      .sink<PrintAnswer>(sage::Options{.name = "answers", .parallelism = 1});
  const sage::JobResult result = env.execute();
  if (sage::is_task_process()) return EXIT_SUCCESS;
  const std::uint64_t answered = records_into(result, "answers");
  std::cout << "\n" << result.user_metrics_table() << "\n"
            << answered << " of " << questions.size() << " questions answered in "
            << result.duration_seconds << " s\n";
  return answered == questions.size() ? EXIT_SUCCESS : EXIT_FAILURE;
}

int usage(const char* program) {
  std::cerr << "usage: " << program << " [--local] ingest <collection> <file.md>...\n"
            << "       " << program << " [--local] ask <collection> [question]...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool local = !args.empty() && args.front() == "--local";
  if (local) args.erase(args.begin());
  if (args.size() < 2) return usage(argv[0]);
  const std::string command = args[0];
  const std::string collection = args[1];
  const std::vector<std::string> rest(args.begin() + 2, args.end());
  // Task processes run in directories of their own: on a cluster, paths must not
  // depend on the working directory.
  if (!local) {
    std::vector<std::string> paths = {collection};
    if (command == "ingest") paths.insert(paths.end(), rest.begin(), rest.end());
    for (const std::string& path : paths) {
      if (std::filesystem::path(path).is_relative()) {
        std::cerr << "error: " << path << " is a relative path; give an absolute one (task "
                  << "processes run in other directories), or run with --local\n";
        return 2;
      }
    }
  }
  try {
    if (command == "ingest" && !rest.empty()) {
      return ingest(*make_environment(local, "rag_ingest"), collection, rest);
    }
    if (command == "ask") return ask(*make_environment(local, "rag_ask"), collection, rest);
    return usage(argv[0]);
  } catch (const sage::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return EXIT_FAILURE;
  }
}
