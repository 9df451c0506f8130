"""Fixtures every test under tests/python gets."""

import pytest

import collect


@pytest.fixture(autouse=True)
def fresh_collect():
    """An empty ``collect.out`` for each test."""
    collect.out.clear()
    yield
