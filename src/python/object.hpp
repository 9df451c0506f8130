// The record type of Python jobs: sage::python::Object, an owned reference to
// a Python object that the C++ engine can move, copy and destroy on any of its
// threads, and the GIL guards the Python operators use around it.
//
// Invariants (docs/python.md, "The GIL"):
//  1. Every change of a Python reference count happens with the GIL held.
//     Object's copy constructor and destructor take the GIL themselves when
//     the calling thread does not hold it, so engine code that copies or drops
//     records (a fan-out, a failed job's queues) is correct as it is. Moves
//     never touch the count and never need the GIL.
//  2. The Python operators take the GIL once per batch: they steal every input
//     record (the batch is left holding null Objects, which the engine then
//     destroys without the GIL), run the user's function on each, and make
//     the copies a fan-out needs, all under one acquisition.
//  3. No thread blocks while it holds the GIL: a Python operator releases it
//     before it hands its output downstream (a push into a full queue blocks
//     for backpressure) and every binding that waits on the engine (submit,
//     wait, stop, the environment's destruction) releases it first. So a
//     thread may take the GIL while it holds an engine lock, never the other
//     way round, and the GIL can never be part of a deadlock. While holding the
//     GIL, code takes only leaf locks (the user metrics' registry).
//  4. An engine thread gets one Python thread state on its first use of the
//     GIL and keeps it until the thread ends, so taking the GIL per batch costs
//     a handoff, not a thread state.
#pragma once

#include <Python.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sage/serialization.hpp"

namespace sage::python {

// Holds the GIL for its scope; a no-op on a thread that already holds it.
class Gil {
 public:
  Gil();
  ~Gil();
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  bool acquired_ = false;
  PyGILState_STATE state_{};
};

// Releases the GIL for its scope; the thread must hold it.
class GilRelease {
 public:
  GilRelease() : saved_(PyEval_SaveThread()) {}
  ~GilRelease() { PyEval_RestoreThread(saved_); }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* saved_;
};

// An owned reference to a Python object, or null.
class Object {
 public:
  Object() = default;
  // Takes over a new reference (null allowed); GIL held.
  static Object steal(PyObject* p) {
    Object o;
    o.p_ = p;
    return o;
  }
  // Adds a reference; GIL held.
  static Object borrow(PyObject* p) {
    Py_XINCREF(p);
    return steal(p);
  }

  Object(const Object& other) : p_(other.p_) {
    if (p_ != nullptr) {
      Gil gil;
      Py_INCREF(p_);
    }
  }
  Object(Object&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
  Object& operator=(Object other) noexcept {
    std::swap(p_, other.p_);
    return *this;
  }
  ~Object() { reset(); }

  // Drops the reference (taking the GIL if needed).
  void reset() {
    if (p_ == nullptr) return;
    PyObject* p = std::exchange(p_, nullptr);
    if (PyGILState_Check()) {
      Py_DECREF(p);
    } else if (Py_IsInitialized()) {
      Gil gil;
      Py_DECREF(p);
    }  // else the interpreter is gone, and the object with it
  }

  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  // Gives up ownership: the caller owns the returned reference.
  PyObject* release() { return std::exchange(p_, nullptr); }

 private:
  PyObject* p_ = nullptr;
};

// A Python exception turned into a C++ one: what() is the formatted traceback
// (the type, the message and where it was raised). Operators let it reach
// the engine, which adds the operator and instance.
class PythonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Takes the pending Python exception (GIL held) and throws it as a PythonError.
[[noreturn]] void throw_python_error();
// The pending Python exception, formatted with its traceback and cleared
// (GIL held); empty if none is pending.
std::string take_python_error();

// Records as bytes for channels between processes: a batch is one list
// pickled with protocol 5, one call per batch. encode_batch throws
// PythonError naming the first record that cannot be pickled and its type.
// Both take the GIL.
std::string encode_batch(const std::vector<Object>& records);
std::vector<Object> decode_batch(std::string_view bytes);

}  // namespace sage::python

// One record on its own (keyed state, a record inside a C++ container): the
// same pickle, one call per record.
template <>
struct sage::Serializer<sage::python::Object> {
  static void write(Writer& w, const python::Object& value);
  static python::Object read(Reader& r);
};
