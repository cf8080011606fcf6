# SNTP client for both boards (the stock ntptime module blocks the loop, knows one server and
# lets a garbled reply's ValueError out). Tries each server in turn: config "ntp" (a router or
# any LAN host serves a LAN-only install), then the broker's host, so a device with no
# internet still gets its clock, which TLS needs (the broker certificate is "not yet valid"
# at 2000-01-01) and schedules need.
import asyncio
import socket
import struct

DEFAULT_SERVERS = ("pool.ntp.org",)
NTP_DELTA = 2208988800  # seconds from 1900 (NTP) to 1970 (unix)
MIN_UNIX = 1735689600   # 2025-01-01: an earlier answer is wrong, not news
TIMEOUT_MS = 1000
STEP_MS = 20


def servers(config):
    """Hosts to ask, in order: config "ntp" (a name, "name:port", or a list of them), else
    pool.ntp.org; then the broker's host."""
    given = config.get("ntp")
    given = [given] if isinstance(given, str) else given if isinstance(given, list) else DEFAULT_SERVERS
    out = [h for h in given if isinstance(h, str) and h]
    broker = config.get("broker", {}).get("host")
    if isinstance(broker, str) and broker not in out:
        out.append(broker)
    return out


def parse(data):
    """Unix seconds from an NTP server's reply; ValueError if it is not a sane one."""
    if len(data) < 48:
        raise ValueError("NTP reply of %d bytes" % len(data))
    if data[0] & 7 not in (4, 5) or not 0 < data[1] < 16:  # server/broadcast mode, synchronised
        raise ValueError("not an NTP server reply")
    secs = struct.unpack_from("!I", data, 40)[0]
    if secs < 0x80000000:
        secs += 0x100000000  # NTP era 1 (from 2036)
    unix = secs - NTP_DELTA
    if unix < MIN_UNIX:
        raise ValueError("NTP time before 2025")
    return unix


async def query(host, timeout_ms=TIMEOUT_MS):
    """Ask one server; the socket is polled so the loop keeps running. OSError or ValueError."""
    name, _, port = host.partition(":")
    addr = socket.getaddrinfo(name, int(port) if port else 123, 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.sendto(b"\x1b" + bytes(47), addr)
        waited = 0
        while True:
            try:
                return parse(s.recv(64))
            except OSError:  # nothing yet (EAGAIN)
                if waited >= timeout_ms:
                    raise OSError("no NTP reply from %s" % host) from None
            await asyncio.sleep_ms(STEP_MS)
            waited += STEP_MS
    finally:
        s.close()


async def sync(config, set_clock, log):
    """Set the clock from the first server that answers sanely; the host used, or None."""
    for host in servers(config):
        try:
            set_clock(await query(host))
            return host
        except (OSError, ValueError) as e:  # unreachable, garbled, nonsense: try the next one
            log("clock: %s: %s" % (host, e))
    return None
