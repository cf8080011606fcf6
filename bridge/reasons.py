"""Why a request was not answered as asked: one code per kind of failure, so that callers (the HTTP status of
/v1, replay of a re-sent request, metrics) branch on the code and never on the wording of the message."""
from __future__ import annotations

from enum import Enum

# Characters of a failure message that names each tier a request tried (routing/hedge.py): what reaches the
# device's reply, the /v1 error and the log line. Two tiers' full messages fit; more are shortened.
MAX_FAILURE_CHARS = 1000


class Reason(Enum):
    BAD_REQUEST = "bad_request"  # the llm/req itself is malformed
    OVER_BUDGET = "over_budget"  # the device's daily spend is used up
    NO_MANIFEST = "no_manifest"  # the bridge has not seen the device's tools yet
    NO_TIER = "no_tier"  # no configured tier on the request class's route
    UNAVAILABLE = "unavailable"  # tiers are configured but none may take an attempt now (breakers, capacity)
    TIMEOUT = "timeout"  # the request's budget ran out
    TIER_FAILED = "tier_failed"  # the tier failed and no other could take over
    TIER_REFUSED = "tier_refused"  # the tier answered 4xx (bad key, unknown model, invalid request): not retried
    RATE_LIMITED = "rate_limited"  # every tier of the route answered 429; retry_after_s says when to come back
    INVALID_CALLS = "invalid_calls"  # the model did not correct its invalid tool calls
    EMPTY_ANSWER = "empty_answer"  # the model's turn had neither text nor a tool call
    BUSY = "busy"  # too many requests in flight on this bridge
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"  # a bug in the bridge (details in its log)


class Failure(Exception):
    """A request that cannot be answered. message is phrased for the person who asked; tier names the tier that
    was involved, if one was."""

    def __init__(self, reason: Reason, message: str, tier: str | None = None, retry_after_s: float | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.reason, self.message, self.tier = reason, message, tier
        self.retry_after_s = retry_after_s  # RATE_LIMITED: when the provider said to come back
        self.status = status  # TIER_REFUSED: the provider's HTTP status


def said(e: Exception, within_s: float | None = None) -> str:
    """What an exception says, for a log line or an error: a timeout's own text is empty."""
    return str(e) or (f"no answer within {within_s:g} s" if within_s else "no answer in time")
