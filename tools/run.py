"""`wisp run`: a broker, the bridge and one simulated device, with their logs in one terminal."""
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools import broker as brokers
from tools import process, sim
from tools.paths import RUN_DIR, RUN_INFO, process_alive, read_run_info
from tools.private import write_private

DEFAULT_PORT = 1883
HTTP_PORT = 8787                      # dashboard, REST API, /metrics and /v1 (a free one if taken)
TOKEN_FILE = RUN_DIR / "api_token"    # the dashboard's and API's bearer token, kept across runs


def api_token():
    """$WISP_API_TOKEN, else the token of earlier runs, else a new one. The file always holds the
    token in use, so the banner's `$(cat .wisp/api_token)` works whichever way it was chosen."""
    kept = TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists() else ""
    token = os.environ.get("WISP_API_TOKEN") or kept or secrets.token_urlsafe(24)
    if token != kept:
        write_private(TOKEN_FILE, token)
    return token


def _pump(name, stream):
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _spawn(name, cmd, **kw):
    # a process group of its own, as the device's and the broker's: Ctrl-C is for `wisp run`, which
    # stops them in order (the broker last, so the others can say goodbye through it)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            process_group=0, **kw)
    threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
    return proc


def start_broker(port):
    if not brokers.port_is_free(port):
        free = brokers.free_port()
        owner = brokers.port_owner(port) or "another program"
        print(f"wisp: port {port} is taken by {owner}; using {free} for this run. To keep {port}, stop "
              f"that program; to choose the port, run `wisp run --port N`. Clients need `-p {free}`.")
        port = free
    try:
        return brokers.start_mosquitto(RUN_DIR / "broker", port)
    except FileNotFoundError:
        print("wisp: mosquitto not found; using the embedded amqtt broker (MQTT 3.1.1, no shared subscriptions)")
        return brokers.start_amqtt(RUN_DIR / "broker", port)


RESTART_BASE_S, RESTART_CAP_S = 1.0, 30.0   # a crashed bridge or device is restarted, backing off
READY_TIMEOUT_S = 20.0                        # the bridge must listen within this, or the run stops


class Supervised:
    """A child process that is started again when it dies, with a capped exponential backoff
    (a dead bridge must not take the broker and the device down with it). running: the process
    when it was started already; start() gives the next one."""

    def __init__(self, name, start, running=None):
        self.name, self._start = name, start
        self.proc = running if running is not None else start()
        self.restarts, self._due, self._backoff = 0, None, RESTART_BASE_S
        self._started = time.monotonic()

    def check(self, now):
        if self.proc.poll() is None:
            if now - self._started > RESTART_CAP_S:
                self._backoff = RESTART_BASE_S       # it ran long enough: next crash restarts quickly
            return
        if self._due is None:
            self._due = now + self._backoff
            print(f"wisp: {self.name} exited with code {self.proc.returncode}; "
                  f"restarting in {self._backoff:.0f} s", flush=True)
            self._backoff = min(self._backoff * 2, RESTART_CAP_S)
        elif now >= self._due:
            try:
                self.proc = self._start()
            except (OSError, RuntimeError) as e:  # e.g. the broker's port taken meanwhile: try again later
                print(f"wisp: {self.name} did not start again: {e}; retrying in {self._backoff:.0f} s", flush=True)
                self._due = now + self._backoff
                self._backoff = min(self._backoff * 2, RESTART_CAP_S)
                return
            self._due, self.restarts = None, self.restarts + 1
            self._started = now

    def stop(self):
        process.end(self.proc)

    def restart(self, now):
        """Stopped and started at once, with what it is given now (a new login, a new config)."""
        process.end(self.proc)
        self.proc, self._due, self._started = self._start(), None, now


