"""Shared fixtures: a real SoftHSM token, a real daemon subprocess on loopback, a real store."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# The shared harness asserts too (the attack helpers above all): rewrite its asserts as pytest
# does a test module's, before anything imports it.
pytest.register_assert_rewrite("tests.support")

from tests.support.fixtures import daemon_factory  # noqa: E402,F401  (the one daemon factory)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def softhsm_available() -> None:
    if shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2-util is missing: install Debian's softhsm2 (the README's first "
                    "command does)")


os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(ROOT / ".hypothesis"))
