# Every device-side limit, named once with its unit. docs/protocol.md lists them for users.
from micropython import const

MAX_PAYLOAD = const(4096)        # bytes of one incoming MQTT payload; larger ones are discarded unread
MAX_JSON_DEPTH = const(16)       # nesting of arrays/objects in an incoming JSON payload
MAX_JSON_NODES = const(256)      # arrays and objects in an incoming JSON payload (~38 bytes of heap each)
MAX_TOPIC = const(128)           # bytes of one incoming topic name
MAX_ASK_TEXT = const(512)        # characters of an ask's text
MAX_ID = const(40)               # characters of an ask id
MAX_ROUNDS = const(4)            # LLM rounds per ask
MAX_CALLS_PER_ROUND = const(4)   # tool calls executed per round; the next gets an error result, the rest none
INBOX_MAX = const(4)             # asks waiting for the agent; one more is refused as busy
ROUND_TIMEOUT_MS = const(30000)  # how long one LLM round may take before the ask fails
RESEND_MS = const(8000)          # an llm/req with no answer at all by then is sent once more (same id)
OFFLINE_WAIT_MS = const(2000)    # an LLM ask waits this long for a dropped link, then replies "unreachable"
LLM_CALLS_PER_HOUR = const(120)  # LLM rounds this device may start per hour...
LLM_CALLS_PER_DAY = const(1000)  # ...and per day
HISTORY_TURNS = const(2)         # recent (ask, what was done, answer) turns sent with each LLM request
HISTORY_TEXT = const(160)        # characters kept of each side of a remembered turn
HISTORY_DID = const(200)         # characters kept of a remembered turn's tool calls (name, JSON arguments, result)
SPAWN_MAX = const(8)             # tasks running for network messages (error replies, set/, cmd); more are dropped
ANSWER_QUEUE_MAX = const(32)     # refusals (reply, cmd/res) waiting to be sent; more are dropped and counted...
ANSWER_QUEUE_BYTES = const(6144)  # ...and bytes of them all
CMD_WINDOW_S = const(300)        # a signed command's "ts" may be this far behind the device clock...
CMD_FUTURE_S = const(10)         # ...and this far ahead of it (senders' clocks drift a little)
CMD_SEEN_MAX = const(32)         # signed commands remembered against replays; older ones raise the floor
CMD_MAX_RUNNING = const(4)       # direct commands running at once; more are refused as busy
OUTBOX_MAX = const(8)            # replies owed while the link is down, sent after reconnect...
OUTBOX_MAX_BYTES = const(6144)   # ...and bytes of them all: the oldest go first
HELD_RES_BYTES = const(8192)     # bytes of llm/res payloads buffered in one round (out of order, unprocessed)
MAX_RESULT_TEXT = const(200)     # characters of one tool result sent back to the LLM

MQTT_KEEPALIVE_S = const(30)     # broker keepalive; a silent link is dropped after 1.5x this
HA_RETRY_MS = const(10000)       # Home Assistant discovery that failed at a connect: once more after this
MQTT_OPEN_TIMEOUT_MS = const(15000)  # TCP connect + TLS handshake + CONNACK, all of it
MQTT_ACK_TIMEOUT_MS = const(5000)  # PUBACK / SUBACK wait
MQTT_GOODBYE_MS = const(1000)    # DISCONNECT at stop: 2 bytes a live link takes at once; a dead one is closed
RECONNECT_BASE_MS = const(500)   # reconnect backoff: base, doubled per failure...
RECONNECT_CAP_MS = const(30000)  # ...up to this cap
LINK_STABLE_S = const(60)        # a link lost sooner after its connect counts as a failed connect: the backoff
                                 # goes on (a broker hanging up after CONNACK, two devices with one client id)
STARVED_RESET = const(3)       # reconnects failing for memory in a row: reset the board (wisp/mqtt.py);
                               # the heap after boot is the one the connect is known to fit
LINK_WAIT_MS = const(10000)      # how long a publish waits for the link to come back

MAX_FACT_KEY = const(32)             # characters of a memory fact's key
MAX_FACT_VALUE = const(200)          # bytes of one fact's value (as JSON text for numbers)
MAX_FACTS_BYTES = const(4096)        # bytes of all facts together (keys + values)
MAX_FACTS_PROMPT_BYTES = const(512)  # bytes of facts sent with each LLM request
MAX_ROUTINES = const(16)             # stored routines
MAX_ROUTINE_NAME = const(24)         # characters of a routine's or a bound result's name
MAX_ROUTINE_STEPS = const(12)        # steps in one routine
MAX_ROUTINE_BYTES = const(1024)      # bytes of one routine's steps as JSON
MAX_ROUTINE_DEPTH = const(3)         # routines running routines: nesting levels, the outer one included
MAX_CONDITION_DEPTH = const(4)       # levels of one step condition, the comparison included

