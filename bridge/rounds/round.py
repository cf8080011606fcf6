"""One round of a device request: model turns through the router, every tool call checked against the manifest
before it is forwarded, invalid calls handed back to the model as tool errors in a follow-up turn (bounded).
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import NamedTuple

from bridge.providers.base import parse_args
from bridge.providers.tokens import estimate_tokens
from bridge.reasons import Failure, Reason
from bridge.rounds.answer import Answer, show_id
from bridge.rounds.outcome import TierSpend
from bridge.rounds.prompt import system_prompt
from bridge.rounds.request import LlmRequest
from bridge.rounds.textcalls import calls_in_text
from bridge.rounds.toolset import MORE, Catalog, Toolset
from bridge.rounds.validate import check_call
from bridge.routing.hedge import RESET, stream_turn

log = logging.getLogger("wisp.bridge.rounds.round")

SENT_NOTE = "sent to the device; its result comes in the next round"  # tool result for a forwarded call
# What a repair turn may carry back of the model's calls: OpenAI takes function names of ^[a-zA-Z0-9_-]+$ up
# to 64 characters and call ids up to 40; Anthropic takes tool_use names and ids of ^[a-zA-Z0-9_-]+$. A
# model's invalid call (an empty name, "functions.gpio_write") echoed back as it was would make the repair
# turn itself a 400.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME, MAX_ID = 64, 40
# The device stops waiting budget_ms after it sent the request. The verdict on a round that runs out of time must
# reach it before then, or it replies "no answer from the bridge" while the bridge is up and only the tier was
# slow: the round ends this much earlier (a tenth of a short budget), room for the way back over the broker.
REPLY_MARGIN_S = 1.0
MAX_RESULTS_SAID = 400  # characters of tool results that stand in for a model's missing words (a phone screen)
# A turn that ends for one of these reasons ended mid-answer: its words are not the whole answer, and the user is
# told so rather than reading a cut sentence as if it were all the model meant (OpenAI's names; the Anthropic
# provider maps its stop reasons to them).
CUT_SHORT = {"length": "cut off: the model reached its output limit",
             "content_filter": "stopped by the provider's content filter"}


def _clean(text: str, limit: int) -> str:
    """text in the providers' name and id pattern ("" stays ""): refused characters become "_"."""
    return _UNSAFE.sub("_", text)[:limit]


class Call(NamedTuple):
    """A tool call the model made in one turn: forwarded when error is None, else handed back to the model."""
    cid: str
    name: str
    raw_args: str
    error: str | None
    result: str | None = None  # the bridge's own answer to a call it handles itself (more_tools)


