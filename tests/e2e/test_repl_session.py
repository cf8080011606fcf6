"""The serial REPL as a maker uses it: `wisp repl` in a terminal on a virtual board's console (the real
firmware on the MicroPython unix port behind tools/vdev.py), with mosquitto and the bridge on a fake
tier. Ctrl-C stops the agent; the helpers (`from wisp import repl as r`) then work on the stopped
device and leave it as they found it: offline, with nothing of theirs or of the agent running on."""
import itertools
import json
import re
import sys
import termios
import time

import pytest

from tests.e2e.stack import Stack
from tests.fakes.openai_server import Reply
from tests.terminal import Terminal
from tools import sim, vdev
from tools.paths import FIRMWARE, REPO

IDS = itertools.count(1)   # a device id per board: the stack's broker keeps their retained statuses
SLOW_MS = 3000          # how long the tier takes to answer a "dusk" ask: time to press Ctrl-C in it
PROMPT = ">>> "
LLM_ASK = "the guests arrive soon, brighten the porch"   # more than the fast path takes: the LLM answers
# what must never show on the console: a task of an earlier loop waking up, or a helper failing
STALE = ("read failed", "broker silent", "Task exception", "Traceback", "failed: TimeoutError")


def responder(request):
    """Turns the porch light on, then says so; slowly when asked about dusk."""
    last = request["messages"][-1]
    if last["role"] != "user":
        return Reply(text="The porch light is on.")
    slow = "dusk" in json.dumps(last)
    return Reply(calls=[("gpio_write", {"pin": "porch_light", "value": 1})], ttft_ms=SLOW_MS if slow else 0)


@pytest.fixture(scope="module")
def stack():
    s = Stack(responder=responder)
    yield s
    s.close()


class Board:
    """A virtual board with its console, on the stack's broker."""

    def __init__(self, stack, dev_id, extra=None, inputs=None, pins=None):
        self.stack, self.id = stack, dev_id
        workdir = stack.dir / "devices" / dev_id
        sim.write_config(workdir, dev_id, stack.broker.host, stack.broker.port, pins=pins, extra=extra)
        if inputs is not None:
            (workdir / "sim_inputs.json").write_text(json.dumps(inputs))
        self.vdev = vdev.start(workdir, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE])

    def status(self, state, timeout=10):
        return self.stack.probe.wait_for(f"wisp/{self.id}/status", lambda s: s.get("state") == state, timeout)

    def seen(self, suffix, seconds=0.5):
        """What the board published on wisp/<id>/<suffix> since the probe last looked."""
        return [p for t, p in self.stack.probe.drain(seconds) if t == f"wisp/{self.id}/{suffix}"]

    def repl(self, *args):
        return Repl(self.vdev.tty, *args)


@pytest.fixture
def board(stack, request):
    b = Board(stack, f"rp{next(IDS)}")
    b.status("online", 20)
    yield b
    b.vdev.stop()


class Repl:
    """`wisp repl` in a terminal, once mpremote has the console."""

    def __init__(self, tty, *args):
        self.term = Terminal([sys.executable, "-m", "tools.cli", "repl", "--port", tty, *args], cwd=REPO)
        self.term.read_until("exit this shell")
        deadline = time.monotonic() + 10
        while termios.tcgetattr(self.term.master)[3] & termios.ICANON:   # mpremote puts the terminal in raw mode
            assert time.monotonic() < deadline, "mpremote never took the terminal"
            time.sleep(0.01)

    def stop_agent(self):
        self.term.type("\x03")
        return self.term.read_until(PROMPT)

    def do(self, line, timeout=20):
        """Type a line at the prompt: what the board printed for it, up to its next prompt."""
        self.term.type(line + "\r")
        return self.term.read_until(PROMPT, timeout).split("\n", 1)[-1]   # the echoed line dropped

    def leave(self):
        self.term.type("\x1d")
        assert self.term.wait() == 0
        self.term.close()


def connects(status):
    return int(re.search(r"connects (\d+)", status)[1])


def clean(text):
    assert not [s for s in STALE if s in text], text
    return text