# Scheduling (wisp/sched.py, wisp/cron.py, wisp/tz.py; docs/scheduling.md)
MAX_JOBS = const(16)               # scheduled jobs stored on the device
MAX_ACTION_LEN = const(200)        # characters of a job's prompt or routine name
MAX_JOB_NAME = const(24)           # characters of a job name (a-z A-Z 0-9 _ -)
MAX_SPEC_LEN = const(64)           # characters of a schedule spec
MAX_TZ_LEN = const(64)             # characters of a POSIX TZ string
MAX_INTERVAL_S = const(31622400)   # longest `every` / `in` interval: 366 days
MISSED_GRACE_S = const(120)        # a run this much later than planned counts as missed (outage, reboot)

# Hardware tools and the pin safety policy (wisp/pins.py, wisp/tools/gpio..system)
MAX_PULSE_MS = const(10000)          # longest gpio_pulse; the off is scheduled, never slept
MAX_ON_S = const(86400)              # largest max_on_s a pin may configure
MAX_MIN_INTERVAL_MS = const(3600000)  # largest min_interval_ms a pin may configure
OUT_MIN_INTERVAL_MS = const(1000)    # an "out" pin's min_interval_ms unless config sets one (0 = none): relay wear
MAX_RUN_SWITCHES = const(16)         # pin changes one routine run may make, nested routines included
MAX_RUN_STEPS = const(64)            # steps one routine run may take, nested included (12x12x12 = 1728 else)
MAX_ALIASES = const(4)               # other names one pin may be called by
MAX_ALIAS_LEN = const(32)            # characters of one alias
PWM_FREQ_MIN = const(1)              # Hz, for config and pwm_set
PWM_FREQ_MAX = const(40000)          # Hz; above this the ESP32's duty resolution collapses
PWM_DEFAULT_FREQ = const(1000)       # Hz when a pwm pin's config has no freq
I2C_FREQ_MIN = const(10000)          # Hz of the I2C bus (config i2c.freq)
I2C_FREQ_MAX = const(1000000)
I2C_DEFAULT_FREQ = const(100000)
I2C_MAX_BYTES = const(32)            # bytes per i2c read or write
SENSOR_CACHE_MS = const(2000)        # a DHT22 needs 2 s between reads: answer from the last one
MAX_PUBLISH_PAYLOAD = const(512)     # bytes of a publish tool payload
MAX_PUBLISH_ALLOW = const(16)        # entries of config publish_allow
REBOOT_DELAY_MS = const(1500)        # system_reboot waits this long so its result goes out...
REBOOT_WAIT_MAX_MS = const(30000)    # ...and at most this long for the agent to finish the ask
WDT_TIMEOUT_MS = const(30000)        # hardware watchdog: the main loop must feed it within this
HEALTH_MIN_HEAP = const(16384)       # bytes free below which system_health warns
HEALTH_MIN_RSSI = const(-80)         # dBm below which system_health warns about Wi-Fi

DEBOUNCE_MS = const(50)          # an input must hold its level this long before it is reported
SENSOR_INTERVAL_S = const(60)    # sensors and analog pins publish their state this often...
MAX_SENSOR_INTERVAL_S = const(86400)  # ...at most this long apart (config sensor_interval_s)
MAX_WDT_S = const(3600)          # largest config wdt_s
DIAG_INTERVAL_S = const(120)     # Home Assistant diagnostics (RSSI, uptime, heap...) publish this often
RESTART_GUARD_MS = const(5000)   # a restart-button press this soon after connecting is a retained leftover
CONFIRM_WINDOW_S = const(60)     # how long a held action waits for the user's "yes"

# Over-the-air updates (wisp/ota.py, wispboot.py; docs/ota.md)
OTA_CHUNK = const(1024)          # bytes of bundle data asked for per ota/chunk; 2048 cost 4 KB more heap
OTA_GAP_MS = const(20)           # pause between chunk requests, so asks and schedules keep the loop
OTA_CHUNK_WAIT_MS = const(3000)  # a chunk not here by then is asked for again
OTA_STALL_MS = const(60000)      # no chunk for this long: stop asking; the next offer or connect resumes
OTA_FILE_TRIES = const(3)        # fetches of one file whose hash keeps failing before the update is dropped
OTA_MAX_FILES = const(128)       # files in one bundle
OTA_MAX_BYTES = const(524288)    # bytes of one bundle, manifest included
OTA_SPARE_BYTES = const(16384)   # flash left free after the bundle is written, for memory and logs
OTA_HEALTH_MIN_S = const(5)      # an offer's health deadline (seconds to connect after the switch)...
OTA_HEALTH_MAX_S = const(600)    # ...within these bounds
