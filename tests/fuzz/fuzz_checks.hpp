// The per-input checks of the fuzz targets, one function per target, shared
// by two drivers: the libFuzzer targets (-DSAGE_FUZZ=ON, clang) and the
// bounded random-input test that ctest runs with any compiler. Whatever the
// bytes, decoding gives a value or throws sage::Error; anything else (a
// crash, another exception, a value that does not encode back) is a bug and
// escapes as std::logic_error or worse.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sage::fuzz {

// Reads `bytes` as a data-plane receiver reads a connection: as its opening
// (a header and a hello), and as the frames of a greeted peer, decoding each
// batch as records of a type its channel picks.
void check_data_plane_input(std::string_view bytes);

// The first byte picks a type (every built-in kind, nested, and a
// SAGE_FIELDS struct); the rest is decoded as one value of it, which must
// encode and decode again to a value of the same encoded size.
void check_serializer_input(std::string_view bytes);

// Valid inputs of each, to mutate: a hello and frames; a value of every type.
std::vector<std::string> data_plane_seeds();
std::vector<std::string> serializer_seeds();

}  // namespace sage::fuzz
