"""Bridge-side signing: keys files are read with clear errors, and only llm/res to devices
with a known key is signed."""
import json

import pytest

from bridge.rounds.answer import Answer
from bridge.signing import load_keys, verify


def test_keys_from_a_provision_secrets_file_and_a_plain_map(tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"bridge": {"user": "b"}, "devices": {"porch": {"password": "p", "key": "ab" * 32}}}))
    assert load_keys(str(secrets)) == {"porch": bytes.fromhex("ab" * 32)}
    plain = tmp_path / "keys.json"
    plain.write_text(json.dumps({"dev1": "01" * 32}))
    assert load_keys(str(plain)) == {"dev1": bytes.fromhex("01" * 32)}
    assert load_keys(None) == {}


@pytest.mark.parametrize("content, words", [(None, "No such file"), ("{nope", "not JSON"), ("[1]", "must map"),
                                            ('{"d": "zz"}', "not hex")])
def test_bad_keys_files_are_clear_errors_without_secrets(tmp_path, content, words):
    path = tmp_path / "k.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as e:
        load_keys(str(path))
    assert words in str(e.value)


def test_an_answer_is_signed_only_for_a_device_with_a_key():
    sent = []
    key = bytes(range(32))
    for device, device_key in (("dev1", key), ("dev2", None)):
        Answer(lambda topic, msg: sent.append((topic, msg)), device, "x", 0, device_key).finish("ok", None)
    assert sent[0][0] == "wisp/dev1/llm/res"
    assert verify(key, sent[0][1]) == b'{"v":1,"id":"x","round":0,"seq":0,"done":true,"text":"ok"}'
    assert sent[1] == ("wisp/dev2/llm/res", {"v": 1, "id": "x", "round": 0, "seq": 0, "done": True, "text": "ok"})


def test_the_bridge_answers_only_requests_the_device_signed_and_binds_its_answers(tmp_path):
    """A broker login alone (a sniffed password) must not obtain signed tool calls for a provisioned
    device: unsigned, forged and unknown-device requests get no answer at all; an answer carries the
    hash of the exact request it answers, which the device checks (mp_test_signed.py)."""
    import asyncio
    import hashlib

    from bridge.config import Tier
    from bridge.rounds.handler import handle_llm_request
    from bridge.signing import sign_text
    from tests.bridge.harness import PORCH_ON, bridge_ctx, config, fake_tiers, llm_req
    from tests.fakes.openai_server import Reply

    key = bytes(range(32))
    with fake_tiers(lambda req: Reply(calls=[PORCH_ON])) as (tier,):
        cfg = config([Tier("local", tier.base_url, "m")], tmp_path)
        cfg.signing_keys = {"dev1": key}

        async def go():
            async with bridge_ctx(cfg) as ctx:
                sent = []
                ctx.publish = lambda topic, msg: sent.append(msg)
                await handle_llm_request("dev1", llm_req("att.1", round=1), ctx)  # the attacker's round 1
                await handle_llm_request("dev1", sign_text(bytes(32), llm_req("att.2")), ctx)  # a wrong key
                await handle_llm_request("dev9", sign_text(key, llm_req("att.3")), ctx)  # not in the fleet
                refused = list(sent)
                text = llm_req("dev.1")
                await handle_llm_request("dev1", sign_text(key, text), ctx)
                return refused, sent, ctx.refused, text
        refused, sent, count, text = asyncio.run(go())
    assert refused == [] and count == 3 and len(tier.requests) == 1  # no answer, no tokens spent
    msgs = [json.loads(verify(key, m)) for m in sent]
    assert msgs[0]["calls"][0]["args"] == PORCH_ON[1]
    assert {m["req"] for m in msgs} == {hashlib.sha256(text).hexdigest()[:16]}


def test_a_provisioned_fleet_caches_and_serves_only_its_own_devices():
    """Phantom ids cost nothing where the fleet is known: their manifests are not cached and their
    requests are not answered (the cache bound of an open fleet: test_translate.py)."""
    from bridge.app import Bridge
    from bridge.config import BridgeConfig
    from tests.bridge.harness import manifest

    bridge = Bridge(BridgeConfig(signing_keys={"dev1": bytes(32)}))
    for dev in ["dev1"] + [f"ghost{i}" for i in range(100)]:
        bridge._dispatch(f"wisp/{dev}/manifest", json.dumps(manifest(dev)).encode())
    assert bridge.manifests.get("dev1") is not None
    assert all(bridge.manifests.get(f"ghost{i}") is None for i in range(100))
    bridge._dispatch("wisp/ghost1/llm/req", b'{"v":1,"id":"g.1","round":0,"msgs":[]}')  # no task, no queue
    assert not bridge._tasks and not bridge._queue
