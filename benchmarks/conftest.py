"""Order of the pytest-benchmark suite: PyTorch's rows last.

PyTorch's OpenMP threads spin after each of its calls and take the cores from whatever runs
next, and once imported it stays in the process.  ``xpconv bench`` keeps PyTorch in a process
of its own; here every row runs in pytest's process, so the rows that import PyTorch run after
all the others (their relative order kept), and no xpconv row is timed after a PyTorch call.
"""

import pytest


def _imports_torch(item: pytest.Item) -> bool:
    return getattr(item, "originalname", item.name) == "test_torch"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_imports_torch)  # a stable sort: False (xpconv, the book) first
