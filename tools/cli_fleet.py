"""`wisp` commands that run the local stack or talk to devices through their broker: run, sim, ask, cmd,
ota, devices, logs; and how the broker address and login are found."""
import json
import os
import re
import sys

from tools.paths import read_run_info

DEFAULT_BROKER = ("127.0.0.1", 1883)


def parse_broker(text):
    """'host:port', 'host', '[v6]:port' or a bare IPv6 address -> (host, port); raises ValueError with a
    readable message."""
    from bridge.address import split_host_port
    return split_host_port(text, DEFAULT_BROKER[1], "broker")


def resolve_broker(flag, fleet=None):
    """--broker, else $WISP_BROKER, else the broker of the running `wisp run`, else the address the
    fleet was provisioned with (your own mosquitto running its mosquitto.conf), else 127.0.0.1:1883."""
    return _given_or_running(flag) or _fleet_address(fleet) or DEFAULT_BROKER


def _given_or_running(flag):
    if flag:
        return parse_broker(flag)
    if os.environ.get("WISP_BROKER"):
        return parse_broker(os.environ["WISP_BROKER"])
    info = read_run_info()
    return (info["host"], int(info["port"])) if "host" in info and "port" in info else None


def _fleet_address(fleet):
    from tools.provision import broker_address, fleet_dir
    return broker_address(fleet_dir(fleet))


def sim_broker(flag):
    """Where virtual devices connect: --broker, else $WISP_BROKER, else the broker of the running
    `wisp run`, else 127.0.0.1:1883. Never the fleet's address: a virtual device has no login, and
    would knock on a broker that refuses it forever."""
    if not flag and not os.environ.get("WISP_BROKER") and read_run_info().get("fleet"):
        raise ValueError("the broker of the running `wisp run --fleet`/`--secure` takes only the fleet's "
                         "logins, and a virtual device has none: give --broker, or run a provisioned device "
                         "with `wisp run --fleet --id <id>`")
    return _given_or_running(flag) or DEFAULT_BROKER


def resolve_login(fleet=None):
    """$WISP_BROKER_USER/$WISP_BROKER_PASSWORD, else the fleet's CLI login (`wisp provision` makes
    one; `wisp run --fleet` names its fleet), else anonymous (None)."""
    if os.environ.get("WISP_BROKER_USER"):
        return os.environ["WISP_BROKER_USER"], os.environ.get("WISP_BROKER_PASSWORD", "")
    from tools.provision import admin_login, fleet_dir
    return admin_login(fleet_dir(fleet))


def fleet_flag(args):
    """--fleet DIR, else $WISP_FLEET, else the fleet `wisp run --fleet` serves (None: the default dir,
    which a bare `--fleet` names too, as on `wisp run`)."""
    flag = getattr(args, "fleet", None)
    if flag is not None:
        return flag or None
    return None if os.environ.get("WISP_FLEET") else read_run_info().get("fleet")


def connection(args):
    """(host, port, login) for the commands that talk to devices. A device id no device can have (the
    firmware's rules) is refused first: `+`, `#` or `/` would even be an MQTT wildcard or another topic."""
    from tools.provision import check_device_id
    for dev_id in [args.device] if isinstance(getattr(args, "device", None), str) else getattr(args, "devices", []):
        check_device_id(dev_id)
    fleet = fleet_flag(args)
    named = getattr(args, "fleet", None)
    if named and not os.path.exists(os.path.join(named, "secrets.json")):
        # the user means that fleet: going on would try some other broker anonymously, and sign nothing
        raise ValueError(f"--fleet {named} holds no provisioned fleet (no secrets.json): name the folder "
                         f"`wisp provision` wrote (default .wisp/fleet), or provision a device there first")
    return (*resolve_broker(args.broker, fleet), resolve_login(fleet))


