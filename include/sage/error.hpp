// Exceptions that sage raises to user code. Every message is written for the
// user: it names what went wrong (operator, instance, value) and how to fix it.
#pragma once

#include <stdexcept>
#include <string>

namespace sage {

// Base of every exception sage throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The dataflow the program built cannot run as described (bad parallelism,
// a stream reused after its environment ran, an unknown option value, ...).
// Thrown while the graph is built or submitted, before any record flows.
class InvalidPlanError : public Error {
 public:
  using Error::Error;
};

// Bytes could not be decoded into a record: truncated or corrupt input.
class SerializationError : public Error {
 public:
  using Error::Error;
};

}  // namespace sage
