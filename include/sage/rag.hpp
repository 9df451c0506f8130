// sage::rag (link sage::rag): the operators of a RAG dataflow: Chunker,
// HashEmbedder, and the records between them.
#pragma once

#include "sage/rag/chunker.hpp"
#include "sage/rag/hash_embedder.hpp"
#include "sage/rag/records.hpp"
