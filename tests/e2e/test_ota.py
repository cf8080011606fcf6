"""Over-the-air updates end to end: the real firmware on the MicroPython unix port (restarted like a
board when it resets, SIGKILLed for power cuts), real mosquitto, the real `wisp ota` host side.
Every case must end on a working version, say what happened, and keep the device's memory."""
import hashlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.otaboard import Board
from tests.e2e.stack import Stack
from tools import ota, otabundle
from tools.ask import command
from tools.paths import REPO

OLD, NEW = "0.1.0", "0.1.1"
ONLINE_S = 20


@pytest.fixture(scope="module")
def bundle():
    return otabundle.build(NEW)


@pytest.fixture
def rig():
    stack = Stack(with_tier=False)
    key_hex = secrets.token_hex(32)
    board = Board(stack, "dev1", key_hex)
    rig = Rig(stack, board, bytes.fromhex(key_hex))
    try:
        rig.wait_version(OLD)
        yield rig
    finally:
        board.stop()
        stack.close()


class Rig:
    def __init__(self, stack, board, key):
        self.stack, self.board, self.key = stack, board, key
        self.host, self.port = stack.broker.host, stack.broker.port

    def wait_version(self, fw, timeout=ONLINE_S):
        self.stack.probe.wait_for("wisp/dev1/status", lambda s: isinstance(s, dict) and s.get("state") == "online"
                                  and s.get("fw") == fw, timeout=timeout)

    def cmd(self, tool, **args):
        return command(self.host, self.port, "dev1", tool, args, key=self.key)["result"]

    def update(self, bundle, server_cls=ota.Server, **kw):
        server = server_cls(self.host, self.port, bundle)
        try:
            return server.update("dev1", self.key, **kw)
        finally:
            server.close()

    def running(self):
        return ota.status(self.host, self.port, ["dev1"])["dev1"]

    def state_files(self):
        """What the device keeps outside the slots (memory, config), by hash."""
        root = self.board.workdir
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()
                if p.suffix == ".json" and p.name != "ota.json"}


