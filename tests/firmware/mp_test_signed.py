# Signed instructions on a provisioned device: llm/res and cmd act only when signed with the
# device's key; unsigned, forged, replayed and stale ones are refused, reported, never run.
import asyncio
import json
import time

from fakeboard import make_device

from wisp import sign
from wisp.agent import Agent
from wisp.commands import Commands

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY = sign.key_from_hex(KEY_HEX)


def _device(**cfg):
    dev = make_device()
    dev.config.update(cfg)
    from wisp.device import _signing
    dev.key, dev.signed = _signing(dev.config)
    return dev


def _signed(obj, key=KEY):
    return sign.sign(key, json.dumps(obj).encode())


async def _cmd_results(dev, payloads):
    cmds = Commands(dev)
    for p in payloads:
        cmds.on_cmd(p)
        await asyncio.sleep_ms(5)
    await asyncio.sleep_ms(20)
    return dev.link.on("wisp/t1/cmd/res")


async def test_signed_fresh_command_runs_and_everything_else_is_refused():
    dev = _device(key=KEY_HEX)
    now = int(time.time())
    good = {"v": 1, "id": "c1", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}, "ts": now}
    res = await _cmd_results(dev, [
        json.dumps(dict(good, id="plain")).encode(),                  # unsigned
        _signed(dict(good, id="forged"), key=bytes(32)),               # wrong key
        _signed(good)[:-10] + b'0000000"}',                            # tampered signature
        _signed(dict(good, id="old", ts=now - 3600)),                  # stale
        _signed(dict(good, id="nots", ts=None)),                       # no timestamp
        _signed(good),                                                 # the real one
        _signed(good),                                                 # replayed
    ])
    texts = [r["result"] for r in res]
    if [r["ok"] for r in res] != [False, False, False, False, False, True, False]:
        raise Exception(texts)
    for i, frag in ((0, "must be signed"), (1, "must be signed"), (2, "must be signed"), (3, "current Unix time"),
                    (4, "current Unix time"), (6, "replay")):
        if frag not in texts[i]:
            raise Exception((i, texts[i]))
    if res[0]["id"] != "plain" or res[1]["id"] != "forged":  # the sender can match the refusal
        raise Exception([r["id"] for r in res])
    if dev.board.levels[18] != 1 or dev.refused != 3:
        raise Exception((dev.board.levels[18], dev.refused))
    events = [e["text"] for e in dev.link.on("wisp/t1/event")]
    if not events or "unsigned or forged cmd refused" not in events[0]:
        raise Exception(events)


async def test_llm_answers_must_be_signed_to_act():
    dev = _device(key=KEY_HEX)
    agent = Agent(dev)
    sent = []

    def bridge(topic, payload):
        if topic.endswith("/llm/req"):
            text = sign.verify(KEY, payload.encode())  # the device signs its requests too
            if text is None:
                raise Exception("unsigned llm/req: %r" % payload)
            req = json.loads(text)
            sent.append(req)
            base = {"v": 1, "id": req["id"], "round": req["round"], "req": sign.bind(text)}
            if req["round"] == 0:
                # signed by the bridge but bound to another request text under this id (an attacker's
                # request answered by the bridge): must not run
                agent.on_llm_res(_signed(dict(base, seq=0, req=sign.bind(b"{}"), calls=[
                    {"cid": "w", "tool": "gpio_write", "args": {"pin": "porch_light", "value": 1}}])))
                # first an unsigned call (must not run), then a forged one, then the signed one
                agent.on_llm_res(json.dumps(dict(base, seq=0, calls=[{"cid": "x", "tool": "gpio_write",
                                                                        "args": {"pin": "porch_light", "value": 1}}])))
                agent.on_llm_res(_signed(dict(base, seq=0, calls=[{"cid": "y", "tool": "gpio_write",
                                                                    "args": {"pin": "porch_light", "value": 1}}]),
                                         key=bytes(32)))
                agent.on_llm_res(_signed(dict(base, seq=0, calls=[{"cid": "z", "tool": "gpio_write",
                                                                    "args": {"pin": "fan", "value": 1}}])))
                agent.on_llm_res(_signed(dict(base, seq=1, done=True)))
            else:
                agent.on_llm_res(_signed(dict(base, seq=0, done=True, text="fan is on")))
    dev.link.on_publish = bridge
    task = asyncio.create_task(agent.run())
    agent.on_ask(json.dumps({"id": "s1", "text": "cool the room"}))
    for _ in range(100):
        await asyncio.sleep_ms(5)
        if dev.link.on("wisp/t1/reply"):
            break
    task.cancel()
    reply = dev.link.on("wisp/t1/reply")[0]
    if not reply["ok"] or reply["text"] != "fan is on":
        raise Exception(reply)
    if dev.board.levels[5] != 0 or dev.board.levels[18] != 1 or dev.refused != 2:
        raise Exception((dev.board.levels, dev.refused))
    if not sent[0]["id"].startswith("s1.") or len(sent[0]["id"]) != 9:
        raise Exception("request id lacks its random suffix: %r" % sent[0]["id"])


