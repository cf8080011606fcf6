"""The fleet bench's virtual devices: one raw MQTT 3.1.1 connection each, speaking the wisp protocol (no
firmware), and the bookkeeping of their requests and answers (bench/fleet.py drives them)."""
import asyncio
import json
import struct
import time

KEEPALIVE_S = 120  # the bench mosquitto's max_keepalive
PING_EVERY_S = 60  # each connection pings once per this, spread evenly over the fleet
CONNECT_BATCH = 250  # connections opened at once (stays under the listen backlog)
CONNECT_TIMEOUT_S = 30
DRAIN_S = 10  # after the last request of a rate, how long answers may still arrive


# ---- MQTT 3.1.1, just what a device needs ------------------------------------------------------------------------
def _varint(n):
    out = bytearray()
    while True:
        n, b = n >> 7, n & 0x7F
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first, body):
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id):
    return _packet(0x10, _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", KEEPALIVE_S) + _str(client_id))


def publish_packet(topic, payload, pid=0, retain=False):
    return _packet(0x30 | (2 if pid else 0) | (1 if retain else 0),
                   _str(topic) + (struct.pack("!H", pid) if pid else b"") + payload)


class Device(asyncio.Protocol):
    """One virtual device: its own connection, subscribed to wisp/<id>/llm/res; records when each done arrives."""

    def __init__(self, device_id, fleet):
        self.id, self.fleet = device_id, fleet
        self.buf, self.transport, self.pid = bytearray(), None, 0
        self.connack, self.suback = asyncio.Event(), asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(connect_packet(self.id))

    def connection_lost(self, exc):
        self.fleet.lost += 1

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def publish(self, topic, payload, retain=False):
        self.transport.write(publish_packet(topic, payload, self.next_pid(), retain))

    def data_received(self, data):
        self.buf += data
        while True:
            n, mult, i = 0, 1, 1
            while i < len(self.buf):  # remaining length: up to 4 bytes, 7 bits each
                b = self.buf[i]
                n += (b & 0x7F) * mult
                mult, i = mult * 128, i + 1
                if not b & 0x80:
                    break
            else:
                return
            if len(self.buf) < i + n:
                return
            kind, body = self.buf[0], bytes(self.buf[i:i + n])
            del self.buf[:i + n]
            self.packet(kind, body)

    def packet(self, kind, body):
        t = kind >> 4
        if t == 3:  # PUBLISH: the bridge's llm/res
            tlen = struct.unpack_from("!H", body)[0]
            at = 2 + tlen
            if kind & 0x06:
                self.transport.write(b"\x40\x02" + body[at:at + 2])  # PUBACK
                at += 2
            self.fleet.answer(body[at:])
        elif t == 2:
            if body[1] != 0:
                raise RuntimeError(f"{self.id}: CONNACK refused, code {body[1]}")
            self.transport.write(_packet(0x82, struct.pack("!H", self.next_pid()) + _str(f"wisp/{self.id}/llm/res")
                                         + b"\x01"))
            self.connack.set()
        elif t == 9:
            self.suback.set()


class Fleet:
    """All devices plus bookkeeping: request id -> publish time, done time, error."""

    def __init__(self, n, template):
        self.template = template  # the manifest every device publishes, with its own id
        self.devices = [Device(f"v{i}", self) for i in range(n)]
        self.sent, self.done, self.errors = {}, {}, {}
        self.lost, self.seq = 0, 0

    def answer(self, payload):
        now = time.perf_counter()
        try:
            m = json.loads(payload)
        except ValueError:
            return
        if m.get("done") and m.get("id") not in self.done:
            self.done[m["id"]] = now
            if m.get("err"):
                self.errors[m["id"]] = m["err"]

    async def connect(self, host, port):
        loop = asyncio.get_running_loop()
        for k in range(0, len(self.devices), CONNECT_BATCH):
            batch = self.devices[k:k + CONNECT_BATCH]
            await asyncio.gather(*(loop.create_connection(lambda d=d: d, host, port) for d in batch))
            await asyncio.wait_for(asyncio.gather(*(d.suback.wait() for d in batch)), CONNECT_TIMEOUT_S)
            for d in batch:  # like the firmware on connect: the retained manifest the bridge builds prompts from
                d.publish(f"wisp/{d.id}/manifest", json.dumps({**self.template, "id": d.id}).encode(), retain=True)

    async def keepalive(self):
        """PINGREQ from every connection once per PING_EVERY_S, evenly spread (the broker drops silent ones)."""
        batch = max(1, len(self.devices) // 200)  # ~200 wake-ups per period, whatever the fleet size
        while True:
            for k in range(0, len(self.devices), batch):
                for d in self.devices[k:k + batch]:
                    if d.transport and not d.transport.is_closing():
                        d.transport.write(b"\xc0\x00")
                await asyncio.sleep(PING_EVERY_S * batch / len(self.devices))

    def send(self, device):
        self.seq += 1
        rid = f"f{self.seq}"
        body = {"v": 1, "id": rid, "round": 0, "msgs": [{"r": "user", "t": "porch on"}], "class": "interactive",
                "budget_ms": 5000, "hash": self.template["hash"]}
        self.sent[rid] = time.perf_counter()
        device.publish(f"wisp/{device.id}/llm/req", json.dumps(body).encode())
        return rid

    async def wait(self, ids, timeout):
        deadline = time.monotonic() + timeout
        while any(i not in self.done for i in ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def run_rate(self, active, rate, seconds):
        """Open loop: `rate` requests/s round-robin over `active` devices for `seconds`."""
        ids, t0, total = [], time.perf_counter(), int(rate * seconds)
        for k in range(total):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            ids.append(self.send(active[k % len(active)]))
        await self.wait(ids, DRAIN_S)
        ok = [(self.done[i] - self.sent[i]) * 1000 for i in ids if i in self.done and i not in self.errors]
        ends = [self.done[i] for i in ids if i in self.done]
        span = (max(ends) - t0) if ends else seconds
        return {"rate": rate, "achieved": len(ok) / span, "lat": ok, "errors": sum(i in self.errors for i in ids),
                "unanswered": sum(i not in self.done for i in ids), "sample_err": next(
                    (self.errors[i] for i in ids if i in self.errors), None)}
