"""Bridge configuration: the broker to join and the inference tiers to use, from wisp.toml and the environment.

Precedence: WISP_BROKER / WISP_SHARED override [broker] (deployment tweaks win over the file); a tier written
in [tiers.<name>] wins over the environment shortcut of the same name (the file is the detailed form).
"""
from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

log = logging.getLogger("wisp.bridge.config")

REQUEST_CLASSES = ("interactive", "scheduled", "private")
LOCAL_TIER = "local"  # the only tier `private` requests may use
DEFAULT_ROUTES = {
    "interactive": ["premium", "commodity", "local"],
    "scheduled": ["commodity", "local", "premium"],
    "private": [LOCAL_TIER],
}
DEFAULT_BROKER = "127.0.0.1:1883"
DEFAULT_CONFIG_FILE = "wisp.toml"

# Environment shortcuts: tier name -> (key variable, base URL variable, default URL, model variable, default model)
_ENV_TIERS = {
    "premium": ("CEREBRAS_API_KEY", "CEREBRAS_BASE_URL", "https://api.cerebras.ai/v1",
                "CEREBRAS_MODEL", "llama-3.3-70b"),
    "commodity": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1",
                  "OPENAI_MODEL", "gpt-4o-mini"),
}
BUILTIN_TIERS = (*_ENV_TIERS, LOCAL_TIER)

_BROKER_KEYS = {"host": str, "port": int, "user": str, "password": str, "shared": bool}
_TIER_KEYS = {"base_url": str, "model": str, "api_key_env": str,
              "connect_timeout_s": float, "first_token_timeout_s": float, "idle_timeout_s": float}


class ConfigError(Exception):
    """A configuration problem, phrased for the person who has to fix it."""


@dataclass(frozen=True)
class Tier:
    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0

    def describe(self) -> str:
        key = "key set" if self.api_key else "no key"
        return f"{self.name}: {self.model} at {self.base_url} ({key})"


@dataclass
class BridgeConfig:
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_user: str | None = None
    broker_password: str | None = field(default=None, repr=False)
    shared: bool = True
    tiers: dict[str, Tier] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROUTES.items()})


def load_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> BridgeConfig:
    data, where = _read_toml(path, env)
    unknown = set(data) - {"broker", "tiers", "routes"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {_names(unknown)}; expected broker, tiers, routes")
    cfg = BridgeConfig()
    _apply_broker(cfg, _table(data, "broker", where), where)
    _apply_broker_env(cfg, env)
    file_tiers = _table(data, "tiers", where)
    cfg.tiers = _env_tiers(env)
    cfg.tiers.update(_file_tiers(file_tiers, where, env))
    # A route may name a tier that is merely not configured here (no key); only a name nobody defines is an error.
    known = set(BUILTIN_TIERS) | set(file_tiers)
    cfg.routes.update(_file_routes(_table(data, "routes", where), where, known))
    return cfg


def _read_toml(path: str | None, env: Mapping[str, str]) -> tuple[dict, str]:
    explicit = path or env.get("WISP_CONFIG") or None
    if explicit is None:
        if not Path(DEFAULT_CONFIG_FILE).is_file():
            return {}, "environment"  # no file at all is fine: everything can come from the environment
        explicit = DEFAULT_CONFIG_FILE
    p = Path(explicit)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open("rb") as f:
            return tomllib.load(f), str(p)
    except tomllib.TOMLDecodeError as e:  # its message carries "(at line N, column M)"
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _check(table: dict, allowed: dict[str, type], where: str) -> None:
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_names(unknown)}; allowed: {', '.join(allowed)}")
    for key, want in allowed.items():
        if key not in table:
            continue
        value = table[key]
        # bool is an int in Python; a port of `true` is a mistake, not 1
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 if want is float
              else isinstance(value, want) and (want is bool or not isinstance(value, bool)))
        if not ok:
            kind = "a positive number" if want is float else {str: "a string", int: "an integer",
                                                              bool: "true or false"}[want]
            raise ConfigError(f"{where}: {key} must be {kind}, got {value!r}")