def cmd_ask(args):
    from tools.ask import AskError, ask
    from tools.keys import device_key, refusal_note
    host, port, login = connection(args)
    status, notes = StatusLine(sys.stderr), []
    try:
        reply = ask(host, port, args.device, args.text, timeout_s=args.timeout, login=login,
                    progress=status.show if status.live else None, key=device_key(args.device, fleet_flag(args)),
                    notes=notes)
    except AskError as e:
        status.clear()
        print(f"wisp: {e}", file=sys.stderr)
        return e.exit_code
    status.clear()
    for note in [*notes, refusal_note(args.device, fleet_flag(args), reply.get("text"))]:
        if note:
            print(f"wisp: {note}", file=sys.stderr)
    text = reply.get("text")
    empty = not (isinstance(text, str) and text.strip())
    if args.json:
        print(json.dumps(reply))
    else:
        via = f" [{reply.get('path')}{'/' + reply['tier'] if reply.get('tier') else ''}, {reply.get('ms')} ms]"
        print(f"{'(no text: the model answered with nothing)' if empty else text}{via}")
    return 0 if reply.get("ok") and not empty else 1


class StatusLine:
    """One line of progress that rewrites itself on a terminal, and stays silent when piped."""

    def __init__(self, stream):
        self.stream, self.live, self._shown = stream, stream.isatty(), False

    def show(self, text):
        self.stream.write("\r\033[K" + text[:200])
        self.stream.flush()
        self._shown = True

    def clear(self):
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False


def parse_tool_args(pairs):
    """['pin=porch_light', 'value=1'] -> {'pin': 'porch_light', 'value': 1}: each value as JSON, else as text.
    A value framed as a JSON list or object ([...] or {...}) must be JSON: sent as text, a bracket missing in
    steps=[...] would come back from the device as "'steps' must be a list", far from the typo."""
    from bridge import fastjson  # json's reading, with nesting too deep to read a ValueError too
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"tool argument '{pair}' must look like name=value")
        if name in out:  # value=1 value=0: which one was meant is a guess, and an actuator acts on it
            raise ValueError(f"tool argument '{name}' is given twice; give it once")
        try:
            out[name] = fastjson.loads(value)
        except ValueError as e:
            framed = value.strip()
            if framed and framed[0] in "[{" and framed[-1] in "]}":
                raise ValueError(f"tool argument '{name}' starts like JSON but is not valid JSON ({e}); fix "
                                 f"it, or quote it to send text: {name}='\"...\"'") from None
            out[name] = value
    return out


def cmd_ota(args):
    from tools import ota, otabundle
    from tools.keys import device_key
    host, port, login = connection(args)
    try:
        return ota.run(args, host, port, login, lambda d: device_key(d, fleet_flag(args)))
    except (ota.OtaError, otabundle.BundleError) as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 2


def cmd_cmd(args):
    from tools.ask import AskError, command
    from tools.keys import device_key, refusal_note
    host, port, login = connection(args)
    tool_args, key, notes = parse_tool_args(args.args), device_key(args.device, fleet_flag(args)), []
    try:
        res = command(host, port, args.device, args.tool, tool_args, key=key, timeout_s=args.timeout, login=login,
                      notes=notes)
    except AskError as e:
        print(f"wisp: {e}", file=sys.stderr)
        return e.exit_code
    for note in [*notes, refusal_note(args.device, fleet_flag(args), res.get("result"))]:
        if note:
            print(f"wisp: {note}", file=sys.stderr)
    print(json.dumps(res) if args.json else res.get("result"))
    return 0 if res.get("ok") else 1


def cmd_devices(args):
    from tools import devices
    from tools.listen import BrokerUnreachable
    host, port, login = connection(args)
    bridges = {}
    try:
        found = devices.collect(host, port, login, bridges)
    except BrokerUnreachable as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"devices": found, "bridges": bridges}, sort_keys=True))
        return 0
    print(devices.table(found) if found else f"wisp: no devices on {host}:{port}")
    print("\n" + devices.bridge_table(bridges) if bridges else f"wisp: no bridge has announced itself on {host}:{port}")
    return 0


