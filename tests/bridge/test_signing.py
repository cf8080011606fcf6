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
