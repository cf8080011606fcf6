# Direct commands: wisp/<id>/cmd runs one tool with no LLM, for automations (Home Assistant,
# Node-RED, scripts). {"v":1,"id":"c1","tool":"gpio_write","args":{...}} -> cmd/res
# {"v":1,"id":"c1","ok":true,"result":"ok: porch_light=1"}. Same validation as LLM calls.
import time

from micropython import const

from wisp import limits, tools
from wisp.agent import parse_message
from wisp.log import log

_CLOCK_VALID_AFTER = const(1704067200)  # 2024-01-01: before that the clock was never set


class Commands:
    def __init__(self, dev):
        self.dev = dev
        self.running = 0
        self.recent_ids = []  # ids of signed commands already run, against replays

    def on_cmd(self, payload):
        cmd_id, tool, args, err = self._parse(payload)
        if err is None and self.running >= limits.CMD_MAX_RUNNING:
            err = "Error: device busy (%d commands running)" % self.running
        if err:
            log("cmd refused: " + err)
            self.dev.outbox.answer("cmd/res", {"v": 1, "id": cmd_id, "ok": False, "result": err})
            return
        if self.dev.spawn(self._run(cmd_id, tool, args), "cmd"):
            self.running += 1

    def _parse(self, payload):
        signed = self.dev.signed
        if signed and payload is not None:  # None: too big, parse_message words the refusal
            from wisp import sign
            body = sign.unseal(self.dev, payload, "cmd")
            if body is None:  # refused; its id (if readable) only lets the sender match the refusal
                return (parse_message(payload, "", "")[1], None, None,
                        "Error: command refused: it must be signed with this device's key")
            payload = body
        cmd, cmd_id, err = parse_message(payload, "command", '{"v": 1, "id": ..., "tool": ..., "args": {...}}')
        if err:
            return cmd_id, None, None, err
        if not isinstance(cmd.get("tool"), str):
            return cmd_id, None, None, "Error: command needs 'tool' (a tool name)"
        if signed:
            err = self._fresh(cmd_id, cmd.get("ts"))
            if err:
                return cmd_id, None, None, err
        return cmd_id, cmd["tool"], cmd.get("args"), None

    def _fresh(self, cmd_id, ts):
        """Replay protection for signed commands: a recent timestamp and an id not seen before."""
        now = time.time()
        if now < _CLOCK_VALID_AFTER:
            return "Error: command refused: the device clock is not set, so its age cannot be checked"
        if not isinstance(ts, (int, float)) or abs(now - ts) > limits.CMD_WINDOW_S:
            return "Error: command refused: 'ts' must be the current Unix time (within %d s)" % limits.CMD_WINDOW_S
        if cmd_id is None or cmd_id in self.recent_ids:
            return "Error: command refused: a signed command needs a new 'id' (replay?)"
        self.recent_ids.append(cmd_id)
        if len(self.recent_ids) > limits.CMD_SEEN_MAX:
            self.recent_ids.pop(0)
        return None

    async def _run(self, cmd_id, tool, args):
        try:
            result = await tools.run(self.dev, tool, args)
        finally:
            self.running -= 1
        log("cmd %s(%s) -> %s" % (tool, args, result))
        await self._respond(cmd_id, not result.startswith("Error"), result)

    async def _respond(self, cmd_id, ok, result):
        await self.dev.publish_json("cmd/res", {"v": 1, "id": cmd_id, "ok": ok, "result": result}, owed=True)