def test_update_switches_confirms_and_keeps_memory(rig, bundle):
    assert rig.cmd("memory_set", key="colour", value="blue").startswith("ok")
    refused = rig.cmd("gpio_write", pin="nope", value=1)
    assert "'nope' is not configured" in refused
    before = rig.state_files()
    assert "memory.json" in before
    env = dict(os.environ, WISP_RUN_DIR=str(rig.stack.dir), WISP_FLEET=str(rig.stack.dir / "fleet"))
    done = subprocess.run([sys.executable, "-m", "tools.cli", "ota", "dev1", "--version", NEW, "--broker",
                           rig.stack.broker_addr], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok   dev1: {OLD} -> {NEW}" in done.stdout
    assert "1 of 1 device(s) updated" in done.stdout
    assert rig.running()["fw"] == NEW
    assert rig.cmd("memory_get", key="colour") == "colour=blue"
    # the same text from the update's compiled modules, which read it from the bundle's strings.bin
    assert rig.cmd("gpio_write", pin="nope", value=1) == refused
    after = rig.state_files()  # the device may add files of its own (ha.json), but loses or changes none
    assert {name: after.get(name) for name in before} == before
    pointer = json.loads((rig.board.workdir / "ota.json").read_text())
    assert pointer["cur"] == "a" and pointer["trial"] is False and pointer["prev"] is None
    status = subprocess.run([sys.executable, "-m", "tools.cli", "ota", "dev1", "--status", "--broker",
                             rig.stack.broker_addr], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "online" in status.stdout and NEW in status.stdout and "confirmed healthy" in status.stdout


def test_second_update_uses_the_other_slot_and_keeps_the_first(rig, bundle):
    assert rig.update(bundle).ok
    r = rig.update(otabundle.build("0.1.2"))
    assert r.ok, r.text
    pointer = json.loads((rig.board.workdir / "ota.json").read_text())
    assert (pointer["cur"], pointer["prev"], pointer["prev_ver"]) == ("b", "a", NEW)


def test_wrong_signature_is_refused(rig, bundle):
    server = ota.Server(rig.host, rig.port, bundle)
    try:
        r = server.update("dev1", secrets.token_bytes(32), timeout_s=30)
    finally:
        server.close()
    assert not r.ok and "signed with another key" in r.text
    assert rig.running()["fw"] == OLD
    assert not (rig.board.workdir / "ota" / "a").exists()


def test_bundle_for_another_device_is_refused(rig, bundle):
    offer = otabundle.offer(bundle, "dev2", rig.key)  # right key, wrong device
    rig.stack.probe.publish("wisp/dev1/ota/offer", offer)
    state = rig.stack.probe.wait_for("wisp/dev1/ota/state", lambda s: s.get("state") == "refused", timeout=10)
    assert "for device 'dev2'" in state["text"]
    assert rig.running()["fw"] == OLD


def test_a_recorded_offer_replayed_later_is_refused(rig, bundle):
    """Someone who recorded a signed offer (a forced downgrade, an update the device rolled back) cannot
    play it again minutes later: an offer is dated, and taken only within CMD_WINDOW_S of the device clock."""
    from bridge.signing import sign_message, verify
    recorded = json.loads(verify(rig.key, otabundle.offer(bundle, "dev1", rig.key, force=True)))
    recorded["ts"] -= 301
    rig.stack.probe.publish("wisp/dev1/ota/offer", sign_message(rig.key, recorded))
    state = rig.stack.probe.wait_for("wisp/dev1/ota/state", lambda s: s.get("state") == "refused", timeout=10)
    assert "not signed in the last 300 s" in state["text"]
    assert rig.running()["fw"] == OLD and not (rig.board.workdir / "ota" / "offer.json").exists()


def test_downgrade_is_refused_unless_forced(rig):
    old = otabundle.build("0.0.9")
    r = rig.update(old, timeout_s=30)
    assert not r.ok and "downgrade from 0.1.0 to 0.0.9 refused" in r.text
    offer = rig.stack.probe.wait_for("wisp/dev1/ota/offer")
    state = rig.stack.probe.wait_for("wisp/dev1/ota/state", lambda s: s.get("state") == "refused")
    # the refusal names the offer it answers: a forced offer right after is not answered by it
    assert state["id"] == offer["id"] and len(offer["id"]) == 8
    r = rig.update(old, force=True)
    assert r.ok, r.text
    assert rig.running()["fw"] == "0.0.9"


class Mangler(ota.Server):
    """Answers each ota/need with a stale chunk (repeated, out of order) first, and corrupts the
    first answer for every fourth file's first chunk."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        starts, off = set(), self.bundle.manifest_size
        for i, (_p, size, _s) in enumerate(self.bundle.files):
            if i % 4 == 0:
                starts.add(off)
            off += size
        self.corrupt_at = starts
        self.corrupted = 0

    def _answer(self, dev_id, payload):
        need = json.loads(payload)
        off, n = need["off"], need["n"]
        topic = f"wisp/{dev_id}/ota/chunk"
        stale = max(0, off - n)
        self.listener.client.publish(topic, otabundle.chunk(self.bundle, stale, n), qos=0)
        self.listener.client.publish(topic, b"\x00\x00\x00\x00nothex!!garbage", qos=0)
        if off in self.corrupt_at:
            self.corrupt_at.discard(off)
            self.corrupted += 1
            bad = bytearray(otabundle.chunk(self.bundle, off, n))
            bad[-1] ^= 0xFF
            self.listener.client.publish(topic, bytes(bad), qos=0)
            return
        super()._answer(dev_id, payload)


def test_corrupted_repeated_and_out_of_order_chunks_are_survived(rig, bundle):
    server = Mangler(rig.host, rig.port, bundle)
    try:
        r = server.update("dev1", rig.key)
    finally:
        server.close()
    assert r.ok, r.text
    assert server.corrupted >= 10
    assert rig.board.console().count("failed its hash; fetching it again") == server.corrupted
    assert rig.running()["fw"] == NEW


def test_a_file_corrupted_every_time_drops_the_update(rig, bundle):
    class AlwaysBad(ota.Server):
        def _answer(self, dev_id, payload):
            need = json.loads(payload)
            if need["off"] == self.bundle.manifest_size:  # the first file, every time
                bad = bytearray(otabundle.chunk(self.bundle, need["off"], need["n"]))
                bad[-1] ^= 0xFF
                self.listener.client.publish(f"wisp/{dev_id}/ota/chunk", bytes(bad), qos=0)
            else:
                super()._answer(dev_id, payload)
    r = rig.update(bundle, server_cls=AlwaysBad)
    assert not r.ok and "failed its hash 3 times" in r.text and "still running 0.1.0" in r.text
    assert rig.running()["fw"] == OLD
    assert not (rig.board.workdir / "ota" / "a").exists(), "the half-written slot is left behind"


def test_update_whose_main_raises_at_import_rolls_back(rig):
    broken = otabundle.build(NEW, patch={"wisp/app.py": "raise RuntimeError('broken on purpose')\n"})
    r = rig.update(broken)
    assert not r.ok
    assert "rolled back from 0.1.1 to 0.1.0: import failed" in r.text and "broken on purpose" in r.text
    rig.wait_version(OLD)
    assert rig.running()["ota"]["state"] == "rolled back"


def test_update_that_never_connects_rolls_back_after_its_deadline(rig, bundle):
    src = (REPO / "firmware" / "wisp" / "config.py").read_text()
    cut_off = src.replace('    cfg["broker"] = broker\n', '    broker["port"] = 1\n    cfg["broker"] = broker\n')
    assert cut_off != src
    r = rig.update(otabundle.build(NEW, patch={"wisp/config.py": cut_off}), health_s=6)
    assert not r.ok and "not connected within 6 s" in r.text, r.text
    assert rig.running()["fw"] == OLD
    assert rig.cmd("memory_list") is not None


def test_power_cuts_during_the_transfer_resume_where_they_stopped(rig, bundle):
    server = ota.Server(rig.host, rig.port, bundle)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", server.update("dev1", rig.key)))
    t.start()
    rng = random.Random(7)
    try:
        for _ in range(4):
            start = server.served.get("dev1", 0)
            deadline = time.monotonic() + 20
            goal = start + rng.randint(3, 12)
            while server.served.get("dev1", 0) < goal and time.monotonic() < deadline and t.is_alive():
                time.sleep(0.01)
            rig.board.cut_power()
        t.join(120)
    finally:
        server.close()
    r = out["r"]
    assert r.ok, r.text
    assert rig.running()["fw"] == NEW
    # resumed from its last whole file, not from the start: fewer chunks than four full transfers
    assert r.chunks < 2 * (bundle.size // 1024 + len(bundle.files) + 1), r.chunks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_cuts_around_the_switch_end_on_a_working_version(rig, bundle, seed):
    """Cut at random moments from the end of the transfer through the switch, the reboot and the
    first boots of the new version: afterwards the device is online on one version or the other,
    and the host sees the update through."""
    rng = random.Random(seed)
    server = ota.Server(rig.host, rig.port, bundle)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", server.update("dev1", rig.key, timeout_s=120)))
    t.start()
    total = bundle.size // 1024 + len(bundle.files)
    try:
        for _ in range(3):
            deadline = time.monotonic() + 20
            while server.served.get("dev1", 0) < total - 4 and time.monotonic() < deadline and t.is_alive():
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.8))
            rig.board.cut_power()
        t.join(150)
    finally:
        server.close()
    status = rig.running()
    assert status["state"] == "online" and status["fw"] in (OLD, NEW)
    r = out["r"]
    assert r.ok or "rolled back" in r.text, r.text
    assert rig.cmd("memory_list") is not None


def test_broker_restart_mid_transfer(rig, bundle):
    server = ota.Server(rig.host, rig.port, bundle)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", server.update("dev1", rig.key, timeout_s=120)))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while server.served.get("dev1", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        rig.stack.stop_broker()
        time.sleep(1.0)  # down long enough for the device and the host to notice
        rig.stack.start_broker()
        t.join(150)
    finally:
        server.close()
    r = out["r"]
    assert r.ok, r.text
    assert rig.running()["fw"] == NEW


@pytest.mark.parametrize("flash_kb, why", [(96, "flash full: the bundle needs"),
                                           (160, "flash full while writing the bundle")])
def test_full_flash_refuses_or_drops_the_update_and_keeps_running(bundle, flash_kb, why):
    """96 KB: the device sees up front that the bundle cannot fit. 160 KB: it seems to fit, but the
    files take whole 4 KB blocks, so the flash fills up halfway; the device drops the update."""
    stack = Stack(with_tier=False)
    key_hex = secrets.token_hex(32)
    board = Board(stack, "dev1", key_hex, flash_kb=flash_kb)
    try:
        rig = Rig(stack, board, bytes.fromhex(key_hex))
        rig.wait_version(OLD)
        r = rig.update(bundle, timeout_s=60)
        assert not r.ok and why in r.text, r.text
        assert rig.running()["fw"] == OLD
        assert rig.cmd("memory_set", key="after", value="full").startswith("ok"), "no room left for memory"
    finally:
        board.stop()
        stack.close()


def test_a_newer_offer_mid_transfer_takes_over_the_slot(rig, bundle):
    newer = otabundle.build("0.1.2")  # built first: the first transfer must still be running when it is offered
    first = ota.Server(rig.host, rig.port, bundle)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", first.update("dev1", rig.key, timeout_s=20)))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while first.served.get("dev1", 0) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = rig.update(newer)
        t.join(30)
    finally:
        first.close()
    assert r.ok, r.text
    assert rig.running()["fw"] == "0.1.2"
    assert not out["r"].ok  # the first update never completed: it was replaced
    assert "dropped" not in rig.board.console(), "the replaced job removed the new one's files"


@pytest.mark.parametrize("cut_at", ["verifying", "rebooting"])
def test_a_power_cut_during_the_final_check_or_the_switch_finishes_the_update(rig, bundle, cut_at):
    """'verifying': every file is being read back; the next boot resumes there, with nothing to fetch.
    'rebooting': the pointer is written; the next boot is the new version's first."""
    server = ota.Server(rig.host, rig.port, bundle)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", server.update("dev1", rig.key, timeout_s=90)))
    t.start()
    try:
        rig.stack.probe.wait_for("wisp/dev1/ota/state", lambda s: s.get("state") == cut_at, timeout=30)
        rig.board.cut_power()
        t.join(120)
    finally:
        server.close()
    assert out["r"].ok, out["r"].text
    assert rig.running()["fw"] == NEW
    assert not (rig.board.workdir / "ota" / "offer.json").exists()


def test_hostile_offers_and_chunks_leave_the_device_working(rig, bundle):
    """Garbage on ota/offer and ota/chunk, and offers correctly signed but with fields of every wrong
    type or size: the device refuses them, keeps answering, and then takes a real update."""
    from bridge.signing import sign_message, verify
    from tests.fuzz.payloads import ODD_VALUES, generate
    rng = random.Random(5)
    base = json.loads(verify(rig.key, otabundle.offer(bundle, "dev1", rig.key)))  # the offer without its "sig"
    client = rig.stack.probe.client
    for i, junk in enumerate(generate("ota/offer", 150)):
        client.publish("wisp/dev1/ota/offer", junk, qos=1)
        client.publish("wisp/dev1/ota/chunk", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 1100))), qos=1)
        bad = dict(base)
        bad[rng.choice(list(base) + ["extra"])] = rng.choice(ODD_VALUES)
        client.publish("wisp/dev1/ota/offer", sign_message(rig.key, bad), qos=1)
        if i % 25 == 0:  # paced by the broker's acknowledgements, not by sleeps
            client.publish("wisp/dev1/fuzzmark", b"", qos=1).wait_for_publish(10)
    reply = ask_once(rig)
    assert reply["ok"], reply
    r = rig.update(bundle)
    assert r.ok, r.text
    assert rig.running()["fw"] == NEW
    assert "Traceback" not in rig.board.console()


