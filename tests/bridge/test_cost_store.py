"""The SQLite cost store's writer thread: rows are committed in batches, yet a usage view (flush) and a clean stop
never wait out a batch, and a clean stop loses nothing recorded."""
import time

from bridge.config import CostConfig, Tier
from bridge.cost import BATCH_WAIT_S, CostStore

TIER = Tier("local", "http://127.0.0.1:9/v1", "m")


def test_a_flush_commits_at_once_and_a_clean_stop_keeps_every_row(tmp_path):
    cfg = CostConfig(db=str(tmp_path / "cost.db"))
    store = CostStore(cfg)
    try:
        store.record("d1", TIER, "r1", 100, 10)
        t0 = time.monotonic()
        store.flush()
        took = time.monotonic() - t0
        assert [(t.key, t.requests, t.tokens_in) for t in store.totals()] == [("d1", 1, 100)]
        assert took < BATCH_WAIT_S / 2, f"flush waited {took:.2f} s, the batch's wait"
        for i in range(50):
            store.record("d2", TIER, f"q{i}", 1, 1)
        t0 = time.monotonic()
    finally:
        store.close()
    assert time.monotonic() - t0 < BATCH_WAIT_S / 2
    reopened = CostStore(cfg)
    try:
        assert {t.key: t.requests for t in reopened.totals()} == {"d1": 1, "d2": 50}
    finally:
        reopened.close()


def test_bridges_started_together_on_one_new_cost_file_both_start(tmp_path):
    """Two bridges started at once in one folder (`.wisp/cost.db`): one of them stopped with "cannot use the cost
    database ...: database is locked" in most tries, as SQLite refuses a second switch to WAL without waiting."""
    import subprocess
    import sys
    start = time.time() + 1.0
    code = ("import sys, time\nfrom bridge.config import CostConfig\nfrom bridge.cost import CostStore\n"
            "while time.time() < float(sys.argv[2]): pass\nCostStore(CostConfig(db=sys.argv[1])).close()\n")
    for n in range(8):
        path = str(tmp_path / f"cost{n}.db")
        procs = [subprocess.Popen([sys.executable, "-c", code, path, str(start + n * 0.5)], stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        errors = [p.communicate(timeout=30)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
