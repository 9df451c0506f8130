// sage._native: the C++ side of `import sage`. It builds the logical graph of
// a Python job out of the Python operators of operators.hpp and runs it on the
// engine; the package python/sage gives it SAGE's API and module paths.
// Every call that waits on the engine releases the GIL (object.hpp, invariant 3).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "python/key_hash.hpp"
#include "python/object.hpp"
#include "python/operators.hpp"
#include "sage/environment.hpp"
#include "sage/job_result.hpp"
#include "sage/stable_hash.hpp"

namespace py = pybind11;

namespace sage::python {
namespace {

Object to_object(const py::handle& h) { return Object::borrow(h.ptr()); }

std::shared_ptr<const detail::EdgeFactory> forward_edge() {
  static const auto edge = std::make_shared<const PyEdgeFactory>();
  return edge;
}

// name, parallelism and resources as the engine's Options.
Options make_options(const std::string& name, std::optional<int> parallelism,
                     const std::optional<py::dict>& resources) {
  Options options{.name = name, .parallelism = parallelism, .resources = std::nullopt};
  if (resources) {
    Resources r;
    for (const auto& [key, value] : *resources) {
      const auto field = py::str(key).cast<std::string>();
      if (field == "num_cpus" || field == "cpu") {
        r.num_cpus = value.cast<double>();
      } else if (field == "memory") {
        r.memory = py::str(value).cast<std::string>();
      } else if (field == "num_gpus" || field == "gpu") {
        r.num_gpus = value.cast<int>();
      } else {
        throw InvalidPlanError("resources: unknown field '" + field +
                               "'; the fields are num_cpus, memory (e.g. \"8GB\") and num_gpus");
      }
    }
    options.resources = r;
  }
  return options;
}

// A stream of Python records in the graph being built.
struct Stream {
  std::shared_ptr<detail::LogicalGraph> graph;
  std::vector<detail::StreamInput> inputs;
  bool keyed = false;  // the next operator reads a key_by

  Stream transform(TransformKind kind, const py::object& factory, const Options& options) const {
    Object f = to_object(factory);
    const int id =
        detail::add_operator(*graph, to_string(kind), options, std::nullopt, keyed, {inputs},
                             detail::operator_factory([kind, f](detail::OperatorSetup& setup) {
                               return make_transform(kind, f, setup);
                             }));
    return Stream{graph, {{id, detail::Partitioning::kDefault, forward_edge()}}, false};
  }
  Stream partitioned(detail::Partitioning p, std::shared_ptr<const detail::EdgeFactory> edge,
                     bool keyed_result) const {
    graph->require_open();
    Stream result{graph, inputs, keyed_result};
    for (auto& input : result.inputs) {
      input.partitioning = p;
      input.edge = edge;
    }
    return result;
  }
};

// A LocalEnvironment that lets the bindings reach its graph.
class LocalEnv final : public LocalEnvironment {
 public:
  using LocalEnvironment::LocalEnvironment;
  const std::shared_ptr<detail::LogicalGraph>& graph() const { return graph_; }
};

py::dict result_to_dict(const JobResult& r) {
  py::dict d;
  d["job_id"] = r.job_id;
  d["job_name"] = r.job_name;
  d["state"] = std::string(to_string(r.state));
  d["error"] = r.error;
  d["duration_seconds"] = r.duration_seconds;
  py::list instances;
  for (const auto& s : r.instances) {
    py::dict i;
    i["operator_name"] = s.operator_name;
    i["parallel_index"] = s.parallel_index;
    i["parallelism"] = s.parallelism;
    i["node_id"] = s.node_id;
    i["process_id"] = s.process_id;
    i["records_in"] = s.records_in;
    i["records_out"] = s.records_out;
    i["busy_seconds"] = s.busy_seconds;
    i["blocked_seconds"] = s.blocked_seconds;
    i["errors"] = s.errors;
    py::dict histograms;
    for (const auto& [name, h] : s.user_metrics.histograms) {
      histograms[py::str(name)] =
          py::dict(py::arg("count") = h.count, py::arg("sum") = h.sum, py::arg("min") = h.min,
                   py::arg("max") = h.max, py::arg("p50") = h.p50, py::arg("p99") = h.p99);
    }
    i["histograms"] = histograms;
    i["counters"] = s.user_metrics.counters;
    i["gauges"] = s.user_metrics.gauges;
    instances.append(i);
  }
  d["instances"] = instances;
  d["statistics_table"] = r.statistics_table();
  return d;
}

// The environment as Python holds it. Its engine side is destroyed with the
// GIL released: the job's threads may need the GIL to finish.
class Environment {
 public:
  explicit Environment(const std::string& name) : env_(std::make_unique<LocalEnv>(name)) {}
  ~Environment() { close(); }

  Stream source(SourceKind kind, const py::object& payload, const py::object& stop_type,
                const Options& options) {
    auto& graph = live().graph();
    Object p = to_object(payload), stop = to_object(stop_type);
    const int id = detail::add_operator(
        *graph, "source", options, 1, false, {},
        detail::operator_factory([kind, p, stop](detail::OperatorSetup& setup) {
          return make_source(kind, p, stop, setup);
        }));
    // Python sources cannot save their position yet: a job with
    // checkpoints is refused at submit.
    graph->nodes[static_cast<std::size_t>(id)].replayable = false;
    return Stream{graph, {{id, detail::Partitioning::kDefault, forward_edge()}}, false};
  }

