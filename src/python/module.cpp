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

#include "python/job_control.hpp"
#include "python/key_hash.hpp"
#include "python/native_operator.hpp"
#include "python/object.hpp"
#include "python/operators.hpp"
#include "python/settings.hpp"
#include "sage/environment.hpp"
#include "sage/job_result.hpp"
#include "sage/remote_environment.hpp"

namespace py = pybind11;

namespace sage::python {
namespace {

Object to_object(const py::handle& h) { return Object::borrow(h.ptr()); }

std::shared_ptr<const detail::EdgeFactory> forward_edge() {
  static const auto edge = std::make_shared<const PyEdgeFactory>();
  return edge;
}

// A stream of Python records in the graph being built.
struct Stream {
  std::shared_ptr<detail::LogicalGraph> graph;
  std::vector<detail::StreamInput> inputs;
  Object key_factory;                      // set when the next operator reads a key_by
  std::optional<int> default_parallelism;  // set by partition_custom

  // An operator reading `streams` (several for comap: input i is streams[i]).
  static Stream attach(const std::vector<const Stream*>& streams, TransformKind kind,
                       const py::object& factory, const Options& options) {
    const Stream& first = *streams.front();
    std::vector<std::vector<detail::StreamInput>> inputs;
    std::vector<Object> key_factories;
    bool keyed = false;
    for (const Stream* s : streams) {
      detail::require_same_graph(*first.graph, *s->graph);
      inputs.push_back(s->inputs);
      key_factories.push_back(s->key_factory);
      keyed = keyed || static_cast<bool>(s->key_factory);
    }
    Object f = to_object(factory);
    const int id = detail::add_operator(
        *first.graph, streams.size() > 1 ? "comap" : to_string(kind), options,
        first.default_parallelism, keyed, inputs,
        detail::operator_factory([kind, f, key_factories](detail::OperatorSetup& setup) {
          return make_transform(kind, f, key_factories, setup);
        }));
    return Stream{first.graph, {{id, detail::Partitioning::kDefault, forward_edge()}}, {}, {}};
  }

  Stream transform(TransformKind kind, const py::object& factory, const Options& options) const {
    return attach({this}, kind, factory, options);
  }
  // A C++ operator over this stream's records (native_operator.hpp).
  Stream native(const NativeOperator& op, const Options& options) const {
    const int id = detail::add_operator(*graph, op.kind, options, default_parallelism, false,
                                        {inputs}, detail::operator_factory(op.make));
    return Stream{graph, {{id, detail::Partitioning::kDefault, forward_edge()}}, {}, {}};
  }
  Stream partitioned(detail::Partitioning p, std::shared_ptr<const detail::EdgeFactory> edge,
                     Object key_factory = {}) const {
    graph->require_open();
    Stream result{graph, inputs, std::move(key_factory), {}};
    for (auto& input : result.inputs) {
      input.partitioning = p;
      input.edge = edge;
    }
    return result;
  }
  // The records of this stream and of `others` as one stream. It stays
  // keyed only when all are keyed by the same key function.
  Stream union_with(const std::vector<Stream>& others) const {
    Stream result = *this;
    for (const auto& other : others) {
      detail::require_same_graph(*graph, *other.graph);
      result.inputs.insert(result.inputs.end(), other.inputs.begin(), other.inputs.end());
      if (result.key_factory.get() != other.key_factory.get()) result.key_factory = {};
    }
    return result;
  }
};

// The environments, letting the bindings reach their graph.
class LocalEnv final : public LocalEnvironment {
 public:
  using LocalEnvironment::LocalEnvironment;
  const std::shared_ptr<detail::LogicalGraph>& graph() const { return graph_; }
};
class RemoteEnv final : public RemoteEnvironment {
 public:
  using RemoteEnvironment::RemoteEnvironment;
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
  d["restarts"] = r.restarts;
  d["restart_causes"] = r.restart_causes;
  d["checkpoints_completed"] = r.checkpoints_completed;
  d["checkpoints_failed"] = r.checkpoints_failed;
  d["last_checkpoint_id"] = r.last_checkpoint_id;
  d["statistics_table"] = r.statistics_table();
  return d;
}

// The environment as Python holds it. Its engine side is destroyed with the
// GIL released: the job's threads may need the GIL to finish.
class Environment {
 public:
  // A LocalEnvironment.
  Environment(const std::string& name, const py::dict& config) {
    auto env = std::make_unique<LocalEnv>(name, execution_config(config));
    graph_ = env->graph();
    env_ = std::move(env);
  }
  // A RemoteEnvironment: the cluster at host:port ($SAGE_ADDRESS overrides),
  // with up to `processes_per_node` task processes on each node.
  Environment(const std::string& name, const std::string& host, int port, const std::string& token,
              const std::string& state_dir, const py::dict& config, int processes_per_node) {
    ExecutionConfig execution = execution_config(config);
    execution.task_processes_per_node = processes_per_node;
    execution.validate();
    auto env = std::make_unique<RemoteEnv>(
        name, host, port, ClusterConfig{.token = token, .state_dir = state_dir}, execution);
    graph_ = env->graph();
    remote_ = env.get();
    env_ = std::move(env);
  }
  // A RemoteEnvironment's job runs `program` (the script in its bundle).
  void set_task_program(sage::TaskProgram program) {
    live();
    if (remote_ == nullptr) throw InvalidPlanError("only a RemoteEnvironment has a task program");
    remote_->set_task_program(std::move(program));
  }
  ~Environment() { close(); }

