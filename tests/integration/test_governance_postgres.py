"""Governance attacks by a store writer alone, on PostgreSQL: a real daemon whose store is a
throwaway PostgreSQL database (`signerd init DIR --store-url URL`), real SoftHSM, real gRPC over
mTLS; the writer uses psycopg on the same database and nothing else.

The attacks are those of test_governance_attacks.py, run here against PostgreSQL:

1a. two approval rows (inv1, cust1) with all-zero signatures, the transfer set to APPROVED:
    FAILED as an authority violation (reason, audit event, metric), no signature;
1b. two ``operators`` rows with every role and the writer's own keys, approvals correctly
    signed by those keys over the real statement, the transfer set to APPROVED: FAILED ("not
    an operator in the chain of authority"), no signature;
1c. a wallet's ``policies`` row rewritten to a one-approver policy: signerd reads the policy
    from the authority ledger, two approvers are still needed;
1d. a wallet frozen by FreezeWallet, then ``UPDATE wallets SET status = 'ACTIVE'``: approving
    signs nothing until a governed unfreeze;
1e. a wallet row without a seal at a transfer's destination: still ``external``, the
    requirement unchanged, not shown to the approvers as an own address;
1f. a forged ``authority_log`` entry registering the writer with every role (fake admin
    approvals, hash-chained, the head row moved to it): the quorum-making approval is refused,
    nothing signed, and the restarted daemon refuses the store in one line naming the entry;
1g. the genesis row replaced by one the writer signed with keys of their own: refused at once
    ("rewound or rewritten"), and at start as differing from the pinned genesis;
1h. a judge's veto erased (the REJECT row deleted, the state set back): the next approval is
    refused as ended, FAILED; with the rejection's audit events deleted too, every decision is
    refused until the chain is restored; across a restart, the ended transfers are known again
    from the checkpointed chain, and an ending event altered to hide one no longer matches the
    checkpoint; the same for a rejected governance proposal set back to pending;
and those of test_transfer_seal.py (a rewritten destination class, an inserted transfer row:
no statement shown, FAILED, no signature), and those of test_governance_seals.py:

- a reinstatement that gathered its quorum but ended FAILED, appended to the authority ledger
  (hash-chained, its genuine approvals, the seal of the entry before it) after the operator
  was suspended again: refused for want of signerd's seal at that place, nothing signed;
- a pending proposal row inserted "by admin1": shown as not signerd's, ended FAILED by the
  health monitor as a ``proposal`` violation, never decided.

A policy change applied while another transaction holds a live transfer of the wallet does not
wait for it (no deadlock with the sign step, which takes transfers before the ledger head):
that transfer is judged by its next decision.

Each legitimate counterpart is signed and checked with eth-account. The attacks that stop and
restart the daemon (1f, 1g, 1h across a restart) each get a daemon and a database of their own;
the others share the module's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.rpc import pb
from tests.support.attacks import (FRESH, PROBE, StoreWriter, attack_erased_proposal_rejection,
                                   attack_erased_veto, attack_erased_veto_across_a_restart,
                                   attack_erased_veto_and_its_audit_events,
                                   attack_failed_proposal_appended,
                                   attack_fake_wallet_at_the_destination,
                                   attack_forged_authority_ledger_entry, attack_forged_operators,
                                   attack_forged_proposal_row, attack_inserted_transfer_row,
                                   attack_one_approver_policy_row, attack_reclassified_destination,
                                   attack_replaced_genesis, attack_safe_owners_and_threshold,
                                   attack_thawed_frozen_wallet, attack_zero_signature_approvals)
from tests.support.pg import PgCluster
from tests.support.fixtures import DaemonFactory

pytestmark = [pytest.mark.postgres]


class PgWriter(StoreWriter):
    """psycopg on the daemon's database; ``?`` placeholders become ``%s``."""

    def __init__(self, url: str):
        self.url = url

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as c:
            cur = c.execute(query.replace("?", "%s"), params)
            return [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in r.items()}
                    for r in cur.fetchall()] if cur.description else []

    def run(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        with psycopg.connect(self.url) as c:  # one transaction, committed on exit
            for query, params in statements:
                c.execute(query.replace("?", "%s"), params)


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory, pg_url: str) -> Iterator[Daemon]:
    yield from daemon_factory.run("govpg", store_url=pg_url, **FRESH)


