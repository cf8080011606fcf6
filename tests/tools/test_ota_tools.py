"""The host side of over-the-air updates without a device: rollout stages, the bundle's layout and its
signed offer (the device's side of both is tested on the unix port in tests/e2e/test_ota.py)."""
import contextlib
import hashlib
import json
import threading
import time

import pytest

from bridge.signing import verify
from tests.support import Probe
from tools import constfold, ota, otabundle
from tools.paths import FIRMWARE


def test_stages_put_the_canary_first_then_batches():
    ids = [f"d{i}" for i in range(10)]
    assert ota.stages(ids, 1, "25%") == [["d0"], ["d1", "d2", "d3"], ["d4", "d5", "d6"], ["d7", "d8", "d9"]]
    assert ota.stages(ids, 2, 5) == [["d0", "d1"], ids[2:7], ids[7:]]
    assert ota.stages(ids, 0, "100%") == [ids]
    assert ota.stages(["a"], 1, "25%") == [["a"]]


def test_a_stage_over_the_failure_threshold_stops_the_rollout():
    class Fake:
        def update(self, dev_id, key, **kw):
            return ota.Result(dev_id, dev_id != "d1", "boom" if dev_id == "d1" else "ok")
    batches = [["d0"], ["d1", "d2"], ["d3"]]
    results, halted = ota.rollout(Fake(), dict.fromkeys("d0 d1 d2 d3".split(), b"k"), batches)
    assert [r.device for r in results] == ["d0", "d1", "d2"]
    assert halted == "stopped after stage 2 of 3: 1 of 2 failed (more than 0); 1 device(s) not offered the update"
    results, halted = ota.rollout(Fake(), dict.fromkeys("d0 d1 d2 d3".split(), b"k"), batches, max_failures=1)
    assert len(results) == 4 and halted is None
    lines = ota.report_lines(results, halted)
    assert lines[-1] == "wisp: 3 of 4 device(s) updated" and any(line.startswith("FAIL d1") for line in lines)


def test_a_rollout_that_finds_every_device_on_its_version_says_how_to_ship_changed_code():
    """Run again to resume, it is done; but changed code built under the version the devices run reaches none of
    them, and the summary must not read as if it had."""
    lines = ota.report_lines([], None, ["d0", "d1"], "0.1.1")
    assert lines[-1] == ("wisp: 0 of 0 device(s) updated; 2 already ran 0.1.1 (changed code needs a new --version "
                         "to reach them)")
    lines = ota.report_lines([ota.Result("d2", True, "ok")], None, ["d0"], "0.1.1")
    assert lines[-1] == "wisp: 1 of 1 device(s) updated; 1 already ran 0.1.1"


def test_bundle_is_the_manifest_then_every_file_with_the_version_stamped():
    b = otabundle.build("7.8.9")
    manifest = b.blob[:b.manifest_size].decode()
    assert hashlib.sha256(b.blob[:b.manifest_size]).hexdigest() == b.manifest_sha
    off = b.manifest_size
    for line, (path, size, sha) in zip(manifest.splitlines(), b.files, strict=True):
        assert line == f"{sha} {size} {path}" and path.startswith("wisp/")
        assert path.endswith(".mpy") or path == "wisp/strings.bin"  # the strings the modules read
        assert hashlib.sha256(b.blob[off:off + size]).hexdigest() == sha
        off += size
    assert off == b.size
    assert [p for p, _size, _sha in b.files].count("wisp/strings.bin") == 1
    start = b.manifest_size
    for path, size, _sha in b.files:
        if path == "wisp/__init__.mpy":
            assert b"7.8.9" in b.blob[start:start + size]  # the device reports the version the offer names
        start += size


def test_offer_is_signed_for_one_device_and_chunks_carry_offset_and_tag():
    b = otabundle.build("0.2.0")
    key = bytes(range(32))
    before = int(time.time())
    body = json.loads(verify(key, otabundle.offer(b, "dev7", key, health_s=30)))
    assert before <= body.pop("ts") <= time.time()  # dated: the device takes it only for a few minutes
    assert body == {"v": 1, "dev": "dev7", "ver": "0.2.0", "man": b.manifest_sha, "msize": b.manifest_size,
                    "size": b.size, "files": len(b.files), "force": False, "health_s": 30}
    assert verify(bytes(32), otabundle.offer(b, "dev7", key)) is None
    assert json.loads(verify(key, otabundle.offer(b, "dev7", key, offer_id="3fa1c0de")))["id"] == "3fa1c0de"
    c = otabundle.chunk(b, 1000, 1024)
    assert c[:4] == (1000).to_bytes(4, "big") and c[4:12] == b.manifest_sha[:8].encode()
    assert c[12:] == b.blob[1000:2024]


