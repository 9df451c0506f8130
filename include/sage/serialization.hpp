// How records cross processes: a Serializer<T> per type writes T to bytes and
// reads it back. Numbers, strings, standard containers, optional, pair, tuple,
// variant and durations work out of the box; a user struct needs one line,
// SAGE_FIELDS(field, ...), inside it. Reading checks every length against the
// bytes left, so corrupt or hostile input throws SerializationError instead of
// crashing or allocating without bound.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "sage/error.hpp"

static_assert(std::endian::native == std::endian::little,
              "sage's wire format is little-endian; big-endian hosts are not supported");

namespace sage {

class Writer;
class Reader;

// Specialize for a type to make it Serializable:
//   static void write(Writer&, const T&);  static T read(Reader&);
template <class T, class Enable = void>
struct Serializer;

template <class T>
concept Serializable = requires(Writer& w, Reader& r, const std::remove_cvref_t<T>& v) {
  Serializer<std::remove_cvref_t<T>>::write(w, v);
  { Serializer<std::remove_cvref_t<T>>::read(r) } -> std::same_as<std::remove_cvref_t<T>>;
};

// Appends encoded values to a byte string.
class Writer {
 public:
  Writer() = default;
  explicit Writer(std::string buffer) : buffer_(std::move(buffer)) {}

  void write_bytes(const void* data, std::size_t n) {
    buffer_.append(static_cast<const char*>(data), n);
  }
  void write_varint(std::uint64_t value) {
    while (value >= 0x80) {
      buffer_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    buffer_.push_back(static_cast<char>(value));
  }
  template <class T>
  void write(const T& value) {
    Serializer<T>::write(*this, value);
  }

  std::string& buffer() { return buffer_; }
  const std::string& buffer() const { return buffer_; }
  std::string take() { return std::move(buffer_); }
  std::size_t size() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

// Decodes values from a byte string; throws SerializationError on bad input.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  void read_bytes(void* out, std::size_t n) {
    require(n);
    std::memcpy(out, bytes_.data() + position_, n);
    position_ += n;
  }
  std::string_view read_view(std::size_t n) {
    require(n);
    std::string_view view = bytes_.substr(position_, n);
    position_ += n;
    return view;
  }
  std::uint64_t read_varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      require(1);
      const auto byte = static_cast<std::uint8_t>(bytes_[position_++]);
      value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    throw SerializationError("corrupt record: a length has more than 10 bytes");
  }
  // A count of elements that each take at least `min_element_size` bytes:
  // rejected before anything is allocated if the input cannot hold them.
  std::size_t read_count(std::size_t min_element_size) {
    const std::uint64_t count = read_varint();
    if (min_element_size > 0 && count > remaining() / min_element_size) {
      throw SerializationError("corrupt record: " + std::to_string(count) +
                               " elements announced but only " + std::to_string(remaining()) +
                               " bytes left");
    }
    if (count > remaining() + (std::size_t{1} << 20)) {
      throw SerializationError("corrupt record: " + std::to_string(count) +
                               " empty elements announced");
    }
    return static_cast<std::size_t>(count);
  }
  template <class T>
  T read() {
    return Serializer<T>::read(*this);
  }

  std::size_t remaining() const { return bytes_.size() - position_; }
  bool at_end() const { return position_ == bytes_.size(); }

 private:
  void require(std::size_t n) const {
    if (n > remaining()) {
      throw SerializationError("truncated record: needed " + std::to_string(n) + " bytes, " +
                               std::to_string(remaining()) + " left");
    }
  }

  std::string_view bytes_;
  std::size_t position_ = 0;
};

