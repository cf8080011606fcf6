"""The real firmware and two bridges sharing one store (PostgreSQL, or one SQLite file on this host): the tier
stalls past the device's re-send timeout (limits.RESEND_MS, 8 s), the device sends the request again, the shared
subscription hands it to the other bridge, which sees the first bridge's claim and stays silent. One model call
for that round, the pin is set once, the person gets one reply."""
import os
import subprocess
import sys

from tests.bridge.test_shared_store import pg_url, store  # noqa: F401 (fixtures)
from tests.e2e.stack import PROVIDER_ENV, Stack, porch_responder
from tests.support import until

STALL_MS = 9500  # past the firmware's RESEND_MS (8 s), within its round timeout (30 s)


def test_resent_request_on_the_other_bridge_is_answered_once(store):  # noqa: F811
    def responder(request):
        reply = porch_responder(request)
        if request["messages"][-1]["role"] == "user":
            reply.ttft_ms = STALL_MS  # only the first round stalls
        return reply

    where = {"WISP_COST_URL" if store.startswith("postgresql://") else "WISP_COST_DB": store}
    stack = Stack(responder=responder, bridge_env=where)
    other = None
    try:
        env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
        env.update(WISP_BROKER=stack.broker_addr, PYTHONUNBUFFERED="1", WISP_LOCAL_URL=stack.base_url,
                   WISP_LOCAL_MODEL="fake-model", WISP_BRIDGE_NAME="second", **where)
        other_log = stack.dir / "bridge-b.log"
        other = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=str(stack.dir), env=env,
                                 stdout=open(other_log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        until(lambda: "bridge ready" in other_log.read_text(), 15, "the second bridge")
        stack.start_device("dev1")
        stack.probe.publish("wisp/dev1/ask", {"v": 1, "id": "slow-ask", "text": "light up the porch please"})
        reply = stack.probe.wait_for("wisp/dev1/reply", lambda p: p.get("id") == "slow-ask", timeout=40)
        assert reply["ok"] is True and reply["text"] == "The porch light is on.", reply
        after = stack.probe.drain(1.5)  # everything else seen so far, and what comes in the next 1.5 s
        assert [p for t, p in after if t == "wisp/dev1/reply" and p.get("id") == "slow-ask"] == []  # one reply
        assert "unanswered; sending again" in stack.console("dev1")  # the device did re-send
        logs = [stack.bridge_log(), other_log.read_text()]
        answered = [log for log in logs if "round=0 tier=local calls=1" in log]
        assert len(answered) == 1
        other_one = logs[1 - logs.index(answered[0])]
        assert other_one.count("duplicate of a running request: ignored") == 1  # the re-send went to the other
        assert len(stack.fake.requests) == 2  # round 0 once (not twice), then round 1 with the tool result
        states = [p for t, p in after if t == "wisp/dev1/state/porch_light"]
        assert states.count("ON") == 1  # the pin was switched on once
    finally:
        if other and other.poll() is None:
            other.terminate()
            other.wait(10)
        stack.close()
