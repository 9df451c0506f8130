#include "sage/rag/collection.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "sage/rag/hash_embedder.hpp"
#include "sage/rag/merge_hits.hpp"
#include "sage/rag/openai.hpp"
#include "sage/serialization.hpp"

namespace sage::rag {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "sage-rag-collection";
constexpr const char* kManifest = "manifest.json";
constexpr const char* kChunks = "chunks.bin";

const char* index_file(IndexKind kind) {
  return kind == IndexKind::hnsw ? "index.hnsw" : "index.exact";
}
const char* kind_name(IndexKind kind) { return kind == IndexKind::hnsw ? "hnsw" : "exact"; }
std::string shard_name(int shard) { return "shard-" + std::to_string(shard); }

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + file.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& file, std::string_view bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error("cannot write " + file.string());
}

std::string sha256_hex(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + file.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xF]);
  }
  return hex;
}

json describe_file(const fs::path& file) {
  return json{{"bytes", fs::file_size(file)}, {"sha256", sha256_hex(file)}};
}

// Moves the finished shard `from` to `to` in one step, exchanging it with an
// earlier shard there, whose files are then removed.
void publish(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
  if (errno == EEXIST &&
      ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(from);
    return;
  }
  throw std::runtime_error("cannot rename " + from.string() + " to " + to.string() + ": " +
                           std::strerror(errno));
}

// Reading one collection: every problem becomes one line naming the path.
class CollectionReader {
 public:
  CollectionReader(fs::path directory, const CollectionRequirements& requirements)
      : directory_(std::move(directory)), requirements_(requirements) {}

  [[noreturn]] void fail(const std::string& problem) const {
    throw CollectionError("collection " + directory_.string() + ": " + problem);
  }

  json manifest(int shard) const {
    const fs::path file = directory_ / shard_name(shard) / kManifest;
    if (!fs::exists(file)) {
      fail(shard_name(shard) + " has no " + kManifest +
           " (the collection is incomplete: its IndexWriter did not finish); build it again");
    }
    try {
      json manifest = json::parse(read_file(file));
      if (manifest.value("format", "") != kFormat)
        fail(file.string() + " is not a sage::rag manifest");
      const int version = manifest.at("format_version").get<int>();
      if (version != Collection::kFormatVersion) {
        fail(shard_name(shard) + " has format version " + std::to_string(version) +
             ", this sage::rag reads version " + std::to_string(Collection::kFormatVersion) +
             "; build the collection again");
      }
      (void)manifest.at("embedder").at("name").get<std::string>();
      (void)manifest.at("embedder").at("dim").get<int>();
      (void)manifest.at("shards").get<int>();
      (void)manifest.at("build").get<std::string>();
      (void)manifest.at("index").get<std::string>();
      return manifest;
    } catch (const json::exception& e) {
      fail(shard_name(shard) + "/" + kManifest + " is corrupt (" + e.what() +
           "); build the collection again");
    }
  }

  void check_embedder(const json& manifest) const {
    const auto name = manifest["embedder"]["name"].get<std::string>();
    const int dim = manifest["embedder"]["dim"].get<int>();
    const std::string built = "embedder '" + name + "' of dimension " + std::to_string(dim);
    if ((!requirements_.embedder.empty() && requirements_.embedder != name) ||
        (requirements_.dim != 0 && requirements_.dim != dim)) {
      fail("it was built by " + built + ", but embedder '" +
           (requirements_.embedder.empty() ? name : requirements_.embedder) + "' of dimension " +
           std::to_string(requirements_.dim != 0 ? requirements_.dim : dim) +
           " is required; build it with that embedder or change the requirement");
    }
    if (name != HashEmbedder::kName && !name.starts_with(OpenAIEmbedder::kNamePrefix)) {
      fail("it was built by " + built + ", which sage::rag cannot run to embed queries");
    }
  }

  void verify_file(int shard, const json& manifest, const char* name) const {
    const fs::path file = directory_ / shard_name(shard) / name;
    const json* described = nullptr;
    if (manifest.contains("files") && manifest["files"].contains(name))
      described = &manifest["files"][name];
    if (described == nullptr) fail(shard_name(shard) + "/" + kManifest + " does not list " + name);
    if (!fs::exists(file))
      fail(shard_name(shard) + "/" + name + " is missing; build the collection again");
    if (fs::file_size(file) != described->value("bytes", std::uintmax_t{0}) ||
        sha256_hex(file) != described->value("sha256", "")) {
      fail(shard_name(shard) + "/" + name +
           " is corrupt (its size or SHA-256 differs from the manifest); build the collection "
           "again");
    }
  }

  const fs::path& directory() const { return directory_; }

 private:
  fs::path directory_;
  CollectionRequirements requirements_;
};

}  // namespace

