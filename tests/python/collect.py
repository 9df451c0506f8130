"""Test support: a sink that gathers every record of a LocalEnvironment job into ``out``, from
every engine thread; conftest.py empties ``out`` before each test."""

import threading

from sage.common.core import SinkFunction

out = []
lock = threading.Lock()


class Collect(SinkFunction):
    def execute(self, data):
        with lock:
            out.append(data)
