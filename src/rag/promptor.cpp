#include "sage/rag/promptor.hpp"

namespace sage::rag {

Prompt Promptor::map(const Retrieved& retrieved) const {
  std::string system = config_.instruction;
  if (!retrieved.hits.empty()) {
    system += "\nRelevant corpus for the current question:";
    for (const Hit& hit : retrieved.hits) system += "\n" + hit.text;
  }
  return Prompt{.query = retrieved.query,
                .hits = retrieved.hits,
                .messages = {Message{.role = "system", .content = std::move(system)},
                             Message{.role = "user", .content = "Question: " + retrieved.query}}};
}

}  // namespace sage::rag
