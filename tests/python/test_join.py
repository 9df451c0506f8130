"""SAGE's join: two keyed streams, connected, and a BaseJoinFunction whose
execute(payload, key, tag) sees every record with its key and stream, on the engine's keyed
connect; exact results at several parallelisms, and clear refusals."""

import pytest

from sage.common.core import BaseJoinFunction
from sage.kernel.api.local_environment import LocalEnvironment

from collect import Collect, out


class UserOrderInnerJoin(BaseJoinFunction):
    """SAGE's example: users and orders by user id, each order joined with its user whichever
    arrives first."""

    def __init__(self, label="joined"):
        super().__init__()
        self.label = label
        self.users = {}
        self.orders = {}

    def execute(self, payload, key, tag):
        if tag == 0:
            self.users[key] = payload
            waiting = self.orders.pop(key, [])
            return [(self.label, key, payload["name"], o["order"]) for o in waiting]
        user = self.users.get(key)
        if user is None:
            self.orders.setdefault(key, []).append(payload)
            return []
        return [(self.label, key, user["name"], payload["order"])]


def expected(users, orders, label="joined"):
    names = {u["uid"]: u["name"] for u in users}
    return sorted((label, o["uid"], names[o["uid"]], o["order"]) for o in orders if o["uid"] in names)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_inner_join_of_users_and_orders_is_exact(parallelism):
    users = [{"uid": i, "name": f"user{i}"} for i in range(0, 60, 2)]  # even ids only
    orders = [{"uid": i % 50, "order": f"o{i}"} for i in range(400)]
    env = LocalEnvironment("join")
    u = env.from_collection(users, parallelism=2).keyby(lambda r: r["uid"])
    o = env.from_collection(orders, parallelism=3).keyby(lambda r: r["uid"])
    u.connect(o).join(UserOrderInnerJoin, "pair", parallelism=parallelism).sink(Collect)
    env.execute()
    assert sorted(out) == expected(users, orders, "pair")


def test_join_with_key_functions_given_to_the_connected_streams():
    env = LocalEnvironment("join-keys")
    left = env.from_collection([("a", 1), ("b", 2)])
    right = env.from_collection([{"k": "a", "v": 10}, {"k": "a", "v": 11}, {"k": "c", "v": 12}])

    class Pairs(BaseJoinFunction):
        def open(self, ctx):
            self.left = ctx.list_state("left")
            self.right = ctx.list_state("right")

        def execute(self, payload, key, tag):
            if tag == 0:
                self.left.add(payload)
                return [(key, payload[1], r["v"]) for r in self.right.get()]
            self.right.add(payload)
            return [(key, l[1], payload["v"]) for l in self.left.get()]

    left.connect(right).keyby([lambda t: t[0], lambda d: d["k"]]).join(Pairs, parallelism=2).sink(
        Collect
    )
    env.execute()
    assert sorted(out) == [("a", 1, 10), ("a", 1, 11)]


def test_join_refuses_unkeyed_streams_and_non_join_functions():
    env = LocalEnvironment("join-bad")
    a = env.from_collection([1])
    b = env.from_collection([2])
    with pytest.raises(ValueError, match="join needs two keyed streams"):
        a.connect(b).join(UserOrderInnerJoin)
    with pytest.raises(TypeError, match="has no execute"):
        a.keyby(lambda x: x).connect(b.keyby(lambda x: x)).join(type("X", (), {}))
    c = env.from_collection([3]).keyby(lambda x: x)
    with pytest.raises(ValueError, match="exactly two"):
        a.keyby(lambda x: x).connect(b.keyby(lambda x: x)).connect(c).join(UserOrderInnerJoin)


def test_join_with_a_plain_function():
    env = LocalEnvironment("join-fn")
    a = env.from_collection([1, 2, 3]).keyby(lambda x: x % 2)
    b = env.from_collection([10, 11]).keyby(lambda x: x % 2)
    a.connect(b).join(lambda payload, key, tag: [(key, tag, payload)]).sink(Collect)
    env.execute()
    assert sorted(out) == [(0, 0, 2), (0, 1, 10), (1, 0, 1), (1, 0, 3), (1, 1, 11)]
