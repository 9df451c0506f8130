// sage::rag (link sage::rag): the operators of a RAG dataflow, from documents
// to answers: Chunker, HashEmbedder, OpenAIEmbedder, IndexWriter and
// collections on disk, Retriever (sharded with MergeHits), Promptor,
// OpenAIGenerator, evaluators, and the records between them (docs/rag.md).
#pragma once

#include "sage/rag/chunker.hpp"
#include "sage/rag/collection.hpp"
#include "sage/rag/evaluate.hpp"
#include "sage/rag/hash_embedder.hpp"
#include "sage/rag/index_writer.hpp"
#include "sage/rag/merge_hits.hpp"
#include "sage/rag/openai.hpp"
#include "sage/rag/promptor.hpp"
#include "sage/rag/records.hpp"
#include "sage/rag/retriever.hpp"
#include "sage/rag/vector_index.hpp"