def ask_once(rig):
    rig.stack.probe.publish("wisp/dev1/ask", {"v": 1, "id": "after-fuzz", "text": "turn on the porch light"})
    return rig.stack.probe.wait_for("wisp/dev1/reply", lambda r: isinstance(r, dict) and r.get("id") == "after-fuzz",
                                    timeout=30)


def test_a_fleet_rollout_run_again_resumes_with_the_devices_not_yet_updated(rig, bundle):
    """`wisp ota --all` stopped (Ctrl-C, a halted stage) after its canary was updated: run again, it stopped
    at once, its canary "failed" with "offer refused: already running 0.1.1", and the rest was never offered."""
    board2 = Board(rig.stack, "dev2", secrets.token_hex(32))
    try:
        rig.stack.probe.wait_for("wisp/dev2/status", lambda s: isinstance(s, dict) and s.get("state") == "online",
                                 timeout=ONLINE_S)
        assert rig.update(bundle).ok  # dev1, the canary, updated before the rollout stopped
        env = dict(os.environ, WISP_RUN_DIR=str(rig.stack.dir), WISP_FLEET=str(rig.stack.dir / "fleet"))
        again = subprocess.run([sys.executable, "-m", "tools.cli", "ota", "--all", "--version", NEW, "--broker",
                                rig.stack.broker_addr], cwd=str(REPO), env=env, capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"skip dev1: already running {NEW}" in again.stdout
        assert f"ok   dev2: {OLD} -> {NEW}" in again.stdout
        assert "1 of 1 device(s) updated; 1 already ran 0.1.1" in again.stdout
    finally:
        board2.stop()


def test_ctrl_c_mid_rollout_reports_what_was_done_and_the_run_again_resumes(rig, bundle):
    """Ctrl-C of `wisp ota --all` in its second stage printed only "wisp: interrupted": not that the canary was
    updated, nor what was left half-fetched, nor how to go on."""
    board2 = Board(rig.stack, "dev2", secrets.token_hex(32))
    env = dict(os.environ, WISP_RUN_DIR=str(rig.stack.dir), WISP_FLEET=str(rig.stack.dir / "fleet"))
    cmd = [sys.executable, "-m", "tools.cli", "ota", "--all", "--canary", "1", "--then", "1", "--version", NEW,
           "--broker", rig.stack.broker_addr]
    try:
        rig.stack.probe.wait_for("wisp/dev2/status", lambda s: isinstance(s, dict) and s.get("state") == "online",
                                 timeout=ONLINE_S)
        run = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rig.stack.probe.wait_for("wisp/dev2/ota/state", lambda s: s.get("state") == "fetching" and s.get("off", 0) > 0,
                                 timeout=120)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=20)
        assert run.returncode == 130, out + err
        assert f"ok   dev1: {OLD} -> {NEW}" in out, out
        assert "wisp: interrupted with dev2 mid-update" in out and "run the same command again" in out, out
        again = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"skip dev1: already running {NEW}" in again.stdout and f"ok   dev2: {OLD} -> {NEW}" in again.stdout
    finally:
        board2.stop()