def wait_bridge_ready(bridge, port, timeout_s=READY_TIMEOUT_S):
    """Block until the bridge listens on its HTTP port; a bad wisp.toml makes it exit first, and
    that must stop the run before the banner says all is well."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bridge.poll() is not None:
            return False
        if not brokers.port_is_free(port):
            return True
        time.sleep(0.05)
    return False


class RunError(Exception):
    pass


def fleet_setup(fleet):
    """What `wisp run --fleet` needs from `wisp provision`: the broker port its devices were given,
    and the bridge's login. Raises RunError when the fleet is not provisioned."""
    from tools import provision
    try:
        store = provision.load_secrets(fleet)
    except provision.ProvisionError as e:
        raise RunError(str(e)) from None
    address, bridge = provision.broker_address(fleet), store["bridge"]
    if not address or not bridge.get("password") or not (fleet / "mosquitto.conf").exists():
        raise RunError(f"{fleet} holds no provisioned fleet: run `wisp provision <id> --broker <this host's "
                       f"LAN address>:1883` first (docs/tools.md)")
    return address[1], (bridge["user"], bridge["password"])


def fleet_broker_files(fleet):
    """passwd, acl and mosquitto.conf written again from secrets.json, as `wisp provision` writes them:
    mosquitto.conf names the files by absolute path, so a fleet directory moved or copied (to another
    machine) would point the broker at files that are gone, or at another fleet's; and a provision
    stopped halfway (Ctrl-C) leaves secrets.json ahead of passwd."""
    from tools import provision
    try:
        provision.write_broker_files(fleet, provision.load_secrets(fleet))
    except (provision.ProvisionError, OSError) as e:
        raise RunError(f"cannot write the fleet's broker files in {fleet}: {e}") from None


FLEET_FILES = ("secrets.json", "passwd", "acl")   # what `wisp provision` changes for a new device, --rotate
FLEET_SETTLE_S = 1.0                             # one provision writes them in turn: act once they are all written


class FleetWatch:
    """Notices `wisp provision` changing the fleet while `wisp run --fleet` serves it (a board added,
    credentials rotated): changed() is True once, after the files have stopped changing."""

    def __init__(self, fleet):
        self.fleet = fleet
        self._seen, self._since = self._stamp(), None

    def _stamp(self):
        out = []
        for name in FLEET_FILES:
            try:
                st = (self.fleet / name).stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return out

    def changed(self, now):
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen, self._since = stamp, now
            return False
        if self._since is not None and now - self._since >= FLEET_SETTLE_S:
            self._since = None
            return True
        return False


def start_fleet_broker(fleet, port):
    """The fleet's broker, on every interface (boards on the LAN reach it), logins and ACL on. The
    port is the one its boards were provisioned with, so it cannot move when taken."""
    if not brokers.port_is_free(port, "0.0.0.0"):
        owner = brokers.port_owner(port) or "another program"
        raise RunError(f"port {port}, which the fleet's devices were provisioned with, is taken by {owner}: "
                       f"stop it (a system mosquitto: `sudo systemctl stop mosquitto`), or use that broker "
                       f"with the fleet's mosquitto.conf")
    from tools.provision import LOCAL_CONF_DIR
    workdir = RUN_DIR / "broker-fleet"
    try:
        return brokers.start_fleet_mosquitto(workdir, fleet / "mosquitto.conf", port)
    except FileNotFoundError as e:
        raise RunError(f"{e}; the embedded broker has no logins or ACL, so a fleet needs mosquitto") from None
    except RuntimeError as e:   # mosquitto refused its config: most likely a file of mosquitto.d/ (the user's)
        raise RunError(f"the fleet's broker did not start: {e}; mosquitto said: "
                       f"{_last_error(workdir / 'mosquitto.log')} (your settings: {fleet / LOCAL_CONF_DIR})") from None