@pytest.mark.parametrize("bad", ["1.x", "1..2", "v1.2", "1.2.3.4.5.6.7.8.9"])
def test_versions_must_be_dotted_numbers_the_device_reads(bad):
    with pytest.raises(otabundle.BundleError):
        otabundle.build(bad)


@contextlib.contextmanager
def _update_of(broker, dev_id, online_before=False):
    """One `wisp ota` update of dev_id (a downgrade to 0.0.9) being followed in a thread, and a probe in the
    device's place on the broker: yields (probe, outcome), outcome() being the update's Result."""
    device = Probe(broker.host, broker.port, topics=(f"wisp/{dev_id}/ota/offer",))
    if online_before:
        device.publish(f"wisp/{dev_id}/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
    server = ota.Server(broker.host, broker.port, otabundle.build("0.0.9"))
    done = {}
    runner = threading.Thread(target=lambda: done.update(r=server.update(dev_id, bytes(32), timeout_s=10)))
    try:
        runner.start()
        deadline = time.monotonic() + 5
        while dev_id not in server.watches and time.monotonic() < deadline:
            time.sleep(0.01)

        def outcome():
            runner.join(15)  # past the update's own timeout_s
            return done["r"]
        outcome.server = server
        yield device, outcome
    finally:
        device.publish(f"wisp/{dev_id}/status", b"", retain=True)
        runner.join(15)
        device.close()
        server.close()


def test_a_state_from_an_earlier_update_is_not_taken_for_this_ones_answer(broker):
    # the last `wisp ota` had offered twice; the device's answer to the second offer arrived live just as the
    # next update started, before it offered: that update returned the old "downgrade ... refused" in 0.4 ms
    # (firmware that names no offer in its states: this is all the host can go by)
    with _update_of(broker, "otad1") as (device, outcome):
        device.publish("wisp/otad1/ota/state", {"v": 1, "state": "refused", "text": "an earlier refusal"})
        time.sleep(0.2)
        device.publish("wisp/otad1/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        device.wait_for("wisp/otad1/ota/offer", timeout=5)  # this update's offer, then the device's answer to it
        device.publish("wisp/otad1/ota/state", {"v": 1, "state": "refused", "text": "this offer's refusal"})
        assert outcome().text == "this offer's refusal"


def test_a_refusal_of_an_earlier_updates_offer_arriving_after_ours_is_not_taken_for_its_answer(broker):
    # the device answered the last `wisp ota`'s re-sent offer just after this update offered: this update
    # returned the old "downgrade ... refused (not forced)" though it was forced. The device echoes the id of
    # the offer it answers, so only the answer to one of this update's offers counts.
    with _update_of(broker, "otad2") as (device, outcome):
        device.publish("wisp/otad2/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        ours = device.wait_for("wisp/otad2/ota/offer", timeout=5)["id"]
        device.publish("wisp/otad2/ota/state", {"v": 1, "state": "refused", "id": "0a0b0c0d",
                                                "text": "offer refused: downgrade from 0.1.0 to 0.0.9 refused"})
        device.publish("wisp/otad2/ota/state", {"v": 1, "state": "refused", "id": ["not", "hashable"],
                                                "text": "a state no offer of ours asked for"})
        device.publish("wisp/otad2/ota/state", {"v": 1, "state": "refused", "id": ours,
                                                "text": "this offer's refusal"})
        assert outcome().text == "this offer's refusal"


def test_the_same_online_status_twice_gets_one_offer_not_two(broker):
    # each extra offer is answered too, and that answer could outlive the update that sent it (above)
    with _update_of(broker, "otad3", online_before=True) as (device, outcome):
        first = device.wait_for("wisp/otad3/ota/offer", timeout=5)
        device.publish("wisp/otad3/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        again = [m for t, m in device.drain(1.5) if t == "wisp/otad3/ota/offer"]
        assert again == [], "offered again though the device never went offline"
        device.publish("wisp/otad3/status", {"v": 1, "state": "offline"}, retain=True)
        device.publish("wisp/otad3/status", {"v": 1, "state": "online", "fw": "0.1.0"}, retain=True)
        second = device.wait_for("wisp/otad3/ota/offer", timeout=5)  # back online: offered anew
        assert second["id"] != first["id"]
        device.publish("wisp/otad3/ota/state", {"v": 1, "state": "refused", "id": first["id"], "text": "first"})
        assert outcome().text == "first"  # an answer to any of this update's offers counts


def test_an_outcome_the_device_retained_while_the_host_was_reconnecting_is_taken(broker):
    # the host's link dropped (a broker restart, its Wi-Fi) while the device rebooted into the update; the
    # device confirmed it meanwhile, retained, and the host read that only as a retained message once back:
    # it ignored it and reported "no outcome within 300 s after the switch" for an update that went well
    import socket
    with _update_of(broker, "otad4", online_before=True) as (device, outcome):
        device.wait_for("wisp/otad4/ota/offer", timeout=5)
        device.publish("wisp/otad4/ota/state", {"v": 1, "state": "rebooting", "fw": "0.1.0", "ver": "0.0.9",
                                                "text": "0.0.9 written and checked; rebooting into it"}, retain=True)
        time.sleep(0.3)
        outcome.server.listener.client.socket().shutdown(socket.SHUT_RDWR)  # the host's link drops; paho reconnects
        device.publish("wisp/otad4/status", {"v": 1, "state": "online", "fw": "0.0.9"}, retain=True)
        device.publish("wisp/otad4/ota/state", {"v": 1, "state": "ok", "fw": "0.0.9", "ver": "0.0.9",
                                                "text": "0.0.9 confirmed healthy"}, retain=True)
        r = outcome()
        device.publish("wisp/otad4/ota/state", b"", retain=True)
        assert (r.ok, r.text, r.after) == (True, "0.0.9 confirmed healthy", "0.0.9")


def test_a_device_back_on_the_new_version_whose_switch_went_unheard_is_not_offered_it_again(broker):
    # the device's link was down as it switched (its "rebooting" state was never sent), and it came back on
    # the new version: the host offered that version again and reported "offer refused: already running"
    with _update_of(broker, "otad5", online_before=True) as (device, outcome):
        device.wait_for("wisp/otad5/ota/offer", timeout=5)
        device.publish("wisp/otad5/ota/state", {"v": 1, "state": "verifying", "fw": "0.1.0", "ver": "0.0.9",
                                                "text": ""}, retain=True)
        device.publish("wisp/otad5/status", {"v": 1, "state": "offline"}, retain=True)
        device.publish("wisp/otad5/status", {"v": 1, "state": "online", "fw": "0.0.9"}, retain=True)
        time.sleep(0.3)
        device.publish("wisp/otad5/ota/state", {"v": 1, "state": "ok", "fw": "0.0.9", "ver": "0.0.9",
                                                "text": "0.0.9 confirmed healthy"}, retain=True)
        r = outcome()
        again = [m for t, m in device.drain(0.2) if t == "wisp/otad5/ota/offer"]
        device.publish("wisp/otad5/ota/state", b"", retain=True)
        assert (r.ok, r.text, again) == (True, "0.0.9 confirmed healthy", [])


def test_another_hosts_update_of_the_device_is_not_taken_for_this_one(broker, monkeypatch):
    # `wisp ota` and the bridge's REST rollout, each with its own bundle: the device took the other's offer.
    # This host followed the other bundle's switch as its own, then waited out its whole timeout ("no outcome
    # within 300 s after the switch"), and re-offered its bundle every 10 s mid-transfer, which restarted
    # the device's fetch from zero each time (on a slow link, neither update could ever finish)
    monkeypatch.setattr(ota, "OFFER_AGAIN_S", 1.0)
    with _update_of(broker, "otad6", online_before=True) as (device, outcome):
        device.wait_for("wisp/otad6/ota/offer", timeout=5)
        for off in range(0, 3000, 200):  # the other host's transfer, for 3 s
            device.publish("wisp/otad6/ota/need", {"v": 1, "man": "f" * 64, "off": off, "n": 200}, qos=0)
            device.publish("wisp/otad6/ota/state", {"v": 1, "state": "fetching", "fw": "0.1.0", "ver": "0.2.0",
                                                    "off": off, "size": 3000, "text": ""}, retain=True)
            time.sleep(0.2)
        offers = [m for t, m in device.drain(0.1) if t == "wisp/otad6/ota/offer"]
        device.publish("wisp/otad6/ota/state", {"v": 1, "state": "rebooting", "fw": "0.1.0", "ver": "0.2.0",
                                                "text": "0.2.0 written and checked; rebooting into it"}, retain=True)
        device.publish("wisp/otad6/status", {"v": 1, "state": "offline"}, retain=True)
        device.publish("wisp/otad6/status", {"v": 1, "state": "online", "fw": "0.2.0"}, retain=True)
        device.publish("wisp/otad6/ota/state", {"v": 1, "state": "ok", "fw": "0.2.0", "ver": "0.2.0",
                                                "text": "0.2.0 confirmed healthy"}, retain=True)
        again = device.wait_for("wisp/otad6/ota/offer", timeout=5)  # back online: this host's offer, refused
        device.publish("wisp/otad6/ota/state", {"v": 1, "state": "refused", "fw": "0.2.0", "ver": "0.0.9",
                                                "id": again["id"], "text": "offer refused: downgrade refused"})
        r = outcome()
        device.publish("wisp/otad6/ota/state", b"", retain=True)
        assert offers == [], "offered again while the device fetched another bundle"
        assert (r.ok, r.text, r.after) == (False, "offer refused: downgrade refused", "0.2.0")


def test_a_named_device_that_is_not_online_is_said_to_be_waited_for(own_broker):
    """`wisp ota dev1` for a device that is off waited its whole timeout without a word."""
    from tools.cli import build_parser
    at = f"{own_broker.host}:{own_broker.port}"
    probe = Probe(own_broker.host, own_broker.port)
    try:
        probe.publish("wisp/otaoff/status", {"v": 1, "state": "offline"}, retain=True)
        args = build_parser().parse_args(["ota", "otaoff", "otanever", "--broker", at, "--timeout", "1"])
        lines = []
        assert ota.run(args, own_broker.host, own_broker.port, None, lambda d: bytes(32), out=lines.append) == 1
    finally:
        probe.close()
    assert lines[:2] == [
        "wisp: otanever is not known to the broker: its update starts when it comes online (waiting up to 1 s)",
        "wisp: otaoff is offline: its update starts when it comes online (waiting up to 1 s)"], lines


@pytest.mark.parametrize("value", ["0", "4", "601", "1e9", "60.5", "x"])
def test_a_health_deadline_the_device_would_refuse_is_an_argument_error(value, capsys):
    """The device refuses an offer whose health_s is outside its bounds, in words that lump it in with sizes and
    file count; the CLI names the argument before building anything."""
    from tools.cli import main as wisp
    with pytest.raises(SystemExit) as exit_:
        wisp(["ota", "dev1", "--health-s", value])
    assert exit_.value.code == 2 and "argument --health-s: must be whole seconds 5-600" in capsys.readouterr().err


def test_the_health_bounds_are_the_devices():
    consts = constfold.package_consts(FIRMWARE / constfold.PACKAGE)["wisp.limits"]
    assert otabundle.HEALTH_RANGE_S == (consts["OTA_HEALTH_MIN_S"], consts["OTA_HEALTH_MAX_S"])


CLOCK_REFUSAL = "offer refused: the device clock is not set (no NTP time yet), so the offer's age cannot be checked"


def test_a_device_whose_clock_is_not_set_yet_is_offered_again_not_failed(broker, monkeypatch):
    # a board without an RTC battery, back from a power cut mid-update, is online seconds before NTP sets its
    # clock: the host took its "clock is not set" refusal as the update's end, though a second offer would do
    monkeypatch.setattr(ota, "OFFER_AGAIN_S", 0.5)
    with _update_of(broker, "otad7", online_before=True) as (device, outcome):
        first = device.wait_for("wisp/otad7/ota/offer", timeout=5)
        device.publish("wisp/otad7/ota/state", {"v": 1, "state": "refused", "id": first["id"], "text": CLOCK_REFUSAL})
        second = device.wait_for("wisp/otad7/ota/offer", timeout=5)  # its clock is set by now
        device.publish("wisp/otad7/ota/state", {"v": 1, "state": "refused", "id": second["id"],
                                                "text": "offer refused: downgrade from 0.1.0 to 0.0.9 refused"})
        assert outcome().text == "offer refused: downgrade from 0.1.0 to 0.0.9 refused"


def test_a_device_whose_clock_is_never_set_ends_the_update_saying_so(broker, monkeypatch):
    monkeypatch.setattr(ota, "OFFER_AGAIN_S", 0.5)
    with _update_of(broker, "otad8", online_before=True) as (device, outcome):
        def refuse_each():  # every offer, until the update gives up and no more come
            with contextlib.suppress(TimeoutError):
                while offer := device.wait_for("wisp/otad8/ota/offer", timeout=3):
                    device.publish("wisp/otad8/ota/state", {"v": 1, "state": "refused", "id": offer["id"],
                                                            "text": CLOCK_REFUSAL})
        refuser = threading.Thread(target=refuse_each, daemon=True)
        refuser.start()
        r = outcome()
    assert (r.ok, r.text) == (False, f"no outcome within 10 s: {CLOCK_REFUSAL}")
