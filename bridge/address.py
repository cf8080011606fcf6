"""host:port as people write it, for the bridge's environment (WISP_BROKER, WISP_HTTP) and the `wisp`
CLI's --broker: a name or IPv4 address with an optional port, and IPv6 in brackets (`[::1]:1883`, as in
URLs) or bare without a port (`::1`, as mosquitto_pub -h takes it)."""
from __future__ import annotations


def split_host_port(text: str, default_port: int | None, what: str, allow_zero: bool = False) -> tuple[str, int]:
    """(host, port) of text; the port is default_port when text has none (None: a port is required).
    allow_zero: port 0 (any free port) is accepted. Raises ValueError naming `what`."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{what} {text!r}: an IPv6 address goes in brackets, e.g. [::1]:1883")
        port = rest[1:] if rest else None
    elif text.count(":") > 1:
        host, port = text, None  # a bare IPv6 address: a port after it would be ambiguous
    else:
        host, _, port = text.partition(":") if ":" in text else (text, "", None)
    if not host:
        raise ValueError(f"{what} {text!r} has no host; expected host:port")
    if port is None:
        if default_port is None:
            raise ValueError(f"{what} {text!r} has no port; expected host:port")
        return host, default_port
    if not port.isdigit() or not (0 if allow_zero else 1) <= int(port) < 65536:
        lowest = 0 if allow_zero else 1
        raise ValueError(f"{what} port in {text!r} must be a number {lowest}-65535")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    """host:port as it reads back, IPv6 in brackets ([::1]:1883)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
