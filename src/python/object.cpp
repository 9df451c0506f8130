#include "python/object.hpp"

#include <string>

namespace sage::python {
namespace {

// The Python thread state of an engine thread, kept from its first use of the
// GIL until the thread ends (invariant 4 of object.hpp): without it, every
// acquisition on a thread Python does not know would create a thread state and
// every release delete it again.
struct ThreadStateKeeper {
  PyGILState_STATE base{};
  PyThreadState* saved = nullptr;  // set once this thread has its state
  ThreadStateKeeper() = default;
  ThreadStateKeeper(const ThreadStateKeeper&) = delete;
  ThreadStateKeeper& operator=(const ThreadStateKeeper&) = delete;
  ~ThreadStateKeeper() {
    if (saved == nullptr || !Py_IsInitialized() || _Py_IsFinalizing()) return;
    PyEval_RestoreThread(saved);
    PyGILState_Release(base);  // deletes the thread state and releases the GIL
  }
};
thread_local ThreadStateKeeper keeper;

// A function of the pickle module (new reference); GIL held.
Object pickle_function(const char* name) {
  Object module = Object::steal(PyImport_ImportModule("pickle"));
  if (!module) throw_python_error();
  Object function = Object::steal(PyObject_GetAttrString(module.get(), name));
  if (!function) throw_python_error();
  return function;
}

// pickle.dumps(value, protocol=5) as bytes; null with the Python error set.
Object dumps(PyObject* dumps_function, PyObject* value) {
  return Object::steal(PyObject_CallFunction(dumps_function, "Oi", value, 5));
}

std::string type_name(PyObject* value) { return Py_TYPE(value)->tp_name; }

}  // namespace

Gil::Gil() {
  if (PyGILState_Check()) return;
  if (keeper.saved == nullptr && PyGILState_GetThisThreadState() == nullptr) {
    keeper.base = PyGILState_Ensure();   // creates this thread's state and takes the GIL
    keeper.saved = PyEval_SaveThread();  // keeps the state, releases the GIL
  }
  state_ = PyGILState_Ensure();
  acquired_ = true;
}

Gil::~Gil() {
  if (acquired_) PyGILState_Release(state_);
}

std::string take_python_error() {
  if (!PyErr_Occurred()) return {};
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  Object t = Object::steal(type), v = Object::steal(value), tb = Object::steal(traceback);

  std::string text;
  Object module = Object::steal(PyImport_ImportModule("traceback"));
  Object lines;
  if (module) {
    Object format = Object::steal(PyObject_GetAttrString(module.get(), "format_exception"));
    if (format) {
      lines = Object::steal(PyObject_CallFunctionObjArgs(
          format.get(), t.get(), v ? v.get() : Py_None, tb ? tb.get() : Py_None, nullptr));
    }
  }
  if (lines && PyList_Check(lines.get())) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines.get()); ++i) {
      const char* line = PyUnicode_AsUTF8(PyList_GET_ITEM(lines.get(), i));
      if (line != nullptr) text += line;
    }
  }
  if (text.empty()) {
    // Formatting failed: at least the type and the message.
    PyErr_Clear();
    Object message = Object::steal(PyObject_Str(v ? v.get() : t.get()));
    const char* m = message ? PyUnicode_AsUTF8(message.get()) : nullptr;
    text = type_name(v ? v.get() : t.get()) + std::string(": ") + (m ? m : "?");
  }
  PyErr_Clear();
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

void throw_python_error() {
  std::string text = take_python_error();
  if (text.empty()) text = "a Python call failed without setting an exception";
  throw PythonError(text);
}

std::string encode_batch(const std::vector<Object>& records) {
  Gil gil;
  Object dumps_function = pickle_function("dumps");
  Object list = Object::steal(PyList_New(static_cast<Py_ssize_t>(records.size())));
  if (!list) throw_python_error();
  for (std::size_t i = 0; i < records.size(); ++i) {
    PyObject* record = records[i] ? records[i].get() : Py_None;
    Py_INCREF(record);
    PyList_SET_ITEM(list.get(), static_cast<Py_ssize_t>(i), record);
  }
  Object bytes = dumps(dumps_function.get(), list.get());
  if (!bytes) {
    // Find the record that failed, so that the error names it and its type.
    const std::string whole = take_python_error();
    for (std::size_t i = 0; i < records.size(); ++i) {
      PyObject* record = records[i] ? records[i].get() : Py_None;
      if (!dumps(dumps_function.get(), record)) {
        const std::string why = take_python_error();
        const auto last_line = why.substr(why.rfind('\n') + 1);
        throw PythonError("a record of type '" + type_name(record) + "' cannot be pickled (" +
                          last_line +
                          "); records that cross processes are pickled with protocol 5: "
                          "define the type at module level, or give it __reduce__ or "
                          "__getstate__/__setstate__");
      }
    }
    throw PythonError("a batch of records cannot be pickled: " + whole);
  }
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(bytes.get(), &data, &size) != 0) throw_python_error();
  return std::string(data, static_cast<std::size_t>(size));
}

std::vector<Object> decode_batch(std::string_view bytes) {
  Gil gil;
  Object loads_function = pickle_function("loads");
  Object data =
      Object::steal(PyBytes_FromStringAndSize(bytes.data(), static_cast<Py_ssize_t>(bytes.size())));
  if (!data) throw_python_error();
  Object list = Object::steal(PyObject_CallOneArg(loads_function.get(), data.get()));
  if (!list)
    throw SerializationError("a batch of Python records cannot be unpickled: " +
                             take_python_error());
  if (!PyList_Check(list.get())) {
    throw SerializationError("a batch of Python records unpickled to a '" + type_name(list.get()) +
                             "', not a list");
  }
  std::vector<Object> records;
  records.reserve(static_cast<std::size_t>(PyList_GET_SIZE(list.get())));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list.get()); ++i) {
    records.push_back(Object::borrow(PyList_GET_ITEM(list.get(), i)));
  }
  return records;
}

}  // namespace sage::python

void sage::Serializer<sage::python::Object>::write(Writer& w, const python::Object& value) {
  python::Gil gil;
  python::Object dumps_function = python::pickle_function("dumps");
  python::Object bytes = python::dumps(dumps_function.get(), value ? value.get() : Py_None);
  if (!bytes) {
    throw python::PythonError("a value of type '" +
                              python::type_name(value ? value.get() : Py_None) +
                              "' cannot be pickled: " + python::take_python_error());
  }
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(bytes.get(), &data, &size) != 0) python::throw_python_error();
  w.write(std::string(data, static_cast<std::size_t>(size)));
}

sage::python::Object sage::Serializer<sage::python::Object>::read(Reader& r) {
  const std::string bytes = r.read<std::string>();
  python::Gil gil;
  python::Object loads_function = python::pickle_function("loads");
  python::Object data = python::Object::steal(
      PyBytes_FromStringAndSize(bytes.data(), static_cast<Py_ssize_t>(bytes.size())));
  if (!data) python::throw_python_error();
  python::Object value =
      python::Object::steal(PyObject_CallOneArg(loads_function.get(), data.get()));
  if (!value) {
    throw SerializationError("a Python value cannot be unpickled: " + python::take_python_error());
  }
  return value;
}
