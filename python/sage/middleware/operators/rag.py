"""SAGE's RAG operators, run by sage::rag's C++ operators (docs/rag.md, docs/python.md "RAG").

They go into ``map`` as SAGE's do, as a class with its arguments or as an object::

    (env.from_batch(questions)
        .map(ChromaRetrieverOperator, collection="docs", top_k=5, parallelism=4)
        .map(QAPromptor, parallelism=4)
        .map(OpenAIGeneratorOperator, model="gpt-4", parallelism=8)
        .sink(ResponseSink))

The search, the prompt and the HTTP calls run in C++: no Python code runs per record, and each
generator instance keeps up to ``max_in_flight`` requests open. Records are SAGE's shapes:

- ChromaRetrieverOperator: a query string, or a dict with "query" (or "question") ->
  a dict (a copy of the input dict, or a new one) with "query", "results" (the texts, best
  first) and "retrieval_results" ([{"id", "text", "score"}], best first).
- QAPromptor: that dict, a (query, [texts]) tuple or a string -> ``[original, messages]``:
  messages are SAGE's QA template, ``[{"role": "system", ...}, {"role": "user", "content":
  "Question: <query>"}]``; original is the input dict, or the query for a tuple or a string.
- OpenAIGeneratorOperator: ``[original, messages]``, or the retriever's dict directly (SAGE's
  snippet without a promptor: it then makes QAPromptor's messages) -> for a dict original, a
  copy with "generated" (the answer), "prompt_tokens", "completion_tokens", "latency_s" and
  "time_to_first_token_s" (with ``on_failure="emit_error"`` also "error" and "error_status");
  otherwise ``(original, answer)`` (``(original, answer, error)`` with "emit_error").

A collection is named by a path (anything with a "/" in it, or starting with "."), or by a
bare name, looked up in ``collections_dir()``: ``$SAGE_COLLECTIONS_DIR``, else
``<state dir>/collections`` with the state directory ``$SAGE_STATE_DIR`` or ``~/.sage`` (where
``build_collection`` puts a collection of that name). A job submitted with RemoteEnvironment
takes the submitter's ``collections_dir()`` to its task processes, so a bare name means the same
directory there (on a cluster of several machines it must be one every node can read).
"""

import os

from sage import _native

__all__ = [
    "ChromaRetrieverOperator",
    "QAPromptor",
    "OpenAIGeneratorOperator",
    "build_collection",
    "collection_path",
    "collections_dir",
]