  // `replayable`: the source can save its position (collections, batch
  // functions, functions with save_state and restore_state); a job with
  // checkpoints and a source that cannot is refused at submit.
  Stream source(SourceKind kind, const py::object& payload, const py::object& stop_type,
                bool replayable, const Options& options) {
    live();
    Object p = to_object(payload), stop = to_object(stop_type);
    const int id = detail::add_operator(
        *graph_, "source", options, 1, false, {},
        detail::operator_factory([kind, p, stop](detail::OperatorSetup& setup) {
          return make_source(kind, p, stop, setup);
        }));
    auto& node = graph_->nodes[static_cast<std::size_t>(id)];
    node.replayable = replayable;
    node.how_to_replay =
        "give its class save_state(self) (returning its position, picklable) and "
        "restore_state(self, state) (docs/python.md, \"Checkpoints\")";
    return Stream{graph_, {{id, detail::Partitioning::kDefault, forward_edge()}}, {}, {}};
  }

  // In a task process of a RemoteEnvironment's job, runs this process's
  // share of the instances and exits the process. With autostop, waits as
  // wait() does.
  std::string submit(bool autostop) {
    sage::Environment& env = live();
    std::string id;
    {
      py::gil_scoped_release unlocked;
      id = env.submit(false);
    }
    if (autostop) wait_interruptibly(env);
    return id;
  }
  py::dict wait() { return result_to_dict(wait_interruptibly(live())); }
  void stop() {
    sage::Environment& env = live();
    py::gil_scoped_release unlocked;
    env.stop();
  }
  // Stops a local job still running, waits for it and frees the engine side.
  void close() {
    if (!env_) return;
    py::gil_scoped_release unlocked;
    env_.reset();
  }

