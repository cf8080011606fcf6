"""Start an MQTT broker for development and tests: real mosquitto, or amqtt as a fallback."""
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from tools import process
from tools.system_deps import find_mosquitto

READY_TIMEOUT_S = 10.0
PRIVATE_PORTS_FROM = 10000  # free_port's lowest choice: above the ports services are commonly given


def free_port(host="127.0.0.1"):
    """A port nothing uses now, chosen at random below the kernel's ephemeral ports where it can: a
    port from that range (bind to 0) goes to the next outgoing connection once released, so a server
    started on it a moment later (a broker restarted on its port, a port a fleet was provisioned
    with, a test's second process) could find it taken. Else the kernel's choice."""
    low = _ephemeral_low()
    for _ in range(100 if low - PRIVATE_PORTS_FROM >= 1000 else 0):
        port = random.randrange(PRIVATE_PORTS_FROM, low)
        with socket.socket() as s:
            try:
                s.bind((host, port))  # no SO_REUSEADDR: a port with connections in TIME-WAIT is passed over too
                return port
            except OSError:
                continue
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (Linux: 32768), or 0 when it cannot be read."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_is_free(port, host="127.0.0.1"):
    """True when nothing listens on host:port. SO_REUSEADDR as the broker itself uses it, so the
    TIME-WAIT connections a previous run leaves behind do not count as "taken"."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


_TCP_LISTEN = "0A"


def _listening_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port):
    """'name (pid N)' of the process listening on a TCP port, or None when it cannot be told
    (another user's process, or no /proc)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
        except OSError:
            continue
    return None


def wait_listening(host, port, proc, timeout_s=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"broker did not listen on {host}:{port} within {timeout_s} s")


def mosquitto_conf(port, host="127.0.0.1", extra=""):
    """An anonymous broker on one loopback listener: what `wisp run` and the tests start."""
    return "\n".join([f"listener {port} {host}", "allow_anonymous true", *_common_conf()]) + "\n" + extra


def _common_conf():
    # set_tcp_nodelay: without it each QoS 1 round trip costs 40-90 ms (Nagle + delayed ACK).
    # user root: when started as root, mosquitto would drop to `mosquitto` and lose our files.
    lines = [
        "set_tcp_nodelay true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "max_keepalive 120",
        # a slow client's backlog is kept rather than dropped at 1000 (fuzz and load tests
        # must reach the device, not be thinned out by the broker)
        "max_queued_messages 100000",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    return lines


class Broker:
    """A running broker process; stop() ends it."""

    def __init__(self, proc, host, port, kind, log_path):
        self.proc, self.host, self.port, self.kind, self.log_path = proc, host, port, kind, log_path

    def stop(self):
        process.end(self.proc)


def start_mosquitto(workdir, port=None, host="127.0.0.1", extra_conf=""):
    workdir = Path(workdir)
    port = port or free_port(host)
    return _start_mosquitto(workdir, mosquitto_conf(port, host, extra_conf), host, port)


def start_fleet_mosquitto(workdir, fleet_conf, port):
    """The fleet's broker: `fleet_conf` (written by `wisp provision`: its listener, logins and ACL)
    read through include_dir, as Debian's system mosquitto reads /etc/mosquitto/conf.d. mosquitto
    follows include_dir only in its main file, so the user's own settings that `fleet_conf` includes
    (mosquitto.d/*.conf beside it, e.g. a TLS listener) are put in that folder too, after it."""
    workdir = Path(workdir)
    conf_d = workdir / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    for old in conf_d.glob("*.conf"):     # a file the user has since removed must not linger
        old.unlink()
    (conf_d / "0-wisp.conf").write_text(Path(fleet_conf).read_text())
    for local in sorted(Path(fleet_conf).parent.glob("mosquitto.d/*.conf")):
        (conf_d / f"1-{local.name}").write_text(local.read_text())
    return _start_mosquitto(workdir, "\n".join([*_common_conf(), f"include_dir {conf_d}"]) + "\n",
                            "127.0.0.1", port)


def _start_mosquitto(workdir, conf_text, host, port):
    binary = find_mosquitto()
    if not binary:
        raise FileNotFoundError("mosquitto is not installed (sudo apt-get install mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(conf_text)
    log_path = workdir / "mosquitto.log"
    log = open(log_path, "ab")
    # its own process group: a Ctrl-C typed at `wisp run` is for wisp run, which stops the broker last
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            process_group=0)
    log.close()
    wait_listening(host, port, proc)
    return Broker(proc, host, port, "mosquitto", log_path)


def start_amqtt(workdir, port=None, host="127.0.0.1"):
    """amqtt speaks MQTT 3.1.1 only and ignores $share/: a lone bridge must subscribe plainly."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    conf = workdir / "amqtt.yaml"
    conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: {host}:{port}\n"
                    "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n")
    log_path = workdir / "amqtt.log"
    log = open(log_path, "ab")
    amqtt = Path(sys.executable).parent / "amqtt"
    proc = subprocess.Popen([str(amqtt), "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            process_group=0)   # as mosquitto's: wisp run stops it
    log.close()
    wait_listening(host, port, proc, timeout_s=30)
    return Broker(proc, host, port, "amqtt", log_path)
