"""The second pass of tools/nodered_check.py: "A provisioned fleet" of docs/node-red.md walked on
`wisp run --secure` (a temporary run directory, its broker on 127.0.0.1 only) by the same Node-RED:
the broker node's wisp-admin login, an unsigned command refused, and signed ones through the
bridge's REST API from inject -> function -> http request -> debug chains."""
import contextlib
import io
import json
from pathlib import Path

from tests.e2e.wisprun import WispRun
from tools import broker as brokers
from tools.cli_fleet import secure_setup
from tools.nodered_check import (
    DEVICE,
    FLOW,
    LLM_WAIT_S,
    WAIT_S,
    flow_for,
    inject_id,
    shown,
    state_shown,
)

BOOT_WAIT_S = 60.0  # `wisp run --secure`: the broker, the bridge, then the device's first connect
CONNECTED = "node-red:common.status.connected"  # an mqtt node's status when its broker node is connected
# docs/node-red.md, "A provisioned fleet": the function before the http request node, as written there
REST_CMD = ('msg.headers = {Authorization: "Bearer " + env.get("WISP_API_TOKEN")};\n'
            'msg.payload = {tool: "gpio_write", args: {pin: "fan", value: 1}};\nreturn msg;')
REST_ASK = ('msg.headers = {Authorization: "Bearer " + env.get("WISP_API_TOKEN")};\n'
            'msg.payload = {text: msg.payload};\nreturn msg;')
WRONG_TOKEN = REST_CMD.replace('env.get("WISP_API_TOKEN")', '"not-the-token"')
TAB = "wisp.tab"


def fleet_flow(port, login, api, token):
    """The example flow on the fleet's broker with what "A provisioned fleet" adds: the broker
    node's login, WISP_API_TOKEN in the tab's environment, and through the bridge's REST API an
    inject -> function -> http request (POST, a parsed JSON object) -> debug chain for /cmd and one
    for /ask, a second debug node showing msg.statusCode. Also an unsigned command into the
    example's own `cmd` function (its mqtt out), a /cmd with a wrong token, and a second broker node
    without the login, with an mqtt in on it."""
    flow = flow_for("127.0.0.1", port, 4)
    for node in flow:
        if node["type"] == "mqtt-broker":
            node["credentials"] = {"user": login[0], "password": login[1]}
        if node["type"] == "tab":
            node["env"] = [*node["env"], {"name": "WISP_API_TOKEN", "value": token, "type": "str"}]

    def inject(node_id, name, payload, payload_type, to, y):
        return {"id": node_id, "type": "inject", "z": TAB, "name": name, "props": [{"p": "payload"}], "repeat": "",
                "crontab": "", "once": False, "onceDelay": 0.1, "topic": "", "payload": payload,
                "payloadType": payload_type, "x": 170, "y": y, "wires": [[to]]}

    def debug(node_id, name, y, shows="payload"):
        return {"id": node_id, "type": "debug", "z": TAB, "name": name, "active": True, "tosidebar": True,
                "console": False, "tostatus": False, "complete": shows, "targetType": "msg", "x": 860, "y": y,
                "wires": []}

    def function(node_id, name, func, to, y):
        return {"id": node_id, "type": "function", "z": TAB, "name": name, "func": func, "outputs": 1, "timeout": 0,
                "noerr": 0, "initialize": "", "finalize": "", "libs": [], "x": 420, "y": y, "wires": [[to]]}

    def through_bridge(path, func, y):
        return [function(f"fleet.{path}.sign", f"{path} through the bridge", func, f"fleet.{path}.http", y),
                {"id": f"fleet.{path}.http", "type": "http request", "z": TAB, "name": f"POST /{path}",
                 "method": "POST", "ret": "obj", "paytoqs": "ignore", "url": f"{api}/api/devices/{DEVICE}/{path}",
                 "tls": "", "persist": False, "proxy": "", "insecureHTTPParser": False, "authType": "",
                 "senderr": False, "headers": [], "x": 640, "y": y,
                 "wires": [[f"fleet.{path}.dbg", f"fleet.{path}.status"]]},
                debug(f"fleet.{path}.dbg", f"{path} through the bridge", y),
                debug(f"fleet.{path}.status", f"{path} status", y + 20, shows="statusCode")]

    flow += [inject("fleet.unsigned", "fan on, unsigned", '{"tool":"gpio_write","args":{"pin":"fan","value":1}}',
                    "json", "wisp.cmd", 900),
             inject("fleet.cmd", "fan on, through the bridge", "", "date", "fleet.cmd.sign", 940),
             *through_bridge("cmd", REST_CMD, 940),
             inject("fleet.wrong", "fan on, a wrong token", "", "date", "fleet.wrong.sign", 1060),
             function("fleet.wrong.sign", "cmd with a wrong token", WRONG_TOKEN, "fleet.cmd.http", 1060),
             inject("fleet.ask", "light up the porch, through the bridge",
                    "it is getting dark, light up the porch please", "str", "fleet.ask.sign", 980),
             *through_bridge("ask", REST_ASK, 980),
             {"id": "fleet.nologin", "type": "mqtt-broker", "name": "no login", "broker": "127.0.0.1",
              "port": str(port), "clientid": "", "autoConnect": True, "usetls": False, "protocolVersion": "4",
              "keepalive": "60", "cleansession": True, "autoUnsubscribe": True},
             {"id": "fleet.nologin.in", "type": "mqtt in", "z": TAB, "name": "status, no login",
              "topic": "wisp/+/status", "qos": "1", "datatype": "auto-detect", "broker": "fleet.nologin", "nl": False,
              "rap": False, "rh": 0, "inputs": 0, "x": 150, "y": 1020, "wires": [["fleet.nologin.dbg"]]},
             debug("fleet.nologin.dbg", "no login", 1020)]
    return flow


