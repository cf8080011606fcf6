"""With the broker gone, schedules and routines keep running on the device; after the broker
comes back the device reconnects on its own and publishes what changed."""
from tests.e2e.stack import Stack
from tests.support import until

RAN = "routine fan_on (schedule): ok"  # the device's console line when the job has run the routine


def _cmd(stack, dev_id, cmd_id, tool, args):
    stack.probe.publish(f"wisp/{dev_id}/cmd", {"v": 1, "id": cmd_id, "tool": tool, "args": args})
    return stack.probe.wait_for(f"wisp/{dev_id}/cmd/res", lambda r: r.get("id") == cmd_id)


def test_schedule_runs_a_routine_while_the_broker_is_down():
    s = Stack()
    try:
        s.start_device("off1")
        res = _cmd(s, "off1", "c1", "routine_define",
                   {"name": "fan_on", "steps": [{"tool": "gpio_write", "args": {"pin": "fan", "value": 1}}]})
        assert res["ok"], res
        res = _cmd(s, "off1", "c2", "schedule_add", {"spec": "in 4s", "routine": "fan_on", "name": "soon"})
        assert res["ok"], res
        assert s.probe.wait_for("wisp/off1/state/fan") == "OFF"
        s.stop_broker()
        assert RAN not in s.console("off1"), "the job ran before the outage began: nothing proven"
        # the device is on its own: the job fires now, seen on its console while the broker is down
        until(lambda: RAN in s.console("off1"), 15, "the scheduled job to run during the outage")
        s.start_broker()
        # persistence is off, so these retained messages can only come from the device reconnecting
        s.probe.wait_for("wisp/off1/status", lambda st: st.get("state") == "online", timeout=40)
        assert s.probe.wait_for("wisp/off1/state/fan", timeout=10) == "ON"
        assert s.console("off1").count(RAN) == 1
        res = _cmd(s, "off1", "c3", "schedule_list", {})
        assert "soon" not in res["result"]   # a one-shot job is gone once it has run
    finally:
        s.close()
