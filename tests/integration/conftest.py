"""PostgreSQL fixtures for the integration tests, and the CI rule that they may not be skipped.

``pg_cluster`` starts one throwaway cluster per session (tests/support/pg.py) and removes it at the end;
``pg_url`` gives each test module its own empty database. When the cluster cannot start, the
tests that need it are skipped with the reason -- except under ``SIGNERD_CI=1`` (set by .ci/run),
where the fixture fails instead, and any other skip of a ``postgres``-marked test is reported as
a failure too, so CI can never pass without having run them.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from tests.support.pg import PgCluster, PgUnavailable


def _in_ci() -> bool:
    return os.environ.get("SIGNERD_CI") == "1"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster().start()
    except PgUnavailable as e:
        if _in_ci():
            pytest.fail(f"PostgreSQL could not start, and SIGNERD_CI=1 forbids skipping the "
                        f"PostgreSQL tests: {e}", pytrace=False)
        pytest.skip(f"PostgreSQL could not start: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    url = pg_cluster.create_database(request.module.__name__.rsplit(".", 1)[-1])
    yield url
    pg_cluster.drop_database(url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and _in_ci()
            and item.get_closest_marker("postgres") is not None):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} needs PostgreSQL and was skipped ({reason}); "
                           "SIGNERD_CI=1 makes that a failure")
