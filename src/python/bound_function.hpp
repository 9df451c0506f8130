// The Python functions an operator or a writer calls, bound once per
// instance: the user's callable with its optional open/close and checkpoint
// methods, as a function factory of the Python package built them. Used by
// the operators (operators.cpp) and the routing writers (writers.cpp).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "python/object.hpp"
#include "python/operators.hpp"

namespace sage::python {

// Calls fn(arg) (GIL held); throws PythonError if it raised.
inline Object call_one(PyObject* fn, PyObject* arg) {
  Object result = Object::steal(PyObject_CallOneArg(fn, arg));
  if (!result) throw_python_error();
  return result;
}

// A function a factory built as (call, open, close, save_state,
// restore_state, notify_checkpoint_complete), the last five None when the
// function has no such method: open(ctx) when it is built, close() by
// finish(). Key functions and partitioners use it; so does Instance, whose
// call may be a tuple (comap). GIL held throughout.
class BoundFunction {
 public:
  // Calls `factory`, then the function's open with `handle` when it has one.
  void build(PyObject* factory, const std::shared_ptr<ContextHandle>& handle) {
    Object made = Object::steal(PyObject_CallNoArgs(factory));
    if (!made) throw_python_error();
    if (!PyTuple_Check(made.get()) || PyTuple_GET_SIZE(made.get()) != 6) {
      throw PythonError(
          "internal: a function factory must return (call, open, close, save_state, "
          "restore_state, notify_checkpoint_complete)");
    }
    call_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 0));
    close_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 2));
    save_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 3));
    restore_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 4));
    notify_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 5));
    PyObject* open = PyTuple_GET_ITEM(made.get(), 1);
    if (open != Py_None) {
      pybind11::object ctx = pybind11::cast(handle);
      call_one(open, ctx.ptr());
    }
  }
  PyObject* call() const { return call_.get(); }
  // Calls close() once, if the function was built and has one.
  void finish() {
    Object close = std::move(close_);
    if (close && close.get() != Py_None) {
      Object result = Object::steal(PyObject_CallNoArgs(close.get()));
      if (!result) throw_python_error();
    }
  }

  // The function's save_state(), pickled; nothing when it has none.
  std::optional<std::string> save_state() const {
    if (!save_ || save_.get() == Py_None) return std::nullopt;
    std::vector<Object> state{Object::steal(PyObject_CallNoArgs(save_.get()))};
    if (!state.front()) throw_python_error();
    return encode_batch(state);
  }
  // restore_state(state) with what save_state() returned.
  void restore_state(std::string_view bytes) const {
    std::vector<Object> state = decode_batch(bytes);
    if (state.size() != 1 || !restore_ || restore_.get() == Py_None) {
      throw PythonError(
          "a checkpoint holds state of a function that cannot restore it; give it "
          "restore_state(state) beside save_state()");
    }
    call_one(restore_.get(), state.front().get());
  }
  // notify_checkpoint_complete(checkpoint_id), when the function has it.
  void notify(std::uint64_t checkpoint_id) const {
    if (!notify_ || notify_.get() == Py_None) return;
    Object id = Object::steal(PyLong_FromUnsignedLongLong(checkpoint_id));
    call_one(notify_.get(), id.get());
  }

 private:
  Object call_, close_, save_, restore_, notify_;
};

}  // namespace sage::python
