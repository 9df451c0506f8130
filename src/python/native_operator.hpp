// C++ operators over Python records that Python code puts into a stream like a
// function (DataStream.map(ChromaRetrieverOperator, ...)): the Python object
// says which operator to build, the engine builds one per parallel instance,
// and the operator does its work in C++, taking the GIL only to read its
// input records and to make its output records.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <memory>
#include <string>

#include "sage/detail/operators.hpp"

namespace sage::python {

struct NativeOperator {
  std::string kind;  // as the plan names it: "map", "async_map"
  std::string name;  // the operator's default name
  std::function<std::unique_ptr<detail::Operator>(detail::OperatorSetup&)> make;
};

// sage._native's RAG operators and build_collection (rag_operators.cpp).
void register_rag(pybind11::module_& m);

}  // namespace sage::python
