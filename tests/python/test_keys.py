"""key_by: Python keys hash like sage::stable_hash of the matching C++ keys, and route by it."""

import os
import sys
import subprocess
import threading

import pytest

import sage
from sage import _native
from sage.common.core import KeyByFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment

# The Python keys matching the C++ keys of stable_hash_vectors.cpp.
KEYS = {
    "int_0": 0,
    "int_42": 42,
    "int_minus_7": -7,
    "int_max": 2**63 - 1,
    "str_sage": "sage",
    "str_empty": "",
    "str_utf8": "clé",
    "bytes_00ff": b"\x00\xff",
    "tuple_1_a": (1, "a"),
    "tuple_nested": ("u", (2, 3)),
    "tuple_empty": (),
}


def test_golden_values_of_the_cpp_stable_hash():
    # Pinned in tests/api/stable_hash_test.cpp.
    assert _native.stable_key_hash(0) == 0x0
    assert _native.stable_key_hash(42) == 0x810879608E4259CC
    assert _native.stable_key_hash("sage") == 0xB892846077FF9503
    assert _native.stable_key_hash("") == 0x6393D51C06C618DC
    assert _native.stable_key_hash(True) == _native.stable_key_hash(1)


def cpp_vectors():
    helper = os.environ.get("SAGE_STABLE_HASH_VECTORS")
    if not helper:
        pytest.fail(
            "SAGE_STABLE_HASH_VECTORS is not set: run the Python tests through ctest "
            "(ctest --test-dir build -R python), which points it at build/tests/stable_hash_vectors"
        )
    out = subprocess.run([helper], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def test_python_keys_hash_like_the_matching_cpp_keys():
    vectors = cpp_vectors()
    assert set(vectors) == set(KEYS)
    for name, key in KEYS.items():
        assert _native.stable_key_hash(key) == vectors[name], name


def test_hash_does_not_depend_on_python_hash_seed():
    code = "from sage import _native; print(_native.stable_key_hash(('user', 7, b'x')))"
    runs = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        runs.add(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                capture_output=True, text=True).stdout)
    assert len(runs) == 1


@pytest.mark.parametrize(
    "key, type_name",
    [(1.5, "float"), (None, "NoneType"), ([1], "list"), ({"a": 1}, "dict"), ((1, 2.0), "float")],
)
def test_other_key_types_are_refused_with_the_fix(key, type_name):
    with pytest.raises(TypeError, match=f"key of type '{type_name}'.*int, str, bytes or a tuple"):
        _native.stable_key_hash(key)


def test_ints_beyond_64_bits_are_refused():
    with pytest.raises(OverflowError, match="64 bits"):
        _native.stable_key_hash(2**64)


def expected_instance(key, parallelism, max_parallelism=128):
    group = _native.stable_key_hash(key) % max_parallelism
    return group * parallelism // max_parallelism


class ByUser(KeyByFunction):
    def execute(self, data):
        return data["user_id"]


def run_keyed(key_by_argument, parallelism):
    seen = {}
    lock = threading.Lock()

    class Where(SinkFunction):
        def execute(self, data):
            with lock:
                seen.setdefault(data["user_id"], set()).add(self.ctx.parallel_index)

    env = LocalEnvironment("keyed")
    records = [{"user_id": f"user-{i % 37}", "n": i} for i in range(2000)]
    env.from_collection(records, parallelism=2).map(lambda r: r, parallelism=3).key_by(
        key_by_argument
    ).sink(Where, parallelism=parallelism)
    env.execute()
    return seen


@pytest.mark.parametrize("key_by_argument", [ByUser, lambda record: record["user_id"]])
def test_key_by_routes_every_key_to_the_instance_of_its_stable_hash(key_by_argument):
    seen = run_keyed(key_by_argument, parallelism=5)
    assert len(seen) == 37
    for user, instances in seen.items():
        assert instances == {expected_instance(user, 5)}, user
    assert len(set().union(*seen.values())) > 1  # the keys spread over instances


def test_a_key_that_cannot_be_hashed_fails_the_job_naming_its_type():
    env = LocalEnvironment("bad_key")
    env.from_collection([1.0, 2.0]).keyby(lambda x: x).sink(lambda x: None)
    with pytest.raises(sage.JobFailedError, match="key of type 'float'"):
        env.execute()


def test_unsupported_keyby_strategy():
    env = LocalEnvironment("strategy")
    with pytest.raises(ValueError, match="strategy 'broadcast'"):
        env.from_collection([1]).keyby(lambda x: x, strategy="broadcast")
