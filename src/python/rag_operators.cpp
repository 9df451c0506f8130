// sage::rag for Python (sage.middleware.operators.rag): the Retriever, the
// Promptor and the OpenAIGenerator as operators over Python records, and the
// ingest job (Chunker, HashEmbedder, IndexWriter) as build_collection. The
// search, the prompt and the HTTP calls run in C++; the GIL is taken once per
// batch to read the records and once to make the results (the generator: once
// per call as it is issued and once as it completes, on its HTTP thread).
//
// The records are SAGE's shapes (docs/python.md, "RAG"):
//   retriever  "q" or {"query": "q", ...} -> {..., "query", "results": [texts],
//              "retrieval_results": [{"id", "text", "score"}]}, best first;
//   promptor   that dict, (query, [texts]) or "q" -> [original, [system, user]];
//   generator  [original, messages] (or the retriever's dict) -> {**original, "generated",
//              "prompt_tokens", "completion_tokens", "latency_s", "time_to_first_token_s"}
//              for a dict, else (original, text); with on_failure="emit_error" also
//              "error" and "error_status" ("" and 0 when fine), or (original, text, error).
#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "python/native_operator.hpp"
#include "python/object.hpp"
#include "sage/detail/async_operator.hpp"
#include "sage/environment.hpp"
#include "sage/rag.hpp"

namespace py = pybind11;