def test_a_forged_answer_with_no_ask_running_is_still_reported():
    # no conversation waits between asks, but a forged llm/res is someone at work: say so
    dev = _device(key=KEY_HEX)
    agent = Agent(dev)
    forged = {"v": 1, "id": "x", "round": 0, "seq": 0, "done": True,
              "calls": [{"cid": "c", "tool": "gpio_write", "args": {"pin": "fan", "value": 1}}]}
    agent.on_llm_res(json.dumps(forged))
    agent.on_llm_res(_signed(forged, key=bytes(32)))
    if dev.refused != 2 or dev.board.levels[18] != 0:
        raise Exception((dev.refused, dev.board.levels))


async def test_a_malformed_key_refuses_everything_and_unsigned_mode_accepts_plain():
    dev = _device(key="not-hex")
    res = await _cmd_results(dev, [_signed({"v": 1, "id": "c", "tool": "gpio_read", "args": {"pin": "door"},
                                            "ts": int(time.time())})])
    if res[0]["ok"]:
        raise Exception(res)
    dev = _device(key=KEY_HEX, signed=False)
    res = await _cmd_results(dev, [json.dumps({"id": "c", "tool": "gpio_read", "args": {"pin": "door"}}).encode()])
    if res != [{"v": 1, "id": "c", "ok": True, "result": "door=1"}]:
        raise Exception(res)


async def test_signing_asked_for_without_a_key_refuses_rather_than_accepts_all():
    # "signed": "only" with no key once left the device taking every unsigned instruction
    for mode in (True, "only"):
        dev = _device(signed=mode)
        if dev.key is not None or dev.signed != mode:
            raise Exception((mode, dev.key, dev.signed))
        res = await _cmd_results(dev, [json.dumps({"id": "c", "tool": "gpio_read", "args": {"pin": "door"}})])
        if res[0]["ok"]:
            raise Exception(res)
    dev = _device()  # no key, no "signed": unsigned, as `wisp sim` runs
    if dev.signed is not False:
        raise Exception(dev.signed)


async def _run_cmds(cmds, dev, payloads):
    """Send each command and wait for its cmd/res; the results, in order."""
    out = []
    for p in payloads:
        before = len(dev.link.on("wisp/t1/cmd/res"))
        cmds.on_cmd(p)
        for _ in range(5000):  # up to ~5 s on a busy machine; done as soon as it happens
            if len(dev.link.on("wisp/t1/cmd/res")) > before:
                break
            await asyncio.sleep_ms(1)
        out.append(dev.link.on("wisp/t1/cmd/res")[-1])
    return out


def _read(i, ts):
    return _signed({"v": 1, "id": "r%d" % i, "tool": "gpio_read", "args": {"pin": "fan"}, "ts": ts})


async def test_a_signed_command_is_never_run_twice_after_many_newer_ones():
    from wisp import limits
    dev = _device(key=KEY_HEX)
    cmds = Commands(dev)
    now = int(time.time())
    first = _read(0, now - 60)
    newer = [_read(i, now - 50 + i) for i in range(1, limits.CMD_SEEN_MAX + 8)]
    res = await _run_cmds(cmds, dev, [first] + newer + [first])
    if not all(r["ok"] for r in res[:-1]):
        raise Exception([r["result"] for r in res if not r["ok"]])
    if res[-1]["ok"] or "replay" not in res[-1]["result"]:
        raise Exception("replayed after %d newer commands: %r" % (len(newer), res[-1]))


async def test_signed_commands_with_text_and_number_ids_in_one_second_are_all_answered():
    # Ids are text or whole numbers (a Node-RED counter). Past CMD_SEEN_MAX in the window the
    # oldest is forgotten; picking it compared the ids of commands signed in the same second, a
    # text with a number, which raised: from then on no signed command got a cmd/res.
    from wisp import limits
    dev = _device(key=KEY_HEX)
    now = int(time.time())
    n = limits.CMD_SEEN_MAX + 4
    res = await _run_cmds(Commands(dev), dev, [_signed({"v": 1, "id": i if i % 2 else "c%d" % i, "tool": "gpio_read",
                                                        "args": {"pin": "fan"}, "ts": now}) for i in range(n)])
    if len(res) != n:
        raise Exception("%d of %d commands answered" % (len(res), n))
    # one more than the memory is taken; the rest of that second is refused (docs/security.md)
    if [r["ok"] for r in res] != [True] * (limits.CMD_SEEN_MAX + 1) + [False] * 3 or "replay" not in res[-1]["result"]:
        raise Exception([r["result"] for r in res])


