"""A store writer against attestations (proofs of control), on a real daemon: an attestation
row signerd did not seal, a row changed after sealing (each column signerd reads, the stored
holdings statement, the record of cosigning), an attestation that ended and was set back to
waiting or to approved (also across a restart), and decision rows inserted directly: none
yields a signature without its quorum (tests/support/attacks.py)."""
from __future__ import annotations

import pytest

from tests.support import attacks as X

pytestmark = pytest.mark.integration

daemon, db = X.daemon_and_writer_fixtures("attest-attacks")


def test_store_writer_forged_attestation_rows(daemon, db) -> None:
    X.attack_forged_attestation_row(daemon, db)


@pytest.mark.parametrize("column", sorted(X.ROW_CHANGES))
def test_store_writer_changes_a_sealed_attestation_row(daemon, db, column: str) -> None:
    X.attack_changed_attestation_row(daemon, db, column)


def test_store_writer_changes_a_stored_holdings_statement(daemon, db) -> None:
    X.attack_changed_holdings_statement(daemon, db)


def test_store_writer_changes_a_record_of_cosigning(daemon, db) -> None:
    X.attack_changed_cosigning_record(daemon, db)


def test_store_writer_resurrects_a_rejected_attestation(daemon, db) -> None:
    X.attack_resurrected_attestation(daemon, db)


def test_store_writer_resurrects_a_rejected_attestation_across_a_restart(tmp_path) -> None:
    X.run_on_a_fresh_daemon(tmp_path / "signerd-state",
                            X.attack_resurrected_attestation_across_a_restart)


def test_store_writer_inserts_attestation_decisions(daemon, db) -> None:
    X.attack_inserted_attestation_decisions(daemon, db)