def _last_error(log_path):
    """The last line of a broker log that says what went wrong (mosquitto ends with it)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    said = [x.split(": ", 1)[-1] for x in lines if "Error" in x] or lines[-1:] or ["(nothing)"]
    return said[-1].strip()


def run(dev_id=None, port=DEFAULT_PORT, fleet=None):
    """Broker, bridge and a simulated device. With `fleet` (a `wisp provision` directory), the
    broker is the fleet's (LAN, logins, ACL) and the simulated device, if `dev_id` is given, is
    that provisioned device; boards provisioned with the fleet join it."""
    if fleet is None:
        dev_id = dev_id or "dev1"
    try:
        fleet_port, bridge_login = fleet_setup(fleet) if fleet is not None else (port, None)
        check_device(dev_id, fleet)   # before anything starts: a refused run must leave no trace
        if fleet is not None:
            fleet_broker_files(fleet)
        broker = start_fleet_broker(fleet, fleet_port) if fleet is not None else start_broker(port)
    except (RunError, sim.SimError) as e:
        print(f"wisp: {e}", file=sys.stderr, flush=True)
        return 1
    # started again as it was, on its port: the device, the bridge and the user's clients know that one
    children, before = [Supervised("broker", lambda: _broker_again(broker, fleet).proc, broker.proc)], None
    try:
        token, http_port = api_token(), brokers.port_is_free(HTTP_PORT) and HTTP_PORT or brokers.free_port()
        env = dict(os.environ, WISP_BROKER=f"{broker.host}:{broker.port}", PYTHONUNBUFFERED="1",
                   WISP_API_TOKEN=token, WISP_HTTP=f"127.0.0.1:{http_port}")
        if broker.kind == "amqtt":
            env["WISP_SHARED"] = "0"
        if bridge_login:
            env.update(WISP_BROKER_USER=bridge_login[0], WISP_BROKER_PASSWORD=bridge_login[1],
                       WISP_DEVICE_KEYS=str(fleet / "secrets.json"))
        bridge = Supervised("bridge", lambda: _spawn("bridge", [sys.executable, "-m", "bridge"], env=env))
        children.append(bridge)
        if not wait_bridge_ready(bridge.proc, http_port):
            print("wisp: the bridge did not start (its error is above); fix it and run again", file=sys.stderr,
                  flush=True)
            return 1
        if dev_id:
            workdir = sim.device_dir(dev_id)
            if fleet is None:
                sim.write_config(workdir, dev_id, broker.host, broker.port)
            else:
                _copy_fleet_config(fleet, dev_id, workdir)
            children.append(Supervised(dev_id, lambda: _start_device(dev_id, workdir)))
        watch = FleetWatch(fleet) if fleet is not None else None
        info = {"host": broker.host, "port": broker.port, "devices": [dev_id] if dev_id else [], "pid": os.getpid()}
        if fleet is not None:
            info["fleet"] = str(fleet.resolve())
        before = read_run_info()     # another `wisp run`, still running: its record comes back after ours
        RUN_INFO.write_text(json.dumps(info))
        print(_banner(broker, dev_id, http_port, token, fleet), flush=True)
        follow = None
        if watch is not None:
            def follow(now):
                if watch.changed(now):
                    _fleet_changed(fleet, dev_id, children, env, now)
        return _wait(children, follow)
    finally:
        for child in reversed(children):  # the broker last: the others say goodbye through it
            child.stop()
        _forget_run(before)


def _broker_again(broker, fleet):
    """The run's broker started again after it died, as it was started, on the same port."""
    if fleet is not None:
        return brokers.start_fleet_mosquitto(RUN_DIR / "broker-fleet", fleet / "mosquitto.conf", broker.port)
    if broker.kind == "amqtt":
        return brokers.start_amqtt(RUN_DIR / "broker", broker.port)
    return brokers.start_mosquitto(RUN_DIR / "broker", broker.port)


def check_device(dev_id, fleet):
    """Refuse, before starting anything, a simulated device that is already running (a second
    `make run`) or that the fleet has not provisioned."""
    if not dev_id:
        return
    sim.check_free(sim.device_dir(dev_id), dev_id)
    if fleet is not None:
        from tools.provision import device_config_path
        if not device_config_path(fleet, dev_id).exists():
            raise RunError(f"'{dev_id}' is not provisioned in {fleet}: `wisp provision {dev_id}` first")


