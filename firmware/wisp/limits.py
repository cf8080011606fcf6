# Every device-side limit, named once with its unit. docs/protocol.md lists them for users.
from micropython import const

MAX_PAYLOAD = const(4096)        # bytes of one incoming MQTT payload; larger ones are discarded unread
MAX_TOPIC = const(128)           # bytes of one incoming topic name
MAX_ASK_TEXT = const(512)        # characters of an ask's text
MAX_ID = const(40)               # characters of an ask id
MAX_ROUNDS = const(4)            # LLM rounds per ask
MAX_CALLS_PER_ROUND = const(4)   # tool calls executed per round; extra calls get an error result
INBOX_MAX = const(4)             # asks waiting for the agent; one more is refused as busy
ROUND_TIMEOUT_MS = const(30000)  # how long one LLM round may take before the ask fails
MAX_RESULT_TEXT = const(200)     # characters of one tool result sent back to the LLM

MQTT_KEEPALIVE_S = const(30)     # broker keepalive; a silent link is dropped after 1.5x this
MQTT_CONNECT_TIMEOUT_MS = const(5000)
MQTT_ACK_TIMEOUT_MS = const(5000)  # PUBACK / SUBACK wait
RECONNECT_BASE_MS = const(500)   # reconnect backoff: base, doubled per failure...
RECONNECT_CAP_MS = const(30000)  # ...up to this cap
LINK_WAIT_MS = const(10000)      # how long a publish waits for the link to come back
