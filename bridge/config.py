"""Bridge configuration: the broker to join and the inference tiers to use, from wisp.toml and the environment.

Precedence: WISP_BROKER / WISP_BROKER_USER / WISP_BRIDGE_NAME / WISP_SHARED override [broker] (deployment tweaks
win over the file); a tier written in [tiers.<name>] wins over the environment shortcut of the same name (the file
is the detailed form).
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bridge import protocol
from bridge.address import split_host_port
from bridge.config_values import (
    ConfigError,
    NonNegative,
    check_keys,
    check_url,
    env_flag,
    env_secret,
    quoted_names,
    read_toml,
    section,
    tcp_port,
)

log = logging.getLogger("wisp.bridge.config")

REQUEST_CLASSES = ("interactive", "scheduled", "private")
LOCAL_TIER = "local"  # the only tier `private` requests may use
DEFAULT_ROUTES = {
    "interactive": ["premium", "commodity", "local"],
    "scheduled": ["commodity", "local", "premium"],
    "private": [LOCAL_TIER],
}
DEFAULT_BROKER = "127.0.0.1:1883"
DIALECTS = ("openai", "gemini", "ollama", "llamacpp", "cerebras")  # schema rules an OpenAI-compatible server follows
PROVIDERS = ("openai", "anthropic")  # wire formats: OpenAI-compatible chat completions, Anthropic messages
DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT = "127.0.0.1", 8787
COST_DB_NAME = ".wisp/cost.db"  # under the config file's directory, else the working directory
LOCAL_LOAD_WAIT_S = 300.0  # the local tier's default load_wait_s: a few GB read from a slow disk (Ollama)
LOCAL_MODEL_DEFAULT = "local"  # WISP_LOCAL_URL's model without WISP_LOCAL_MODEL (llama-server takes any name)
# A device's paid spend per UTC day unless [cost] says otherwise: a runaway or a hostile
# client on one device id cannot run up an unbounded bill. 0 = no limit.
DEFAULT_DAILY_BUDGET_USD = 1.0

# Environment shortcuts: tier name -> (key variable, base URL variable, default URL, model variable, default model)
# gpt-oss-120b: what Cerebras recommends in place of llama-3.3-70b, deprecated on 2026-02-16
# (inference-docs.cerebras.ai/support/deprecation). It reasons before it answers, in a separate delta field
# the stream parser skips (openai_compat.py).
_ENV_TIERS = {
    "premium": ("CEREBRAS_API_KEY", "CEREBRAS_BASE_URL", "https://api.cerebras.ai/v1",
                "CEREBRAS_MODEL", "gpt-oss-120b"),
    "commodity": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1",
                  "OPENAI_MODEL", "gpt-4o-mini"),
}
BUILTIN_TIERS = (*_ENV_TIERS, LOCAL_TIER)



_HA_KEYS = {"discovery": bool, "prefix": str}
_BROKER_KEYS = {"host": str, "port": int, "user": str, "password": str, "shared": bool, "tls": bool, "ca": str,
                "name": str}
_TIMEOUT_KEYS = ("connect_timeout_s", "first_token_timeout_s", "idle_timeout_s", "hedge_after_s")
_TIER_KEYS = {"provider": str, "base_url": str, "model": str, "api_key_env": str,
              **{k: float for k in _TIMEOUT_KEYS},
              "price_in": NonNegative, "price_out": NonNegative, "max_concurrency": int, "max_tokens": int,
              "dialect": str, "load_wait_s": NonNegative}
_HTTP_KEYS = {"host": str, "port": int, "token": str, "enabled": bool}
_COST_KEYS = {"db": str, "url": str, "daily_budget_usd": NonNegative, "devices": dict}
_ROUTING_KEYS = {"hedge": bool, "max_attempts": int, "repair_turns": int}
@dataclass(frozen=True)
class Tier:
    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    provider: str = "openai"
    price_in: float = 0.0  # USD per million input tokens
    price_out: float = 0.0  # USD per million output tokens
    max_concurrency: int = 32  # requests in flight on this tier; beyond it the router skips the tier
    hedge_after_s: float | None = None  # start the next tier if no first token by then (None: from stats)
    max_tokens: int = 1024  # Anthropic requires a cap; OpenAI-compatible servers get none unless set in file
    max_tokens_set: bool = False
    dialect: str | None = None  # schema rules of the server behind base_url (bridge/providers/schemas.py)
    # a request given up before the answer's headers stays open this long in the background (one per tier),
    # so a server loading its model on demand (Ollama) finishes the load: docs/bridge.md
    load_wait_s: float = 0.0

    def describe(self) -> str:
        key = "key set" if self.api_key else "no key"
        return f"{self.name}: {self.provider} {self.model} at {self.base_url} ({key})"

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6


@dataclass
class HttpConfig:
    """The OpenAI-compatible /v1 endpoint. It only starts with a token: it spends money on the tiers."""
    host: str = DEFAULT_HTTP_HOST
    port: int = DEFAULT_HTTP_PORT  # 0: any free port (tests)
    token: str | None = field(default=None, repr=False)
    enabled: bool = True


@dataclass
class HaConfig:
    """Home Assistant discovery of the bridge's presence (bridge/ha.py)."""
    discovery: bool = True
    prefix: str = "homeassistant"