def _apply_broker(cfg: BridgeConfig, table: dict, where: str) -> None:
    _check(table, _BROKER_KEYS, f"{where} [broker]")
    cfg.broker_host = table.get("host", cfg.broker_host)
    cfg.broker_port = _port(table.get("port", cfg.broker_port), f"{where} [broker] port")
    cfg.broker_user = table.get("user") or None
    cfg.broker_password = table.get("password") or None
    cfg.shared = table.get("shared", cfg.shared)


def _apply_broker_env(cfg: BridgeConfig, env: Mapping[str, str]) -> None:
    broker = env.get("WISP_BROKER")
    if broker:
        host, sep, port = broker.rpartition(":")
        if not sep:
            host, port = broker, "1883"
        host = host.strip("[]")  # allow [::1]:1883
        if not host:
            raise ConfigError(f"WISP_BROKER must be host:port, got {broker!r}")
        cfg.broker_host, cfg.broker_port = host, _port(port, "WISP_BROKER port")
    shared = env.get("WISP_SHARED")
    if shared:
        flag = shared.strip().lower()
        if flag not in ("0", "1", "false", "true", "no", "yes", "off", "on"):
            raise ConfigError(f"WISP_SHARED must be 0 or 1, got {shared!r}")
        cfg.shared = flag in ("1", "true", "yes", "on")


def _port(value, what: str) -> int:
    try:
        port = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"{what} must be a TCP port (1-65535), got {value!r}")
    return port


def _env_tiers(env: Mapping[str, str]) -> dict[str, Tier]:
    tiers = {}
    for name, (key_var, url_var, url, model_var, model) in _ENV_TIERS.items():
        if env.get(key_var):
            tiers[name] = Tier(name, env.get(url_var) or url, env.get(model_var) or model, env[key_var])
    if env.get("WISP_LOCAL_URL"):
        url = env["WISP_LOCAL_URL"]
        _url(url, "WISP_LOCAL_URL")
        tiers[LOCAL_TIER] = Tier(LOCAL_TIER, url, env.get("WISP_LOCAL_MODEL") or "local",
                                 env.get("WISP_LOCAL_API_KEY") or None)
    return tiers


def _file_tiers(table: dict, where: str, env: Mapping[str, str]) -> dict[str, Tier]:
    tiers = {}
    for name, spec in table.items():
        at = f"{where} [tiers.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{at} must be a table")
        _check(spec, _TIER_KEYS, at)
        for required in ("base_url", "model"):
            if not spec.get(required):
                raise ConfigError(f"{at}: {required} is required")
        _url(spec["base_url"], f"{at} base_url")
        key = None
        if "api_key_env" in spec:
            key = env.get(spec["api_key_env"]) or None
            if key is None:
                # Listing a tier whose key is absent on this machine is normal (one file, many hosts): skip it.
                log.warning("%s: %s is not set; tier '%s' is not available", at, spec["api_key_env"], name)
                continue
        timeouts = {k: float(spec[k]) for k in ("connect_timeout_s", "first_token_timeout_s", "idle_timeout_s")
                    if k in spec}
        tiers[name] = Tier(name, spec["base_url"], spec["model"], key, **timeouts)
    return tiers


def _file_routes(table: dict, where: str, known: set[str]) -> dict[str, list[str]]:
    unknown = set(table) - set(REQUEST_CLASSES)
    if unknown:
        raise ConfigError(f"{where} [routes]: unknown class(es) {_names(unknown)}; "
                          f"allowed: {', '.join(REQUEST_CLASSES)}")
    routes = {}
    for cls, names in table.items():
        at = f"{where} [routes] {cls}"
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{at} must be a list of tier names, got {names!r}")
        for n in names:
            if n not in known:
                raise ConfigError(f"{at} names unknown tier '{n}'; known tiers: {', '.join(sorted(known))}")
        if cls == "private" and set(names) - {LOCAL_TIER}:
            raise ConfigError(f"{at}: private requests never leave the '{LOCAL_TIER}' tier")
        routes[cls] = list(names)
    return routes


def _url(value: str, what: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{what} must start with http:// or https://, got {value!r}")


def _names(keys) -> str:
    return ", ".join(repr(k) for k in sorted(keys))