async def test_a_signed_command_is_not_run_again_after_a_restart():
    dev = _device(key=KEY_HEX)
    now = int(time.time())
    cmd = _read(1, now)
    if not (await _run_cmds(Commands(dev), dev, [cmd]))[0]["ok"]:
        raise Exception("the first run was refused")
    again = await _run_cmds(Commands(dev), dev, [cmd])  # a new Commands: what a reboot leaves (flash)
    if again[0]["ok"] or "restart" not in again[0]["result"]:
        raise Exception("replayed after a restart: %r" % again[0])
    fresh = await _run_cmds(Commands(dev), dev, [_read(2, now + 1)])  # signed after the restart
    if not fresh[0]["ok"]:
        raise Exception("a command signed after the restart was refused: %r" % fresh[0])


async def test_a_command_dated_beyond_the_small_future_skew_is_refused():
    from wisp import limits
    dev = _device(key=KEY_HEX)
    now = int(time.time())
    res = await _run_cmds(Commands(dev), dev, [_read(1, now + limits.CMD_FUTURE_S + 60), _read(2, now + 2)])
    if res[0]["ok"] or "ahead" not in res[0]["result"] or not res[1]["ok"]:
        raise Exception([r["result"] for r in res])


async def _wait(check):
    for _ in range(5000):  # up to ~5 s on a busy machine; done as soon as it happens
        if check():
            return True
        await asyncio.sleep_ms(1)
    return False


async def test_a_signed_only_device_obeys_no_unsigned_topic():
    from wisp.app import _router
    dev = _device(key=KEY_HEX, signed="only")
    agent = Agent(dev)
    cmds = Commands(dev)
    agent.fresh = cmds.fresh
    on_message = _router(dev, agent, cmds, "homeassistant/status")
    task = asyncio.create_task(agent.run())
    # Home Assistant's set/ cannot be signed: refused, reported
    on_message("wisp/t1/set/fan", b"ON", 2)
    if not await _wait(lambda: dev.link.on("wisp/t1/event")) or dev.board.levels[18] != 0:
        raise Exception("unsigned set/fan switched the fan on a signed-only device")
    if dev.link.on("wisp/t1/event")[-1]["text"] != "unsigned set/fan refused":
        raise Exception(dev.link.on("wisp/t1/event"))
    # an unsigned ask (the fast path would switch the fan) is refused with a reply
    on_message("wisp/t1/ask", json.dumps({"id": "u1", "text": "turn on the fan"}).encode(), 0)
    await _wait(lambda: dev.link.on("wisp/t1/reply"))
    r = dev.link.on("wisp/t1/reply")[-1]
    if r["ok"] or r["id"] != "u1" or "must be signed" not in r["text"] or dev.board.levels[18] != 0:
        raise Exception(r)
    # the owner's signed ask acts; the same ask replayed does not
    signed = _signed({"v": 1, "id": "s1", "text": "turn on the fan", "ts": int(time.time())})
    on_message("wisp/t1/ask", signed, 0)
    await _wait(lambda: len(dev.link.on("wisp/t1/reply")) > 1)
    if not dev.link.on("wisp/t1/reply")[-1]["ok"] or dev.board.levels[18] != 1:
        raise Exception(dev.link.on("wisp/t1/reply")[-1])
    await tools_off(dev)
    on_message("wisp/t1/ask", signed, 0)
    await _wait(lambda: len(dev.link.on("wisp/t1/reply")) > 2)
    task.cancel()
    r = dev.link.on("wisp/t1/reply")[-1]
    if r["ok"] or "replay" not in r["text"] or dev.board.levels[18] != 0:
        raise Exception(r)


async def tools_off(dev):
    from wisp import tools
    await tools.run(dev, "gpio_write", {"pin": "fan", "value": 0})


async def test_a_signed_device_still_takes_home_assistants_set():
    from wisp.app import _router
    dev = _device(key=KEY_HEX)
    agent = Agent(dev)
    cmds = Commands(dev)
    _router(dev, agent, cmds, "homeassistant/status")("wisp/t1/set/fan", b"ON", 2)
    if not await _wait(lambda: dev.board.levels[18] == 1):
        raise Exception("set/fan was not obeyed in the default signed mode")


def test_a_request_signed_in_pieces_carries_the_signature_of_its_whole_text():
    from wisp.conversation import _pieces
    req = {"v": 1, "id": "a1.0f0f0f", "msgs": [{"r": "user", "t": "y" * 200}] * 4, "hash": "h"}
    pieces = _pieces(req)
    whole = "".join(pieces).encode()
    signed = b"".join(p.encode() if isinstance(p, str) else p for p in sign.sign(KEY, pieces))
    if signed != sign.sign(KEY, whole) or sign.verify(KEY, signed) != whole:
        raise Exception(signed)
    if sign.bind(pieces) != sign.bind(whole):
        raise Exception("the bind hash differs between pieces and the whole text")
