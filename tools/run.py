"""`wisp run`: a broker, the bridge and one simulated device, with their logs in one terminal."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from tools import broker as brokers
from tools import sim
from tools.paths import RUN_DIR, RUN_INFO

DEFAULT_PORT = 1883


def _pump(name, stream):
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _spawn(name, cmd, **kw):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
    return proc


def start_broker(port):
    if not brokers.port_is_free(port):
        free = brokers.free_port()
        print(f"wisp: port {port} is taken; using {free}")
        port = free
    try:
        return brokers.start_mosquitto(RUN_DIR / "broker", port)
    except FileNotFoundError:
        print("wisp: mosquitto not found; using the embedded amqtt broker (MQTT 3.1.1, no shared subscriptions)")
        return brokers.start_amqtt(RUN_DIR / "broker", port)


def run(dev_id="dev1", port=DEFAULT_PORT):
    broker = start_broker(port)
    procs = []
    try:
        env = dict(os.environ, WISP_BROKER=f"{broker.host}:{broker.port}", PYTHONUNBUFFERED="1")
        if broker.kind == "amqtt":
            env["WISP_SHARED"] = "0"
        procs.append(("bridge", _spawn("bridge", [sys.executable, "-m", "bridge"], env=env)))
        workdir = sim.device_dir(dev_id)
        sim.write_config(workdir, dev_id, broker.host, broker.port)
        device = sim.start_device(workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=_pump, args=(dev_id, device.stdout), daemon=True).start()
        procs.append((dev_id, device))
        RUN_INFO.write_text(json.dumps({"host": broker.host, "port": broker.port, "devices": [dev_id]}))
        print(f"""
wisp is running: {broker.kind} on {broker.host}:{broker.port}, the bridge, and device '{dev_id}'.
In another terminal:
    .venv/bin/wisp ask {dev_id} "turn on the porch light"
    mosquitto_sub -p {broker.port} -t 'wisp/#' -v      # watch every message
Press Ctrl-C to stop.
""", flush=True)
        return _wait(procs)
    finally:
        for _name, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        RUN_INFO.unlink(missing_ok=True)


def _wait(procs):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        while not stop.is_set():
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"wisp: {name} exited with code {proc.returncode}; stopping")
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nwisp: stopping")
    return 0