class Spend:
    """Tokens per tier for one request, for the cost store and the done message."""

    def __init__(self) -> None:
        self.by_tier: dict[str, TierSpend] = {}

    def add(self, tier, usage: dict | None, chat: list[dict], out_chars: int, tools: list[dict] | None = None) -> None:
        estimated = not (usage and isinstance(usage.get("prompt_tokens"), int)
                         and isinstance(usage.get("completion_tokens"), int))
        if estimated:  # usage is lost with a cut trailer, or never sent: the tools are most of the prompt
            usage = {"prompt_tokens": estimate_tokens(chat, tools), "completion_tokens": max(1, out_chars // 4)}
        row = self.by_tier.setdefault(tier.name, TierSpend(tier))
        row.tokens_in += usage["prompt_tokens"]
        row.tokens_out += usage["completion_tokens"]
        row.estimated = row.estimated or estimated

    def usage(self) -> dict | None:
        """What the device is told it used; nothing when any part is an estimate."""
        rows = self.by_tier.values()
        if not rows or any(r.estimated for r in rows):
            return None
        return {"in": sum(r.tokens_in for r in rows), "out": sum(r.tokens_out for r in rows)}


async def run_round(ctx, req: LlmRequest, manifest: dict, answer: Answer, spend: Spend,
                    catalog: Catalog | None = None) -> None:
    loop = asyncio.get_running_loop()
    # the budget counts from the request's arrival: time waiting for a free slot on this bridge is spent
    budget_s = req.budget_ms / 1000
    waited_s = max(0.0, time.monotonic() - answer.received)
    deadline = loop.time() + budget_s - min(REPLY_MARGIN_S, budget_s / 10) - waited_s
    tiers = ctx.router.route(req.req_class)
    toolset = Toolset(manifest, req.messages, catalog)
    chat = [{"role": "system", "content": system_prompt(manifest, req.facts, toolset.hint())}, *req.messages]
    repair_turns = ctx.config.routing.repair_turns
    repairs = 0
    # every family can be asked for once on top of the repair turns: loading tools is not a mistake
    for _turn in range(repair_turns + 1 + len(toolset.families)):
        tools = toolset.tools() or None
        text: list[str] = []
        calls: list[Call] = []
        finish = None
        try:
            async for tier, ev in stream_turn(ctx.router, tiers, chat, tools, deadline,
                                              committed=lambda: answer.calls > 0, req_class=req.req_class,
                                              budget=f"budget_ms={req.budget_ms}"):
                answer.tier = tier.name
                if ev.kind == RESET:
                    text.clear()
                    calls.clear()  # nothing of that attempt was forwarded (else there is no reset)
                elif ev.kind == "text":
                    text.append(ev.text)
                elif ev.kind == "call":
                    _take(ev.call, tier.name, calls, answer, toolset)
                elif ev.kind == "done":
                    finish = ev.finish_reason
                    spend.add(tier, ev.usage, chat, sum(map(len, text)) + sum(len(c.raw_args) for c in calls),
                              tools)
        except Failure as e:
            answer.tier = e.tier or answer.tier
            raise
        written = None if calls else calls_in_text("".join(text), {t["function"]["name"] for t in tools or ()})
        if written:  # the server passed its model's call format on as text (bridge/rounds/textcalls.py)
            log.info("id=%s tier=%s: %d tool call(s) read from the model's text", show_id(answer.req_id),
                     answer.tier, len(written[1]))
            text = [written[0]]
            for c in written[1]:
                _take(c, answer.tier, calls, answer, toolset)
        invalid = [c for c in calls if c.error]
        if not invalid and not any(c.result for c in calls):
            final = "".join(text).strip()
            cut = CUT_SHORT.get(finish)
            if cut and not final and not answer.calls:
                raise Failure(Reason.EMPTY_ANSWER, f"tier '{answer.tier}' answered with nothing: {cut}", answer.tier)
            if cut and final:
                final += f" [{cut}]"
            if not final and not answer.calls:
                # After tool results many local models end their turn with no words: the results are the answer
                # (the light is on; "answered with nothing" would read as if it were not).
                final = results_said(req.messages)
            if not final and not answer.calls:  # neither words nor actions: the user would read a blank "ok"
                raise Failure(Reason.EMPTY_ANSWER, f"tier '{answer.tier}' answered with nothing (no text, no tool "
                              "call); ask again, or try another model", answer.tier)
            answer.finish(final, spend.usage())
            return
        if invalid:
            if repairs == repair_turns:
                raise Failure(Reason.INVALID_CALLS,
                              f"the model made an invalid tool call ({invalid[0].error.removeprefix('Error: ')}) "
                              f"and did not correct it in {repair_turns} follow-up turn(s)", answer.tier)
            repairs += 1
        chat += follow_up(calls, "".join(text))
    raise Failure(Reason.INVALID_CALLS, "the model kept asking for more tools without acting", answer.tier)


def _take(c, tier_name: str, calls: list[Call], answer: Answer, toolset: Toolset) -> None:
    """A complete tool call of the turn: forwarded to the device, or kept in `calls` for the repair turn."""
    # the id goes to the device and comes back in its next rounds, maybe to another tier
    cid = _clean(c.cid, MAX_ID)
    if not cid or any(k.cid == cid for k in calls):  # "a.b" and "a:b" are both "a_b"
        cid = f"call_{answer.round}_{answer.seq}"
    by_name = toolset.catalog.by_name
    if c.name == MORE and MORE not in by_name:
        result, ok = toolset.load(c.raw_args)
        calls.append(Call(cid, c.name, c.raw_args, None if ok else result, result))
        return
    err = check_call(by_name, c.name, c.args, c.error)
    if err is None:
        answer.call(cid, c.name, c.args)
    else:
        log.info("id=%s tier=%s: invalid call not forwarded: %s", show_id(answer.req_id), tier_name, err)
    calls.append(Call(cid, c.name, c.raw_args, err))


def results_said(messages: list[dict]) -> str:
    """The device's tool results that end the conversation, as a reply ("" when it does not end with any):
    "Done: porch_light=1." when each says "ok: ...", else the results as they are (an error says itself)."""
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.insert(0, str(m.get("content") or "").strip())
    results = [r for r in results if r]
    if not results:
        return ""
    if all(r.startswith("ok:") for r in results):
        said = "Done: " + "; ".join(r.removeprefix("ok:").strip() for r in results) + "."
    else:
        said = "; ".join(results)
    return said if len(said) <= MAX_RESULTS_SAID else said[:MAX_RESULTS_SAID - 3] + "..."


def follow_up(calls: list[Call], text: str) -> list[dict]:
    """The model's own turn plus one tool result per call: a note for forwarded calls, the error for the rest.

    Names and ids go back in a form every provider accepts; the error of a call keeps the name the model
    really wrote ("unknown tool 'functions.gpio_write'"), so it still learns what to correct."""
    ids = _safe_ids(calls)
    tool_calls = []
    for c, cid in zip(calls, ids, strict=True):
        args, _ = parse_args(c.raw_args)
        # servers refuse to take back arguments that are not a JSON object (llama-server's templates parse them)
        raw = c.raw_args if args else "{}"
        name = _clean(c.name, MAX_NAME) or "invalid_tool"
        tool_calls.append({"id": cid, "type": "function", "function": {"name": name, "arguments": raw}})
    return [{"role": "assistant", "content": text or None, "tool_calls": tool_calls},
            *({"role": "tool", "tool_call_id": cid, "content": c.error or c.result or SENT_NOTE}
              for c, cid in zip(calls, ids, strict=True))]


def _safe_ids(calls: list[Call]) -> list[str]:
    """One id per call, in the providers' pattern and unique in the turn: each tool result must name its call."""
    ids: list[str] = []
    for n, c in enumerate(calls):
        cid, k = _clean(c.cid, MAX_ID), n
        while not cid or cid in ids:  # empty, or equal to another once refused characters became "_"
            cid, k = f"call_{k}", k + 1
        ids.append(cid)
    return ids
