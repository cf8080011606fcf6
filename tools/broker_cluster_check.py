"""Optional check, outside `make test` (it needs ejabberd, which wisp does not install): wisp on a broker
that is not mosquitto, and on a clustered one. ejabberd's mod_mqtt is an MQTT 3.1.1/5 broker whose nodes
form an Erlang cluster. The check runs its own nodes on 127.0.0.1 (their own epmd port, cookie, config,
Mnesia spool and logs in a temporary folder; the system's ejabberd service is not used) and points the
real parts at them: devices running the firmware on the MicroPython unix port, `python -m bridge` with a
stand-in LLM tier (tests/fakes), the `wisp` CLI.

One node: a client without a login is refused (ejabberd admits none: every part gets a user name and a
password, any password under the anonymous login this config sets); a bridge left on shared subscriptions
says to turn them off; with WISP_SHARED=0 the retained status and manifest, an ask on the device's fast
path, an ask through the LLM, and the last will when the device is killed.
Two nodes joined in a cluster, the device on node A, two bridges on node B with plain subscriptions: an
ask reaches both bridges; with separate stores both answer each round (two model calls), with one SQLite
file their claims answer it once; a retained message published on A after B started is not found on B,
so a bridge (re)started on B after the device came online has no manifest for it.
Prints one line per check; exit status 1 on any mismatch.

    sudo apt-get install -y ejabberd
    sudo systemctl disable --now ejabberd     # where systemd runs it: the check starts its own nodes
    .venv/bin/python -m tools.broker_cluster_check
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.e2e.stack import PROVIDER_ENV, Stack
from tests.support import Check, until
from tests.support import retained as retained_on
from tools import broker as brokers
from tools import process
from tools.paths import REPO

ERL_LIBS = Path("/usr/lib/x86_64-linux-gnu")  # where Debian's ejabberd package puts its Erlang applications
LOGIN = ("wisp", "check")        # any password: the nodes' auth is `anonymous` with login_anon
START_S = 60.0                   # a node starts in ~1 s here; Mnesia on a slow disk takes longer
WAIT_S = 10.0
LLM_WAIT_S = 35.0                # the device gives up on the bridge after 30 s (ROUND_TIMEOUT_MS)
FAST_ASK, LLM_ASK = "turn on the porch light", "it is getting dark, light up the porch please"
# what would point the stack elsewhere than this check's own parts
FOREIGN_ENV = (*PROVIDER_ENV, "WISP_SHARED", "WISP_COST_DB", "WISP_COST_URL", "WISP_BROKER_USER",
               "WISP_BROKER_PASSWORD", "WISP_BRIDGE_NAME", "WISP_API_TOKEN", "WISP_HTTP", "WISP_DEVICE_KEYS")

NODE_CONF = """hosts: ["localhost"]
loglevel: info
auth_method: [anonymous]
anonymous_protocol: login_anon
allow_multiple_connections: true
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: mod_mqtt
modules:
  mod_mqtt: {{}}
