"""sage.middleware.operators.rag: SAGE's RAG snippet, run by sage::rag's C++ operators against
the in-tree OpenAI-compatible test server (started on a port the system picks), with exact
results; SAGE's record shapes; and one-line errors for a missing collection, an unreachable
endpoint and a record of the wrong shape."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import sage
from sage.common.core import SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment
from sage.middleware.operators.rag import (
    ChromaRetrieverOperator,
    OpenAIGeneratorOperator,
    QAPromptor,
    build_collection,
    collection_path,
)

from test_remote import cluster  # noqa: F401  (a head and a worker on free ports)

out = []
lock = threading.Lock()

TOPICS = 40


def doc_text(i):
    return f"topic{i} alpha{i} beta{i} gamma{i} delta{i} epsilon{i} zeta{i}"


def question(i):
    return f"what about topic{i} alpha{i}"


class ResponseSink(SinkFunction):
    def execute(self, data):
        with lock:
            out.append(data)


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGE_STATE_DIR", str(tmp_path))
    out.clear()
    return tmp_path


@contextlib.contextmanager
def openai_test_server(*options):
    """The in-tree OpenAI-compatible test server on a free port; yields its base URL."""
    path = os.environ.get("SAGE_OPENAI_TEST_SERVER")
    if not path:
        pytest.fail("SAGE_OPENAI_TEST_SERVER is not set: run the Python tests through ctest")
    process = subprocess.Popen([path, "--port", "0", *options], stdout=subprocess.PIPE,
                               text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def server(monkeypatch):
    with openai_test_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        yield url


@pytest.fixture
def docs(state_dir):
    chunks = build_collection("docs", [(f"d{i}", doc_text(i)) for i in range(TOPICS)])
    assert chunks == TOPICS
    return collection_path("docs")


def test_collection_names_resolve_under_the_state_directory(state_dir, monkeypatch):
    assert collection_path("docs") == str(state_dir / "collections" / "docs")
    assert collection_path("./x/y") == os.path.abspath("x/y")
    assert collection_path("/abs/coll") == "/abs/coll"
    monkeypatch.setenv("SAGE_COLLECTIONS_DIR", str(state_dir / "shared"))
    assert collection_path("docs") == str(state_dir / "shared" / "docs")


def test_sage_rag_snippet_answers_every_query_once_from_its_own_chunk(server, docs):
    env = LocalEnvironment("rag")
    (
        env.from_batch([question(i) for i in range(TOPICS)])
        .map(ChromaRetrieverOperator, collection="docs", top_k=5, parallelism=4)
        .map(QAPromptor, parallelism=4)
        .map(OpenAIGeneratorOperator, model="gpt-4", parallelism=8)
        .sink(ResponseSink)
    )
    result = env.execute()
    assert sorted(r["query"] for r in out) == sorted(question(i) for i in range(TOPICS))
    for r in out:
        i = int(r["query"].split("topic")[1].split()[0])
        assert r["retrieval_results"][0]["id"] == f"d{i}#0"
        assert r["results"][0] == doc_text(i)
        assert len(r["results"]) == 5
        scores = [h["score"] for h in r["retrieval_results"]]
        assert scores == sorted(scores, reverse=True)
        first_words = " ".join(doc_text(i).split()[:6])
        assert r["generated"] == f'Answer to "{question(i)}" from "{first_words}".'
        assert r["completion_tokens"] == len(r["generated"].split())
        assert r["prompt_tokens"] > 0 and r["latency_s"] > 0
    generators = [i for i in result.instances if i.operator_name == "OpenAIGeneratorOperator"]
    assert len(generators) == 8
    assert sum(i.records_out for i in generators) == TOPICS
    assert sum(i.counters.get("openai_requests", 0) for i in generators) == TOPICS


def test_objects_and_sage_tuple_shapes(server, docs):
    env = LocalEnvironment("rag-objects")
    (
        env.from_collection([(question(3), ["first text", "second text"]), question(5)])
        .map(QAPromptor())
        .map(OpenAIGeneratorOperator(model="m", max_in_flight=4))
        .sink(ResponseSink)
    )
    env.execute()
    # SAGE's shapes: (query, texts) and a string in, (query, answer) out; the server quotes the
    # first retrieved text (none for the bare string).
    assert sorted(out) == [
        (question(3), f'Answer to "{question(3)}" from "first text".'),
        (question(5), f'Answer to "{question(5)}" from "".'),
    ]


def test_streamed_answers_equal_whole_ones_with_time_to_first_token(state_dir):
    prompts = [[{"query": question(i)}, [{"role": "user", "content": f"Question: {question(i)}"}]]
               for i in range(6)]
    answers = {}
    with openai_test_server("--token-delay-ms", "20") as url:
        for stream in (False, True):
            out.clear()
            env = LocalEnvironment(f"rag-stream-{stream}")
            (
                env.from_collection(prompts)
                .map(OpenAIGeneratorOperator(model="m", base_url=url, stream=stream,
                                             stream_idle_timeout=5.0))
                .sink(ResponseSink)
            )
            env.execute()
            answers[stream] = sorted(out, key=lambda r: r["query"])
    for whole, streamed in zip(answers[False], answers[True]):
        assert streamed["generated"] == whole["generated"]
        assert streamed["generated"] == f'Answer to "{whole["query"]}" from "".'
        assert streamed["completion_tokens"] == whole["completion_tokens"] > 0
        assert streamed["prompt_tokens"] == whole["prompt_tokens"] > 0
        # Words come 20 ms apart: the first long before the last.
        assert streamed["time_to_first_token_s"] < streamed["latency_s"] - 0.1
        assert whole["time_to_first_token_s"] == whole["latency_s"]
        assert "error" not in streamed
    assert all(set(original) == {"query"} for original, _ in prompts), "inputs left unchanged"


def test_a_failed_call_goes_to_the_error_output_instead_of_failing_the_job(state_dir):
    with openai_test_server("--api-key", "the-right-key") as url:
        env = LocalEnvironment("rag-errors")
        (
            env.from_collection([{"query": "q1"}, ("q2", ["some text"])])
            .map(QAPromptor)
            .map(OpenAIGeneratorOperator(model="m", base_url=url, api_key="sk-wrong-secret",
                                         on_failure="emit_error"))
            .sink(ResponseSink)
        )
        env.execute()
    [as_dict] = [r for r in out if isinstance(r, dict)]
    [as_tuple] = [r for r in out if isinstance(r, tuple)]
    assert as_dict["query"] == "q1" and as_dict["generated"] == ""
    assert as_dict["error_status"] == 401
    assert f"POST {url}/chat/completions failed: HTTP 401: Incorrect API key" in as_dict["error"]
    assert "sk-wrong" not in as_dict["error"] and "\n" not in as_dict["error"]
    original, text, error = as_tuple
    assert original == "q2" and text == "" and "HTTP 401" in error
    with pytest.raises(sage.SageError, match="on_failure is 'skip'"):
        LocalEnvironment("bad").from_collection(["q"]).map(
            OpenAIGeneratorOperator(model="m", on_failure="skip"))


def test_a_hung_stream_ends_at_the_idle_timeout(state_dir):
    # Every answer stops after half its words; the server would hold it for 60 s.
    with openai_test_server("--rate-hang", "1") as url:
        env = LocalEnvironment("rag-hung")
        (
            env.from_collection([{"query": "q"}])
            .map(QAPromptor)
            .map(OpenAIGeneratorOperator(model="m", base_url=url, stream=True,
                                         stream_idle_timeout=0.3, max_retries=0,
                                         on_failure="emit_error"))
            .sink(ResponseSink)
        )
        env.execute()
    [record] = out
    assert record["generated"] == "" and record["error_status"] == 0
    assert record["error"].startswith(f"OpenAIGenerator: POST {url}/chat/completions failed: "
                                      "the stream sent nothing for stream_idle_timeout (300 ms)")
    assert record["latency_s"] < 10


def test_promptor_makes_sage_qa_messages(docs):
    env = LocalEnvironment("prompt")
    (
        env.from_collection([{"query": question(7), "id": 7}])
        .map(ChromaRetrieverOperator(collection=docs, top_k=2))
        .map(QAPromptor)
        .sink(ResponseSink)
    )
    env.execute()
    [(original, messages)] = out
    assert original["id"] == 7 and original["query"] == question(7)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == f"Question: {question(7)}"
    assert messages[0]["content"].startswith("Instruction:\nYou are an intelligent assistant")
    assert f"Relevant corpus for the current question:\n{doc_text(7)}" in messages[0]["content"]


def test_a_missing_collection_fails_the_job_with_one_line(state_dir):
    env = LocalEnvironment("missing")
    env.from_collection(["q"]).map(ChromaRetrieverOperator, collection="nowhere").sink(ResponseSink)
    with pytest.raises(sage.JobFailedError) as failure:
        env.execute()
    message = str(failure.value)
    assert "no such directory" in message and "nowhere" in message
    assert "build the collection" in message and "\n" not in message


def test_an_unreachable_endpoint_fails_the_job_naming_it(docs):
    with socket.socket() as s:  # bound, never listening: refuses connections while held
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        env = LocalEnvironment("unreachable")
        (
            env.from_collection([question(1)])
            .map(ChromaRetrieverOperator, collection="docs")
            .map(QAPromptor)
            .map(OpenAIGeneratorOperator, model="m", base_url=f"http://127.0.0.1:{port}/v1",
                 max_retries=0)
            .sink(ResponseSink)
        )
        with pytest.raises(sage.JobFailedError) as failure:
            env.execute()
    message = str(failure.value)
    assert f"POST http://127.0.0.1:{port}/v1/chat/completions failed" in message
    assert "\n" not in message
    assert out == []


def test_bad_records_and_options_are_refused_clearly(docs):
    env = LocalEnvironment("bad")
    env.from_collection([42]).map(ChromaRetrieverOperator, collection="docs").sink(ResponseSink)
    with pytest.raises(sage.JobFailedError, match="a record must be a query string or a dict"):
        env.execute()
    with pytest.raises(ValueError, match="unknown options"):
        OpenAIGeneratorOperator(model="m", max_inflight=3)
    with pytest.raises(ValueError, match="no collection"):
        ChromaRetrieverOperator()
    with pytest.raises(sage.SageError, match="top_k"):
        LocalEnvironment("k").from_collection(["q"]).map(
            ChromaRetrieverOperator, collection="docs", top_k=0
        )


RAG_JOB = r'''
import json, os, sys
from sage.common.core import SinkFunction, SourceFunction, StopSignal
from sage.kernel.api.remote_environment import RemoteEnvironment
from sage.middleware.operators.rag import ChromaRetrieverOperator, OpenAIGeneratorOperator

COLLECTION, N = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("OPENAI_BASE_URL", sys.argv[3])  # task processes get it from the job's args


class QuerySource(SourceFunction):
    def __init__(self):
        super().__init__()
        self.i = 0

    def execute(self):
        if self.i >= N:
            return StopSignal("done")
        self.i += 1
        return f"what about topic{self.i - 1} alpha{self.i - 1}"


class ResponseSink(SinkFunction):
    def execute(self, data):
        hit = data["retrieval_results"][0]["id"]
        # One write per line: sinks of one process share stdout.
        sys.stdout.write("ANSWER " + json.dumps([data["query"], hit, data["generated"]]) + "\n")
        sys.stdout.flush()


# SAGE's snippet, as the page writes it.
env = RemoteEnvironment("rag-cluster")
env.from_source(QuerySource()).map(ChromaRetrieverOperator(collection=COLLECTION, top_k=5), parallelism=4).map(OpenAIGeneratorOperator(model="gpt-4"), parallelism=8).sink(ResponseSink())
env.submit(autostop=True)
'''


@pytest.mark.parametrize("name", ["path", "bare name"])
def test_sage_rag_snippet_runs_on_a_cluster(server, cluster, tmp_path, monkeypatch, name):
    # The submitter keeps its collections in a state directory of its own, not the cluster's:
    # a bare name must still mean that directory in the workers' task processes.
    client_dir = tmp_path / "client"
    monkeypatch.setenv("SAGE_STATE_DIR", str(client_dir))
    assert build_collection("docs", [(f"d{i}", doc_text(i)) for i in range(TOPICS)]) == TOPICS
    collection = collection_path("docs") if name == "path" else "docs"
    head = json.loads((tmp_path / "head.json").read_text())
    env = dict(cluster, SAGE_STATE_DIR=str(client_dir), SAGE_ADDRESS=head["jobmanager"],
               SAGE_TOKEN=(tmp_path / "token").read_text().strip())
    script = tmp_path / "job" / "rag_job.py"
    script.parent.mkdir()
    script.write_text(RAG_JOB)
    run = subprocess.run([sys.executable, str(script), collection, str(TOPICS), server], env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    # Lines come as "(pid=..., node=...) ANSWER [...]" from the task processes.
    answers = [json.loads(line.split("ANSWER ", 1)[1]) for line in run.stdout.splitlines()
               if "ANSWER " in line]
    assert sorted(q for q, _, _ in answers) == sorted(question(i) for i in range(TOPICS))
    for query, hit, generated in answers:
        i = int(query.split("topic")[1].split()[0])
        assert hit == f"d{i}#0"
        first_words = " ".join(doc_text(i).split()[:6])
        assert generated == f'Answer to "{query}" from "{first_words}".'
