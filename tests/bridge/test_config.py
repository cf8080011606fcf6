"""Bridge configuration from wisp.toml and the environment, and the tier choice that follows from it."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, Tier, load_config
from bridge.routing.router import NO_TIER_MESSAGE, Router, no_tier_reason

REPO = Path(__file__).resolve().parents[2]


def first_tier(cfg, req_class):
    """The tier the router tries first for a request class on a fresh bridge, or None."""
    route = Router(cfg, make_provider=None).route(req_class)
    return route[0] if route else None


@pytest.fixture(autouse=True)
def no_stray_wisp_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ./wisp.toml is a default source; never pick up the developer's


def write(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return str(p)


def test_defaults_without_file_or_env():
    cfg = load_config(env={})
    assert (cfg.broker_host, cfg.broker_port, cfg.shared) == ("127.0.0.1", 1883, True)
    assert cfg.tiers == {}
    assert cfg.routes["interactive"] == ["premium", "commodity", "local"]
    assert cfg.routes["scheduled"] == ["commodity", "local", "premium"]
    assert cfg.routes["private"] == ["local"]
    assert first_tier(cfg, "interactive") is None
    assert no_tier_reason(cfg, "interactive") == NO_TIER_MESSAGE
    for hint in ("OPENAI_API_KEY", "CEREBRAS_API_KEY", "WISP_LOCAL_URL", "wisp.toml"):
        assert hint in NO_TIER_MESSAGE


def test_env_tiers_and_broker():
    cfg = load_config(env={"WISP_BROKER": "broker.lan:11883", "WISP_SHARED": "0",
                           "OPENAI_API_KEY": "sk-openai-secret", "CEREBRAS_API_KEY": "csk-secret",
                           "CEREBRAS_MODEL": "qwen-3-32b", "WISP_LOCAL_URL": "http://127.0.0.1:8080/v1"})
    assert (cfg.broker_host, cfg.broker_port, cfg.shared) == ("broker.lan", 11883, False)
    assert cfg.tiers["commodity"] == Tier("commodity", "https://api.openai.com/v1", "gpt-4o-mini",
                                          "sk-openai-secret")
    assert cfg.tiers["premium"].base_url == "https://api.cerebras.ai/v1"
    assert cfg.tiers["premium"].model == "qwen-3-32b"
    assert cfg.tiers["local"].model == "local" and cfg.tiers["local"].api_key is None
    assert first_tier(cfg, "interactive").name == "premium"
    assert first_tier(cfg, "scheduled").name == "commodity"
    assert first_tier(cfg, "private").name == "local"


def test_the_default_cerebras_model_is_one_cerebras_still_serves():
    # llama-3.3-70b was deprecated on 2026-02-16; Cerebras recommends gpt-oss-120b in its place
    # (inference-docs.cerebras.ai/support/deprecation)
    cfg = load_config(env={"CEREBRAS_API_KEY": "csk-secret"})
    assert cfg.tiers["premium"].model == "gpt-oss-120b"


def test_routes_skip_unconfigured_tiers_and_private_stays_local():
    cfg = load_config(env={"OPENAI_API_KEY": "sk-x"})
    assert first_tier(cfg, "interactive").name == "commodity"
    assert first_tier(cfg, "private") is None  # never falls back to a cloud tier
    assert "WISP_LOCAL_URL" in no_tier_reason(cfg, "private")
    cfg.routes["private"] = ["commodity"]  # even a hand-edited route cannot send private work out
    assert first_tier(cfg, "private") is None


def test_keys_never_in_repr():
    cfg = load_config(env={"OPENAI_API_KEY": "sk-very-secret", "CEREBRAS_API_KEY": "csk-very-secret"})
    cfg.broker_password = "hunter2"
    text = repr(cfg) + "".join(t.describe() for t in cfg.tiers.values())
    for secret in ("sk-very-secret", "csk-very-secret", "hunter2"):
        assert secret not in text


def test_file(tmp_path):
    path = write(tmp_path, """
[broker]
host = "mqtt.lan"
port = 8883
user = "bridge"
password = "pw"
shared = false

[tiers.groq]
base_url = "https://api.groq.com/openai/v1"
model = "llama-3.1-8b-instant"
api_key_env = "GROQ_KEY"
first_token_timeout_s = 2.5