"""


def ejabberd_dir():
    found = sorted(ERL_LIBS.glob("ejabberd-*/ebin/ejabberd.app"))
    return found[-1].parent.parent if found else None


class Cluster:
    """An epmd of its own and the ejabberd nodes started under `root`, all on 127.0.0.1."""

    def __init__(self, root):
        self.root = Path(root)
        self.cookie = secrets.token_hex(8)
        self.epmd_port = brokers.free_port()
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port), ERL_LIBS=str(ERL_LIBS))
        self.procs = []
        epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        self.procs.append(epmd)
        brokers.wait_listening("127.0.0.1", self.epmd_port, epmd)

    def start_node(self, name):
        """Node `name`@localhost with mod_mqtt on a free port; its Broker (for Stack and the probes)."""
        home = self.root / name
        (home / "spool").mkdir(parents=True)
        port = brokers.free_port()
        (home / "ejabberd.yml").write_text(NODE_CONF.format(port=port))
        env = dict(self.env, EJABBERD_CONFIG_PATH=str(home / "ejabberd.yml"),
                   EJABBERD_LOG_PATH=str(home / "ejabberd.log"))
        out = open(home / "erl.out", "ab")
        # what `ejabberdctl foreground` runs, without its switch to the ejabberd user: Erlang distribution on
        # loopback only, the check's epmd and cookie
        proc = subprocess.Popen(["erl", "-sname", f"{name}@localhost", "-setcookie", self.cookie, "-start_epmd",
                                 "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}", "+K", "true",
                                 "-mnesia", "dir", f'"{home / "spool"}"', "-s", "ejabberd", "-noinput"],
                                cwd=str(home), env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                process_group=0)
        out.close()
        self.procs.append(proc)
        brokers.wait_listening("127.0.0.1", port, proc, timeout_s=START_S)
        return brokers.Broker(proc, "127.0.0.1", port, f"ejabberd {name}", home / "ejabberd.log")

    def rpc(self, node, call):
        """The printed result of the Erlang expression `call` (module:function(args)) run on `node`."""
        ctl = f"ctl{secrets.token_hex(3)}@localhost"
        expr = f'io:format("~p", [rpc:call({node}@localhost, {call})]), halt().'
        done = subprocess.run(["erl", "-sname", ctl, "-setcookie", self.cookie, "-start_epmd", "false",
                               "-noshell", "-eval", expr], env=self.env, capture_output=True, text=True,
                              timeout=START_S)
        return done.stdout.strip()

    def close(self):
        for proc in reversed(self.procs):  # the nodes first, their epmd last
            process.end(proc, 10.0)


def connack(broker, login):
    """The CONNACK reason a paho client gets with `login` (None: no user name, no password)."""
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if login:
        c.username_pw_set(*login)
    c.on_connect = lambda _c, _u, _f, rc, _p: (got.append(str(rc)), done.set())
    c.connect(broker.host, broker.port)
    c.loop_start()
    done.wait(WAIT_S)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def retained(broker, topics):
    """{topic: payload} of the retained messages `broker` (one node) gives a new subscriber."""
    return retained_on(broker.host, broker.port, topics, login=LOGIN)


def last_will_seen(stack, dev_id):
    """Kill the device (the power goes: its node publishes the last will); True once its status says offline."""
    stack.devices[dev_id].send_signal(signal.SIGKILL)
    stack.devices[dev_id].wait()
    try:
        stack.probe.wait_for(f"wisp/{dev_id}/status", lambda s: isinstance(s, dict) and s.get("state") == "offline",
                             timeout=WAIT_S * 2)
        return True
    except TimeoutError:
        return False


def llm_calls(*stacks):
    return sum(len(s.fake.requests) for s in stacks)


def wisp(broker, *args):
    """The real `wisp` CLI with the check's login, against one node."""
    env = dict(os.environ, WISP_BROKER_USER=LOGIN[0], WISP_BROKER_PASSWORD=LOGIN[1])
    return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--broker", f"{broker.host}:{broker.port}"],
                          cwd=str(REPO), capture_output=True, text=True, timeout=LLM_WAIT_S + 15, env=env)


def ask(broker, dev_id, text, check, path):
    """`wisp ask` through node `broker`; True when the porch light came on along `path`."""
    done = wisp(broker, "ask", dev_id, text)
    words = {"device": "porch light is on", "llm": "The porch light is on."}[path]
    return check(done.returncode == 0 and words in done.stdout and f"[{path}" in done.stdout,
                 f"wisp ask {dev_id} {text!r}: {words!r} from the {path} path", done.stdout + done.stderr)


