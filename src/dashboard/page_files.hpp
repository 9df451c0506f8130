// The dashboard page's static files (src/dashboard/page/), embedded in the
// binary at build time by cmake/EmbedPage.cmake: served without the token,
// they hold no cluster data, only the code that fetches it with the token.
#pragma once

#include <span>
#include <string_view>

namespace sage::dashboard {

struct PageFile {
  const char* path;          // "/" for index.html, else "/<file name>"
  const char* content_type;  // with charset for text
  std::string_view body;
};

std::span<const PageFile> page_files();

}  // namespace sage::dashboard