def cmd_logs(args):
    from tools import logs
    from tools.listen import BrokerUnreachable
    host, port, login = connection(args)
    try:
        return logs.follow(host, port, args.device, sys.stdout, follow=args.follow, login=login)
    except BrokerUnreachable as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0


def cmd_run(args):
    from tools.provision import check_device_id, fleet_dir
    from tools.run import run
    if args.id is not None:
        check_device_id(args.id)        # as for `wisp sim`: else the device starts under a generated id
    if args.secure:
        if args.fleet is not None:
            raise ValueError("--secure and --fleet do not mix: --secure is the default fleet with a simulated device")
        return run(*secure_setup(fleet_dir(None), args.id or "dev1", args.port))
    return run(args.id, args.port, None if args.fleet is None else fleet_dir(args.fleet or None))


def secure_setup(fleet, dev_id, port):
    """`wisp run --secure`: the same stack as `wisp run`, provisioned: `dev_id` gets a broker login and
    a signing key in `fleet` (once; later runs reuse them). Returns run()'s arguments."""
    from tools import provision, sim
    address = provision.broker_address(fleet) or ("127.0.0.1", port)
    if not provision.device_config_path(fleet, dev_id).exists():
        print(f"wisp: provisioning '{dev_id}' in {fleet} (broker login, signing key)")
        provision.provision(dev_id, fleet, address[0], address[1], pins=sim.DEFAULT_PINS)
    return dev_id, address[1], fleet


HEAPSIZE = re.compile(r"(\d+)([km]?)$", re.IGNORECASE)    # what `micropython -X heapsize=` takes
MIN_HEAPSIZE = 16 * 1024                                    # below this the interpreter cannot start


def check_heapsize(text):
    """--heapsize as MicroPython takes it (96K, 2M, 100000); a ValueError saying so otherwise."""
    found = HEAPSIZE.match(text)
    size = int(found[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[found[2].lower()] if found else 0
    if size < MIN_HEAPSIZE:
        raise ValueError(f"--heapsize {text!r} must be a size like 96K or 2M, at least {MIN_HEAPSIZE // 1024}K")
    return text


def cmd_sim(args):
    from tools import devices, sim, simfleet
    from tools.listen import BrokerUnreachable
    from tools.provision import check_device_id
    if args.count is not None and args.id is not None:
        raise ValueError("--id and --count do not mix: --count N starts dev1..devN")
    if args.count is not None and not 1 <= args.count <= simfleet.MAX_COUNT:
        raise ValueError(f"--count must be 1-{simfleet.MAX_COUNT}")
    if args.prefix is not None and args.count is None:
        raise ValueError("--prefix goes with --count: --count 3 --prefix sim starts sim1..sim3")
    stem = args.prefix if args.prefix is not None else "dev"
    ids = [f"{stem}{i}" for i in range(1, args.count + 1)] if args.count is not None else [args.id or "dev1"]
    for dev_id in ids:
        check_device_id(dev_id)         # the rules of `wisp provision`: a board could have the same id
    if args.heapsize is not None:
        check_heapsize(args.heapsize)
    host, port = sim_broker(args.broker)
    login = resolve_login(fleet_flag(args))
    pins = sim.load_pins(args.pins) if args.pins else None
    try:
        online = {d for d, info in devices.collect(host, port, login).items() if info["state"] == "online"}
    except BrokerUnreachable:
        online = set()          # no broker yet: the devices wait for it, as boards do
    try:
        return simfleet.run_fleet(ids, host, port, heapsize=args.heapsize, console=args.console,
                                  root=args.state_dir, pins=pins, online=online)
    except sim.SimError as e:
        hint = f" (with --count: --prefix gives the devices other ids than {stem}1..)" if args.count else ""
        print(f"wisp: {e}{hint}", file=sys.stderr)
        return 1 if isinstance(e, sim.DeviceBusy) else 2
