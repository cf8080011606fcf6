"""Inference providers: one streaming interface (`stream_chat(messages, tools)` -> StreamEvents) per wire format."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bridge.httpclient import HttpClient
from bridge.providers.anthropic import AnthropicProvider
from bridge.providers.base import ProviderError, StreamEvent, ToolCall  # noqa: F401
from bridge.providers.openai_compat import OpenAICompatProvider
from bridge.providers.schemas import family_for


class Provider(Protocol):
    def stream_chat(self, messages: list[dict], tools: list[dict] | None = None, options: dict | None = None): ...


def provider_factory(http: HttpClient) -> Callable:
    """tier -> Provider: views over the one shared HttpClient (its pools are the costly part), one per tier
    object, made on its first attempt (an attempt per request made one each before)."""
    made: dict[int, tuple] = {}  # id(tier) -> (tier, provider): tiers are frozen; the tier held keeps its id

    def cached(tier) -> Provider:
        entry = made.get(id(tier))
        if entry is None or entry[0] is not tier:
            entry = made[id(tier)] = (tier, make(tier))
        return entry[1]

    def make(tier) -> Provider:
        family = family_for(tier.provider, tier.base_url, tier.dialect)
        common = dict(api_key=tier.api_key, family=family, connect_timeout_s=tier.connect_timeout_s,
                      first_token_timeout_s=tier.first_token_timeout_s, idle_timeout_s=tier.idle_timeout_s,
                      load_wait_s=tier.load_wait_s)
        cap = tier.max_tokens if tier.max_tokens_set else None  # a ceiling only when wisp.toml sets one
        if tier.provider == "anthropic":  # Anthropic requires a limit: the default 1024 when none is set
            return AnthropicProvider(http, tier.base_url, tier.model, max_tokens=tier.max_tokens, cap=cap, **common)
        return OpenAICompatProvider(http, tier.base_url, tier.model, max_tokens=cap, **common)
    return cached