  std::string submit(bool autostop) {
    LocalEnv& env = live();
    py::gil_scoped_release unlocked;
    return env.submit(autostop);
  }
  py::dict wait() {
    LocalEnv& env = live();
    JobResult result;
    {
      py::gil_scoped_release unlocked;
      result = env.wait();
    }
    return result_to_dict(result);
  }
  void stop() {
    LocalEnv& env = live();
    py::gil_scoped_release unlocked;
    env.stop();
  }
  // Stops a job still running, waits for it and frees the engine side.
  void close() {
    if (!env_) return;
    py::gil_scoped_release unlocked;
    env_.reset();
  }

 private:
  LocalEnv& live() {
    if (!env_) throw InvalidPlanError("the environment is closed; create a new one");
    return *env_;
  }
  std::unique_ptr<LocalEnv> env_;
};

RuntimeContext& require(const ContextHandle& h) {
  if (h.ctx == nullptr) {
    throw InvalidPlanError(
        "this RuntimeContext belongs to an operator instance that has closed; use it only "
        "between open() and close()");
  }
  return *h.ctx;
}

}  // namespace
}  // namespace sage::python

PYBIND11_MODULE(_native, m) {
  using namespace sage::python;
  m.doc() = "The C++ engine of sage, for the Python API (import sage).";

  auto base = py::register_exception<sage::Error>(m, "SageError", PyExc_RuntimeError);
  py::register_exception<sage::InvalidPlanError>(m, "InvalidPlanError", base.ptr());
  py::register_exception<sage::JobFailedError>(m, "JobFailedError", base.ptr());
  py::register_exception<sage::SerializationError>(m, "SerializationError", base.ptr());
  py::register_exception<PythonError>(m, "PythonError", base.ptr());

  py::enum_<TransformKind>(m, "TransformKind")
      .value("MAP", TransformKind::kMap)
      .value("FILTER", TransformKind::kFilter)
      .value("FLAT_MAP", TransformKind::kFlatMap)
      .value("SINK", TransformKind::kSink);
  py::enum_<SourceKind>(m, "SourceKind")
      .value("COLLECTION", SourceKind::kCollection)
      .value("BATCH", SourceKind::kBatch)
      .value("SOURCE", SourceKind::kSource);

  py::class_<ContextHandle, std::shared_ptr<ContextHandle>>(m, "RuntimeContext")
      .def_property_readonly("name",
                             [](const ContextHandle& h) { return require(h).operator_name(); })
      .def_property_readonly("job_id", [](const ContextHandle& h) { return require(h).job_id(); })
      .def_property_readonly("parallel_index",
                             [](const ContextHandle& h) { return require(h).parallel_index(); })
      .def_property_readonly("parallelism",
                             [](const ContextHandle& h) { return require(h).parallelism(); })
      .def_property_readonly("node_id", [](const ContextHandle& h) { return require(h).node_id(); })
      .def_property_readonly("instance_name",
                             [](const ContextHandle& h) { return require(h).instance_name(); })
      .def("record_metric", [](const ContextHandle& h, const std::string& name,
                               double value) { require(h).metrics().record(name, value); })
      .def("inc_counter", [](const ContextHandle& h, const std::string& name,
                             std::int64_t n) { require(h).metrics().counter(name).inc(n); })
      .def("set_gauge", [](const ContextHandle& h, const std::string& name, double value) {
        require(h).metrics().gauge(name).set(value);
      });

  py::class_<Stream>(m, "Stream")
      .def(
          "transform",
          [](const Stream& s, TransformKind kind, const py::object& factory,
             const std::string& name, std::optional<int> parallelism,
             const std::optional<py::dict>& resources) {
            return s.transform(kind, factory, make_options(name, parallelism, resources));
          },
          py::arg("kind"), py::arg("factory"), py::arg("name"), py::arg("parallelism"),
          py::arg("resources"))
      .def("key_by",
           [](const Stream& s, const py::object& key_factory) {
             return s.partitioned(sage::detail::Partitioning::kHash,
                                  std::make_shared<const PyEdgeFactory>(to_object(key_factory)),
                                  true);
           })
      .def("rebalance", [](const Stream& s) {
        return s.partitioned(sage::detail::Partitioning::kRebalance, forward_edge(), false);
      });

  py::class_<Environment>(m, "Environment")
      .def(py::init<const std::string&>())
      .def(
          "source",
          [](Environment& e, SourceKind kind, const py::object& payload,
             const py::object& stop_type, const std::string& name, std::optional<int> parallelism,
             const std::optional<py::dict>& resources) {
            return e.source(kind, payload, stop_type, make_options(name, parallelism, resources));
          },
          py::arg("kind"), py::arg("payload"), py::arg("stop_type"), py::arg("name"),
          py::arg("parallelism"), py::arg("resources"))
      .def("submit", &Environment::submit, py::arg("autostop"))
      .def("wait", &Environment::wait)
      .def("stop", &Environment::stop)
      .def("close", &Environment::close);

  m.def(
      "stable_key_hash",
      [](const py::handle& key) {
        std::uint64_t hash = 0;
        if (!stable_key_hash(key.ptr(), hash)) throw py::error_already_set();
        return hash;
      },
      "The stable hash key_by routes a key by (the same as sage::stable_hash in C++).");
  m.def(
      "encode_batch",
      [](const py::list& records) {
        std::vector<Object> batch;
        for (const auto& r : records) batch.push_back(to_object(r));
        return py::bytes(encode_batch(batch));
      },
      "A batch of records as the bytes a channel between processes carries.");
  m.def(
      "decode_batch",
      [](const py::bytes& bytes) {
        py::list out;
        for (auto& r : decode_batch(std::string(bytes))) {
          out.append(py::reinterpret_steal<py::object>(r.release()));
        }
        return out;
      },
      "The records of bytes made by encode_batch.");
}