namespace detail {

template <class T>
concept HasSageFields = requires(T& t, const T& c) {
  t.sage_fields();
  c.sage_fields();
};

// Smallest encoded size of a T, used to bound element counts before anything
// is allocated: a count of elements that cannot fit in the bytes left is
// refused. 0 for a type that may encode to nothing (a struct without fields,
// a user's own Serializer); read_count caps the count of those.
template <class T>
struct MinEncodedSize : std::integral_constant<std::size_t, 0> {};
template <class T>
constexpr std::size_t min_encoded_size() {
  return MinEncodedSize<std::remove_cvref_t<T>>::value;
}
template <class T>
requires std::is_arithmetic_v<T> || std::is_enum_v<T>
struct MinEncodedSize<T> : std::integral_constant<std::size_t, sizeof(T)> {
};
// Strings and containers: at least their count.
template <>
struct MinEncodedSize<std::string> : std::integral_constant<std::size_t, 1> {};
template <class T, class A>
struct MinEncodedSize<std::vector<T, A>> : std::integral_constant<std::size_t, 1> {};
template <class T, class A>
struct MinEncodedSize<std::deque<T, A>> : std::integral_constant<std::size_t, 1> {};
template <class T, class A>
struct MinEncodedSize<std::list<T, A>> : std::integral_constant<std::size_t, 1> {};
template <class K, class V, class C, class A>
struct MinEncodedSize<std::map<K, V, C, A>> : std::integral_constant<std::size_t, 1> {};
template <class K, class V, class H, class E, class A>
struct MinEncodedSize<std::unordered_map<K, V, H, E, A>> : std::integral_constant<std::size_t, 1> {
};
template <class K, class C, class A>
struct MinEncodedSize<std::set<K, C, A>> : std::integral_constant<std::size_t, 1> {};
template <class K, class H, class E, class A>
struct MinEncodedSize<std::unordered_set<K, H, E, A>> : std::integral_constant<std::size_t, 1> {};
template <class T, std::size_t N>
struct MinEncodedSize<std::array<T, N>>
    : std::integral_constant<std::size_t, N * min_encoded_size<T>()> {};
template <class T>
struct MinEncodedSize<std::optional<T>> : std::integral_constant<std::size_t, 1> {};
template <class A, class B>
struct MinEncodedSize<std::pair<A, B>>
    : std::integral_constant<std::size_t, min_encoded_size<A>() + min_encoded_size<B>()> {};
template <class... Ts>
struct MinEncodedSize<std::tuple<Ts...>>
    : std::integral_constant<std::size_t, (std::size_t{0} + ... + min_encoded_size<Ts>())> {};
template <class... Ts>
struct MinEncodedSize<std::variant<Ts...>>
    : std::integral_constant<std::size_t, 1 + std::min({min_encoded_size<Ts>()...})> {};
template <class Rep, class Period>
struct MinEncodedSize<std::chrono::duration<Rep, Period>>
    : std::integral_constant<std::size_t, sizeof(Rep)> {};
// Structs: the sum of their fields' (sage_fields() is a tuple of references).
template <HasSageFields T>
struct MinEncodedSize<T>
    : MinEncodedSize<std::remove_cvref_t<decltype(std::declval<T&>().sage_fields())>> {};

template <class Container>
void write_elements(Writer& w, const Container& c) {
  w.write_varint(c.size());
  for (const auto& e : c) w.write(e);
}

}  // namespace detail

template <class T>
requires std::is_arithmetic_v<T>
struct Serializer<T> {
  static void write(Writer& w, const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      const std::uint8_t b = v ? 1 : 0;
      w.write_bytes(&b, 1);
    } else {
      w.write_bytes(&v, sizeof v);
    }
  }
  static T read(Reader& r) {
    if constexpr (std::is_same_v<T, bool>) {
      std::uint8_t b = 0;
      r.read_bytes(&b, 1);
      if (b > 1) throw SerializationError("corrupt record: bool byte " + std::to_string(b));
      return b == 1;
    } else {
      T v;
      r.read_bytes(&v, sizeof v);
      return v;
    }
  }
};

template <class T>
requires std::is_enum_v<T>
struct Serializer<T> {
  using U = std::underlying_type_t<T>;
  static void write(Writer& w, const T& v) { w.write(static_cast<U>(v)); }
  static T read(Reader& r) { return static_cast<T>(r.read<U>()); }
};