def _forget_run(before):
    """Remove run.json when it is this run's (another run may have written its own since), putting
    back the record of a run that was there before ours and still runs."""
    try:
        if json.loads(RUN_INFO.read_text()).get("pid") != os.getpid():
            return
    except (OSError, ValueError, AttributeError):
        return
    if before and process_alive(before.get("pid")):
        RUN_INFO.write_text(json.dumps(before))
    else:
        RUN_INFO.unlink(missing_ok=True)


def _copy_fleet_config(fleet, dev_id, workdir):
    """The device's config.json from the fleet into its flash root, as `wisp deploy --device` puts it on a
    board; True when that changed it."""
    from tools.provision import device_config_path
    workdir.mkdir(parents=True, exist_ok=True)
    new, kept = device_config_path(fleet, dev_id).read_text(), workdir / "config.json"
    if kept.exists() and kept.read_text() == new:
        return False
    write_private(kept, new)
    return True


def _shown_path(path):
    """`path` as the user types it from the checkout: relative when inside it (.wisp/api_token)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _banner(broker, dev_id, http_port, token, fleet):
    port_flag = "" if broker.port == DEFAULT_PORT else f"-p {broker.port} "
    device = f"device '{dev_id}'" if dev_id else "no simulated device"
    example = dev_id or "<id>"
    if fleet is None:
        where = f"{broker.kind} on {broker.host}:{broker.port} (this machine only)"
        watch = f"mosquitto_sub {port_flag}-t 'wisp/#' -v      # watch every message"
    else:
        where = (f"the fleet's broker on port {broker.port} of every interface (logins and ACL of {fleet}); "
                 f"boards provisioned with it join")
        watch = f".venv/bin/wisp logs {example} -f      # its status and events, with the fleet's login"
    return f"""
wisp is running: {where}, the bridge, and {device}.
Dashboard:  http://127.0.0.1:{http_port}/#token={token}
In another terminal:
    .venv/bin/wisp devices
    .venv/bin/wisp ask {example} "turn on the porch light"
    .venv/bin/wisp cmd {example} gpio_read pin=door
    {watch}
    curl -H "Authorization: Bearer $(cat {_shown_path(TOKEN_FILE)})" http://127.0.0.1:{http_port}/api/devices
Press Ctrl-C to stop.
"""


def _start_device(dev_id, workdir):
    device = sim.start_device(workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sim.mark_running(workdir, device.pid)
    threading.Thread(target=_pump, args=(dev_id, device.stdout), daemon=True).start()
    return device


def _fleet_changed(fleet, dev_id, children, env, now):
    """`wisp provision` changed the fleet this run serves: the broker reads the new logins and ACL
    (SIGHUP: mosquitto reloads passwd and acl, and drops clients whose login is no longer valid), the
    bridge starts again with its login and the devices' keys as they are now, and the run's own
    simulated device gets its new config.json, as a board gets it from `wisp deploy --device`."""
    try:
        _port, login = fleet_setup(fleet)
    except RunError as e:
        print(f"wisp: the fleet changed but cannot be read ({e}); still serving it as it was", flush=True)
        return
    broker, bridge, *device = children
    if broker.proc.poll() is None:
        broker.proc.send_signal(signal.SIGHUP)
    env.update(WISP_BROKER_USER=login[0], WISP_BROKER_PASSWORD=login[1])
    bridge.restart(now)
    said = "the broker reads its logins and ACL again, the bridge restarted"
    if device:
        try:
            changed = _copy_fleet_config(fleet, dev_id, sim.device_dir(dev_id))
        except OSError:             # its config is gone from the fleet: it keeps running as it is
            changed = False
        if changed:
            device[0].restart(now)
            said += f", '{dev_id}' restarted with its new config"
    print(f"wisp: {fleet} changed (wisp provision): {said}", flush=True)


def _wait(children, follow=None):
    """follow(now), when given, runs with each round of checks."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGHUP, lambda *a: stop.set())   # its terminal closed: the children go too
    try:
        while not stop.is_set():
            now = time.monotonic()
            for child in children:
                child.check(now)
            if follow:
                follow(now)
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nwisp: stopping")
    return 0
