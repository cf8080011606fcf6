# Direct commands: wisp/<id>/cmd runs one tool with no LLM, for automations (Home Assistant,
# Node-RED, scripts). {"v":1,"id":"c1","tool":"gpio_write","args":{...}} -> cmd/res
# {"v":1,"id":"c1","ok":true,"result":"ok: porch_light=1"}. Same validation as LLM calls.
from wisp import limits, tools
from wisp.agent import parse_message
from wisp.log import log
from wisp.sched import CLOCK_VALID_AFTER, unix_time  # one clock: Unix seconds on every port

FLOOR_FILE = "cmd_floor"  # Unix seconds: signed commands with a "ts" up to this were or may have been run


def _load_floor():
    try:
        with open(FLOOR_FILE) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


class Commands:
    def __init__(self, dev):
        self.dev = dev
        self.running = 0
        self.seen = []  # (ts, id) of the signed commands run within their window, against replays
        self.floor = self.saved = _load_floor() if dev.signed else 0  # no "ts" at or below this is run

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
            err = self.fresh(cmd_id, cmd.get("ts"))
            if err:
                return cmd_id, None, None, err
        return cmd_id, cmd["tool"], cmd.get("args"), None

    def fresh(self, cmd_id, ts):
        """Replay protection for signed commands: a "ts" within its window of the device clock, above
        the floor, and an id not seen in the window. What falls out of the bounded memory raises the
        floor; the floor is kept on flash, so a restart forgets nothing that could be replayed."""
        now = unix_time()
        if now < CLOCK_VALID_AFTER:
            return "Error: command refused: the device clock is not set, so its age cannot be checked"
        if not isinstance(ts, (int, float)) or not now - limits.CMD_WINDOW_S <= ts <= now + limits.CMD_FUTURE_S:
            return "Error: command refused: 'ts' must be the current Unix time (%d s behind to %d s ahead)" % (
                limits.CMD_WINDOW_S, limits.CMD_FUTURE_S)
        if cmd_id is None or ts <= self.floor or any(i == cmd_id for _t, i in self.seen):
            return "Error: command refused: a replay, or older than the device remembers (restart); sign it anew"
        if ts > self.saved:  # the floor on flash must cover this one before it runs
            # Exactly this ts (rounded up), not a mark ahead of the clock: a command signed after a
            # restart is then taken at once. One tiny write per accepted signed command; they come
            # from people and scripts, not a flood (CMD_MAX_RUNNING), and LittleFS levels the wear.
            mark = int(ts) if ts == int(ts) else int(ts) + 1
            try:
                with open(FLOOR_FILE, "w") as f:
                    f.write(str(mark))
            except OSError as e:
                return "Error: command refused: not recorded against replays (%s)" % e
            self.saved = mark
        seen = [e for e in self.seen if e[0] >= now - limits.CMD_WINDOW_S]  # older ones fail the window
        if len(seen) >= limits.CMD_SEEN_MAX:
            oldest = min(seen)
            seen.remove(oldest)
            self.floor = max(self.floor, oldest[0])
        seen.append((ts, cmd_id))
        self.seen = seen
        return None

    async def _run(self, cmd_id, tool, args):
        try:
            result = await tools.run(self.dev, tool, args)
        finally:
            self.running -= 1
        log("cmd %s(%s) -> %s" % (tool, args, result))
        self.dev.rest()
        await self._respond(cmd_id, not result.startswith("Error"), result)

    async def _respond(self, cmd_id, ok, result):
        await self.dev.publish_json("cmd/res", {"v": 1, "id": cmd_id, "ok": ok, "result": result}, owed=True)
