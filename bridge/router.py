"""Choose the inference tier for a request: the first configured tier on its class's route.

Deliberately simple; deadline-aware routing, hedging and circuit breakers come later.
"""
from __future__ import annotations

from bridge.config import LOCAL_TIER, BridgeConfig, Tier

NO_TIER_MESSAGE = (
    "no inference tier configured: give the bridge OPENAI_API_KEY (OpenAI), CEREBRAS_API_KEY (Cerebras) "
    "or WISP_LOCAL_URL (an OpenAI-compatible server such as llama-server or Ollama, "
    "e.g. http://127.0.0.1:8080/v1), or add [tiers.<name>] with base_url and model to wisp.toml, "
    "then restart the bridge"
)


def pick_tier(config: BridgeConfig, req_class: str) -> Tier | None:
    # Privacy is enforced here too, not only in config validation: a private request never leaves `local`.
    route = [LOCAL_TIER] if req_class == "private" else config.routes.get(req_class, [])
    for name in route:
        if name in config.tiers:
            return config.tiers[name]
    return None


def no_tier_reason(config: BridgeConfig, req_class: str) -> str:
    """Why pick_tier returned None, phrased for the person who has to fix it."""
    if not config.tiers:
        return NO_TIER_MESSAGE
    if req_class == "private":
        return ("no local tier for a private request (private requests never leave the local tier): "
                "set WISP_LOCAL_URL to an OpenAI-compatible server such as llama-server or Ollama")
    route = ", ".join(config.routes.get(req_class, [])) or "empty"
    return (f"no configured tier on the '{req_class}' route ({route}); configured tiers: "
            f"{', '.join(sorted(config.tiers))}; edit [routes] in wisp.toml")