[tiers.local]
base_url = "http://127.0.0.1:11434/v1"
model = "qwen2.5:3b"

[routes]
interactive = ["groq", "local"]
""")
    cfg = load_config(path, env={"GROQ_KEY": "gsk-secret"})
    assert (cfg.broker_host, cfg.broker_port, cfg.broker_user, cfg.broker_password, cfg.shared) == \
        ("mqtt.lan", 8883, "bridge", "pw", False)
    assert cfg.tiers["groq"].api_key == "gsk-secret"
    assert cfg.tiers["groq"].first_token_timeout_s == 2.5
    assert cfg.tiers["local"].model == "qwen2.5:3b"
    assert cfg.routes["interactive"] == ["groq", "local"]
    assert cfg.routes["scheduled"] == ["commodity", "local", "premium"]  # untouched classes keep defaults
    assert first_tier(cfg, "interactive").name == "groq"


def test_env_overrides_file_broker_but_file_tier_wins(tmp_path):
    path = write(tmp_path, '[broker]\nhost = "a"\nport = 1\n[tiers.commodity]\n'
                           'base_url = "http://vllm.lan/v1"\nmodel = "m"\n')
    cfg = load_config(path, env={"WISP_BROKER": "b:2", "OPENAI_API_KEY": "sk-x"})
    assert (cfg.broker_host, cfg.broker_port) == ("b", 2)
    assert cfg.tiers["commodity"].base_url == "http://vllm.lan/v1"


def test_env_login_overrides_the_file_login(tmp_path):
    path = write(tmp_path, '[broker]\nuser = "a"\npassword = "pa"\n')
    cfg = load_config(path, env={"WISP_BROKER_USER": "wisp-bridge", "WISP_BROKER_PASSWORD": "pb"})
    assert (cfg.broker_user, cfg.broker_password) == ("wisp-bridge", "pb")
    assert (load_config(path, env={}).broker_user) == "a"


def test_file_tier_with_missing_key_is_skipped(tmp_path):
    path = write(tmp_path, '[tiers.premium]\nbase_url = "https://x/v1"\nmodel = "m"\napi_key_env = "NOPE"\n')
    assert load_config(path, env={}).tiers == {}


def test_config_file_from_env_and_cwd(tmp_path):
    (tmp_path / "wisp.toml").write_text('[broker]\nport = 1884\n')
    assert load_config(env={}).broker_port == 1884
    other = write(tmp_path, '[broker]\nport = 1885\n')
    assert load_config(env={"WISP_CONFIG": other}).broker_port == 1885


@pytest.mark.parametrize("text, env, expected", [
    (None, {"WISP_CONFIG": "/nonexistent/wisp.toml"}, "config file not found: /nonexistent/wisp.toml"),
    ("[broker]\nhost = \n", {}, "line 2"),
    ("[brokr]\n", {}, "unknown section(s) 'brokr'"),
    ("[broker]\nhots = \"x\"\n", {}, "unknown key(s) 'hots'"),
    ("[broker]\nport = \"1883\"\n", {}, "port must be an integer"),
    ("[broker]\nport = true\n", {}, "port must be an integer"),
    ("[broker]\nport = 70000\n", {}, "TCP port"),
    ("[broker]\nshared = 0\n", {}, "shared must be true or false"),
    # an empty host is no default: the broker's would be looked up as a name, the API's would listen on every
    # interface of the machine (aiohttp binds all for "")
    ("[broker]\nhost = \"\"\n", {}, "[broker] host is empty: write the broker's name or address"),
    ("[http]\nhost = \" \"\n", {}, "[http] host is empty: write 127.0.0.1 (this machine only) or 0.0.0.0"),
    ("[tiers.x]\nmodel = \"m\"\n", {}, "base_url is required"),
    ("[tiers.x]\nbase_url = \"ftp://h\"\nmodel = \"m\"\n", {}, "must start with http"),
    ("[tiers.x]\nbase_url = \"http://h\"\nmodel = \"m\"\nidle_timeout_s = -1\n", {}, "positive number"),
    ("[tiers.x]\nbase_url = \"http://h\"\nmodel = \"m\"\napi_key = \"k\"\n", {}, "unknown key(s) 'api_key'"),
    ("[routes]\ninteractive = [\"nosuch\"]\n", {}, "unknown tier 'nosuch'"),
    ("[routes]\nurgent = [\"local\"]\n", {}, "unknown class(es) 'urgent'"),
    ("[routes]\ninteractive = \"local\"\n", {}, "must be a list of tier names"),
    ("[routes]\nprivate = [\"commodity\"]\n", {}, "never leave"),
    ("", {"WISP_BROKER": "host:port"}, "WISP_BROKER port"),
    ("", {"WISP_SHARED": "maybe"}, "WISP_SHARED"),
    ("", {"WISP_UVLOOP": "maybe"}, "WISP_UVLOOP must be 0 or 1, got 'maybe'"),
    ("", {"WISP_LOCAL_URL": "127.0.0.1:8080"}, "WISP_LOCAL_URL must start with http"),
    # accepted before, then every request failed: a traceback per request for the port, 'not an http(s) URL'
    ("", {"WISP_LOCAL_URL": "http://127.0.0.1:99999/v1"},
     "WISP_LOCAL_URL has no valid host and port (1-65535), got 'http://127.0.0.1:99999/v1'"),
    ("[tiers.x]\nbase_url = \"http://\"\nmodel = \"m\"\n", {},
     "[tiers.x] base_url has no valid host and port (1-65535), got 'http://'"),
    # the endpoint pasted from a server's docs: the bridge adds /chat/completions (or /messages) itself
    ("", {"WISP_LOCAL_URL": "http://127.0.0.1:11434/v1/chat/completions"},
     "WISP_LOCAL_URL is the API's base URL; the bridge adds /chat/completions itself: use http://127.0.0.1:11434/v1"),
    ("", {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "https://api.openai.com/v1/chat/completions/"},
     "OPENAI_BASE_URL is the API's base URL; the bridge adds /chat/completions itself: use https://api.openai.com/v1"),
    ("", {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "api.openai.com/v1"}, "OPENAI_BASE_URL must start with http"),
    ("[tiers.c]\nprovider = \"anthropic\"\nbase_url = \"https://api.anthropic.com/v1/messages\"\nmodel = \"m\"\n", {},
     "base_url is the API's base URL; the bridge adds /messages itself: use https://api.anthropic.com/v1"),
])
def test_errors_are_readable(tmp_path, text, env, expected):
    path = write(tmp_path, text) if text is not None else None
    with pytest.raises(ConfigError) as e:
        load_config(path, env=env)
    assert expected in str(e.value)


def test_cli_exits_2_on_bad_config(tmp_path):
    path = write(tmp_path, "[broker]\nport = \"nope\"\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "sk-must-not-leak"}
    proc = subprocess.run([sys.executable, "-m", "bridge", "--config", path], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    assert "port must be an integer" in proc.stderr
    assert "sk-must-not-leak" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("setting, fragment", [
    ("cost_db_in_a_missing_dir", "cannot use the cost database"),
    ("cost_db_is_a_directory", "cannot use the cost database"),
    ("http_port_taken", "[http] cannot listen on 127.0.0.1:"),
])
def test_cli_exits_2_when_a_setting_fails_at_start(tmp_path, setting, fragment):
    """Settings that only fail once used (the cost file cannot be opened, the HTTP port is taken) end the
    bridge as a configuration error does: exit code 2 and one line saying which setting, no traceback."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = {**os.environ, "PYTHONPATH": str(REPO), "WISP_BROKER": "127.0.0.1:1", "WISP_COST_DB": str(tmp_path / "c.db")}
    if setting == "cost_db_in_a_missing_dir":
        env["WISP_COST_DB"] = "/proc/no-such-dir/cost.db"
    elif setting == "cost_db_is_a_directory":
        env["WISP_COST_DB"] = str(tmp_path)
    else:
        env.update(WISP_API_TOKEN="t0ken", WISP_HTTP=f"127.0.0.1:{taken.getsockname()[1]}")
    try:
        proc = subprocess.run([sys.executable, "-m", "bridge", "--config", write(tmp_path, "")], env=env,
                              capture_output=True, text=True, timeout=20)
    finally:
        taken.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_tier_provider_prices_limits_http_cost_and_routing(tmp_path):
    path = write(tmp_path, """
[tiers.claude]
provider = "anthropic"
base_url = "https://api.anthropic.com/v1"
model = "claude-haiku"
api_key_env = "ANTHROPIC_API_KEY"
price_in = 0.8
price_out = 4
max_concurrency = 8
hedge_after_s = 0.25
[routes]
scheduled = ["claude"]
[http]
port = 0
[cost]
daily_budget_usd = 0.5
devices = { kitchen = 2.0 }
[routing]
hedge = false
repair_turns = 1
""")
    cfg = load_config(path, env={"ANTHROPIC_API_KEY": "sk-ant-x", "WISP_API_TOKEN": "tok"})
    t = cfg.tiers["claude"]
    assert (t.provider, t.price_in, t.price_out, t.max_concurrency, t.hedge_after_s) == (
        "anthropic", 0.8, 4.0, 8, 0.25)
    assert abs(t.cost_usd(1_000_000, 500_000) - 2.8) < 1e-9
    assert "sk-ant-x" not in repr(t) and "anthropic" in t.describe()
    assert (cfg.http.port, cfg.http.token, cfg.http.host) == (0, "tok", "127.0.0.1")
    assert cfg.cost.budget_for("kitchen") == 2.0 and cfg.cost.budget_for("porch") == 0.5
    assert cfg.cost.db == str(tmp_path / ".wisp" / "cost.db")  # beside the config file
    assert cfg.routing.hedge is False and cfg.routing.repair_turns == 1


