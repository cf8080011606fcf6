"""`wisp run`: a broker, the bridge and one simulated device, with their logs in one terminal."""
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from tools import broker as brokers
from tools import sim
from tools.paths import RUN_DIR, RUN_INFO

DEFAULT_PORT = 1883
HTTP_PORT = 8787                      # dashboard, REST API, /metrics and /v1 (a free one if taken)
TOKEN_FILE = RUN_DIR / "api_token"    # the dashboard's and API's bearer token, kept across runs


def api_token():
    """$WISP_API_TOKEN, else the token of earlier runs, else a new one (0600 file)."""
    token = os.environ.get("WISP_API_TOKEN") or (TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists() else "")
    if not token:
        token = secrets.token_urlsafe(24)
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.write_text(token)
        os.chmod(TOKEN_FILE, 0o600)
    return token


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
        token, http_port = api_token(), brokers.port_is_free(HTTP_PORT) and HTTP_PORT or brokers.free_port()
        env = dict(os.environ, WISP_BROKER=f"{broker.host}:{broker.port}", PYTHONUNBUFFERED="1",
                   WISP_API_TOKEN=token, WISP_HTTP=f"127.0.0.1:{http_port}")
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
Dashboard:  http://127.0.0.1:{http_port}/#token={token}
In another terminal:
    .venv/bin/wisp ask {dev_id} "turn on the porch light"
    .venv/bin/wisp cmd {dev_id} gpio_read pin=door
    mosquitto_sub -p {broker.port} -t 'wisp/#' -v      # watch every message
    curl -H "Authorization: Bearer $(cat .wisp/api_token)" http://127.0.0.1:{http_port}/api/devices
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