def test_helpers_called_again_and_again_leave_nothing_running(board):
    """Each helper's loop is gone when it returns: the link reader of an earlier ask used to wake on
    its closed socket (`read failed: OSError(9)`) and drop the next ask's link, its keepalive to
    drop links too, and the stopped agent's own task to take requests (`pop from empty list`)."""
    r = board.repl("--stay")
    r.stop_agent()
    r.do("from wisp import repl as r")
    first = clean(r.do('r.ask("turn on the porch light")'))
    assert "porch light is on  [device" in first
    r.leave()
    r = board.repl("--stay")                      # back, the agent still stopped
    r.do("from wisp import repl as r")
    assert "porch light is off  [device" in clean(r.do('r.ask("turn off the porch light")'))
    before = connects(clean(r.do("r.status()")))
    for _ in range(2):
        assert "[llm/local" in clean(r.do(f'r.ask("{LLM_ASK}")'))
    clean(r.do('r.run("gpio_read", pin="door")'))
    status = clean(r.do("r.status()"))
    assert connects(status) == before + 2, status   # one connect per ask: none knocked down
    assert "porch_light=1(out)" in status
    r.leave()


def test_the_device_is_offline_at_the_repl_after_an_ask_too(board, stack):
    """The status says offline while the agent is stopped, also once an ask has connected the link:
    a clean disconnect left its retained status "online", so `wisp ask` waited for its whole timeout
    and `wisp sim` refused to start the device again ("already online")."""
    r = board.repl()
    assert not [s for s in board.seen("status", 1) if s["state"] == "offline"], "attaching stopped the agent"
    r.stop_agent()
    board.status("offline", 5)                     # at once: the link is dropped, the broker sends the will
    r.do("from wisp import repl as r")
    assert "[llm/local" in clean(r.do(f'r.ask("{LLM_ASK}")'))   # an LLM ask waits for the link
    board.status("online")
    board.status("offline", 5)
    t0 = time.monotonic()
    asked = stack.wisp("ask", board.id, "is the door open?", "--timeout", "30")
    assert asked.returncode == 3 and time.monotonic() - t0 < 10, (asked.stdout, asked.stderr)
    r.leave()                                      # the agent restarts
    board.status("online")


def test_ctrl_c_in_an_ask_drops_it_for_good(board, stack):
    """An ask Ctrl-C cut short is over: it used to stay connected (online) and come back in the next
    helper, re-sending its LLM request and acting on the answer (the light back on after "off")."""
    r = board.repl("--stay")
    r.stop_agent()
    r.do("from wisp import repl as r")
    r.term.type('r.ask("it is dusk, light the porch please")\r')
    r.term.read_until("online as")
    stack.probe.wait_for(f"wisp/{board.id}/llm/req", timeout=10)
    r.stop_agent()                                 # KeyboardInterrupt in the ask
    board.status("offline", 5)
    time.sleep(SLOW_MS / 1000)                     # the tier answers the ask that is gone
    assert "porch light is off  [device" in clean(r.do('r.ask("turn off the porch light")'))
    time.sleep(2)
    assert "porch_light=0(out)" in clean(r.do("r.status()"))
    sent = board.seen("llm/req")
    assert not sent, f"the interrupted ask asked the LLM again: {sent}"
    r.leave()


def test_a_job_added_at_the_repl_waits_for_the_agent(board):
    """Schedules belong to the agent: a job added while it is stopped runs once it runs again, not
    in the middle of a later helper (adding a job used to wake the stopped scheduler)."""
    r = board.repl("--stay")
    r.stop_agent()
    r.do("from wisp import repl as r")
    steps = '[{"tool": "gpio_write", "args": {"pin": "fan", "value": 1}}]'
    assert "Error" not in r.do(f'r.run("routine_define", name="fan_on", steps={steps})')
    assert "Error" not in r.do('r.run("schedule_add", name="soon", spec="in 1s", routine="fan_on")')
    time.sleep(2)
    clean(r.do('r.ask("is the door open?")'))
    time.sleep(1)
    assert "fan=0(out)" in clean(r.do("r.status()"))
    r.leave()