template <>
struct Serializer<std::string> {
  static void write(Writer& w, const std::string& s) {
    w.write_varint(s.size());
    w.write_bytes(s.data(), s.size());
  }
  static std::string read(Reader& r) {
    const std::size_t n = r.read_count(1);
    return std::string(r.read_view(n));
  }
};

template <Serializable T, class A>
struct Serializer<std::vector<T, A>> {
  static void write(Writer& w, const std::vector<T, A>& v) {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      w.write_varint(v.size());
      w.write_bytes(v.data(), v.size() * sizeof(T));
    } else {
      detail::write_elements(w, v);
    }
  }
  static std::vector<T, A> read(Reader& r) {
    const std::size_t n = r.read_count(detail::min_encoded_size<T>());
    std::vector<T, A> v;
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      v.resize(n);
      r.read_bytes(v.data(), n * sizeof(T));
    } else {
      // At most one element per byte left: read_count bounds n by the bytes
      // left, except for elements that encode to nothing.
      v.reserve(std::min(n, r.remaining()));
      for (std::size_t i = 0; i < n; ++i) v.push_back(r.read<T>());
    }
    return v;
  }
};

// Sequences read element by element: deque, list.
template <class C>
struct SequenceSerializer {
  static void write(Writer& w, const C& c) { detail::write_elements(w, c); }
  static C read(Reader& r) {
    using T = typename C::value_type;
    const std::size_t n = r.read_count(detail::min_encoded_size<T>());
    C c;
    for (std::size_t i = 0; i < n; ++i) c.push_back(r.read<T>());
    return c;
  }
};
template <Serializable T, class A>
struct Serializer<std::deque<T, A>> : SequenceSerializer<std::deque<T, A>> {};
template <Serializable T, class A>
struct Serializer<std::list<T, A>> : SequenceSerializer<std::list<T, A>> {};

// Maps and sets, written in iteration order.
template <class C>
struct AssociativeSerializer {
  static void write(Writer& w, const C& c) {
    w.write_varint(c.size());
    for (const auto& e : c) {
      if constexpr (requires {
                      e.first;
                      e.second;
                    }) {
        w.write(e.first);
        w.write(e.second);
      } else {
        w.write(e);
      }
    }
  }
  static C read(Reader& r) {
    using K = typename C::key_type;
    const std::size_t n = r.read_count(detail::min_encoded_size<K>());
    C c;
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (requires { typename C::mapped_type; }) {
        K key = r.read<K>();
        c.emplace(std::move(key), r.read<typename C::mapped_type>());
      } else {
        c.insert(r.read<K>());
      }
    }
    return c;
  }
};
template <Serializable K, Serializable V, class C, class A>
struct Serializer<std::map<K, V, C, A>> : AssociativeSerializer<std::map<K, V, C, A>> {};
template <Serializable K, Serializable V, class H, class E, class A>
struct Serializer<std::unordered_map<K, V, H, E, A>>
    : AssociativeSerializer<std::unordered_map<K, V, H, E, A>> {};
template <Serializable K, class C, class A>
struct Serializer<std::set<K, C, A>> : AssociativeSerializer<std::set<K, C, A>> {};
template <Serializable K, class H, class E, class A>
struct Serializer<std::unordered_set<K, H, E, A>>
    : AssociativeSerializer<std::unordered_set<K, H, E, A>> {};

template <Serializable T, std::size_t N>
struct Serializer<std::array<T, N>> {
  static void write(Writer& w, const std::array<T, N>& a) {
    for (const auto& e : a) w.write(e);
  }
  static std::array<T, N> read(Reader& r) {
    std::array<T, N> a{};
    for (auto& e : a) e = r.read<T>();
    return a;
  }
};

template <Serializable T>
struct Serializer<std::optional<T>> {
  static void write(Writer& w, const std::optional<T>& o) {
    w.write(o.has_value());
    if (o) w.write(*o);
  }
  static std::optional<T> read(Reader& r) {
    if (!r.read<bool>()) return std::nullopt;
    return r.read<T>();
  }
};

