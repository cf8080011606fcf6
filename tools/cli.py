"""The `wisp` command: run the stack, simulate devices, talk to devices, build, flash and deploy boards.
The commands live in tools/cli_fleet.py (stack and devices over the broker) and tools/cli_board.py (boards)."""
import argparse
import os
import sys

from tools import boards
from tools.cli_board import cmd_deploy, cmd_flash, cmd_image, cmd_provision, cmd_repl
from tools.cli_fleet import cmd_ask, cmd_cmd, cmd_devices, cmd_logs, cmd_ota, cmd_run, cmd_sim

FLEET_HELP = "fleet directory (bare --fleet: $WISP_FLEET or .wisp/fleet): the broker address and login of its CLI"


def add_fleet_arg(p, help_text=FLEET_HELP):
    # the folder is optional, as on `wisp run --fleet`: a bare --fleet is the default one
    p.add_argument("--fleet", nargs="?", const="", metavar="DIR", help=help_text)


def positive_seconds(text):
    """A --timeout or --wait: a number of seconds above 0 (argparse says which argument is wrong)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def port_number(text):
    """A --port: a TCP port, 1-65535."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, not {text!r}")
    return int(text)


def positive_int(text):
    """A --baud: a whole number above 0."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, not {text!r}")
    return int(text)


def add_device_args(p):
    p.add_argument("--device", help="device id provisioned with `wisp provision` (its config.json goes on the board)")
    p.add_argument("--config", help="a config.json to use instead of a provisioned device's")
    p.add_argument("--fleet", help="fleet directory of `wisp provision` (default $WISP_FLEET or .wisp/fleet)")
    p.add_argument("--mp-version", help="MicroPython release on the board, 1.23 or later, e.g. 1.24 (picks the "
                                        "matching mpy-cross; default: the bundled one, for 1.23+)")
    p.add_argument("--lines", action="store_true", help="keep line numbers and names in tracebacks (the .mpy "
                                                        "files are ~25%% bigger, with the strings kept in them, and "
                                                        "the device needs more heap)")


def build_parser():
    p = argparse.ArgumentParser(prog="wisp", description="wisp: an AI agent for cheap microcontrollers")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("ask", help="send a request in words to a device and print its reply")
    a.add_argument("device", help="device id, e.g. dev1")
    a.add_argument("text", help="what to do, e.g. 'turn on the porch light'")
    a.add_argument("--broker", help="host:port (default: $WISP_BROKER, else the running `wisp run`'s broker, else "
                                    "the address the fleet was provisioned with, else 127.0.0.1:1883); the login "
                                    "is $WISP_BROKER_USER/$WISP_BROKER_PASSWORD or the fleet's")
    add_fleet_arg(a)
    a.add_argument("--timeout", type=positive_seconds, default=120.0,
                   help="seconds to wait for the reply (default 120)")
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
    add_fleet_arg(c, FLEET_HELP + ", and the device's signing key")
    c.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds to wait for the result (default 30)")
    c.add_argument("--json", action="store_true", help="print the whole cmd/res as JSON")
    c.set_defaults(func=cmd_cmd)

    from tools import ota
    ota.add_parser(sub, FLEET_HELP).set_defaults(func=cmd_ota)

    dv = sub.add_parser("devices", help="list every device the broker knows: state, firmware, board, pins")
    dv.add_argument("--broker", help="host:port (as for ask)")
    add_fleet_arg(dv)
    dv.add_argument("--json", action="store_true", help="print the list as JSON")
    dv.set_defaults(func=cmd_devices)

    lg = sub.add_parser("logs", help="show a device's status and events; -f follows them live")
    lg.add_argument("device", help="device id, e.g. dev1")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing events until Ctrl-C")
    lg.add_argument("--broker", help="host:port (as for ask)")
    add_fleet_arg(lg)
    lg.set_defaults(func=cmd_logs)

    r = sub.add_parser("run", help="start a broker, the bridge and one simulated device")
    r.add_argument("--id", help="simulated device id (default dev1; with --fleet, none unless given)")
    r.add_argument("--secure", action="store_true",
                   help="the same stack, provisioned: broker logins and ACL, signed instructions (the device is "
                        "provisioned in .wisp/fleet on first use)")
    r.add_argument("--fleet", nargs="?", const="", metavar="DIR",
                   help="serve the fleet of `wisp provision` (default dir $WISP_FLEET or .wisp/fleet): its broker "
                        "listens on the LAN with the fleet's logins and ACL, so provisioned boards join")
    r.add_argument("--port", type=port_number, default=1883, help="broker port (default 1883; a free one if taken)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sim", help="run virtual devices: the real firmware on the MicroPython unix port",
                       description="Run virtual devices: the real firmware on the MicroPython unix port, each with "
                                   "a simulated board and its flash root in .wisp/devices/<id>. Ctrl-C stops them all.")
    s.add_argument("--id", help="device id (default dev1)")
    s.add_argument("--count", type=int, help="start N devices, dev1..devN")
    s.add_argument("--prefix", help="with --count: the ids' stem, e.g. --prefix sim for sim1..simN (default dev)")
    s.add_argument("--console", action="store_true",
                   help="give each device a serial console at .wisp/devices/<id>.tty (for `wisp repl --port`)")
    s.add_argument("--broker", help="host:port of the broker (default: $WISP_BROKER, else the running `wisp "
                                    "run`'s broker, else 127.0.0.1:1883; never the fleet's: a virtual device "
                                    "has no login)")
    s.add_argument("--state-dir", help="where the devices keep their flash roots (default .wisp/devices)")
    s.add_argument("--pins", metavar="FILE", help="the devices' pins: a JSON object like "
                   '{"fan": {"pin": 18, "mode": "out"}} or a config.json with "pins" (default: four example pins)')
    s.add_argument("--heapsize", help="MicroPython heap, e.g. 256K or 2M: the firmware runs from its .py sources "
                                      "on this 64-bit port, which needs about 256K (a board's heap: `make heap`)")
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
    f.add_argument("--chip", default="auto", choices=["auto", *boards.CHIPS],
                   help="the board's chip (default auto: detect it)")
    f.add_argument("--baud", type=positive_int, default=460800,
                   help="write speed (default 460800; try 115200 on errors)")
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
    d.add_argument("--wait", type=positive_seconds, default=60.0, metavar="S",
                   help="seconds the device has to come back online after the restart (default 60)")
    d.set_defaults(func=cmd_deploy)

    pv = sub.add_parser("provision", help="create a device's broker login, secret key, config and broker ACL",
                        description="Generate the device's broker password and secret key (kept in <fleet>/"
                                    "secrets.json, 0600; never printed), write its config.json (Wi-Fi, broker, id, "
                                    "named pins; keys you added to it are kept) and regenerate the mosquitto "
                                    "password file, ACL and mosquitto.conf: each device may use only wisp/<its id>/#, "
                                    "write its own Home Assistant discovery topics (homeassistant/+/wisp_<id>/#) and "
                                    "read homeassistant/status; the bridge (wisp-bridge) may use all of wisp/#, the "
                                    "CLI (wisp-admin) wisp/# and homeassistant/#. Your own broker settings go in "
                                    "<fleet>/mosquitto.d/*.conf, which mosquitto.conf includes. Running it again "
                                    "changes nothing unless --rotate.")
    pv.add_argument("device", help="device id: 1-32 of a-z 0-9 _ -")
    pv.add_argument("--fleet", help="fleet directory (default $WISP_FLEET or .wisp/fleet)")
    pv.add_argument("--broker", help="host:port the board connects to: this computer's LAN address (default: "
                                     "the address the fleet has)")
    pv.add_argument("--ssid", help="Wi-Fi network (default $WISP_WIFI_SSID)")
    pv.add_argument("--wifi-password", help="Wi-Fi password (prefer $WISP_WIFI_PASSWORD: flags show up in `ps`)")
    pv.add_argument("--pins", help="JSON file of named pins, e.g. {\"porch_light\": {\"pin\": 26, \"mode\": \"out\"}}")
    pv.add_argument("--ntp", metavar="HOST[,HOST]", help="NTP server(s) for the device's clock, e.g. your router "
                                                         "(192.168.1.1) on a network with no internet")
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
    from tools.listen import BrokerUnreachable
    from tools.private import WriteError
    from tools.provision import ProvisionError
    from tools.repl import ConsoleError
    from tools.sim import SimError
    from tools.vdev import VdevError
    return (ValueError, FileNotFoundError, BoardError, BrokerUnreachable, ConsoleError, DeployError, FlashError,
            ImageError, ProvisionError, SimError, VdevError, WriteError)


INTERRUPTED = 130     # Ctrl-C: what a shell reports for a command SIGINT ended (128 + 2)
BROKEN_PIPE = 141     # the reader of stdout closed it: what a shell reports for SIGPIPE (128 + 13)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nwisp: interrupted", file=sys.stderr)   # every file is written whole or not at all
        return INTERRUPTED
    except user_errors() as e:
        from tools.listen import BrokerUnreachable
        print(f"wisp: {e}", file=sys.stderr)
        return 3 if isinstance(e, BrokerUnreachable) else 2   # 3: no answer came, as for ask and cmd
    except BrokenPipeError:  # `wisp devices | head -1`: the reader has all it wanted, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit, when stdout is flushed
        return BROKEN_PIPE
    except OSError as e:   # a file or port the system refused (permission, busy): one line, as the rest
        where = f"{e.filename}: " if e.filename else ""
        print(f"wisp: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