 private:
  sage::Environment& live() {
    if (!env_) throw InvalidPlanError("the environment is closed; create a new one");
    return *env_;
  }
  std::unique_ptr<sage::Environment> env_;
  RemoteEnv* remote_ = nullptr;  // env_, when it is a RemoteEnvironment
  std::shared_ptr<detail::LogicalGraph> graph_;
};

RuntimeContext& require(const ContextHandle& h) {
  if (h.ctx == nullptr) {
    throw InvalidPlanError(
        "this RuntimeContext belongs to an operator instance that has closed; use it only "
        "between open() and close()");
  }
  return *h.ctx;
}

// Keyed state handles for Python: the C++ handles over values that are Python
// objects, usable while their instance is open.
struct PyValueState {
  std::shared_ptr<ContextHandle> handle;
  ValueState<Object> state;
};
struct PyListState {
  std::shared_ptr<ContextHandle> handle;
  ListState<Object> state;
};

py::object to_python(const Object& o) {
  return o ? py::reinterpret_borrow<py::object>(o.get()) : py::none();
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
      .def("set_gauge", [](const ContextHandle& h, const std::string& name,
                           double value) { require(h).metrics().gauge(name).set(value); })
      .def_property_readonly("current_key",
                             [](const ContextHandle& h) {
                               require(h);
                               if (h.current_key == nullptr) {
                                 throw sage::InvalidPlanError(
                                     "current_key exists only in an operator applied directly "
                                     "after keyby(...), while it processes a record");
                               }
                               return py::reinterpret_borrow<py::object>(h.current_key);
                             })
      .def("value_state",
           [](const std::shared_ptr<ContextHandle>& h, const std::string& name) {
             return PyValueState{h, require(*h).value_state<Object>(name)};
           })
      .def("list_state", [](const std::shared_ptr<ContextHandle>& h, const std::string& name) {
        return PyListState{h, require(*h).list_state<Object>(name)};
      });

  py::class_<PyValueState>(m, "ValueState")
      .def("value",
           [](PyValueState& s) {
             require(*s.handle);
             const auto value = s.state.value();
             return value ? to_python(*value) : py::none();
           })
      .def("update",
           [](PyValueState& s, const py::object& value) {
             require(*s.handle);
             s.state.update(to_object(value));
           })
      .def("clear", [](PyValueState& s) {
        require(*s.handle);
        s.state.clear();
      });
  py::class_<PyListState>(m, "ListState")
      .def("get",
           [](PyListState& s) {
             require(*s.handle);
             py::list out;
             for (const auto& v : s.state.get()) out.append(to_python(v));
             return out;
           })
      .def("add",
           [](PyListState& s, const py::object& value) {
             require(*s.handle);
             s.state.add(to_object(value));
           })
      .def("update",
           [](PyListState& s, const py::iterable& values) {
             require(*s.handle);
             std::vector<Object> all;
             for (const auto& v : values) all.push_back(to_object(v));
             s.state.update(std::move(all));
           })
      .def("clear", [](PyListState& s) {
        require(*s.handle);
        s.state.clear();
      });

  py::class_<Stream>(m, "Stream")
      .def(
          "transform",
          [](const Stream& s, TransformKind kind, const py::object& factory,
             const std::string& name, const py::object& parallelism, const py::object& resources) {
            return s.transform(kind, factory, make_options(name, parallelism, resources));
          },
          py::arg("kind"), py::arg("factory"), py::arg("name"), py::arg("parallelism"),
          py::arg("resources"))
      .def("key_by",
           [](const Stream& s, const py::object& key_factory) {
             Object factory = to_object(key_factory);
             return s.partitioned(sage::detail::Partitioning::kHash,
                                  std::make_shared<const PyEdgeFactory>(factory), factory);
           })
      .def("partition_custom",
           [](const Stream& s, const py::object& partitioner_factory,
              const py::object& parallelism) {
             Stream result = s.partitioned(
                 sage::detail::Partitioning::kCustom,
                 std::make_shared<const PyEdgeFactory>(to_object(partitioner_factory)));
             result.default_parallelism = parallelism_of(parallelism);
             return result;
           })
      .def("rebalance",
           [](const Stream& s) {
             return s.partitioned(sage::detail::Partitioning::kRebalance, forward_edge());
           })
      .def("broadcast",
           [](const Stream& s) {
             return s.partitioned(sage::detail::Partitioning::kBroadcast, forward_edge());
           })
      .def("union", &Stream::union_with)
      .def(
          "native",
          [](const Stream& s, const NativeOperator& op, const std::string& name,
             const py::object& parallelism, const py::object& resources) {
            return s.native(op,
                            make_options(name.empty() ? op.name : name, parallelism, resources));
          },
          py::arg("operator"), py::arg("name"), py::arg("parallelism"), py::arg("resources"));
  py::class_<NativeOperator, std::shared_ptr<NativeOperator>>(m, "NativeOperator")
      .def_readonly("name", &NativeOperator::name);
  register_rag(m);

  m.def(
      "comap",
      [](const std::vector<const Stream*>& streams, const py::object& factory,
         const std::string& name, const py::object& parallelism, const py::object& resources,
         TransformKind kind) {
        if (streams.size() < 2) throw sage::InvalidPlanError("comap needs at least two streams");
        return Stream::attach(streams, kind, factory, make_options(name, parallelism, resources));
      },
      py::arg("streams"), py::arg("factory"), py::arg("name"), py::arg("parallelism"),
      py::arg("resources"), py::arg("kind") = TransformKind::kMap,
      "An operator whose input i is streams[i]; the factory's call is a tuple of one callable per "
      "input (kind FLAT_MAP: join's, each returning a list).");

  set_python_plan_advice();
  m.def("is_task_process", &sage::is_task_process,
        "True in a task process a worker started for a RemoteEnvironment's job.");

  py::class_<Environment>(m, "Environment")
      .def(py::init<const std::string&, const py::dict&>(), py::arg("name"), py::arg("config"))
      .def(py::init<const std::string&, const std::string&, int, const std::string&,
                    const std::string&, const py::dict&, int>(),
           py::arg("name"), py::arg("host"), py::arg("port"), py::arg("token"),
           py::arg("state_dir"), py::arg("config"), py::arg("processes_per_node") = 1)
      .def(
          "source",
          [](Environment& e, SourceKind kind, const py::object& payload,
             const py::object& stop_type, bool replayable, const std::string& name,
             const py::object& parallelism, const py::object& resources) {
            return e.source(kind, payload, stop_type, replayable,
                            make_options(name, parallelism, resources));
          },
          py::arg("kind"), py::arg("payload"), py::arg("stop_type"), py::arg("replayable"),
          py::arg("name"), py::arg("parallelism"), py::arg("resources"))
      .def(
          "set_task_program",
          [](Environment& e, const std::vector<std::string>& args, const std::string& bundle,
             std::uint64_t max_bytes, std::uint32_t max_files, const std::string& how_to_raise,
             const std::vector<std::string>& environment) {
            e.set_task_program(sage::TaskProgram{.args = args,
                                                 .bundle_directory = bundle,
                                                 .max_bundle_bytes = max_bytes,
                                                 .max_bundle_files = max_files,
                                                 .how_to_raise_limits = how_to_raise,
                                                 .environment = environment});
          },
          py::arg("args"), py::arg("bundle_directory"), py::arg("max_bundle_bytes"),
          py::arg("max_bundle_files"), py::arg("how_to_raise"), py::arg("environment"))
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