@pytest.fixture
def db(pg_url: str) -> PgWriter:
    return PgWriter(pg_url)


@pytest.fixture
def own(pg_cluster: PgCluster, tmp_path: Path, request: pytest.FixtureRequest
        ) -> Iterator[tuple[Daemon, PgWriter]]:
    """A daemon and a database of their own, for an attack that stops and restarts it."""
    url = pg_cluster.create_database(request.node.name.removeprefix("test_pg_store_writer_"))
    try:
        cfg = init_state(tmp_path / "state", "--store-url", url)
        edit_config(cfg, "hsm", probe_seconds=PROBE)
        d = Daemon(cfg).start()
        try:
            yield d, PgWriter(url)
        finally:
            d.stop()
    finally:
        pg_cluster.drop_database(url)


def attack_id(attack: Any) -> str:
    return attack.__name__.removeprefix("attack_")


@pytest.mark.parametrize("attack", [  # on the module's daemon, in this order
    attack_zero_signature_approvals, attack_forged_operators, attack_one_approver_policy_row,
    attack_thawed_frozen_wallet, attack_fake_wallet_at_the_destination, attack_erased_veto,
    attack_erased_veto_and_its_audit_events, attack_erased_proposal_rejection,
    attack_reclassified_destination, attack_inserted_transfer_row,
    attack_safe_owners_and_threshold,
], ids=attack_id)
def test_pg_store_writer(daemon: Daemon, db: PgWriter, attack: Any) -> None:
    attack(daemon, db)


@pytest.mark.parametrize("attack", [
    attack_forged_authority_ledger_entry, attack_replaced_genesis,
    attack_erased_veto_across_a_restart,
], ids=attack_id)
def test_pg_store_writer_on_its_own_daemon(own: tuple[Daemon, PgWriter], attack: Any) -> None:
    attack(*own)


def test_pg_policy_change_passes_a_transfer_another_transaction_holds(daemon: Daemon,
                                                                     pg_url: str) -> None:
    from tests.support.governance import decide, set_policy
    from tests.support.attacks import eth_transfer, eth_wallet
    from tests.support.attacks import TINY_ONLY

    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    decide(daemon, t.id, "inv1")
    with psycopg.connect(pg_url) as holder:  # another transaction holds the transfer's row
        holder.execute("SELECT id FROM transfers WHERE id = %s FOR UPDATE", (t.id,))
        set_policy(daemon, w.id, TINY_ONLY)  # applied without waiting for it
        still = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
        assert still.state == pb.PENDING_APPROVAL
    # Its next decision judges it against the policy in force: no longer allowed, it ends.
    got = decide(daemon, t.id, "cust1")
    assert got.state == pb.CANCELLED and "no longer allows this transfer" in got.failure, got
    assert not got.raw_tx


def test_pg_store_writer_appends_a_failed_proposal_to_the_ledger(daemon: Daemon,
                                                                 db: PgWriter) -> None:
    attack_failed_proposal_appended(daemon, db)


def test_pg_store_writer_inserts_a_proposal_by_admin1(daemon: Daemon, db: PgWriter) -> None:
    attack_forged_proposal_row(daemon, db)


def test_pg_store_is_the_daemons(daemon: Daemon, db: PgWriter) -> None:
    """The writer's database is the one the daemon serves (not a copy): the instance ids match
    and the daemon's config names it."""
    (row,) = db.rows("SELECT value FROM meta WHERE key = 'instance_id'")
    assert f'instance_id = "{row["value"]}"' in Path(daemon.config).read_text()
    assert "sqlite" not in Path(daemon.config).read_text().split("[store]")[1].split("[")[0]
