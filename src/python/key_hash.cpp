#include "python/key_hash.hpp"

#include <string>

#include "sage/serialization.hpp"
#include "sage/stable_hash.hpp"

namespace sage::python {
namespace {

constexpr const char* kFix =
    "; key_by keys must be int, str, bytes or a tuple of those (they are hashed stably, the "
    "same in every process): return e.g. str(key) or a tuple of its fields";

bool refuse(PyObject* key, const char* why = "") {
  PyErr_Format(PyExc_TypeError, "key_by: a key of type '%s' cannot be hashed stably%s%s",
               Py_TYPE(key)->tp_name, why, kFix);
  return false;
}

bool as_int64(PyObject* key, std::int64_t& out) {
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
  if (overflow != 0) {
    PyErr_Format(PyExc_OverflowError,
                 "key_by: the int key %R does not fit in 64 bits; use str(key) as the key", key);
    return false;
  }
  if (v == -1 && PyErr_Occurred()) return false;
  out = v;
  return true;
}

bool as_bytes(PyObject* key, const char*& data, Py_ssize_t& size) {
  if (PyUnicode_Check(key)) {
    data = PyUnicode_AsUTF8AndSize(key, &size);
    return data != nullptr;
  }
  char* d = nullptr;
  if (PyBytes_AsStringAndSize(key, &d, &size) != 0) return false;
  data = d;
  return true;
}

// Tags of key_identity's encoding.
constexpr char kIntTag = 'i', kStrTag = 's', kBytesTag = 'b', kTupleTag = 't';

// Writes `key` in sage's encoding (serialization.hpp: what the stable hash of a
// tuple reads), or, when `tagged`, in key_identity's: each value led by its
// type's tag and a tuple by its size, so that equal encodings mean equal keys.
bool write_key(PyObject* key, Writer& out, bool tagged) {
  if (PyLong_Check(key)) {
    std::int64_t v = 0;
    if (!as_int64(key, v)) return false;
    if (tagged) out.write_bytes(&kIntTag, 1);
    out.write(v);
    return true;
  }
  if (PyUnicode_Check(key) || PyBytes_Check(key)) {
    const char* data = nullptr;
    Py_ssize_t size = 0;
    if (!as_bytes(key, data, size)) return false;
    if (tagged) out.write_bytes(PyUnicode_Check(key) ? &kStrTag : &kBytesTag, 1);
    out.write_varint(static_cast<std::uint64_t>(size));
    out.write_bytes(data, static_cast<std::size_t>(size));
    return true;
  }
  if (PyTuple_Check(key)) {
    if (tagged) {
      out.write_bytes(&kTupleTag, 1);
      out.write_varint(static_cast<std::uint64_t>(PyTuple_GET_SIZE(key)));
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); ++i) {
      if (!write_key(PyTuple_GET_ITEM(key, i), out, tagged)) return false;
    }
    return true;
  }
  return refuse(key, PyFloat_Check(key) ? " (1.0 == 1 in Python, but their encodings differ)" : "");
}

}  // namespace

bool key_identity(PyObject* key, std::string& out) {
  Writer writer(std::move(out));
  writer.buffer().clear();
  const bool ok = write_key(key, writer, /*tagged=*/true);
  out = writer.take();
  return ok;
}

bool stable_key_hash(PyObject* key, std::uint64_t& hash) {
  if (PyLong_Check(key)) {
    std::int64_t v = 0;
    if (!as_int64(key, v)) return false;
    hash = stable_hash(v);
    return true;
  }
  if (PyUnicode_Check(key) || PyBytes_Check(key)) {
    const char* data = nullptr;
    Py_ssize_t size = 0;
    if (!as_bytes(key, data, size)) return false;
    hash = stable_hash_bytes(data, static_cast<std::size_t>(size));
    return true;
  }
  if (PyTuple_Check(key)) {
    Writer out;
    if (!write_key(key, out, /*tagged=*/false)) return false;
    hash = stable_hash_bytes(out.buffer().data(), out.buffer().size());
    return true;
  }
  return refuse(key, PyFloat_Check(key) ? " (1.0 == 1 in Python, but their encodings differ)" : "");
}

}  // namespace sage::python
