// One task's part of a checkpoint: the snapshot of every operator of its
// chain, head first, as bytes on storage. The bytes open with a magic and a
// version, so that a file of anything else is refused with a clear error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sage/detail/batch.hpp"
#include "sage/error.hpp"
#include "sage/serialization.hpp"

namespace sage::checkpoint {

struct TaskSnapshot {
  std::vector<detail::OperatorSnapshot> operators;  // the chain's, head first
  SAGE_FIELDS(operators)
};

// Version 2 added OperatorSnapshot::pending_calls.
inline constexpr std::string_view kTaskSnapshotMagic = "sage-task-snapshot-2\n";

// `buffer` lends its memory (a task passes its last snapshot's, so that
// periodic checkpoints do not fault in fresh pages each time); its contents
// are replaced.
inline std::string encode(const TaskSnapshot& snapshot, std::string buffer = {}) {
  // Sized first: a large keyed state is copied once, not once per growth.
  std::size_t bytes = kTaskSnapshotMagic.size() + 16;
  for (const auto& op : snapshot.operators) {
    bytes += 16 + (op.function_state ? op.function_state->size() : 0) +
             (op.pending_calls ? op.pending_calls->size() : 0);
    for (const auto& [group, state] : op.key_groups) bytes += 16 + state.size();
  }
  buffer.clear();
  buffer.reserve(bytes);
  buffer.append(kTaskSnapshotMagic);
  Writer writer{std::move(buffer)};
  writer.write(snapshot);
  return writer.take();
}

// Throws SerializationError for bytes that are not a task snapshot.
inline TaskSnapshot decode_task_snapshot(std::string_view bytes) {
  if (!bytes.starts_with(kTaskSnapshotMagic)) {
    throw SerializationError("not a sage task snapshot (or one of another version)");
  }
  Reader reader(bytes.substr(kTaskSnapshotMagic.size()));
  auto snapshot = reader.read<TaskSnapshot>();
  if (!reader.at_end()) throw SerializationError("a task snapshot with trailing bytes");
  return snapshot;
}

}  // namespace sage::checkpoint