def traffic(stack, dev_id):
    """(answers ending a round on llm/res, replies, porch light switchings the device ran) the probe saw since
    the last call, the console counted whole."""
    seen = stack.probe.drain(1.5)
    dones = sum(1 for t, p in seen if t == f"wisp/{dev_id}/llm/res" and isinstance(p, dict) and p.get("done"))
    replies = sum(1 for t, _ in seen if t == f"wisp/{dev_id}/reply")
    return dones, replies, stack.console(dev_id).count("tool gpio_write(pin=porch_light")


def shared_bridge_says_plain(broker, check):
    """A bridge left on $share/: its log names WISP_SHARED=0 (the node closes the connection on the SUBSCRIBE)."""
    work = Path(tempfile.mkdtemp(prefix="wisp-share-"))
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env.update(WISP_BROKER=f"{broker.host}:{broker.port}", WISP_BROKER_USER=LOGIN[0], WISP_BROKER_PASSWORD=LOGIN[1],
               WISP_SHARED="1", PYTHONUNBUFFERED="1")
    log = work / "bridge.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=str(work), env=env, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
    try:
        said = until(lambda: "WISP_SHARED=0" in log.read_text(errors="replace"), WAIT_S, "the hint")
    except TimeoutError:
        said = False
    finally:
        process.end(proc)
    text = log.read_text(errors="replace")
    shutil.rmtree(work, ignore_errors=True)
    check(said and "bridge ready" not in text, "a bridge on $share/ is closed on its SUBSCRIBE and says WISP_SHARED=0",
          text[-600:])


def one_node(node, check):
    print(f"-- one node, {node.kind} on {node.host}:{node.port}")
    check(connack(node, None) == "Not authorized", "a client without a login is refused", connack(node, None))
    check(connack(node, LOGIN) == "Success", "a client with a user name and any password is admitted")
    shared_bridge_says_plain(node, check)
    stack = Stack(broker=node, login=LOGIN, bridge_env={"WISP_SHARED": "0"})
    try:
        check(True, "a bridge with WISP_SHARED=0 is ready (subscribed to wisp/+/llm/req)")
        stack.start_device("dev1")
        kept = retained(node, ["wisp/dev1/status", "wisp/dev1/manifest"])
        check(b'"online"' in kept.get("wisp/dev1/status", b"") and b'"tools"' in kept.get("wisp/dev1/manifest", b""),
              "the device's status (online) and manifest are retained", kept)
        ask(node, "dev1", FAST_ASK, check, "device")
        calls = llm_calls(stack)
        ask(node, "dev1", LLM_ASK, check, "llm")
        check(llm_calls(stack) - calls == 2, "two model calls for it (the call, then the words)", llm_calls(stack))
        check(last_will_seen(stack, "dev1"), "the device killed: its last will, status offline")
        kept = retained(node, ["wisp/dev1/status"])
        check(b'"offline"' in kept.get("wisp/dev1/status", b""), "status offline is retained", kept)
    finally:
        stack.close()
        shutil.rmtree(stack.dir, ignore_errors=True)


def restart_bridge(stack, env):
    process.end(stack.bridge)
    stack.bridge_env.update(env)
    stack.start_bridge()


