#include "fuzz/fuzz_checks.hpp"

#include <cstring>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "net/frame.hpp"
#include "sage/serialization.hpp"

namespace sage::fuzz {
namespace {

// A user record: one line makes it serializable.
struct Reading {
  int id = 0;
  std::string title;
  std::vector<double> values;
  std::optional<std::map<std::string, std::int64_t>> tags;
  bool flag = false;
  SAGE_FIELDS(id, title, values, tags, flag)
};

// Every kind of record the Serializer knows; a type byte picks one.
using RecordTypes = std::tuple<
    std::int8_t, std::uint16_t, std::int32_t, std::int64_t, std::uint64_t, float, double, bool,
    std::string, std::vector<int>, std::vector<std::string>, std::vector<bool>,
    std::map<std::string, int>, std::unordered_map<std::int64_t, std::vector<std::string>>,
    std::set<std::string>, std::unordered_set<int>, std::deque<std::int16_t>,
    std::list<std::string>, std::optional<std::string>, std::pair<int, std::string>,
    std::tuple<bool, double, std::string>, std::array<std::string, 3>,
    std::variant<int, std::string, std::vector<bool>>, std::chrono::milliseconds,
    std::vector<std::optional<std::pair<int, std::string>>>,
    std::map<std::string, std::vector<std::tuple<int, float>>>, std::vector<std::tuple<>>, Reading,
    std::vector<Reading>, std::vector<std::vector<std::vector<Reading>>>>;
constexpr std::size_t kRecordTypes = std::tuple_size_v<RecordTypes>;

// Calls visit.template operator()<T>() for the index-th type.
template <class Visit, std::size_t... I>
void visit_type(std::size_t index, Visit&& visit, std::index_sequence<I...>) {
  ((index == I ? visit.template operator()<std::tuple_element_t<I, RecordTypes>>() : void()), ...);
}
template <class Visit>
void visit_type(std::size_t index, Visit&& visit) {
  visit_type(index % kRecordTypes, visit, std::make_index_sequence<kRecordTypes>{});
}

template <class T>
constexpr bool kUnordered = false;
template <class K, class V>
constexpr bool kUnordered<std::unordered_map<K, V>> = true;
template <class K>
constexpr bool kUnordered<std::unordered_set<K>> = true;

template <class T>
void check_decoding(std::string_view bytes) {
  T value;
  try {
    value = deserialize<T>(bytes);
  } catch (const SerializationError&) {
    return;  // refused: what must happen to bad bytes
  }
  const std::string encoded = serialize(value);
  const std::string again = serialize(deserialize<T>(encoded));
  // The same bytes; for an unordered container, whose order may differ after
  // decoding, the same size.
  if (kUnordered<T> ? again.size() != encoded.size() : again != encoded) {
    throw std::logic_error("a decoded value does not encode and decode to the same value");
  }
}

const net::PeerIdentity kIdentity{"job-fuzz", "f00d", "token-of-the-fuzzer", "the fuzzer"};

std::string header_bytes(net::FrameKind kind, std::uint32_t channel, std::uint32_t length) {
  net::FrameHeader header;
  header.kind = static_cast<std::uint32_t>(kind);
  header.channel = channel;
  header.length = length;
  return std::string(reinterpret_cast<const char*>(&header), sizeof header);
}

// Takes a header off the front of `bytes`; false when too few are left.
bool take_header(std::string_view& bytes, net::FrameHeader* header) {
  if (bytes.size() < sizeof *header) return false;
  std::memcpy(header, bytes.data(), sizeof *header);
  bytes.remove_prefix(sizeof *header);
  return true;
}

}  // namespace

void check_data_plane_input(std::string_view bytes) {
  // As a connection's opening, before a hello is accepted.
  std::string_view opening = bytes;
  net::FrameHeader header;
  if (take_header(opening, &header)) {
    try {
      const std::size_t length = net::hello_payload_length(header, kIdentity);
      net::check_hello(opening.substr(0, length), kIdentity);
    } catch (const Error&) {
      // Refused.
    }
  }
  // As the frames of a greeted peer.
  std::string_view frames = bytes;
  while (take_header(frames, &header)) {
    net::FrameKind kind;
    try {
      kind = net::check_frame_header(header);
    } catch (const Error&) {
      return;  // the job's error: the receiver reads no further
    }
    if (header.length > frames.size()) return;  // the connection ends in the middle
    const std::string_view payload = frames.substr(0, header.length);
    frames.remove_prefix(header.length);
    if (kind == net::FrameKind::kGoodbye) return;
    if (kind == net::FrameKind::kBatch) {
      visit_type(header.channel, [&]<class T>() { check_decoding<std::vector<T>>(payload); });
    }
  }
}

void check_serializer_input(std::string_view bytes) {
  if (bytes.empty()) return;
  visit_type(static_cast<unsigned char>(bytes[0]),
             [&]<class T>() { check_decoding<T>(bytes.substr(1)); });
}

std::vector<std::string> data_plane_seeds() {
  const std::string hello = kIdentity.hello();
  const std::string batch = serialize(std::vector<std::string>{"a", "bc", ""});
  const std::string readings = serialize(std::vector<Reading>{{7, "t", {1.5}, {{{"k", 3}}}, true}});
  return {
      header_bytes(net::FrameKind::kHello, 0, static_cast<std::uint32_t>(hello.size())) + hello,
      header_bytes(net::FrameKind::kBatch, 8, static_cast<std::uint32_t>(batch.size())) + batch +
          header_bytes(net::FrameKind::kBatch, 27, static_cast<std::uint32_t>(readings.size())) +
          readings + header_bytes(net::FrameKind::kEndOfStream, 8, 0) +
          header_bytes(net::FrameKind::kGoodbye, 0, 0),
  };
}

std::vector<std::string> serializer_seeds() {
  std::vector<std::string> seeds;
  for (std::size_t i = 0; i < kRecordTypes; ++i) {
    visit_type(i, [&]<class T>() {
      T value{};
      if constexpr (std::is_same_v<T, Reading>) value = {1, "x", {2.0, 3.0}, {{{"a", 1}}}, true};
      if constexpr (requires { value.push_back(typename T::value_type{}); }) {
        value.push_back(typename T::value_type{});
        value.push_back(typename T::value_type{});
      }
      seeds.push_back(static_cast<char>(i) + serialize(value));
    });
  }
  return seeds;
}

}  // namespace sage::fuzz