@dataclass
class CostConfig:
    db: str = COST_DB_NAME
    daily_budget_usd: float = DEFAULT_DAILY_BUDGET_USD  # per device and UTC day; 0 = no limit
    devices: dict[str, float] = field(default_factory=dict)  # per-device overrides of daily_budget_usd
    url: str | None = field(default=None, repr=False)  # postgresql://...: the store shared by many bridges

    def budget_for(self, device_id: str) -> float:
        return self.devices.get(device_id, self.daily_budget_usd)


@dataclass
class RoutingConfig:
    hedge: bool = True  # start the next tier when the chosen one misses its first-token deadline
    max_attempts: int = 4  # tier attempts per model turn (hedges, failovers and retries together)
    repair_turns: int = 2  # follow-up turns that hand invalid tool calls back to the model, per round


@dataclass
class BridgeConfig:
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_user: str | None = None
    broker_password: str | None = field(default=None, repr=False)
    shared: bool = True
    broker_tls: bool = False
    broker_ca: str | None = None  # CA certificate (PEM) pinned for the broker's TLS listener
    name: str = field(default_factory=lambda: protocol.bridge_name_from(socket.gethostname()))  # presence topic
    signing_keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # device id -> HMAC key
    tiers: dict[str, Tier] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROUTES.items()})
    http: HttpConfig = field(default_factory=HttpConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    ha: HaConfig = field(default_factory=HaConfig)


def load_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> BridgeConfig:
    data, where = read_toml(path, env)
    sections = ("broker", "tiers", "routes", "http", "cost", "routing", "signing", "ha")
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {quoted_names(unknown)}; expected {', '.join(sections)}")
    cfg = BridgeConfig()
    _apply_broker(cfg, section(data, "broker", where), where)
    _apply_broker_env(cfg, env)
    file_tiers = section(data, "tiers", where)
    cfg.tiers = _env_tiers(env)
    cfg.tiers.update(_file_tiers(file_tiers, where, env))
    # A route may name a tier that is merely not configured here (no key); only a name nobody defines is an error.
    known = set(BUILTIN_TIERS) | set(file_tiers)
    cfg.routes.update(_file_routes(section(data, "routes", where), where, known))
    _apply_http(cfg, section(data, "http", where), where, env)
    _apply_cost(cfg, section(data, "cost", where), where, env)
    routing = section(data, "routing", where)
    check_keys(routing, _ROUTING_KEYS, f"{where} [routing]")
    for key, lo in (("max_attempts", 1), ("repair_turns", 0)):
        if key in routing and not lo <= routing[key] <= 10:
            raise ConfigError(f"{where} [routing] {key} must be between {lo} and 10, got {routing[key]!r}")
    cfg.routing = RoutingConfig(**routing)
    _apply_signing(cfg, section(data, "signing", where), where, env)
    _apply_ha(cfg, section(data, "ha", where), where, env)
    return cfg


def _apply_ha(cfg: BridgeConfig, table: dict, where: str, env: Mapping[str, str]) -> None:
    check_keys(table, _HA_KEYS, f"{where} [ha]")
    cfg.ha = HaConfig(**table)
    prefix = cfg.ha.prefix
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or set(prefix) & set("+#\0"):
        raise ConfigError(f"{where} [ha] prefix must be a topic without wildcards or a leading or trailing /, "
                          f"got {prefix!r}")
    if env.get("WISP_HA"):
        cfg.ha.discovery = env_flag("WISP_HA", env["WISP_HA"])


def _apply_signing(cfg: BridgeConfig, table: dict, where: str, env: Mapping[str, str]) -> None:
    """[signing] keys = path of the fleet's secrets.json (or $WISP_DEVICE_KEYS): llm/res to those
    devices goes out signed (docs/security.md)."""
    from bridge.signing import load_keys
    check_keys(table, {"keys": str}, f"{where} [signing]")
    try:
        cfg.signing_keys = load_keys(env.get("WISP_DEVICE_KEYS") or table.get("keys"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _apply_http(cfg: BridgeConfig, table: dict, where: str, env: Mapping[str, str]) -> None:
    check_keys(table, _HTTP_KEYS, f"{where} [http]")
    if "host" in table and not table["host"].strip():  # aiohttp would listen on every interface for ""
        raise ConfigError(f"{where} [http] host is empty: write 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                          "interface), or leave it out for 127.0.0.1")
    h = cfg.http
    h.host, h.enabled = table.get("host", h.host), table.get("enabled", h.enabled)
    if "port" in table:
        h.port = 0 if table["port"] == 0 else tcp_port(table["port"], f"{where} [http] port")
    h.token = env_secret(env, "WISP_API_TOKEN") or table.get("token") or None  # the environment keeps it out of files
    addr = env.get("WISP_HTTP")
    if addr:
        try:
            h.host, h.port = split_host_port(addr, None, "WISP_HTTP", allow_zero=True)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _apply_cost(cfg: BridgeConfig, table: dict, where: str, env: Mapping[str, str]) -> None:
    at = f"{where} [cost]"
    check_keys(table, _COST_KEYS, at)
    devices = table.get("devices", {})
    for dev, usd in devices.items():
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or usd < 0:
            raise ConfigError(f"{at} devices.{dev} must be a number >= 0 (USD per day), got {usd!r}")
    base = Path(where).parent if where != "environment" else Path(".")
    db = env.get("WISP_COST_DB") or table.get("db") or str(base / COST_DB_NAME)
    budget = table.get("daily_budget_usd", DEFAULT_DAILY_BUDGET_USD)
    if env.get("WISP_DAILY_BUDGET_USD"):
        try:
            budget = float(env["WISP_DAILY_BUDGET_USD"])
        except ValueError:
            budget = -1.0
        if budget < 0:
            raise ConfigError(f"WISP_DAILY_BUDGET_USD must be a number >= 0, got {env['WISP_DAILY_BUDGET_USD']!r}")
    url = env.get("WISP_COST_URL") or table.get("url") or None
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{at} url (or WISP_COST_URL) must be a postgresql://user@host:port/db URL, "
                          f"got one with scheme {url.partition('://')[0]!r}")
    cfg.cost = CostConfig(db, float(budget), {k: float(v) for k, v in devices.items()}, url)


def _apply_broker(cfg: BridgeConfig, table: dict, where: str) -> None:
    check_keys(table, _BROKER_KEYS, f"{where} [broker]")
    if "host" in table and not table["host"].strip():
        raise ConfigError(f"{where} [broker] host is empty: write the broker's name or address, or leave it out "
                          "for 127.0.0.1")
    cfg.broker_host = table.get("host", cfg.broker_host)
    cfg.broker_port = tcp_port(table.get("port", cfg.broker_port), f"{where} [broker] port")
    cfg.broker_user = table.get("user") or None
    cfg.broker_password = table.get("password") or None
    cfg.shared = table.get("shared", cfg.shared)
    cfg.broker_tls = table.get("tls", cfg.broker_tls)
    cfg.broker_ca = table.get("ca") or None
    if cfg.broker_ca and not cfg.broker_tls:
        raise ConfigError(f"{where} [broker] ca is set but tls is not: set tls = true to use it")
    if "name" in table:
        cfg.name = _bridge_name(table["name"], f"{where} [broker] name")


def _bridge_name(text: str, what: str) -> str:
    if not protocol.BRIDGE_NAME.fullmatch(text):
        raise ConfigError(f"{what} must be {protocol.DEVICE_ID_RULE} (it names wisp/bridge/<name>/status), "
                          f"got {text[:40]!r}")
    return text


def _apply_broker_env(cfg: BridgeConfig, env: Mapping[str, str]) -> None:
    broker = env.get("WISP_BROKER")
    if broker:
        try:
            cfg.broker_host, cfg.broker_port = split_host_port(broker, 1883, "WISP_BROKER")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if env.get("WISP_BROKER_USER"):  # e.g. `wisp run --fleet` hands the bridge its fleet login
        cfg.broker_user = env["WISP_BROKER_USER"]
        cfg.broker_password = env.get("WISP_BROKER_PASSWORD") or None
    if env.get("WISP_BRIDGE_NAME"):  # bridges on one host: each its own name
        cfg.name = _bridge_name(env["WISP_BRIDGE_NAME"], "WISP_BRIDGE_NAME")
    shared = env.get("WISP_SHARED")
    if shared:
        cfg.shared = env_flag("WISP_SHARED", shared)
    if env.get("WISP_UVLOOP"):  # checked here, with the rest of the settings; bridge/eventloop.py reads it
        env_flag("WISP_UVLOOP", env["WISP_UVLOOP"])


def _env_tiers(env: Mapping[str, str]) -> dict[str, Tier]:
    tiers = {}
    for name, (key_var, url_var, url, model_var, model) in _ENV_TIERS.items():
        key = env_secret(env, key_var)
        if key:
            if env.get(url_var):
                check_url(env[url_var], url_var)
            tiers[name] = Tier(name, env.get(url_var) or url, env.get(model_var) or model, key)
    if env.get("WISP_LOCAL_URL"):
        url = env["WISP_LOCAL_URL"]
        check_url(url, "WISP_LOCAL_URL")
        tiers[LOCAL_TIER] = Tier(LOCAL_TIER, url, env.get("WISP_LOCAL_MODEL") or LOCAL_MODEL_DEFAULT,
                                 env_secret(env, "WISP_LOCAL_API_KEY"), load_wait_s=LOCAL_LOAD_WAIT_S)
    return tiers


def _file_tiers(table: dict, where: str, env: Mapping[str, str]) -> dict[str, Tier]:
    tiers = {}
    for name, spec in table.items():
        at = f"{where} [tiers.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{at} must be a table")
        check_keys(spec, _TIER_KEYS, at)
        for required in ("base_url", "model"):
            if not spec.get(required):
                raise ConfigError(f"{at}: {required} is required")
        check_url(spec["base_url"], f"{at} base_url", spec.get("provider", "openai"))
        key = None
        if "api_key_env" in spec:
            key = env_secret(env, spec["api_key_env"])
            if key is None:
                # Listing a tier whose key is absent on this machine is normal (one file, many hosts): skip it.
                log.warning("%s: %s is not set; tier '%s' is not available", at, spec["api_key_env"], name)
                continue
        provider = spec.get("provider", "openai")
        if provider not in PROVIDERS:
            raise ConfigError(f"{at}: provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
        for k in ("max_concurrency", "max_tokens"):
            if k in spec and spec[k] < 1:
                raise ConfigError(f"{at}: {k} must be at least 1, got {spec[k]!r}")
        extra = {k: float(spec[k]) for k in (*_TIMEOUT_KEYS, "price_in", "price_out", "load_wait_s") if k in spec}
        if name == LOCAL_TIER:
            extra.setdefault("load_wait_s", LOCAL_LOAD_WAIT_S)
        extra.update({k: spec[k] for k in ("max_concurrency", "max_tokens", "dialect") if k in spec})
        if spec.get("dialect") not in (None, *DIALECTS):
            raise ConfigError(f"{at}: dialect must be one of {', '.join(DIALECTS)}, got {spec['dialect']!r}")
        tiers[name] = Tier(name, spec["base_url"], spec["model"], key, provider=provider,
                           max_tokens_set="max_tokens" in spec, **extra)
    return tiers


def _file_routes(table: dict, where: str, known: set[str]) -> dict[str, list[str]]:
    unknown = set(table) - set(REQUEST_CLASSES)
    if unknown:
        raise ConfigError(f"{where} [routes]: unknown class(es) {quoted_names(unknown)}; "
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