def loopback_only(conf, port):
    """The fleet's broker on 127.0.0.1 only: `wisp provision` gives it a listener on every interface,
    for boards on the LAN, and this check has none."""
    text = conf.read_text()
    if f"listener {port}\n" not in text:
        raise RuntimeError(f"no 'listener {port}' line in {conf} to keep on 127.0.0.1:\n{text}")
    conf.write_text(text.replace(f"listener {port}\n", f"listener {port} 127.0.0.1\n"))


def run_fleet(red, llm_url, root, check):
    """`wisp run --secure`, and the flow the paragraph "A provisioned fleet" of docs/node-red.md
    builds, checked against what it says."""
    run_dir, port = Path(root) / "wisp-run", brokers.free_port()
    fleet = run_dir / "fleet"
    with contextlib.redirect_stdout(io.StringIO()):     # its "provisioning 'dev1'" line
        secure_setup(fleet, DEVICE, port)               # what `wisp run --secure` does at its first start
    loopback_only(fleet / "mosquitto.conf", port)
    run = WispRun(run_dir, port, env={"WISP_LOCAL_URL": llm_url, "WISP_LOCAL_MODEL": "fake-model"},
                  args=["--secure"])
    try:
        run.wait_for("wisp is running")
        admin = json.loads((fleet / "secrets.json").read_text())["admin"]  # where the paragraph says it is
        token, api = (run_dir / "api_token").read_text().strip(), run.dashboard_url()
        print(f"-- a provisioned fleet: `wisp run --secure`, device {DEVICE} on the fleet's mosquitto "
              f"127.0.0.1:{port}, REST API {api}")
        check(admin.get("user") == "wisp-admin", "secrets.json's admin entry is the login wisp-admin",
              admin.get("user"))
        start = len(red.debug.shown)
        red.deploy(fleet_flow(port, (admin["user"], admin["password"]), api, token))
        online = shown(red, start, "online", lambda s: s.value.get("online") is True, BOOT_WAIT_S)
        check(online is not None and red.debug.statuses("wisp.status")[-1:] == [CONNECTED],
              "the broker node logged in as wisp-admin: connected, the device's retained status online",
              (online, red.debug.statuses("wisp.status")))
        run_fleet_flow(red, check)
        nologin = red.debug.statuses("fleet.nologin.in")
        got = [s for s in red.debug.shown[start:] if s.name == "no login"]
        check(bool(nologin) and CONNECTED not in nologin and not got,
              "a broker node without the login never connects and its mqtt in gets nothing", (nologin, got))
        check("Connection failed to broker: mqtt://127.0.0.1:%d" % port in red.log(),
              "Node-RED's log says why: 'Connection failed to broker'",
              [line for line in red.log().splitlines() if "broker" in line])
    finally:
        run.stop()


