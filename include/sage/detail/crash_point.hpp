// Crash points: places in the checkpoint protocol where a test makes a
// process exit at once, as kill -9 would, to see what recovery makes of it.
// Armed by SAGE_CRASH_POINT=WHERE:CHECKPOINT:INSTANCE in the environment of
// the process (read at the first check), e.g. "after-store:3:counter[2/3]":
//   after-store  a task's snapshot of CHECKPOINT is stored, not yet
//                acknowledged to the coordinator (INSTANCE: the task's head
//                instance);
//   in-commit    write_text instance INSTANCE has committed the first file
//                that CHECKPOINT's completion commits, not yet the rest (nor
//                synced its directory).
// Unarmed (the variable unset), a check costs a load and a compare.
#pragma once

#include <cstdint>
#include <string_view>

namespace sage::detail {

void crash_point(std::string_view where, std::uint64_t checkpoint, std::string_view instance);

}  // namespace sage::detail
