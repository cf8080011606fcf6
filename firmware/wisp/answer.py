# Answering one request: a held confirmation, the local fast path, or an LLM conversation
# (wisp/conversation.py). Loaded by the agent for each request and dropped after its reply, with
# the conversation: between requests neither holds heap, and a command's peak (routine_define,
# schedule_add) does not sit on top of them (docs/architecture.md "Heap budget").
import json

from wisp import limits, tools, unload


async def answer(agent, ask_id, text, t0, source, llm=0):
    """llm: 2 when the LLM wrote the text (a prompt it scheduled): the fast path's switches then
    act for the LLM too, so a confirm pin is refused (confirm.py), as in the conversation."""
    dev = agent.dev
    if dev.pending is not None and source in ("mqtt", "repl"):
        from wisp import confirm
        held = confirm.take(dev, text, t0)  # the user's "yes" to an action the LLM proposed
        if held is not None:
            return await _confirmed(agent, ask_id, text, t0, held)
    local = _local(agent, text) if dev.config.get("fast_path", True) else None
    if local is not None:
        return await _fast_path(agent, ask_id, text, local, t0, llm)
    facts = _facts(dev)
    req_class = "scheduled" if source == "sched" else "interactive"
    from wisp.conversation import Conversation  # bound here: answer() ends before the agent drops it
    conv = agent.conv = Conversation(dev, agent.budget)
    conv.llm = 2 if source == "sched" else 1  # no user to say "yes" to a scheduled prompt
    ok, said, tier = await conv.run(ask_id, text, context(agent), facts, req_class)
    if dev.pending is not None:  # held in this ask (any other ask drops it, confirm.take)
        from wisp import confirm
        said = "%s %s" % (said, confirm.held_line(dev))
    if ok:
        remember(agent, text, said, conv.ran)
    return agent._reply(ask_id, ok, said, "llm", t0, tier)


def _facts(dev):
    """The remembered facts the request carries, or None. The memory is dropped again before the
    conversation loads: its ~3.5 KB from .mpy need not sit under the LLM round. Not a coroutine:
    a name bound in answer's frame would keep it."""
    memory = dev.facts_memory()
    if memory is None:
        return None
    facts = memory.for_prompt(limits.MAX_FACTS_PROMPT_BYTES)
    memory = None
    dev.rest()
    return facts


async def _confirmed(agent, ask_id, text, t0, held):
    result = await tools.run(agent.dev, held[0], held[1])
    ok = not result.startswith("Error")
    if ok:  # the held call is done now: the next asks' context says so
        remember(agent, text, result, [{"tool": held[0], "args": held[1], "result": result}])
    return agent._reply(ask_id, ok, "confirmed: " + result if ok else result, "device", t0)


def _local(agent, text):
    """The fast path's reading of text: (actions, its say function), or None. Not a coroutine:
    a name bound in answer's frame would keep the module alive through the LLM rounds."""
    from wisp import fastpath
    local = fastpath.parse(text, agent.dev.pins, fastpath.names(agent.dev.pins))
    if local is not None:
        local = (local, fastpath.say)
    unload("wisp.fastpath")  # ~8 KB from .mpy on a 32-bit port: free for LLM rounds, TLS, tools
    return local


async def _fast_path(agent, ask_id, text, local, t0, llm):
    actions, say = local  # say keeps the module's code alive until the reply is written
    dev = agent.dev
    pins = dev.pins
    ran = []
    for kind, name, value, _said in actions:  # all or nothing: a refused switch stops them all
        if kind == "set":
            pin = pins[name]
            err = pin.refusal((0 if pin.read() else 1) if value == 2 else value)
            if err:
                return agent._reply(ask_id, False, err, "device", t0)
    for kind, name, value, _said in actions:
        if kind == "set":
            call = {"tool": "gpio_toggle", "args": {"pin": name}} if value == 2 else \
                {"tool": "gpio_write", "args": {"pin": name, "value": value}}
            call["result"] = result = await tools.run(dev, call["tool"], call["args"], llm)
            if result.startswith("Error"):
                return agent._reply(ask_id, False, result, "device", t0)
            ran.append(call)
    said = say(actions, pins)
    remember(agent, text, said, ran)  # "and turn it off again" may go to the LLM next
    return agent._reply(ask_id, True, said, "device", t0)


def remember(agent, text, said, ran):
    """Keep the turn for the next asks' context: what was asked, answered, and done. The calls
    that ran and their results, in at most HISTORY_DID characters (later ones, and the end of
    a long result, left out): "Done." alone would not tell the LLM what "it" was."""
    did, room = [], limits.HISTORY_DID
    for c in ran:
        result, args = c["result"], c["args"] or {}
        if result.startswith("Error"):
            continue  # nothing was done (the answer says why)
        room -= len(c["tool"]) + len(json.dumps(args))
        if room <= 0:
            break
        did.append((c["tool"], args, result[:room]))
        room -= len(result)
    history = agent.history
    history.append((text[:limits.HISTORY_TEXT], said[:limits.HISTORY_TEXT], did))
    if len(history) > limits.HISTORY_TURNS:
        history.pop(0)


def context(agent):
    """The remembered turns as conversation messages; what was done as the calls and results
    it was (cids "h1", "h2", ...: unique in the request, whatever ids the tiers gave)."""
    msgs, n = [], 0
    for turn in agent.history:
        user, said, did = json.loads(turn) if isinstance(turn, str) else turn  # packed by agent.run
        msgs.append({"r": "user", "t": user})
        if did:
            calls = []
            msgs.append({"r": "asst", "t": "", "calls": calls})
            for tool, args, result in did:
                n += 1
                cid = "h%d" % n
                calls.append({"cid": cid, "tool": tool, "args": args})
                msgs.append({"r": "tool", "cid": cid, "t": result})
        msgs.append({"r": "asst", "t": said})
    return msgs
