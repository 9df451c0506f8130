// The stable hash of a Python key, for key_by: the same in every process and
// on every machine, and the same as sage::stable_hash of the matching C++ key,
// so Python and C++ jobs route a key alike. Never Python's hash(), which is
// salted per process for str and bytes.
//
//   int (and bool)  -> stable_hash(std::int64_t)
//   str             -> stable_hash(std::string) of its UTF-8 bytes
//   bytes           -> stable_hash(std::string) of the bytes
//   tuple of these  -> stable_hash(std::tuple<...>): the hash of the elements'
//                      sage encodings, concatenated (int: 8 bytes little-endian,
//                      str and bytes: varint length and the bytes, tuple: its
//                      elements)
//
// Any other key type (float, None, list, dict, objects) is refused with a
// TypeError naming the type and what to return instead.
#pragma once

#include <Python.h>

#include <cstdint>
#include <string>

namespace sage::python {

// GIL held. Returns false with a Python TypeError (or OverflowError for an
// int outside 64 bits) set when the key cannot be hashed stably.
bool stable_key_hash(PyObject* key, std::uint64_t& hash);

// The key as the keyed state of Python operators tells keys apart: its
// encoding with a type tag on every element, so that equal Python keys (1 and
// True) share an entry and unequal ones (1, b"\x01...", "1") never do. GIL
// held; false with a Python error set, as stable_key_hash.
bool key_identity(PyObject* key, std::string& out);

}  // namespace sage::python
