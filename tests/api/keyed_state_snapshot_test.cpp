// Keyed state checkpoints: a snapshot per key group restores into fresh
// backends, each taking only the groups key_by routes to it, and corrupt bytes
// are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <sage/sage.hpp>

namespace sage {
namespace {

using detail::TypedKeyedStateBackend;

constexpr int kMaxParallelism = 128;

// The handles of one operator instance's state, declared as a function's
// open() would.
struct Handles {
  explicit Handles(detail::KeyedStateBackend& backend)
      : count(backend, "count"), names(backend, "names"), letters(backend, "letters") {}
  ValueState<long long> count;
  ListState<std::string> names;
  MapState<char, int> letters;
};

// What key `key` holds after fill(): some keys have only some states, key
// 0 mod 7 has a cleared value (which a snapshot omits).
long long count_of(long long key) { return key * 3 + 1; }
std::vector<std::string> names_of(long long key) {
  std::vector<std::string> names;
  for (long long i = 0; i < key % 4; ++i) names.push_back("n" + std::to_string(key + i));
  return names;
}
std::unordered_map<char, int, StableHasher> letters_of(long long key) {
  std::unordered_map<char, int, StableHasher> letters;
  if (key % 3 == 0) {
    letters['a'] = static_cast<int>(key);
    letters['z'] = -1;
  }
  return letters;
}

// Whether any of the key's entries is non-empty, so that a snapshot has it.
bool is_written(long long key) { return key % 7 != 0 || !names_of(key).empty() || key % 3 == 0; }

void fill(TypedKeyedStateBackend<long long>& backend, Handles& state,
          const std::vector<long long>& keys) {
  for (const long long key : keys) {
    backend.set_current_key(key);
    state.count.update(count_of(key));
    if (key % 7 == 0) state.count.clear();
    for (auto& name : names_of(key)) state.names.add(name);
    for (const auto& [letter, n] : letters_of(key)) state.letters.put(letter, n);
  }
  backend.clear_current_key();
}

void expect_restored(TypedKeyedStateBackend<long long>& backend, Handles& state,
                     const std::vector<long long>& keys) {
  for (const long long key : keys) {
    backend.set_current_key(key);
    if (key % 7 == 0) {
      EXPECT_FALSE(state.count.has_value()) << "key " << key;
    } else {
      EXPECT_EQ(state.count.value(), count_of(key)) << "key " << key;
    }
    EXPECT_EQ(state.names.get(), names_of(key)) << "key " << key;
    EXPECT_EQ(state.letters.entries(), letters_of(key)) << "key " << key;
  }
  backend.clear_current_key();
}

std::vector<long long> key_range(long long from, long long to) {
  std::vector<long long> keys;
  for (long long k = from; k < to; ++k) keys.push_back(k);
  return keys;
}

// Where key_by sends `key` among `parallelism` instances.
int instance_of(long long key, int parallelism) {
  const auto identity = [](long long k) { return k; };
  return detail::KeyGroupSelector<decltype(identity)>(identity, kMaxParallelism, parallelism)(
      key, parallelism);
}

int group_of(long long key) { return detail::key_group_of(stable_hash(key), kMaxParallelism); }

TEST(KeyedStateSnapshotTest, RoundTripOfValueListAndMapStateOverManyKeys) {
  const auto keys = key_range(0, 20'000);
  TypedKeyedStateBackend<long long> original;
  Handles state(original);
  fill(original, state, keys);
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);
  EXPECT_EQ(groups.size(), static_cast<std::size_t>(kMaxParallelism));

  TypedKeyedStateBackend<long long> restored;
  Handles restored_state(restored);
  for (const auto& [group, bytes] : groups) restored.restore(bytes);
  expect_restored(restored, restored_state, keys);

  // The restored backend snapshots to the same groups, each holding the same
  // keys (slots may be numbered differently, so compare decoded contents).
  std::map<int, std::string> again;
  restored.snapshot(kMaxParallelism, again);
  ASSERT_EQ(again.size(), groups.size());
  for (const auto& [group, bytes] : groups) EXPECT_EQ(again.at(group).size(), bytes.size());
}

TEST(KeyedStateSnapshotTest, EachGroupHoldsExactlyTheKeysOfThatGroup) {
  const auto keys = key_range(0, 3'000);
  TypedKeyedStateBackend<long long> original;
  Handles state(original);
  fill(original, state, keys);
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  for (const auto& [group, bytes] : groups) {
    TypedKeyedStateBackend<long long> one_group;
    one_group.restore(bytes);
    std::vector<long long> own;
    for (const long long key : keys) {
      if (group_of(key) == group) own.push_back(key);
    }
    EXPECT_EQ(one_group.key_count(),
              static_cast<std::size_t>(std::count_if(own.begin(), own.end(), is_written)))
        << "group " << group;
    Handles restored_state(one_group);
    expect_restored(one_group, restored_state, own);
  }
}

// Three instances snapshot what key_by sent them; two instances of the
// rescaled job restore the groups they own, and find every key where key_by
// sends it now, and no key that is not theirs.
TEST(KeyedStateSnapshotTest, RescaleRestoresEachGroupIntoTheInstanceKeyByRoutesItTo) {
  const auto keys = key_range(0, 10'000);
  constexpr int kOld = 3;
  constexpr int kNew = 2;
  std::map<int, std::string> groups;
  for (int instance = 0; instance < kOld; ++instance) {
    std::vector<long long> own;
    for (const long long key : keys) {
      if (instance_of(key, kOld) == instance) own.push_back(key);
    }
    TypedKeyedStateBackend<long long> backend;
    Handles state(backend);
    fill(backend, state, own);
    std::map<int, std::string> instance_groups;
    backend.snapshot(kMaxParallelism, instance_groups);
    for (auto& [group, bytes] : instance_groups) {
      EXPECT_EQ(detail::instance_of_key_group(group, kMaxParallelism, kOld), instance);
      EXPECT_TRUE(groups.emplace(group, std::move(bytes)).second) << "group " << group;
    }
  }

  for (int instance = 0; instance < kNew; ++instance) {
    TypedKeyedStateBackend<long long> backend;
    Handles state(backend);
    for (const auto& [group, bytes] : groups) {
      if (detail::instance_of_key_group(group, kMaxParallelism, kNew) == instance) {
        backend.restore(bytes);
      }
    }
    std::vector<long long> own;
    for (const long long key : keys) {
      if (instance_of(key, kNew) == instance) own.push_back(key);
    }
    // Every key of the instance, and only those, was restored (keys whose
    // entries are all empty were not written).
    EXPECT_EQ(backend.key_count(),
              static_cast<std::size_t>(std::count_if(own.begin(), own.end(), is_written)))
        << "instance " << instance;
    expect_restored(backend, state, own);
  }
}

TEST(KeyedStateSnapshotTest, TableRegisteredAfterRestoreGetsItsEntries) {
  const auto keys = key_range(0, 1'000);
  TypedKeyedStateBackend<long long> original;
  Handles state(original);
  fill(original, state, keys);
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  // Only the value state exists when the groups are restored; the list and
  // map states are declared afterwards, one of them after a record was seen.
  TypedKeyedStateBackend<long long> restored;
  ValueState<long long> count(restored, "count");
  for (const auto& [group, bytes] : groups) restored.restore(bytes);
  restored.set_current_key(keys[5]);
  EXPECT_EQ(count.value(), count_of(keys[5]));
  restored.clear_current_key();
  Handles late(restored);
  expect_restored(restored, late, keys);
}

// A table that is not declared again between a restore and the next
// snapshot keeps its entries in that snapshot.
TEST(KeyedStateSnapshotTest, EntriesWaitingForTheirTableAreInTheNextSnapshot) {
  const auto keys = key_range(0, 2'000);
  TypedKeyedStateBackend<long long> original;
  Handles state(original);
  fill(original, state, keys);
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  TypedKeyedStateBackend<long long> restarted;
  ValueState<long long> count(restarted, "count");  // the list and map states wait
  for (const auto& [group, bytes] : groups) restarted.restore(bytes);
  std::map<int, std::string> next;
  restarted.snapshot(kMaxParallelism, next);
  EXPECT_EQ(next.size(), groups.size());

  TypedKeyedStateBackend<long long> restored;
  Handles restored_state(restored);
  for (const auto& [group, bytes] : next) restored.restore(bytes);
  expect_restored(restored, restored_state, keys);
}

TEST(KeyedStateSnapshotTest, RestoreMergesIntoExistingKeys) {
  TypedKeyedStateBackend<long long> original;
  ValueState<long long> count(original, "count");
  for (long long key : {1LL, 2LL}) {
    original.set_current_key(key);
    count.update(key * 10);
  }
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  TypedKeyedStateBackend<long long> target;
  ValueState<long long> target_count(target, "count");
  const long long other = 3;
  target.set_current_key(other);
  target_count.update(33);
  for (const auto& [group, bytes] : groups) target.restore(bytes);
  for (long long key : {1LL, 2LL, 3LL}) {
    target.set_current_key(key);
    EXPECT_EQ(target_count.value(), key == 3 ? 33 : key * 10);
  }
}

TEST(KeyedStateSnapshotTest, EmptyEntriesAreNotWritten) {
  TypedKeyedStateBackend<long long> backend;
  Handles state(backend);
  for (long long key = 0; key < 100; ++key) {
    backend.set_current_key(key);
    state.count.update(key);
    state.count.clear();
    state.names.add("x");
    state.names.clear();
    state.letters.put('a', 1);
    state.letters.remove('a');
  }
  std::map<int, std::string> groups;
  backend.snapshot(kMaxParallelism, groups);
  EXPECT_TRUE(groups.empty());
}

// A task keeps its last snapshot's map so that the next one reuses its
// memory: the second snapshot into it must equal one into a fresh map, with
// a group that became empty gone and the new keys' groups there.
TEST(KeyedStateSnapshotTest, ASnapshotIntoTheLastOnesMapEqualsOneIntoAFreshMap) {
  TypedKeyedStateBackend<long long> backend;
  Handles state(backend);
  fill(backend, state, key_range(0, 300));
  std::map<int, std::string> kept;
  backend.snapshot(kMaxParallelism, kept);
  ASSERT_FALSE(kept.empty());

  // Every entry of one group's keys emptied; new keys in the other groups.
  const int emptied = kept.begin()->first;
  for (long long key = 0; key < 300; ++key) {
    if (group_of(key) != emptied) continue;
    backend.set_current_key(key);
    state.count.clear();
    state.names.clear();
    state.letters.clear();
  }
  backend.clear_current_key();
  std::vector<long long> added;
  for (long long key = 300; key < 2'000; ++key) {
    if (group_of(key) != emptied) added.push_back(key);
  }
  fill(backend, state, added);

  backend.snapshot(kMaxParallelism, kept);
  std::map<int, std::string> fresh;
  backend.snapshot(kMaxParallelism, fresh);
  EXPECT_EQ(kept, fresh);
  EXPECT_FALSE(kept.contains(emptied)) << "the emptied group is still in the snapshot";

  TypedKeyedStateBackend<long long> restored;
  Handles restored_state(restored);
  for (const auto& [group, bytes] : kept) restored.restore(bytes);
  expect_restored(restored, restored_state, added);
}

TEST(KeyedStateSnapshotTest, StringKeysRoundTrip) {
  TypedKeyedStateBackend<std::string> original;
  ListState<int> seen(original, "seen");
  std::vector<std::string> keys;
  for (int i = 0; i < 500; ++i) keys.push_back("user-" + std::to_string(i));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    original.set_current_key(keys[i]);
    seen.add(static_cast<int>(i));
    seen.add(-1);
  }
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  TypedKeyedStateBackend<std::string> restored;
  ListState<int> restored_seen(restored, "seen");
  for (const auto& [group, bytes] : groups) restored.restore(bytes);
  ASSERT_EQ(restored.key_count(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    restored.set_current_key(keys[i]);
    EXPECT_EQ(restored_seen.get(), (std::vector<int>{static_cast<int>(i), -1}));
  }
}

// `n` keys of one key group that have entries in all three states.
std::vector<long long> keys_of_one_group(std::size_t n) {
  std::vector<long long> keys;
  for (long long key = 3; keys.size() < n; key += 3) {
    if (group_of(key) == group_of(3) && key % 7 != 0 && !names_of(key).empty()) {
      keys.push_back(key);
    }
  }
  return keys;
}

std::string one_group_of(const std::vector<long long>& keys) {
  TypedKeyedStateBackend<long long> backend;
  Handles state(backend);
  fill(backend, state, keys);
  std::map<int, std::string> groups;
  backend.snapshot(kMaxParallelism, groups);
  EXPECT_EQ(groups.size(), 1u);
  return groups.begin()->second;
}

void expect_refused(std::string_view bytes, const std::string& what) {
  TypedKeyedStateBackend<long long> backend;
  Handles state(backend);
  EXPECT_THROW(backend.restore(bytes), SerializationError) << what;
}

TEST(KeyedStateSnapshotTest, CorruptBytesAreRefused) {
  const std::string group = one_group_of(keys_of_one_group(2));
  {
    TypedKeyedStateBackend<long long> backend;
    Handles state(backend);
    backend.restore(group);  // the bytes themselves are fine
  }
  for (std::size_t n = 0; n < group.size(); ++n) {
    expect_refused(std::string_view(group).substr(0, n), "truncated to " + std::to_string(n));
  }
  expect_refused(group + "x", "a trailing byte");
  std::string other_format = group;
  other_format[0] = 2;
  expect_refused(other_format, "format 2");
  expect_refused(std::string("\x01\xff\xff\xff\xff\x0f", 6), "four billion tables");
  // One table "count" whose two entries announce more bytes than there are.
  std::string forged = std::string("\x01\x01\x05", 3) + "count" + "\x02" + std::string(16, '\0') +
                       "\x7f" + std::string(4, '\0');
  expect_refused(forged, "entries longer than the group");
}

TEST(KeyedStateSnapshotTest, EntriesOfAnotherTypeAreRefused) {
  TypedKeyedStateBackend<long long> original;
  ValueState<long long> count(original, "count");
  const long long key = 1;
  original.set_current_key(key);
  count.update(5);
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);
  ASSERT_EQ(groups.size(), 1u);

  // Declared before the restore, and after it (the bytes waited).
  {
    TypedKeyedStateBackend<long long> restored;
    ValueState<int> narrower(restored, "count");
    EXPECT_THROW(restored.restore(groups.begin()->second), SerializationError);
  }
  {
    TypedKeyedStateBackend<long long> restored;
    restored.restore(groups.begin()->second);
    try {
      ValueState<int> narrower(restored, "count");
      FAIL() << "expected SerializationError";
    } catch (const SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find("'count'"), std::string::npos) << e.what();
    }
  }
}

// Random damage to valid bytes: refused with SerializationError or decoded,
// never anything else (run under the sanitizers by the fuzz build).
TEST(KeyedStateSnapshotTest, RandomlyDamagedBytesNeverMisbehave) {
  const std::string group = one_group_of(keys_of_one_group(3));
  std::mt19937 random(7);
  for (int i = 0; i < 20'000; ++i) {
    std::string damaged = group;
    const int flips = 1 + static_cast<int>(random() % 3);
    for (int f = 0; f < flips; ++f) {
      damaged[random() % damaged.size()] = static_cast<char>(random());
    }
    TypedKeyedStateBackend<long long> backend;
    try {
      Handles state(backend);
      backend.restore(damaged);
      Handles late(backend);  // already registered: nothing pending remains
    } catch (const SerializationError&) {
    }
  }
}

// A key that key_by can route (it hashes as a string) but that cannot be
// written to a checkpoint.
struct Name {
  std::string text;
  operator std::string_view() const { return text; }
  bool operator==(const Name&) const = default;
};
static_assert(!Serializable<Name>);

TEST(KeyedStateSnapshotTest, NonSerializableKeyWorksUntilASnapshotIsTaken) {
  TypedKeyedStateBackend<Name> backend;
  ValueState<int> count(backend, "count");
  const Name ann{"ann"};
  const Name bob{"bob"};
  for (const Name* key : {&ann, &bob, &ann}) {
    backend.set_current_key(*key);
    ++count.get_or_init(0);
  }
  backend.set_current_key(ann);
  EXPECT_EQ(count.value(), 2);

  std::map<int, std::string> groups;
  try {
    backend.snapshot(kMaxParallelism, groups);
    FAIL() << "expected sage::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("not Serializable"), std::string::npos) << message;
    EXPECT_NE(message.find("SAGE_FIELDS"), std::string::npos) << message;
    EXPECT_NE(message.find("Serializer"), std::string::npos) << message;
  }
  EXPECT_TRUE(groups.empty());
}

}  // namespace
}  // namespace sage
