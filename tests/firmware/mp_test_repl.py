# The serial REPL helpers print compact, readable output and work with the agent stopped.
import json

from mpcheck import check, eq

from wisp import repl as r


def _capture(fn, *args, **kw):
    import builtins
    out = []
    saved = builtins.print

    def fake_print(*a, **k):
        out.append(" ".join(str(x) for x in a))
    builtins.print = fake_print
    try:
        fn(*args, **kw)
    finally:
        builtins.print = saved
    return "\n".join(out)


def _config():
    with open("config.json", "w") as f:
        f.write(json.dumps({"id": "replbox", "broker": {"host": "127.0.0.1", "port": 1},
                            "pins": {"porch_light": {"pin": 5, "mode": "out"}, "door": {"pin": 4, "mode": "in"}}}))


def test_status_tools_run_ask_and_log():
    _config()
    text = _capture(r.status)
    for frag in ("device replbox", "link down", "porch_light=0(out)", "free heap"):
        if frag not in text:
            raise Exception((frag, text))
    if "gpio_write      (pin, value)" not in _capture(r.tools):
        raise Exception(_capture(r.tools))
    if _capture(r.run, "gpio_write", pin="porch_light", value=1) != "ok: porch_light=1":
        raise Exception("run failed")
    if "Error: pin 'garage' is not configured" not in _capture(r.run, "gpio_write", pin="garage", value=1):
        raise Exception("bad call not reported")
    answer = _capture(r.ask, "turn off the porch light")  # fast path: works with no broker at all
    if not answer.split("\n")[-1].startswith("porch light is off  [device"):
        raise Exception(answer)
    if not _capture(r.log, 5):
        raise Exception("empty log")


def test_export_then_restore_brings_the_state_back():
    _config()
    r.run("memory_set", key="owner", value="Ada")
    if "state written to backup.json" not in _capture(r.export):
        raise Exception("export failed")
    r.run("memory_delete", key="owner")
    out = _capture(r.restore)
    if "Error" in out or "owner: Ada" not in _capture(r.mem):
        raise Exception((out, _capture(r.mem)))
    with open("broken.json", "w") as f:
        f.write("{not json")
    if "Error: nothing restored" not in _capture(r.restore, "broken.json"):
        raise Exception("a broken backup was not refused")


def test_a_helper_called_wrongly_says_how_to_call_it_and_keeps_the_last_export():
    _config()
    r.run("memory_set", key="owner", value="Ada")
    _capture(r.export)
    wrong = ((r.log, ("x",)), (r.log, (0,)), (r.export, (5,)), (r.export, ("notes.txt",)),
             (r.restore, (None,)), (r.ask, ("hi", "soon")), (r.run, ()), (r.run, (5,)))
    for fn, args in wrong:
        out = _capture(fn, *args)
        if not out.startswith("usage:"):
            raise Exception((args, out))
    eq(_capture(r.export, "no_such_folder/b.json")[:22], "Error: nothing written")
    r.run("memory_delete", key="owner")
    _capture(r.restore)
    check("owner: Ada" in _capture(r.mem), "the export before the wrong calls is intact")


def test_after_ctrl_c_the_helpers_do_not_revive_the_agent_and_the_watchdog_is_held():
    import asyncio

    from wisp import app
    _config()
    ticks = []

    async def interrupted(path):
        dev, _agent = app.build(path)
        dev.board.wdt_start(30000)

        async def busy():  # stands in for the link, scheduler and agent tasks
            while True:
                ticks.append(1)
                await asyncio.sleep_ms(5)
        asyncio.create_task(busy())
        await asyncio.sleep_ms(20)
        raise KeyboardInterrupt  # Ctrl-C on the serial console
    real, app.main = app.main, interrupted
    try:
        app.start()
    finally:
        app.main = real
    check(app.device.board.wdt_held, "the watchdog would reset the board under the user at the REPL")
    before = len(ticks)
    check(before > 0, "the task never ran")
    _capture(r.run, "gpio_read", pin="door")
    _capture(r.run, "gpio_read", pin="door")
    eq(len(ticks), before, "a REPL helper revived the stopped tasks")
    app.device = None
