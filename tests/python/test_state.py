"""Keyed state from Python: value and list state per key, and the current key, in the operator
right after keyby."""

import pytest

import sage
from sage.common.core import BaseCoMapFunction, MapFunction
from sage.kernel.api.local_environment import LocalEnvironment

from collect import Collect, out


class CountPerUser(MapFunction):
    def open(self, ctx):
        self.count = ctx.value_state("count")
        self.seen = ctx.list_state("seen")

    def execute(self, data):
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        self.seen.add(data["n"])
        return (self.ctx.current_key, data["user"], n, list(self.seen.get()))


def test_value_and_list_state_per_key():
    records = [{"user": f"u{i % 7}", "n": i} for i in range(70)]
    env = LocalEnvironment("state")
    env.from_collection(records).keyby(lambda r: r["user"]).map(CountPerUser, parallelism=3).sink(
        Collect
    )
    env.execute()
    assert len(out) == 70
    by_user = {}
    for key, user, n, seen in out:
        assert key == user
        by_user.setdefault(user, []).append((n, seen))
    for user, entries in by_user.items():
        entries.sort()
        assert [n for n, _ in entries] == list(range(1, 11)), user
        assert sorted(entries[-1][1]) == [i for i in range(70) if f"u{i % 7}" == user]


class Session(BaseCoMapFunction):
    """Logins and clicks keyed by user count into one state per user."""

    def open(self, ctx):
        self.events = ctx.value_state("events")

    def bump(self):
        n = (self.events.value() or 0) + 1
        self.events.update(n)
        return (self.ctx.current_key, n)

    def map0(self, login):
        return self.bump()

    def map1(self, click):
        return self.bump()


def test_keyed_comap_shares_state_between_inputs():
    env = LocalEnvironment("sessions")
    logins = env.from_collection([("a", "login"), ("b", "login")])
    clicks = env.from_collection([(user, "click") for user in "aabab"])
    logins.connect(clicks).keyby(lambda e: e[0]).comap(Session, parallelism=2).sink(Collect)
    env.execute()
    assert sorted(n for user, n in out if user == "a") == [1, 2, 3, 4]
    assert sorted(n for user, n in out if user == "b") == [1, 2, 3]


def test_keyed_state_needs_keyby():
    class NotKeyed(MapFunction):
        def open(self, ctx):
            ctx.value_state("x")

        def execute(self, data):
            return data

    env = LocalEnvironment("not_keyed")
    env.from_collection([1]).map(NotKeyed).sink(Collect)
    with pytest.raises(sage.JobFailedError, match="apply key_by first"):
        env.execute()