def two_nodes(cluster, a, check):
    b = cluster.start_node("ejB")
    joined = cluster.rpc("ejB", "ejabberd_admin, join_cluster, [<<\"ejA@localhost\">>]")
    nodes = cluster.rpc("ejA", "ejabberd_cluster, get_nodes, []")
    print(f"-- two nodes, device on ejA ({a.host}:{a.port}), two bridges on ejB ({b.host}:{b.port})")
    check(joined == "ok" and "ejA@localhost" in nodes and "ejB@localhost" in nodes,
          "ejB joins ejA's cluster", (joined, nodes))
    # the join restarts ejabberd on ejB: wait until its listener admits clients again
    until(lambda: connack(b, LOGIN) == "Success", START_S, "ejB admitting clients after the join")
    one, two = [Stack(broker=b, login=LOGIN, bridge_env={"WISP_SHARED": "0", "WISP_BRIDGE_NAME": name})
                for name in ("b1", "b2")]
    try:
        device_on_a = {"broker": dict(host=a.host, port=a.port, user=LOGIN[0], password=LOGIN[1])}
        one.start_device("dev2", extra=device_on_a)  # online and its manifest reach ejB's subscribers live
        check(True, "a device on ejA: its status and manifest reach the bridges on ejB")
        done = wisp(b, "ask", "dev2", FAST_ASK)
        check(done.returncode != 0 and "never published a status" in done.stderr,
              "wisp ask through ejB: no device dev2 (its retained status is found on ejA only)", done.stderr)
        ask(a, "dev2", FAST_ASK, check, "device")

        calls, (_, _, ran) = llm_calls(one, two), traffic(one, "dev2")
        ask(a, "dev2", LLM_ASK, check, "llm")
        check(llm_calls(one, two) - calls == 4, "separate stores: both bridges answer each round (4 model calls "
              "for 2 rounds)", llm_calls(one, two) - calls)
        dones, replies, ran_now = traffic(one, "dev2")
        check(dones == 4 and replies == 1 and ran_now - ran == 1, "4 answers on llm/res, yet one reply and one "
              "switching on the device", (dones, replies, ran_now - ran))

        db = str(one.dir / "shared-cost.db")
        for stack in (one, two):
            restart_bridge(stack, {"WISP_COST_DB": db})
        # restarted, the bridges on ejB would find no manifest of dev2 (see below): the device comes back
        process.end(one.devices["dev2"])
        one.start_device("dev2", extra=device_on_a)
        calls, (_, _, ran) = llm_calls(one, two), traffic(one, "dev2")
        ask(a, "dev2", LLM_ASK, check, "llm")
        check(llm_calls(one, two) - calls == 2, "one SQLite file: the bridges' claims answer each round once "
              "(2 model calls)", llm_calls(one, two) - calls)
        dones, replies, ran_now = traffic(one, "dev2")
        check(replies == 1 and ran_now - ran == 1, f"one reply and one switching on the device ({dones} answers "
              "on llm/res)", (dones, replies, ran_now - ran))

        on_a = retained(a, ["wisp/dev2/manifest"])
        on_b = retained(b, ["wisp/dev2/manifest"])
        check("wisp/dev2/manifest" in on_a and "wisp/dev2/manifest" not in on_b,
              "dev2's manifest, retained on ejA after ejB started, is not found on ejB", (list(on_a), list(on_b)))
        process.end(two.bridge)
        restart_bridge(one, {})
        done = wisp(a, "ask", "dev2", LLM_ASK)
        check(done.returncode != 0 and "no manifest" in done.stdout + done.stderr,
              "so a bridge restarted on ejB has no manifest for dev2: the ask fails in words",
              done.stdout + done.stderr)

        check(last_will_seen(one, "dev2"), "the device on ejA killed: its last will reaches ejB")
    finally:
        for stack in (one, two):
            stack.close()
            shutil.rmtree(stack.dir, ignore_errors=True)


def main(argv):
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    home = ejabberd_dir()
    if not home or not shutil.which("erl") or not shutil.which("epmd"):
        print("wisp: no ejabberd here (sudo apt-get install -y ejabberd; tools/broker_cluster_check.py says more)",
              file=sys.stderr)
        return 2
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    root = Path(tempfile.mkdtemp(prefix="wisp-ejabberd-"))
    check, cluster = Check(), None
    try:
        cluster = Cluster(root)
        a = cluster.start_node("ejA")
        otp = cluster.rpc("ejA", "erlang, system_info, [otp_release]")
        print(f"{home.name} (Erlang/OTP {otp.strip(chr(34))}), every node and client on 127.0.0.1")
        one_node(a, check)
        two_nodes(cluster, a, check)
    finally:
        if cluster:
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    print("all checks passed" if not check.failed else f"{check.failed} mismatch(es)")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