template <Serializable A, Serializable B>
struct Serializer<std::pair<A, B>> {
  static void write(Writer& w, const std::pair<A, B>& p) {
    w.write(p.first);
    w.write(p.second);
  }
  static std::pair<A, B> read(Reader& r) {
    A a = r.read<A>();
    return std::pair<A, B>(std::move(a), r.read<B>());
  }
};

template <Serializable... Ts>
struct Serializer<std::tuple<Ts...>> {
  static void write(Writer& w, const std::tuple<Ts...>& t) {
    std::apply([&w](const auto&... e) { (w.write(e), ...); }, t);
  }
  static std::tuple<Ts...> read(Reader& r) {
    // Braced initialization evaluates left to right, matching the write order.
    return std::tuple<Ts...>{r.read<Ts>()...};
  }
};

template <Serializable... Ts>
struct Serializer<std::variant<Ts...>> {
  static void write(Writer& w, const std::variant<Ts...>& v) {
    w.write_varint(v.index());
    std::visit([&w](const auto& e) { w.write(e); }, v);
  }
  static std::variant<Ts...> read(Reader& r) {
    const std::uint64_t index = r.read_varint();
    if (index >= sizeof...(Ts)) {
      throw SerializationError("corrupt record: variant alternative " + std::to_string(index) +
                               " of " + std::to_string(sizeof...(Ts)));
    }
    return read_alternative(r, index, std::index_sequence_for<Ts...>{});
  }

 private:
  template <std::size_t... I>
  static std::variant<Ts...> read_alternative(Reader& r, std::uint64_t index,
                                              std::index_sequence<I...>) {
    std::variant<Ts...> result;
    ((index == I ? (void)result.template emplace<I>(r.read<Ts>()) : void()), ...);
    return result;
  }
};

template <class Rep, class Period>
struct Serializer<std::chrono::duration<Rep, Period>> {
  using D = std::chrono::duration<Rep, Period>;
  static void write(Writer& w, const D& d) { w.write(d.count()); }
  static D read(Reader& r) { return D(r.read<Rep>()); }
};

// Structs that list their fields with SAGE_FIELDS.
template <class T>
requires detail::HasSageFields<T> && std::is_default_constructible_v<T>
struct Serializer<T> {
  static void write(Writer& w, const T& v) {
    std::apply([&w](const auto&... field) { (w.write(field), ...); }, v.sage_fields());
  }
  static T read(Reader& r) {
    T v;
    std::apply(
        [&r](auto&... field) { ((field = r.read<std::remove_cvref_t<decltype(field)>>()), ...); },
        v.sage_fields());
    return v;
  }
};

// Encodes one value.
template <class T>
std::string serialize(const T& value) {
  static_assert(Serializable<T>,
                "sage: this record type cannot cross processes. Add SAGE_FIELDS(field1, field2, "
                "...) inside the struct, or specialize sage::Serializer<T> (see "
                "docs/serialization.md)");
  Writer w;
  w.write(value);
  return w.take();
}

// Decodes one value that must span all of `bytes`.
template <class T>
T deserialize(std::string_view bytes) {
  static_assert(Serializable<T>,
                "sage: this record type cannot cross processes. Add SAGE_FIELDS(field1, field2, "
                "...) inside the struct, or specialize sage::Serializer<T> (see "
                "docs/serialization.md)");
  Reader r(bytes);
  T value = r.read<T>();
  if (!r.at_end()) {
    throw SerializationError(std::to_string(r.remaining()) + " trailing bytes after record");
  }
  return value;
}

}  // namespace sage

// Inside a struct: makes it Serializable by listing its fields, in order.
//   struct Point { double x, y; std::string label; SAGE_FIELDS(x, y, label) };
#define SAGE_FIELDS(...)                               \
  auto sage_fields() { return std::tie(__VA_ARGS__); } \
  auto sage_fields() const { return std::tie(__VA_ARGS__); }
