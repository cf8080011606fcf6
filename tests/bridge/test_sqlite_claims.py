"""Request claims in the SQLite cost file that bridges on one host share (bridge/claims.py), with the rule of a
shared PostgreSQL: a re-send is ignored while another bridge answers it, replayed once it is answered, answered
afresh once the claim's lease ran out; a lone bridge writes no claims, and writes what it answers into the file
as soon as a second bridge arrives; a file that stays locked does not stop answering. Two bridges on one file
and a real mosquitto: tests/bridge/test_shared_store.py."""
import asyncio
import logging
import sqlite3
import time

from bridge import claims
from bridge.config import CostConfig, Tier
from bridge.cost import CostStore, open_store
from bridge.rounds.dedupe import Dedupe
from bridge.rounds.outcome import Outcome, answer_record
from tests.bridge.harness import ask, bridge_ctx, config, fake_tiers, run
from tests.fakes.openai_server import Reply

DONE = [{"v": 1, "id": "r1", "round": 0, "seq": 0, "done": True, "text": "ok"}]


def answered(req_id: str) -> Outcome:
    return Outcome("d1", req_id, 0, "interactive", "local", 1, None, None, None,
                   [{**DONE[0], "id": req_id}], 0.01, 0.02)


def claim_rows(path) -> list[tuple]:
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute("SELECT device, req_id, round, answer IS NOT NULL FROM claims ORDER BY 2").fetchall()
    finally:
        db.close()


def stores(tmp_path, n=2):
    """n bridges' stores on one file, opened as the bridge opens them (a newcomer waits for the others)."""
    cfg = CostConfig(db=str(tmp_path / "cost.db"))
    return [CostStore(cfg, owner=f"bridge-{k}") for k in range(n)]


def test_a_resend_is_ignored_while_running_replayed_once_answered_and_afresh_after_the_lease(tmp_path):
    async def go():
        a, b = stores(tmp_path)
        try:
            mine = await a.claim(("d1", "r1", 0), 0.3)  # a 0.3 s lease: the bridge "dies" without answering
            running = await b.claim(("d1", "r1", 0), 30)
            await a.claim(("d1", "r2", None), 30)
            a.release(("d1", "r2", None), answered("r2"))
            a.release(("d1", "r3", 0), None)  # never claimed: changes nothing
            await asyncio.sleep(0.4)
            lapsed = await b.claim(("d1", "r1", 0), 30)
            replay = await b.claim(("d1", "r2", None), 30)
            again = await a.claim(("d1", "r1", 0), 30)  # b holds it now
            return mine, running, lapsed, replay, again
        finally:
            a.close()
            b.close()

    mine, running, lapsed, replay, again = run(go())
    assert mine is True and running is None
    assert lapsed is True  # the first claim's lease ran out: answered afresh
    assert replay == answer_record(answered("r2"))  # same messages, same seqs
    assert again is None


def test_a_failed_answer_is_answered_afresh_by_the_other_bridge(tmp_path):
    async def go():
        a, b = stores(tmp_path)
        try:
            await a.claim(("d1", "r1", 0), 30)
            a.release(("d1", "r1", 0), None)  # an err before any call: the next re-send gets a fresh try
            await asyncio.sleep(0.1)
            return await b.claim(("d1", "r1", 0), 30)
        finally:
            a.close()
            b.close()

    assert run(go()) is True


def test_a_lone_bridge_claims_nothing_in_the_file_until_another_arrives(tmp_path):
    cfg = CostConfig(db=str(tmp_path / "cost.db"))

    async def go():
        a = await open_store(cfg, "bridge-a")
        try:
            await a.claim(("d1", "done", 0), 30)
            a.release(("d1", "done", 0), answered("done"))
            await a.claim(("d1", "slow", 0), 30)  # still being answered when b arrives
            alone = claim_rows(cfg.db)
            t0 = time.monotonic()
            b = await open_store(cfg, "bridge-b")  # waits until a has written what it answers
            joined_s = time.monotonic() - t0
            try:
                running = await b.claim(("d1", "slow", 0), 30)
                replay = await b.claim(("d1", "done", 0), 30)
                a.release(("d1", "slow", 0), answered("slow"))
                await asyncio.sleep(0.1)
                replay_slow = await b.claim(("d1", "slow", 0), 30)
                return alone, joined_s, running, replay, replay_slow
            finally:
                b.close()
        finally:
            a.close()

    alone, joined_s, running, replay, replay_slow = run(go())
    assert alone == []  # nothing written while alone
    assert joined_s < claims.POLL_S * 4
    assert running is None  # claimed for a the moment b arrived
    assert replay == answer_record(answered("done"))
    assert replay_slow == answer_record(answered("slow"))


def test_a_locked_file_does_not_stop_answering(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(claims, "LOCK_WAIT_S", 0.3)
    with fake_tiers(lambda req: Reply(text="On.")) as (tier,):
        cfg = config([Tier("local", tier.base_url, "m")], tmp_path)

        async def go():
            async with bridge_ctx(cfg) as ctx:
                peer = CostStore(cfg.cost, owner="peer")  # another bridge on the file: claims go into it
                blocker = sqlite3.connect(cfg.cost.db, isolation_level=None)
                blocker.execute("BEGIN EXCLUSIVE")  # e.g. a backup holding the file
                try:
                    ctx.dedupe = Dedupe(shared=ctx.costs)
                    t0 = time.monotonic()
                    msgs = await ask(ctx, "locked1")
                    took = time.monotonic() - t0
                finally:
                    blocker.execute("ROLLBACK")
                    blocker.close()
                try:
                    after = await ask(ctx, "unlocked1")  # the file is back: claimed in it again
                    for _ in range(40):  # and its answer kept there, once the claims' thread has written it
                        if claim_rows(cfg.cost.db) == [("dev1", "unlocked1", 0, 1)]:
                            break
                        await asyncio.sleep(0.05)
                    return msgs, took, after, claim_rows(cfg.cost.db)
                finally:
                    peer.close()

        with caplog.at_level(logging.ERROR):
            msgs, took, after, rows = run(go())
    assert msgs[-1]["done"] and msgs[-1]["text"] == "On."
    assert took < 3
    assert "in the shared store failed, answering anyway" in caplog.text
    assert after[-1]["text"] == "On." and rows == [("dev1", "unlocked1", 0, 1)]


def test_without_file_locks_to_tell_a_bridge_claims_every_request(tmp_path, monkeypatch):
    """Where open-file-description locks do not exist (not Linux), a bridge cannot know it is alone: it claims
    every request in the file, so that bridges sharing it still answer each request once."""
    from bridge import filepeers
    monkeypatch.setattr(filepeers, "_OFD", False)

    async def go():
        (a,) = stores(tmp_path, 1)
        try:
            await a.claim(("d1", "r1", 0), 30)
            return claim_rows(a.path)
        finally:
            a.close()

    assert run(go()) == [("d1", "r1", 0, 0)]
