# One direct command (wisp/commands.py keeps what outlives it): parse it, check its signature and
# freshness (replay protection), run its tool, answer on cmd/res. Loaded per command and dropped
# once no command runs: between commands its code holds no heap. `cmds` is the Commands state.
from wisp import limits, tools
from wisp.agent import parse_message
from wisp.log import log
from wisp.sched import CLOCK_VALID_AFTER, unix_time  # one clock: Unix seconds on every port

FLOOR_FILE = "cmd_floor"  # Unix seconds: signed commands with a "ts" up to this were or may have been run


def load_floor():
    try:
        with open(FLOOR_FILE) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def take(cmds, payload):
    """Commands.on_cmd: parse and check one command, then run it in its own task."""
    cmd_id, tool, args, err = _parse(cmds, payload)
    if err is None and cmds.running >= limits.CMD_MAX_RUNNING:
        err = "Error: device busy (%d commands running)" % cmds.running
    if err:
        log("cmd refused: " + err)
        cmds.dev.outbox.answer("cmd/res", {"v": 1, "id": cmd_id, "ok": False, "result": err})
        return
    if cmds.dev.spawn(_run(cmds, cmd_id, tool, args), "cmd"):
        cmds.running += 1


def _parse(cmds, payload):
    signed = cmds.dev.signed
    if signed and payload is not None:  # None: too big, parse_message words the refusal
        from wisp import sign
        body = sign.unseal(cmds.dev, payload, "cmd")
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
        err = fresh(cmds, cmd_id, cmd.get("ts"))
        if err:
            return cmd_id, None, None, err
    return cmd_id, cmd["tool"], cmd.get("args"), None


def fresh(cmds, cmd_id, ts):
    """Replay protection for signed commands: a "ts" within its window of the device clock, above
    the floor, and an id not seen in the window. What falls out of the bounded memory raises the
    floor; the floor is kept on flash, so a restart forgets nothing that could be replayed."""
    now = unix_time()
    if now < CLOCK_VALID_AFTER:
        return "Error: command refused: the device clock is not set, so its age cannot be checked"
    if not isinstance(ts, (int, float)) or not now - limits.CMD_WINDOW_S <= ts <= now + limits.CMD_FUTURE_S:
        return "Error: command refused: 'ts' must be the current Unix time (%d s behind to %d s ahead)" % (
            limits.CMD_WINDOW_S, limits.CMD_FUTURE_S)
    if cmd_id is None or ts <= cmds.floor or any(i == repr(cmd_id) for _t, i in cmds.seen):
        return "Error: command refused: a replay, or older than the device remembers (restart); sign it anew"
    if ts > cmds.saved:  # the floor on flash must cover this one before it runs
        # Exactly this ts (rounded up), not a mark ahead of the clock: a command signed after a
        # restart is then taken at once. One tiny write per accepted signed command; they come
        # from people and scripts, not a flood (CMD_MAX_RUNNING), and LittleFS levels the wear.
        mark = int(-(-ts // 1))  # ts rounded up
        try:
            with open(FLOOR_FILE, "w") as f:
                f.write(str(mark))
        except OSError as e:
            return "Error: command refused: not recorded against replays (%s)" % e
        cmds.saved = mark
    seen = [e for e in cmds.seen if e[0] >= now - limits.CMD_WINDOW_S]  # older ones fail the window
    if len(seen) >= limits.CMD_SEEN_MAX:
        oldest = min(seen)
        seen.remove(oldest)
        cmds.floor = max(cmds.floor, oldest[0])
    seen.append((ts, repr(cmd_id)))  # as text: min() above compares ids of the same ts, and 5 < "a" raises
    cmds.seen = seen
    return None


async def _run(cmds, cmd_id, tool, args):
    try:
        result = await tools.run(cmds.dev, tool, args)
    finally:
        cmds.running -= 1
    cmds.dev.rest()  # first: what the tool loaded goes back before anything else is built
    try:
        log("cmd %s(%s) -> %s" % (tool, args, result))
    except MemoryError:  # a long line in a full heap: the answer matters more (the tool has run)
        pass
    await _respond(cmds, cmd_id, not result.startswith("Error"), result)
    cmds.idle()


async def _respond(cmds, cmd_id, ok, result):
    await cmds.dev.publish_json("cmd/res", {"v": 1, "id": cmd_id, "ok": ok, "result": result}, owed=True)