def run_fleet_flow(red, check):
    """Press the fleet flow's inject nodes, each checked against what the paragraph says."""
    def press(node_id, debug_name, match=lambda s: True, timeout=WAIT_S):
        at = len(red.debug.shown)
        red.inject(node_id)
        return shown(red, at, debug_name, match, timeout), at

    got, _ = press(inject_id_of("is the door open?"), "reply")
    check(got is not None and got.value.get("ok") is True and got.value.get("text") == "door is open",
          "an unsigned ask through the mqtt out node works", got)
    got, _ = press(inject_id_of("heater 1"), "state", lambda s: s.topic.endswith("/heater") and s.value == "ON")
    check(got is not None, "an unsigned set/heater through the mqtt out node works: state/heater ON", got)

    event, at = press("fleet.unsigned", "event", lambda s: s.type == "object" and s.value.get("kind") == "refused")
    check(event is not None and event.value.get("text") == "unsigned or forged cmd refused",
          "an unsigned cmd through the mqtt out node: refused, an event says so", event)
    res = shown(red, at, "cmd/res", lambda s: True)
    check(res is not None and res.value.get("ok") is False
          and res.value.get("result") == "Error: command refused: it must be signed with this device's key",
          "its cmd/res: ok false, 'it must be signed with this device's key'", res)
    check(state_shown(red, at, "fan", "ON", timeout=1.0) is None, "the fan stays off")

    problems = len(red.debug.problems)
    got, at = press("fleet.wrong", "cmd through the bridge")
    status, error = shown(red, at, "cmd status"), got.value.get("error") if got and got.type == "object" else None
    check(isinstance(error, dict) and "wrong API token" in error.get("message", "")
          and status is not None and status.value == 401,
          "POST /cmd with a wrong token: a message all the same, msg.statusCode 401, an error object", (got, status))
    check(state_shown(red, at, "fan", "ON", timeout=1.0) is None and len(red.debug.problems) == problems,
          "no Node-RED warning for it; the fan stays off", red.debug.problems[problems:])

    got, at = press("fleet.cmd", "cmd through the bridge")
    value = got.value if got is not None and got.type == "object" else {}
    status = shown(red, at, "cmd status")
    check(sorted(value) == ["id", "ok", "result", "tool"] and value["tool"] == "gpio_write"
          and isinstance(value["id"], str) and value["id"].startswith("cmd-") and value["ok"] is True
          and value["result"] == "ok: fan=1" and status is not None and status.value == 200,
          'POST /cmd from the http request node: msg.statusCode 200, the object {"tool":"gpio_write",'
          '"id":"cmd-...","ok":true,"result":"ok: fan=1"}', (got, status))
    check(state_shown(red, at, "fan", "ON") is not None, "the device ran it: state/fan ON on the broker")

    got, at = press("fleet.ask", "ask through the bridge", timeout=LLM_WAIT_S)
    value = got.value if got is not None and got.type == "object" else {}
    check(sorted(value) == ["id", "ms", "ok", "path", "text", "tier"] and value["ok"] is True
          and value["path"] == "llm" and value["text"] == "The porch light is on.",
          'POST /ask: the reply object {"id","ok","text","path","tier","ms"}, from the LLM through the bridge', got)
    check(state_shown(red, at, "porch_light", "ON") is not None, "the bridge signed the LLM's tool call: "
                                                                "state/porch_light ON")


def inject_id_of(name):
    return inject_id(json.loads(FLOW.read_text()), name)
