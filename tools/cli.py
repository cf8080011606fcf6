"""The `wisp` command: run the stack, simulate devices, talk to devices."""
import argparse
import json
import os
import sys

from tools.paths import RUN_INFO

DEFAULT_BROKER = ("127.0.0.1", 1883)


def parse_broker(text):
    """'host:port' or 'host' -> (host, port); raises ValueError with a readable message."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not host:
        raise ValueError(f"broker '{text}' has no host; expected host:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker port in '{text}' must be a number 1-65535")
    return host, int(port)


def resolve_broker(flag):
    """--broker, else $WISP_BROKER, else the broker `wisp run` started, else 127.0.0.1:1883."""
    if flag:
        return parse_broker(flag)
    if os.environ.get("WISP_BROKER"):
        return parse_broker(os.environ["WISP_BROKER"])
    try:
        info = json.loads(RUN_INFO.read_text())
        return info["host"], int(info["port"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_BROKER


def cmd_ask(args):
    from tools.ask import AskError, ask
    host, port = resolve_broker(args.broker)
    try:
        reply = ask(host, port, args.device, args.text, timeout_s=args.timeout)
    except AskError as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(reply))
    else:
        via = f" [{reply.get('path')}{'/' + reply['tier'] if reply.get('tier') else ''}, {reply.get('ms')} ms]"
        print(f"{reply.get('text')}{via}")
    return 0 if reply.get("ok") else 1


def cmd_run(args):
    from tools.run import run
    return run(args.id, args.port)


def cmd_sim(args):
    from tools import sim
    host, port = resolve_broker(args.broker)
    workdir = sim.device_dir(args.id)
    sim.write_config(workdir, args.id, host, port)
    print(f"wisp: device '{args.id}' on {host}:{port}, flash root {workdir}; Ctrl-C stops it")
    proc = sim.start_device(workdir, heapsize=args.heapsize)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def build_parser():
    p = argparse.ArgumentParser(prog="wisp", description="wisp: an AI agent for cheap microcontrollers")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("ask", help="send a request in words to a device and print its reply")
    a.add_argument("device", help="device id, e.g. dev1")
    a.add_argument("text", help="what to do, e.g. 'turn on the porch light'")
    a.add_argument("--broker", help="host:port (default: $WISP_BROKER, the `wisp run` broker, or 127.0.0.1:1883)")
    a.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply (default 120)")
    a.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    a.set_defaults(func=cmd_ask)

    r = sub.add_parser("run", help="start a broker, the bridge and one simulated device")
    r.add_argument("--id", default="dev1", help="simulated device id (default dev1)")
    r.add_argument("--port", type=int, default=1883, help="broker port (default 1883; a free one if taken)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sim", help="run one virtual device: the real firmware on the MicroPython unix port")
    s.add_argument("--id", default="dev1", help="device id (default dev1)")
    s.add_argument("--broker", help="host:port of the broker")
    s.add_argument("--heapsize", help="MicroPython heap, e.g. 96K, to check the firmware fits a small board")
    s.set_defaults(func=cmd_sim)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"wisp: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