@pytest.mark.parametrize("text, fragment", [
    ('[tiers.x]\nprovider = "gemini"\nbase_url = "http://h/v1"\nmodel = "m"', "provider must be one of openai"),
    ('[tiers.x]\nbase_url = "http://h/v1"\nmodel = "m"\nprice_in = -1', "price_in must be a number >= 0"),
    ('[tiers.x]\nbase_url = "http://h/v1"\nmodel = "m"\nmax_concurrency = 0', "max_concurrency must be at least 1"),
    ('[cost]\ndaily_budget_usd = "lots"', "daily_budget_usd must be a number >= 0"),
    ('[cost]\nurl = "mysql://u:secret@h/db"', "postgresql://user@host:port/db URL, got one with scheme 'mysql'"),
    ('[http]\nport = 70000', "port must be a TCP port"),
    ('[routing]\nmax_attempts = 0', "max_attempts must be between 1 and 10"),
])
def test_new_keys_are_checked(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert fragment in str(info.value)


def test_a_tiers_dialect_picks_its_schema_rules(tmp_path):
    from bridge.providers.schemas import family_for
    path = tmp_path / "wisp.toml"
    path.write_text('[tiers.local]\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "m"\ndialect = "llamacpp"\n'
                    '[tiers.g]\nbase_url = "https://generativelanguage.googleapis.com/v1beta/openai"\nmodel = "g"\n'
                    '[tiers.o]\nbase_url = "http://127.0.0.1:11434/v1"\nmodel = "o"\n')
    tiers = load_config(path, env={}).tiers
    assert [family_for(t.provider, t.base_url, t.dialect) for t in tiers.values()] == ["llamacpp", "gemini", "ollama"]
    path.write_text('[tiers.local]\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "m"\ndialect = "llama"\n')
    with pytest.raises(ConfigError,
                       match="dialect must be one of openai, gemini, ollama, llamacpp, cerebras, got 'llama'"):
        load_config(path, env={})


@pytest.mark.parametrize("text, fragment", [
    ("[broker]\npassword = 31415926535897932", "password must be a string, got a value of type int (not shown)"),
    ("[http]\ntoken = 27182818284590452", "token must be a string, got a value of type int (not shown)"),
])
def test_a_mistyped_secret_is_an_error_that_does_not_show_it(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert fragment in str(info.value) and text.split("= ")[1] not in str(info.value)


def test_every_device_has_a_daily_budget_unless_lifted(tmp_path):
    from bridge.config import DEFAULT_DAILY_BUDGET_USD
    assert DEFAULT_DAILY_BUDGET_USD > 0
    assert load_config(write(tmp_path, "[broker]\nhost = \"h\""), env={}).cost.budget_for("any-id") == \
        DEFAULT_DAILY_BUDGET_USD
    assert load_config(write(tmp_path, "[cost]\ndaily_budget_usd = 0"), env={}).cost.budget_for("any-id") == 0


def test_cost_url_selects_the_shared_store(tmp_path):
    cfg = load_config(write(tmp_path, '[cost]\nurl = "postgresql://wisp@db:5432/wisp"'), env={})
    assert cfg.cost.url == "postgresql://wisp@db:5432/wisp"
    cfg = load_config(write(tmp_path, ""), env={"WISP_COST_URL": "postgresql://w:pw@other/wisp"})
    assert cfg.cost.url == "postgresql://w:pw@other/wisp" and "pw" not in repr(cfg.cost)
    assert load_config(write(tmp_path, ""), env={}).cost.url is None  # SQLite, one bridge


def test_uvloop_is_turned_off_by_the_words_that_turn_other_flags_off():
    from bridge.eventloop import loop_factory
    for off in ("0", "false", "No", " off "):  # "false" once kept uvloop
        assert loop_factory({"WISP_UVLOOP": off})[0] is None, off
    assert load_config(env={"WISP_UVLOOP": "off"}) is not None


@pytest.mark.parametrize("data, fragment", [
    ('# Küche\n[broker]\nname = "kitchen"\n'.encode("latin-1"), "not UTF-8 (byte 0xfc at line 1, column 4)"),
    ('[broker]\nhost = "127.0.0.1"\n'.encode("utf-16"), "not UTF-8 (byte 0xff at line 1, column 1)"),
], ids=["latin-1", "utf-16"])
def test_a_config_file_that_is_not_utf8_is_named_with_its_first_bad_byte(tmp_path, data, fragment):
    """An editor that saved wisp.toml as Latin-1 or UTF-16: one line naming the file, the place and the fix
    (the bridge's start ended in a UnicodeDecodeError traceback)."""
    path = tmp_path / "wisp.toml"
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WISP_BROKER": "127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "bridge", "--config", str(path)], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{path}: {fragment}: save it as UTF-8" in proc.stderr, proc.stderr


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Windows editors may start UTF-8 with a byte-order mark, which TOML readers refuse as 'Invalid statement
    (at line 1, column 1)': nothing in the file is wrong, so the mark is skipped."""
    path = tmp_path / "wisp.toml"
    path.write_bytes(b'\xef\xbb\xbf[broker]\nport = 1884\n')
    assert load_config(str(path), env={}).broker_port == 1884


@pytest.mark.parametrize("raw", [" sk-test", "sk-test\r", '"sk-test"', "'sk-test'\n", "“sk-test”"])
def test_a_key_with_spaces_or_quotes_around_it_is_used_without_them(tmp_path, raw, caplog):
    """OPENAI_API_KEY=" sk-..." in a shell, a docker --env-file that keeps the quotes, an env file saved with
    CRLF, quotes pasted from a document: the provider answered every request 401 'check its API key' (or the
    request failed on a line break in a header), though the key was right. No key or token holds a space or a
    quote: they are left out, and the log says so without showing the key."""
    path = write(tmp_path, '[tiers.mine]\nbase_url = "http://h/v1"\nmodel = "m"\napi_key_env = "MY_KEY"\n')
    cfg = load_config(path, env={"OPENAI_API_KEY": raw, "MY_KEY": raw, "WISP_LOCAL_URL": "http://h/v1",
                                 "WISP_LOCAL_API_KEY": raw, "WISP_API_TOKEN": raw.replace("sk-", "tok-")})
    assert [cfg.tiers[t].api_key for t in ("commodity", "mine", "local")] == ["sk-test"] * 3
    assert cfg.http.token == "tok-test"
    for name in ("OPENAI_API_KEY", "MY_KEY", "WISP_LOCAL_API_KEY", "WISP_API_TOKEN"):
        assert f"{name} has spaces, line breaks or quotes around it" in caplog.text
    assert "sk-test" not in caplog.text and "tok-test" not in caplog.text


def test_a_key_with_a_space_inside_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="OPENAI_API_KEY holds a space or control character inside it"):
        load_config(env={"OPENAI_API_KEY": "sk-te st"})
