# Direct commands: wisp/<id>/cmd runs one tool with no LLM, for automations (Home Assistant,
# Node-RED, scripts). {"v":1,"id":"c1","tool":"gpio_write","args":{...}} -> cmd/res
# {"v":1,"id":"c1","ok":true,"result":"ok: porch_light=1"}. Same validation as LLM calls.
# Here is what outlives a command: how many run, and the replay memory of signed ones. The code
# that takes one is wisp/command.py, loaded per command (docs/architecture.md "Heap budget").
from wisp import unload


class Commands:
    def __init__(self, dev):
        self.dev = dev
        self.running = 0
        self.seen = []  # (ts, repr(id)) of the signed commands run within their window, against replays
        self.floor = self.saved = self._code().load_floor() if dev.signed else 0  # no "ts" at or below this is run
        self.idle()

    def on_cmd(self, payload):
        self._code().take(self, payload)
        self.idle()

    def fresh(self, cmd_id, ts):
        """Replay check of a signed command or ask: error text, or None when fresh (command.fresh)."""
        err = self._code().fresh(self, cmd_id, ts)
        self.idle()
        return err

    def idle(self):
        """Drop the command code once no command runs."""
        if not self.running:
            unload("wisp.command")

    def _code(self):
        # a plain method: the module is bound in no long-lived frame
        from wisp import command
        return command