void write_shard(const fs::path& directory, const ShardContents& contents) {
  const fs::path target = directory / shard_name(contents.shard);
  const fs::path staging =
      directory / ("." + shard_name(contents.shard) + ".tmp-" + std::to_string(::getpid()));
  try {
    fs::create_directories(directory);
    fs::remove_all(staging);
    fs::create_directory(staging);
    const char* index_name = index_file(contents.kind);
    contents.index->save(staging / index_name);
    write_file(staging / kChunks, serialize(*contents.chunks));
    const json manifest{{"format", kFormat},
                        {"format_version", Collection::kFormatVersion},
                        {"embedder", {{"name", contents.embedder}, {"dim", contents.dim}}},
                        {"index", kind_name(contents.kind)},
                        {"shard", contents.shard},
                        {"shards", contents.shards},
                        {"build", contents.build},
                        {"chunks", contents.chunks->size()},
                        {"files",
                         {{index_name, describe_file(staging / index_name)},
                          {kChunks, describe_file(staging / kChunks)}}}};
    write_file(staging / kManifest, manifest.dump(2) + "\n");
    publish(staging, target);
    if (contents.shard == 0) {
      for (int stale = contents.shards; fs::exists(directory / shard_name(stale)); ++stale) {
        fs::remove_all(directory / shard_name(stale));
      }
    }
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw CollectionError("cannot write " + target.string() + ": " + e.what());
  }
}

Collection Collection::open(const fs::path& directory, int ef,
                            const CollectionRequirements& requirements,
                            const ShardSelection& selection) {
  const CollectionReader reader(directory, requirements);
  if (!fs::is_directory(directory)) {
    reader.fail("no such directory; build the collection with IndexWriter first, or fix the path");
  }
  const json first = reader.manifest(0);
  reader.check_embedder(first);
  const int shards = first["shards"].get<int>();
  if (shards < 1)
    reader.fail("shard-0/manifest.json says the collection has " + std::to_string(shards) +
                " shards");

  Collection collection;
  collection.embedder_ = first["embedder"]["name"].get<std::string>();
  collection.dim_ = first["embedder"]["dim"].get<int>();
  for (int shard = 0; shard < shards; ++shard) {
    const json manifest = shard == 0 ? first : reader.manifest(shard);
    if (manifest["build"] != first["build"]) {
      reader.fail(shard_name(shard) + " belongs to another build (job " +
                  manifest["build"].get<std::string>() + ") than shard-0 (job " +
                  first["build"].get<std::string>() +
                  "), whose IndexWriter did not finish; build the collection again");
    }
    for (const char* field : {"shards", "embedder"}) {
      if (manifest[field] != first[field]) {
        reader.fail(shard_name(shard) + "/manifest.json says " + field + " " +
                    manifest[field].dump() + ", shard-0's says " + first[field].dump() +
                    ", though both come from build " + first["build"].get<std::string>() +
                    "; the files were changed after the build: build the collection again");
      }
    }
    if (shard % selection.instances != selection.instance) continue;
    const std::string kind = manifest["index"].get<std::string>();
    if (kind != "hnsw" && kind != "exact")
      reader.fail(shard_name(shard) + " has an unknown index kind '" + kind + "'");
    const IndexKind index_kind = kind == "hnsw" ? IndexKind::hnsw : IndexKind::exact;
    reader.verify_file(shard, manifest, index_file(index_kind));
    reader.verify_file(shard, manifest, kChunks);
    const fs::path shard_directory = directory / shard_name(shard);
    Shard loaded;
    try {
      loaded.chunks = deserialize<std::vector<Chunk>>(read_file(shard_directory / kChunks));
      if (index_kind == IndexKind::hnsw) {
        loaded.index =
            HnswIndex::load(shard_directory / index_file(index_kind), collection.dim_, ef);
      } else {
        loaded.index = ExactIndex::load(shard_directory / index_file(index_kind), collection.dim_);
      }
    } catch (const std::exception& e) {
      reader.fail(shard_name(shard) + " cannot be loaded (" + e.what() +
                  "); build the collection again");
    }
    if (loaded.index->size() != loaded.chunks.size()) {
      reader.fail(shard_name(shard) + " has " + std::to_string(loaded.index->size()) +
                  " vectors but " + std::to_string(loaded.chunks.size()) +
                  " chunks; build the collection again");
    }
    collection.shards_.push_back(std::move(loaded));
  }
  return collection;
}

std::vector<Hit> Collection::search(std::span<const float> query, std::size_t k) const {
  std::vector<Hit> hits;
  for (const Shard& shard : shards_) {
    for (const Neighbor& neighbor : shard.index->search(query, k)) {
      const Chunk& chunk = shard.chunks.at(neighbor.label);
      hits.push_back(Hit{.id = chunk.id, .text = chunk.text, .score = neighbor.score});
    }
  }
  return top_hits(std::move(hits), k);
}

std::vector<float> Collection::embed(std::string_view text) const {
  if (embedder_ != HashEmbedder::kName) {
    throw CollectionError("collection of embedder '" + embedder_ +
                          "': its queries are embedded over HTTP (OpenAIQueryEmbedder), not by "
                          "Collection::embed");
  }
  return hash_embed(text, dim_);
}

std::size_t Collection::size() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) total += shard.chunks.size();
  return total;
}

}  // namespace sage::rag