def collections_dir():
    """Where bare collection names live: ``$SAGE_COLLECTIONS_DIR``, else
    ``<state dir>/collections`` (``$SAGE_STATE_DIR``, else ``~/.sage``), as an absolute path."""
    explicit = os.environ.get("SAGE_COLLECTIONS_DIR")
    if explicit:
        return os.path.abspath(explicit)
    state_dir = os.environ.get("SAGE_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".sage")
    return os.path.join(os.path.abspath(state_dir), "collections")


def collection_path(collection):
    """The directory of a collection: a path as it is, a bare name under ``collections_dir()``."""
    collection = os.fspath(collection)
    if not collection:
        raise ValueError("collection: empty; give a collection's name or its directory")
    if os.sep in collection or collection.startswith("."):
        return os.path.abspath(collection)
    return os.path.join(collections_dir(), collection)


def build_collection(collection, documents, chunk_size=512, overlap=128, dim=384, shards=1,
                     index="hnsw"):
    """Builds (or rebuilds) a collection with sage's Chunker, HashEmbedder and IndexWriter and
    returns the number of chunks. ``documents``: texts (their ids are "doc-0", "doc-1", ...),
    (id, text) pairs or dicts with "id" and "text"; a chunk's id is "<doc id>#<index>".
    ``index``: "hnsw", or "exact" (a full scan, for small collections)."""
    if index not in ("hnsw", "exact"):
        raise ValueError(f"build_collection: index {index!r}; use 'hnsw' or 'exact'")
    pairs = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            pairs.append((f"doc-{i}", doc))
        elif isinstance(doc, dict):
            pairs.append((str(doc["id"]), str(doc["text"])))
        else:
            doc_id, text = doc
            pairs.append((str(doc_id), str(text)))
    path = collection_path(collection)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return _native.rag_build_collection(path, pairs, int(chunk_size), int(overlap), int(dim),
                                        int(shards), index == "exact")


class _NativeOperator:
    """An operator that DataStream.map runs in C++ (sage_native_operator)."""

    def execute(self, data):
        raise TypeError(
            f"{type(self).__name__} runs inside a job: put it in a stream with .map(...)"
        )


class ChromaRetrieverOperator(_NativeOperator):
    """The ``top_k`` chunks of a sage collection nearest a query, best first (sage::rag's
    Retriever, HNSW search with breadth ``ef``)."""

    def __init__(self, collection=None, top_k=5, ef=200, config=None):
        if config:  # SAGE's config dict: {"top_k": ..., "collection": ...}
            collection = config.get("collection", config.get("collection_name", collection))
            top_k = config.get("top_k", top_k)
        if collection is None:
            raise ValueError(
                "ChromaRetrieverOperator: no collection; give collection=<name or directory>"
            )
        self.collection = collection_path(collection)
        self.top_k = int(top_k)
        self.ef = int(ef)

    def sage_native_operator(self):
        return _native.rag_retriever(self.collection, self.top_k, self.ef)


class QAPromptor(_NativeOperator):
    """SAGE's QA prompt (sage::rag's Promptor): a system message with the instruction and the
    retrieved texts, a user message "Question: <query>". ``config`` may give "instruction"."""

    def __init__(self, config=None, instruction=None):
        config = dict(config or {})
        unknown = sorted(set(config) - {"instruction"})
        if unknown:
            raise ValueError(
                f"QAPromptor: config keys {unknown} are not supported; the template is SAGE's "
                f"QA template, and 'instruction' replaces its instruction"
            )
        self.instruction = instruction if instruction is not None else config.get("instruction")

    def sage_native_operator(self):
        return _native.rag_promptor(self.instruction)


class OpenAIGeneratorOperator(_NativeOperator):
    """Answers over ``POST <base_url>/chat/completions`` (sage::rag's OpenAIGenerator, an
    asynchronous map: up to ``max_in_flight`` requests open per instance, retries with backoff
    honouring Retry-After, a per-request timeout). ``base_url`` and ``api_key`` default to
    $OPENAI_BASE_URL (else https://api.openai.com/v1) and $OPENAI_API_KEY. Times are in
    seconds. ``stream=True`` reads the answer as server-sent events (same answer, plus
    "time_to_first_token_s"; ``stream_idle_timeout`` bounds a silent stream).
    ``on_failure="emit_error"`` sends a call that still fails after its retries on as a
    record with "error" (one line naming the endpoint, the status and the server's message)
    and "error_status" instead of failing the job (tuples become (original, text, error))."""

    _FIELDS = (
        "base_url", "api_key", "max_in_flight", "max_retries", "requests_per_minute",
        "tokens_per_minute", "backoff_initial", "backoff_max", "request_timeout",
        "total_timeout", "ordered", "max_tokens", "temperature", "stream",
        "stream_idle_timeout", "max_response_bytes", "on_failure",
    )

    def __init__(self, model="gpt-4", config=None, **options):
        fields = dict(config or {})
        fields.update(options)
        unknown = sorted(set(fields) - set(self._FIELDS) - {"model"})
        if unknown:
            raise ValueError(
                f"OpenAIGeneratorOperator: unknown options {unknown}; the options are "
                f"{', '.join(self._FIELDS)}"
            )
        fields.setdefault("model", model)
        self.fields = fields

    def sage_native_operator(self):
        return _native.rag_generator(self.fields)