namespace sage::python {
namespace {

// Runs `body` with the GIL; a Python error becomes a PythonError carrying its
// message (read while the GIL is still held).
template <class Body>
auto with_gil(Body&& body) {
  Gil gil;
  try {
    return body();
  } catch (py::error_already_set& e) {
    throw PythonError(e.what());
  }
}

std::string type_name(py::handle h) { return Py_TYPE(h.ptr())->tp_name; }

// GIL held. A shallow copy of a dict record: the operators add keys to the copy,
// never to the user's dict (which a source may hand out more than once).
py::dict copy_of(PyObject* dict) {
  PyObject* copy = PyDict_Copy(dict);
  if (copy == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::dict>(copy);
}

// GIL held. The query of a record: a string, or a dict's "query" (or "question").
std::string query_of(py::handle record, const char* what) {
  if (py::isinstance<py::str>(record)) return record.cast<std::string>();
  if (py::isinstance<py::dict>(record)) {
    const auto d = py::reinterpret_borrow<py::dict>(record);
    for (const char* key : {"query", "question"}) {
      if (d.contains(key)) return py::str(d[key]).cast<std::string>();
    }
  }
  throw PythonError(std::string(what) + ": a record must be a query string or a dict with a " +
                    "\"query\" key; got " + type_name(record));
}

py::list hits_to_python(const std::vector<rag::Hit>& hits) {
  py::list out;
  for (const auto& hit : hits) {
    out.append(
        py::dict(py::arg("id") = hit.id, py::arg("text") = hit.text, py::arg("score") = hit.score));
  }
  return out;
}

// A map whose work is C++ code over C++ records: per batch, Logic::parse reads
// each record (GIL held), Logic::run maps it (GIL released; or Logic::run_batch
// maps them all) and Logic::build makes the output record from the result and
// the input record (GIL held).
template <class Logic>
class BatchMapOperator final : public detail::Operator, public detail::BatchReceiver<Object> {
 public:
  BatchMapOperator(Logic logic, detail::OperatorSetup& setup)
      : logic_(std::move(logic)),
        metrics_(setup.metrics),
        ctx_(setup.identity, setup.metrics->user, nullptr, setup.stop_requested),
        output_(setup) {}
  ~BatchMapOperator() override {
    Gil gil;  // one acquisition for the records it still holds
    out_.clear();
  }

  void open() override {
    detail::run_user_code(ctx_, *metrics_, [&] { logic_.open(ctx_); });
  }
  void finish() override {}
  detail::BatchReceiverBase& input(int) override { return *this; }
  // Stateless: nothing to save.
  void snapshot(detail::OperatorSnapshot&, std::uint64_t) override {}
  void restore(const detail::OperatorSnapshot&) override {}
  void notify_checkpoint_complete(std::uint64_t) override {}

  void receive(std::vector<Object>& batch) override {
    metrics_->add(metrics_->records_in, batch.size());
    {
      detail::ScopedTimer timer(metrics_->busy_ns);
      detail::run_user_code(ctx_, *metrics_, [&] {
        inputs_.clear();
        with_gil([&] {
          for (const auto& record : batch) inputs_.push_back(logic_.parse(record.get()));
        });
        results_.clear();
        if constexpr (requires { logic_.run_batch(inputs_); }) {
          results_ = logic_.run_batch(inputs_);
        } else {
          for (auto& in : inputs_) results_.push_back(logic_.run(in));
        }
        with_gil([&] {
          out_.clear();
          for (std::size_t i = 0; i < batch.size(); ++i) {
            out_.push_back(logic_.build(std::move(results_[i]), std::move(batch[i])));
          }
        });
      });
    }
    output_.emit(out_);
  }

 private:
  Logic logic_;
  detail::InstanceMetrics* metrics_;
  RuntimeContext ctx_;
  detail::Output<Object> output_;
  std::vector<typename Logic::In> inputs_;
  std::vector<typename Logic::Out> results_;
  std::vector<Object> out_;
};

// ChromaRetrieverOperator: a query -> SAGE's retrieval dict.
struct RetrieverLogic {
  using In = std::string;
  using Out = rag::Retrieved;
  rag::RetrieverConfig config;
  std::shared_ptr<rag::Retriever> retriever;  // made in open(), per instance

  void open(RuntimeContext& ctx) {
    retriever = std::make_shared<rag::Retriever>(config);
    retriever->open(ctx);
  }
  In parse(PyObject* record) { return query_of(record, "ChromaRetrieverOperator"); }
  // A whole batch: one /embeddings request per batch_size queries for an OpenAI collection.
  std::vector<Out> run_batch(const std::vector<In>& queries) {
    return retriever->map_batch(queries);
  }
  Object build(Out retrieved, Object original) {
    py::dict out = PyDict_Check(original.get()) ? copy_of(original.get()) : py::dict();
    out["query"] = retrieved.query;
    py::list texts;
    for (const auto& hit : retrieved.hits) texts.append(hit.text);
    out["results"] = texts;
    out["retrieval_results"] = hits_to_python(retrieved.hits);
    return Object::steal(out.release().ptr());
  }
};

// QAPromptor: retrieved texts and a query -> [original, [system, user]].
struct PromptorLogic {
  struct In {
    rag::Retrieved retrieved;
    bool query_only = false;  // (query, texts) or a string: the output carries the query
  };
  using Out = In;  // the prompt is made in build(): it is a few string copies
  rag::Promptor promptor;

  void open(RuntimeContext&) {}
  In parse(PyObject* record) {
    const py::handle r(record);
    In in;
    if (py::isinstance<py::tuple>(r) && py::len(r) == 2) {
      const auto pair = py::reinterpret_borrow<py::tuple>(r);
      in.retrieved.query = py::str(pair[0]).cast<std::string>();
      for (const auto& text : pair[1])
        in.retrieved.hits.push_back({"", py::str(text).cast<std::string>(), 0});
      in.query_only = true;
      return in;
    }
    in.retrieved.query = query_of(r, "QAPromptor");
    in.query_only = !py::isinstance<py::dict>(r);
    if (!py::isinstance<py::dict>(r)) return in;
    const auto d = py::reinterpret_borrow<py::dict>(r);
    if (d.contains("retrieval_results")) {
      for (const auto& hit : d["retrieval_results"]) {
        if (py::isinstance<py::dict>(hit)) {
          const auto h = py::reinterpret_borrow<py::dict>(hit);
          in.retrieved.hits.push_back(
              {h.contains("id") ? py::str(h["id"]).cast<std::string>() : std::string(),
               py::str(h["text"]).cast<std::string>(),
               h.contains("score") ? h["score"].cast<float>() : 0.0F});
        } else {
          in.retrieved.hits.push_back({"", py::str(hit).cast<std::string>(), 0});
        }
      }
    } else {
      for (const char* key : {"results", "context", "external_corpus"}) {
        if (!d.contains(key)) continue;
        const py::object value = d[key];
        if (py::isinstance<py::str>(value)) {
          in.retrieved.hits.push_back({"", value.cast<std::string>(), 0});
        } else {
          for (const auto& text : value)
            in.retrieved.hits.push_back({"", py::str(text).cast<std::string>(), 0});
        }
        break;
      }
    }
    return in;
  }
  Out run(In& in) { return std::move(in); }
  Object build(Out in, Object original) {
    const rag::Prompt prompt = promptor.map(in.retrieved);
    py::list messages;
    for (const auto& m : prompt.messages) {
      messages.append(py::dict(py::arg("role") = m.role, py::arg("content") = m.content));
    }
    py::list out;
    if (in.query_only) {
      out.append(py::str(in.retrieved.query));
    } else {
      out.append(py::reinterpret_borrow<py::object>(original.get()));
    }
    out.append(messages);
    return Object::steal(out.release().ptr());
  }
};

// OpenAIGeneratorOperator: [original, messages] -> the answer, as an
// asynchronous map: the engine keeps up to max_in_flight calls per instance.
class PyGenerator final : public AsyncFunction<Object, Object> {
 public:
  explicit PyGenerator(const rag::GeneratorConfig& config) : generator_(config) {}

  void open(RuntimeContext& context) override { generator_.open(context); }
  void close() override { generator_.close(); }
  AsyncOptions async_options() const override { return generator_.async_options(); }

  void invoke(const Object& record, AsyncResult<Object> result) override {
    rag::Prompt prompt;
    Object original = with_gil([&] { return parse(record.get(), prompt); });
    generator_.invoke(prompt, answer_to(std::move(original), std::move(result)));
  }
  // With on_failure="emit_error", the timed-out record goes out with its error.
  void timeout(const Object& record, AsyncResult<Object> result) override {
    rag::Prompt prompt;
    Object original = with_gil([&] { return parse(record.get(), prompt); });
    generator_.timeout(prompt, answer_to(std::move(original), std::move(result)));
  }

 private:
  // GIL held. The prompt's messages; returns the record's original part.
  // A retriever's dict (SAGE's snippet without a promptor) gets QAPromptor's messages.
  Object parse(PyObject* record, rag::Prompt& prompt) {
    const py::handle r(record);
    if (py::isinstance<py::dict>(r)) {
      prompt = prompter_.promptor.map(prompter_.parse(record).retrieved);
      return Object::borrow(record);
    }
    if (!(py::isinstance<py::list>(r) || py::isinstance<py::tuple>(r)) || py::len(r) != 2) {
      throw PythonError(
          "OpenAIGeneratorOperator: a record must be [original, messages] as QAPromptor makes "
          "it (messages: a list of {\"role\", \"content\"} dicts), or a retriever's dict; "
          "got " +
          type_name(r));
    }
    const py::sequence pair = py::reinterpret_borrow<py::sequence>(r);
    const py::object original = pair[0];
    for (const auto& message : pair[1]) {
      if (!py::isinstance<py::dict>(message)) {
        throw PythonError(
            "OpenAIGeneratorOperator: a message must be a dict with \"role\" and "
            "\"content\"; got " +
            type_name(message));
      }
      const auto m = py::reinterpret_borrow<py::dict>(message);
      prompt.messages.push_back(
          {py::str(m["role"]).cast<std::string>(), py::str(m["content"]).cast<std::string>()});
    }
    prompt.query = PyDict_Check(original.ptr()) ? query_of(original, "OpenAIGeneratorOperator")
                                                : py::str(original).cast<std::string>();
    return Object::borrow(original.ptr());
  }
  // The generator's completion, which completes `result` with the Python record.
  AsyncResult<rag::Answer> answer_to(Object original, AsyncResult<Object> result) const {
    const bool errors = generator_.config().on_failure == rag::OnFailure::emit_error;
    return AsyncResult<rag::Answer>(
        [result, original = std::move(original), errors](std::optional<rag::Answer> answer,
                                                         std::exception_ptr error) {
          if (!answer) {
            result.fail(error);
            return;
          }
          Object built;
          {
            Gil gil;
            try {
              built = build(original, *answer, errors);
            } catch (py::error_already_set& e) {
              result.fail(std::string("OpenAIGeneratorOperator: ") + e.what());
              return;
            }
          }
          result.complete(std::move(built));
        });
  }
  // GIL held.
  static Object build(const Object& original, const rag::Answer& answer, bool errors) {
    const py::handle o(original.get());
    if (PyDict_Check(o.ptr())) {
      py::dict out = copy_of(o.ptr());
      out["generated"] = answer.text;
      out["prompt_tokens"] = answer.prompt_tokens;
      out["completion_tokens"] = answer.completion_tokens;
      out["latency_s"] = answer.latency_s;
      out["time_to_first_token_s"] = answer.time_to_first_token_s;
      if (errors) {
        out["error"] = answer.error;
        out["error_status"] = answer.error_status;
      }
      return Object::steal(out.release().ptr());
    }
    py::tuple out =
        errors ? py::make_tuple(o, answer.text, answer.error) : py::make_tuple(o, answer.text);
    return Object::steal(out.release().ptr());
  }

  rag::OpenAIGenerator generator_;
  PromptorLogic prompter_;
};

template <class Logic>
std::shared_ptr<NativeOperator> batch_map(std::string name, Logic logic) {
  return std::make_shared<NativeOperator>(NativeOperator{
      "map", std::move(name), [logic = std::move(logic)](detail::OperatorSetup& setup) {
        return std::make_unique<BatchMapOperator<Logic>>(logic, setup);
      }});
}

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

}  // namespace

void register_rag(py::module_& m) {
  m.def(
      "rag_retriever",
      [](const std::string& collection, int top_k, int ef) {
        rag::RetrieverConfig config{.collection = collection, .top_k = top_k, .ef = ef};
        rag::Retriever check(config);  // refuses a bad config now
        return batch_map("ChromaRetrieverOperator", RetrieverLogic{config, nullptr});
      },
      py::arg("collection"), py::arg("top_k"), py::arg("ef"),
      "The retriever over the collection in that directory.");
  m.def(
      "rag_promptor",
      [](const std::optional<std::string>& instruction) {
        rag::PromptorConfig config;
        if (instruction) config.instruction = *instruction;
        return batch_map("QAPromptor", PromptorLogic{rag::Promptor(config)});
      },
      py::arg("instruction"), "SAGE's QA promptor (instruction: None for SAGE's).");
  m.def(
      "rag_generator",
      [](const py::dict& fields) {
        rag::GeneratorConfig config;
        for (const auto& [key, value] : fields) {
          const auto field = key.cast<std::string>();
          if (value.is_none()) continue;
          if (field == "model") {
            config.model = value.cast<std::string>();
          } else if (field == "base_url") {
            config.base_url = value.cast<std::string>();
          } else if (field == "api_key") {
            config.api_key = value.cast<std::string>();
          } else if (field == "max_in_flight") {
            config.max_in_flight = value.cast<int>();
          } else if (field == "max_retries") {
            config.max_retries = value.cast<int>();
          } else if (field == "requests_per_minute") {
            config.requests_per_minute = value.cast<double>();
          } else if (field == "tokens_per_minute") {
            config.tokens_per_minute = value.cast<double>();
          } else if (field == "backoff_initial") {
            config.backoff_initial = millis(value.cast<double>());
          } else if (field == "backoff_max") {
            config.backoff_max = millis(value.cast<double>());
          } else if (field == "request_timeout") {
            config.request_timeout = millis(value.cast<double>());
          } else if (field == "total_timeout") {
            config.total_timeout = millis(value.cast<double>());
          } else if (field == "ordered") {
            config.ordered = value.cast<bool>();
          } else if (field == "max_tokens") {
            config.max_tokens = value.cast<int>();
          } else if (field == "temperature") {
            config.temperature = value.cast<double>();
          } else if (field == "stream") {
            config.stream = value.cast<bool>();
          } else if (field == "stream_idle_timeout") {
            config.stream_idle_timeout = millis(value.cast<double>());
          } else if (field == "max_response_bytes") {
            config.max_response_bytes = value.cast<std::size_t>();
          } else if (field == "on_failure") {
            const auto policy = value.cast<std::string>();
            if (policy == "fail_job") {
              config.on_failure = rag::OnFailure::fail_job;
            } else if (policy == "emit_error") {
              config.on_failure = rag::OnFailure::emit_error;
            } else {
              throw InvalidPlanError("OpenAIGeneratorOperator: on_failure is '" + policy +
                                     "'; use \"fail_job\" (the default) or \"emit_error\"");
            }
          } else {
            throw InvalidPlanError("OpenAIGeneratorOperator: unknown option '" + field + "'");
          }
        }
        rag::OpenAIGenerator check(config);  // refuses a bad config now
        return std::make_shared<NativeOperator>(NativeOperator{
            "async_map", "OpenAIGeneratorOperator", [config](detail::OperatorSetup& setup) {
              auto make = [&config] { return PyGenerator(config); };
              return std::make_unique<
                  detail::AsyncMapOperator<Object, Object, PyGenerator, detail::Unkeyed>>(
                  make, detail::Unkeyed{}, setup);
            }});
      },
      py::arg("fields"), "The OpenAI generator; fields as GeneratorConfig's (seconds for times).");
  m.def(
      "rag_build_collection",
      [](const std::string& collection,
         const std::vector<std::pair<std::string, std::string>>& docs, int chunk_size, int overlap,
         int dim, int shards, bool exact) {
        std::vector<rag::Document> documents;
        for (const auto& [id, text] : docs) documents.push_back({id, text});
        py::gil_scoped_release unlocked;
        LocalEnvironment env("build_collection");
        env.from_collection(std::move(documents))
            .flat_map<rag::Chunker>(Options{.name = "chunker"},
                                    rag::ChunkerConfig{.size = chunk_size, .overlap = overlap})
            .map<rag::HashEmbedder>(Options{.name = "embedder"},
                                    rag::HashEmbedderConfig{.dim = dim})
            .sink<rag::IndexWriter>(Options{.name = "index_writer", .parallelism = shards},
                                    rag::IndexWriterConfig{.collection = collection,
                                                           .dim = dim,
                                                           .index = exact ? rag::IndexKind::exact
                                                                          : rag::IndexKind::hnsw});
        const JobResult result = env.execute();
        std::int64_t chunks = 0;
        for (const auto& s : result.instances) {
          if (s.operator_name == "index_writer") chunks += static_cast<std::int64_t>(s.records_in);
        }
        return chunks;
      },
      py::arg("collection"), py::arg("documents"), py::arg("chunk_size"), py::arg("overlap"),
      py::arg("dim"), py::arg("shards"), py::arg("exact"),
      "Builds a collection from (id, text) documents with sage's Chunker, HashEmbedder and "
      "IndexWriter; returns the number of chunks.");
}

}  // namespace sage::python
