"""`wisp ask` as a user sees it: progress of a slow LLM ask on a terminal (and nothing extra when
piped), the device's fast path named apart from the `local` tier, an empty model answer as a failure."""
import json
import os
import pty
import subprocess
import sys

import pytest

from tests.e2e.stack import Stack, porch_responder
from tests.fakes.openai_server import Reply
from tools.ask import ask
from tools.paths import REPO

LLM_ASK = "it is getting dark, light up the porch please"
EMPTY_ASK = "say nothing at all"


def responder(request):
    if request["messages"][-1].get("content") == EMPTY_ASK:
        return Reply(text="")
    return porch_responder(request)


@pytest.fixture(scope="module")
def stack():
    with Stack(responder) as s:
        s.start_device("dev1")
        yield s


def test_progress_names_the_model_round_and_each_tool_call(stack):
    seen = []
    reply = ask(stack.broker.host, stack.broker.port, "dev1", LLM_ASK, timeout_s=60, progress=seen.append)
    assert reply["ok"], reply
    assert seen[0] == "waiting for dev1"
    assert "round 1: waiting for the model" in seen
    assert "round 1: gpio_write(pin=porch_light, value=1)" in seen
    assert "round 2: waiting for the model" in seen


def test_progress_shows_on_a_terminal_only(stack):
    piped = stack.wisp("ask", "dev1", LLM_ASK)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.startswith("The porch light is on.")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "tools.cli", "ask", "dev1", LLM_ASK,
                               "--broker", stack.broker_addr], cwd=str(REPO), stdout=subprocess.PIPE,
                              stderr=follower, text=True, timeout=60)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0 and done.stdout.startswith("The porch light is on.")
    assert b"round 1: waiting for the model" in shown and b"gpio_write(pin=porch_light" in shown
    assert shown.endswith(b"\r\x1b[K")          # the status line is wiped before the answer


def test_fast_path_is_labelled_device_and_tier_local_stays_llm_local(stack):
    fast = stack.wisp("ask", "dev1", "turn on the fan")
    assert fast.returncode == 0 and fast.stdout.startswith("fan is on [device, ")
    llm = stack.wisp("ask", "dev1", LLM_ASK)
    assert "[llm/local, " in llm.stdout


def test_everyday_phrasings_over_the_default_pins_are_answered_on_the_device(stack):
    asked = len(stack.fake.requests)
    both = stack.wisp("ask", "dev1", "could you turn on the fan and the porch lamp?")
    assert both.returncode == 0 and both.stdout.startswith("fan on, porch lamp on [device, "), both.stdout
    door = stack.wisp("ask", "dev1", "Is the door open?")  # a door input answers open or closed
    assert door.returncode == 0 and door.stdout.startswith(("door is open [device, ", "door is closed [device, "))
    off = stack.wisp("ask", "dev1", "turn everything off")
    assert off.stdout.startswith("fan off, ") and "[device, " in off.stdout, off.stdout
    assert len(stack.fake.requests) == asked
    held = stack.wisp("ask", "dev1", "don't turn on the heater")  # a negation is the LLM's to read
    assert "[llm/local, " in held.stdout and len(stack.fake.requests) > asked


def test_an_empty_model_answer_is_a_failure_with_a_reason(stack):
    done = stack.wisp("ask", "dev1", EMPTY_ASK)
    assert done.returncode == 1, done.stdout + done.stderr
    # the bridge turns it into an error that says so; the CLI would also flag a blank "ok" by itself
    assert "tier 'local' answered with nothing" in done.stdout and "[llm/local, " in done.stdout, done.stdout


@pytest.mark.parametrize("args, says", [
    (["ask", "dev1", "light " * 200], "the text is 1200 characters; the device takes at most 512"),
    (["cmd", "dev1", "publish", "topic=wisp/notes", "payload=" + "x" * 5000],
     "the device reads at most 4096 in one message and would drop it unread"),
])
def test_a_request_too_big_for_the_device_is_refused_at_once_not_waited_out(stack, args, says):
    # the device drops a message over its limit unread and answers without the request's id: the CLI
    # waited out its whole timeout (120 s for an ask) and then blamed the device for not answering
    done = stack.wisp(*args, "--timeout", "120", timeout=30)
    assert done.returncode == 2 and says in done.stderr, done.stdout + done.stderr
    assert stack.wisp("cmd", "dev1", "gpio_read", "pin=porch_light").returncode == 0  # the device is fine


def test_an_ask_in_any_script_up_to_the_text_limit_reaches_the_device(stack):
    # sent as \u escapes, 400 emoji came to ~4,900 bytes, over what the device reads in one message;
    # as UTF-8 they are 1,600 bytes and the device answers
    done = stack.wisp("ask", "dev1", "💡" * 400, "--json")
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and reply["path"] == "llm", done.stdout + done.stderr
