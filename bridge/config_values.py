"""Reading wisp.toml and the environment: the file itself and the checks of single values (types, ports, URLs,
keys), each error phrased for the person who has to fix it. bridge/config.py builds the configuration from them.
"""
from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("wisp.bridge.config")

DEFAULT_CONFIG_FILE = "wisp.toml"


class ConfigError(Exception):
    """A configuration problem, phrased for the person who has to fix it."""


class NonNegative(float):
    """Marker type for check_keys: a number >= 0 (prices, budgets), where float means > 0."""


_SECRET_KEYS = ("password", "token")  # a wrong value is still a secret: errors name its type, never the value


def read_toml(path: str | None, env: Mapping[str, str]) -> tuple[dict, str]:
    explicit = path or env.get("WISP_CONFIG") or None
    if explicit is None:
        if not Path(DEFAULT_CONFIG_FILE).is_file():
            return {}, "environment"  # no file at all is fine: everything can come from the environment
        explicit = DEFAULT_CONFIG_FILE
    p = Path(explicit)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        # a byte-order mark (Windows editors) is no mistake of the file, but TOML readers refuse it
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:  # an editor saved it as Latin-1 or UTF-16: say where, not a traceback
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{p}: not UTF-8 (byte 0x{raw[e.start]:02x} at line {line}, column {column}): "
                          "save it as UTF-8") from None
    try:
        return tomllib.loads(text), str(p)
    except tomllib.TOMLDecodeError as e:  # its message carries "(at line N, column M)"
        raise ConfigError(f"{p}: invalid TOML: {e}") from None


def section(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def check_keys(table: dict, allowed: dict[str, type], where: str) -> None:
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {quoted_names(unknown)}; allowed: {', '.join(allowed)}")
    for key, want in allowed.items():
        if key not in table:
            continue
        value = table[key]
        # bool is an int in Python; a port of `true` is a mistake, not 1
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = (number and value >= 0 if want is NonNegative else number and value > 0 if want is float
              else isinstance(value, want) and (want is bool or not isinstance(value, bool)))
        if not ok:
            kind = {NonNegative: "a number >= 0", float: "a positive number", str: "a string",
                    int: "an integer", bool: "true or false", dict: "a table"}[want]
            shown = f"a value of type {type(value).__name__} (not shown)" if key in _SECRET_KEYS else repr(value)
            raise ConfigError(f"{where}: {key} must be {kind}, got {shown}")


def env_flag(name: str, text: str) -> bool:
    """An on/off environment variable: 1/0, true/false, yes/no, on/off; anything else is a ConfigError."""
    flag = text.strip().lower()
    if flag not in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        raise ConfigError(f"{name} must be 0 or 1, got {text!r}")
    return flag in ("1", "true", "yes", "on")


# What surrounds a key pasted or written into an environment: quotes that a docker --env-file keeps as part of the
# value, typographic ones from a document, a CR from a file saved with CRLF. No API key or token holds any of them.
_AROUND_SECRETS = " \t\r\n\"'\u201c\u201d\u2018\u2019"


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    """An API key or token from the environment, without the spaces and quotes around it (sent with them, the
    provider answers every request 401 though the key is right). None when unset or empty."""
    raw = env.get(name)
    if not raw:
        return None
    value = raw.strip(_AROUND_SECRETS)
    if value != raw:
        log.warning("%s has spaces, line breaks or quotes around it: they are left out of it", name)  # never the key
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"{name} holds a space or control character inside it, which no API key or token has: "
                          "check that it was pasted whole")
    return value or None


def tcp_port(value, what: str) -> int:
    try:
        port = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"{what} must be a TCP port (1-65535), got {value!r}")
    return port


# what the providers add to a tier's base_url (bridge/providers): a URL that ends in it already, pasted from a
# server's docs, would be asked at .../chat/completions/chat/completions and answer 404 to every request
_ENDPOINTS = {"openai": "/chat/completions", "anthropic": "/messages"}


def check_url(value: str, what: str, provider: str = "openai") -> None:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{what} must start with http:// or https://, got {value!r}")
    try:  # checked here, or every request to the tier fails (a port out of range raised in the middle of a turn)
        parts = urlsplit(value)
        ok = bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{what} has no valid host and port (1-65535), got {value!r}")
    endpoint = _ENDPOINTS.get(provider, "")
    if endpoint and value.rstrip("/").endswith(endpoint):
        raise ConfigError(f"{what} is the API's base URL; the bridge adds {endpoint} itself: use "
                          f"{value.rstrip('/').removesuffix(endpoint)}")


def quoted_names(keys) -> str:
    return ", ".join(repr(k) for k in sorted(keys))
