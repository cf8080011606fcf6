"""Optional check, outside `make test` (it needs a llama-server binary, which wisp does not build): the
real llama-server, with the scripted model of tools/scripted_gguf.py, against what the bridge sends it.

1. Every tool of every device config the provider-rule tests use, as the bridge translates it for the
   `llamacpp` dialect and for `openai` (what a llama-server on a plain URL is taken for), must compile
   into llama-server's grammar: one request per config and dialect, and on a refusal one per tool to name
   it. Prints each refusal with llama-server's own message.
2. A whole ask: mosquitto, the bridge with WISP_LOCAL_URL pointing at llama-server, a simulated device
   (the firmware on the MicroPython unix port), `wisp ask`. The model calls gpio_write(porch_light, 1)
   in round 1 and ends its turn without words in round 2; the light must be on and the ask must
   succeed.
3. The same ask with llama-server started with `--no-jinja` (jinja is its default since late 2025):
   the answer must tell the user to add `--jinja`; and with a context (`-c 1024`) smaller than the
   prompt: the answer must quote llama-server's reason.

Prints one line per check; exit status 1 on any failure.

    pip download --no-deps --no-binary :all: llama-cpp-python   # its sdist carries llama.cpp's sources
    tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF && \\
        cmake --build build --target llama-server -j2          # ~15 min on 2 cores
    .venv/bin/python -m tools.llama_check build/bin/llama-server
"""
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bridge.providers.schemas import translate
from tests.bridge.harness import firmware_manifest
from tests.bridge.test_provider_rules import CONFIGS, EXTRA, every_tool
from tests.e2e.stack import Stack
from tools import process
from tools.scripted_gguf import write as write_model

DIALECTS = ("llamacpp", "openai")
ASK = "it is getting dark outside"  # not a fast-path phrase: it goes to the model
START_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, binary: str, model: Path, log: Path, jinja: bool = True, context: int = 32768):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [binary, "-m", str(model), "-c", str(context), "-np", "1",
                "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(args + ["--jinja" if jinja else "--no-jinja"], stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        self.close()
        raise TimeoutError(f"llama-server not ready within {START_S:g} s; see {log}")

    def chat(self, tools: list) -> tuple[int, str]:
        """One streamed chat request with these tools, as the bridge makes it: (status, body)."""
        body = {"model": "scripted", "stream": True, "max_tokens": 64, "tools": tools,
                "messages": [{"role": "system", "content": "You control a device."},
                             {"role": "user", "content": ASK}]}
        req = urllib.request.Request(self.url + "/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def close(self):
        process.end(self.proc)
        self._log.close()


class Check:
    def __init__(self):
        self.failed = 0

    def __call__(self, ok: bool, what: str, detail: str = ""):
        print(("ok    " if ok else "FAIL  ") + what + (f": {detail}" if detail and not ok else ""))
        self.failed += not ok


def refused(status: int, body: str) -> str | None:
    """llama-server's refusal of a request, or None when it streamed an answer."""
    if status != 200:
        return f"HTTP {status} {body[:300]}"
    for line in body.splitlines():
        if line.startswith(("error:", 'data: {"error"')):
            return line[:300]
    return None if "data: [DONE]" in body else "the stream did not end with [DONE]"


def check_schemas(server: LlamaServer, work: Path, check: Check):
    for config in sorted(CONFIGS):
        where = work / f"manifest-{config.replace(' ', '-')}"
        where.mkdir()
        manifest = firmware_manifest(where, CONFIGS[config], **EXTRA.get(config, {}))
        offered = every_tool(manifest)
        for dialect in DIALECTS:
            sent = translate(dialect, offered)
            why = refused(*server.chat(sent))
            if why:  # name each tool llama-server refuses
                bad = [f"{t['function']['name']}: {w}" for t in sent if (w := refused(*server.chat([t])))]
                why = "; ".join(bad) or why
            check(why is None, f"llama-server takes all {len(sent)} tools of '{config}' as `{dialect}`", why or "")


def check_ask(binary: str, model: Path, work: Path, check: Check, case: str):
    """case: "jinja" (as users start it), "no-jinja", or "small-context" (a prompt over its -c)."""
    server = LlamaServer(binary, model, work / f"llama-server-{case}.log", case != "no-jinja",
                         1024 if case == "small-context" else 32768)
    stack = None
    try:
        stack = Stack(with_tier=False, bridge_env={"WISP_LOCAL_URL": server.url + "/v1",
                                                   "WISP_LOCAL_MODEL": "scripted"})
        stack.start_device("dev1")
        done = stack.wisp("ask", "dev1", ASK, timeout=90)
        said = (done.stdout + done.stderr).strip()
        if case == "jinja":
            try:
                stack.probe.wait_for("wisp/dev1/state/porch_light", lambda s: s == "ON", timeout=5)
                check(True, "the model's gpio_write switched the porch light on")
            except TimeoutError:
                check(False, "the model's gpio_write switched the porch light on", "its state never said ON")
            check(done.returncode == 0, "`wisp ask` succeeds when the model ends its turn without words",
                  f"exit {done.returncode}: {said}")
            print(f"      wisp ask said: {said}")
        elif case == "small-context":
            check(done.returncode != 0 and "exceeds the available context size" in said and "llama-server -c" in said,
                  "a prompt over the context size is refused quoting llama-server, naming -c",
                  f"exit {done.returncode}: {said}")
            print(f"      wisp ask said: {said}")
        else:
            check(done.returncode != 0 and "--jinja" in said, "without jinja the answer says to add --jinja",
                  f"exit {done.returncode}: {said}")
            print(f"      wisp ask said: {said}")
    finally:
        if stack:
            stack.close()
        server.close()


def main(binary: str) -> int:
    check = Check()
    work = Path(tempfile.mkdtemp(prefix="wisp-llama-"))
    model = write_model(work / "scripted.gguf")
    server = LlamaServer(binary, model, work / "llama-server.log")
    try:
        check_schemas(server, work, check)
    finally:
        server.close()
    for case in ("jinja", "no-jinja", "small-context"):
        check_ask(binary, model, work, check, case)
    print(f"{'all checks passed' if not check.failed else f'{check.failed} check(s) failed'} (logs in {work})")
    return 1 if check.failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tools.llama_check PATH/TO/llama-server")
    sys.exit(main(sys.argv[1]))