def test_ctrl_c_while_the_board_joins_wifi_leaves_working_helpers(stack):
    """A board that cannot join its Wi-Fi keeps trying; Ctrl-C there stopped it before the agent was
    built, and r.status() and r.ask() failed on the missing agent."""
    b = Board(stack, f"rp{next(IDS)}", extra={"wifi": {"ssid": "home", "password": "secret"}},
              inputs={"wifi": False})
    try:
        r = b.repl("--stay")
        time.sleep(1)                              # main.py is trying to join
        r.stop_agent()
        r.do("from wisp import repl as r")
        assert "agent  inbox 0" in clean(r.do("r.status()"))
        assert "porch light is on  [device" in clean(r.do('r.ask("turn on the porch light")'))
        r.leave()
    finally:
        b.vdev.stop()


def test_ctrl_c_on_the_first_boot_of_an_update_stops_the_agent_as_on_any_boot(stack):
    """An update's first boots run under wispboot's trial watch: Ctrl-C there gave a traceback and
    left the device online (its link up, its watchdog unheld), where any other boot stops cleanly."""
    b = Board(stack, f"rp{next(IDS)}")
    try:
        b.status("online", 20)
        b.vdev.stop()
        workdir = stack.dir / "devices" / b.id
        (workdir / "ota.json").write_text(json.dumps({"trial": True, "tries": 0, "ver": "0.9-new",
                                                       "prev_ver": "0.8", "health_s": 600}))
        b.vdev = vdev.start(workdir, main=str(FIRMWARE / "main.py"), pythonpath=[FIRMWARE])
        b.status("online", 20)
        r = b.repl("--stay")
        stopped = r.stop_agent()
        assert "stopped by user" in clean(stopped), stopped
        b.status("offline", 5)
        r.do("from wisp import repl as r")
        assert "porch light is on  [device" in clean(r.do('r.ask("turn on the porch light")'))
        r.leave()
    finally:
        b.vdev.stop()


def test_a_reboot_asked_at_the_repl_reboots(board):
    """system_reboot waits a moment in a task so its reply goes out first; at the REPL that task went
    with the helper's loop, so the board said "rebooting" and stayed at the prompt."""
    r = board.repl("--stay")
    r.stop_agent()
    board.status("offline", 5)
    r.term.type('from wisp import repl as r; r.run("system_reboot", confirm="reboot")\r')
    r.term.read_until("ok: rebooting")
    board.status("online", 20)                     # booted again, the agent running
    r.leave()


def test_an_ask_without_words_is_refused_with_the_usage(board):
    r = board.repl("--stay")
    r.stop_agent()
    r.do("from wisp import repl as r")
    for bad in ('""', '"  "', "5"):
        out = clean(r.do(f"r.ask({bad})"))
        assert out.startswith('usage: r.ask("'), out
    assert not board.seen("llm/req", 1), "an empty ask went to the LLM"
    r.leave()


def test_timed_offs_are_kept_at_the_repl(stack):
    """An output's off is a task of the agent: Ctrl-C used to drop it, and a pump with max_on_s ran on
    while the maker sat at the REPL; a pulse started at the REPL stayed on."""
    pins = dict(sim.DEFAULT_PINS, pump={"pin": 21, "mode": "out", "max_on_s": 3, "min_interval_ms": 0})
    b = Board(stack, f"rp{next(IDS)}", pins=pins)
    try:
        b.status("online", 20)
        r = b.repl("--stay")
        stack.probe.publish(f"wisp/{b.id}/cmd", {"v": 1, "id": "on1", "tool": "gpio_write",
                                                  "args": {"pin": "pump", "value": 1}})
        assert stack.probe.wait_for(f"wisp/{b.id}/cmd/res", lambda m: m["id"] == "on1")["ok"]
        r.stop_agent()                             # within the pump's 3 s
        time.sleep(3.5)
        r.do("from wisp import repl as r")
        assert "pump=0(out)" in clean(r.do("r.status()"))
        t0 = time.monotonic()
        assert "ok: fan=1 for 1500 ms, then 0" in clean(r.do('r.run("gpio_pulse", pin="fan", ms=1500)'))
        assert time.monotonic() - t0 > 1.4        # the pulse ran its length, then the helper returned
        assert "fan=0(out)" in clean(r.do("r.status()"))
        r.do('r.run("gpio_write", pin="pump", value=1)')
        assert "pump=0(out)" in clean(r.do("r.status()"))   # its max_on_s kept at the REPL too
        r.leave()
    finally:
        b.vdev.stop()
