# publish: an MQTT message under the device's own namespace (wisp/<id>/...) or a topic that
# config "publish_allow" lists (MQTT wildcards + and #). Never the protocol's own topics.
from wisp import limits

# device topics the protocol owns: writing them would spoof the device or loop into itself
RESERVED = ("status", "manifest", "ask", "reply", "llm", "cmd", "set", "state", "event", "ota", "log", "avail",
            "diag")


def matches(pattern, topic):
    """MQTT topic filter match: + is one level, a trailing # is any number of levels."""
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return i == len(p) - 1
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


def _invalid(c):
    # mosquitto drops the connection over these in a topic: controls (U+0000 is MQTT's own rule),
    # surrogates (json makes a lone one of "\ud800") and the Unicode non-characters
    c = ord(c)
    return c < 32 or 126 < c < 160 or 0xD7FF < c < 0xE000 or 0xFDCF < c < 0xFDF0 or c & 0xFFFE == 0xFFFE


def refusal(dev, topic):
    if not topic or len(topic) > limits.MAX_TOPIC or "+" in topic or "#" in topic or topic[0] == "$" \
            or any(map(_invalid, topic)):
        return "Error: topic must be 1-%d printable characters with no wildcards and not start with $" % (
            limits.MAX_TOPIC)
    if topic.startswith(dev.prefix):
        rest = topic[len(dev.prefix):]
        if not rest or rest.split("/")[0] in RESERVED:
            return "Error: %s is the device's own protocol topic; use e.g. %snotes" % (topic, dev.prefix)
        return None
    allow = dev.config.get("publish_allow") or ()
    for pattern in allow[:limits.MAX_PUBLISH_ALLOW] if isinstance(allow, list) else ():
        if isinstance(pattern, str) and matches(pattern, topic):
            return None
    listed = ", ".join(p for p in allow if isinstance(p, str)) if isinstance(allow, list) else ""
    return "Error: may publish only under %s... or to config publish_allow topics (%s)" % (
        dev.prefix, listed or "none")


async def publish(dev, args):
    topic, payload, retain = args["topic"], args["payload"], args.get("retain", False)
    err = refusal(dev, topic)
    if err:
        return err
    if len(payload.encode()) > limits.MAX_PUBLISH_PAYLOAD:
        return "Error: payload longer than %d bytes" % limits.MAX_PUBLISH_PAYLOAD
    if not await dev.link.publish(topic, payload, retain, 1):
        return "Error: not published: no broker connection"
    return "ok: published %d bytes to %s%s" % (len(payload), topic, " (retained)" if retain else "")
