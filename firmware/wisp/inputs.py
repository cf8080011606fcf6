# What the device reports by itself: input pins on change (debounced) and sensors on an
# interval, as retained state/<name> topics; an input pin may also run a routine on its edge,
# locally, with no network ("door": {"pin": 4, "mode": "in", "routine": "porch_on", "edge": "rising"}).
import asyncio

from wisp import limits, unload


def sample_period_s(dev):
    """Seconds between sensor and analog pin samples (config sensor_interval_s)."""
    period = dev.config.get("sensor_interval_s", limits.SENSOR_INTERVAL_S)
    return period if isinstance(period, int) and period >= 1 else limits.SENSOR_INTERVAL_S


class Inputs:
    def __init__(self, dev):
        self.dev = dev
        self._edge = dev.board.irq_flag()  # what an IRQ handler may set (a ThreadSafeFlag on the ESP32)
        self._dirty = []          # names of input pins with an edge since the last settle
        self.levels = {}          # name -> last level published

    def start(self):
        """Call from the running loop: registers the edge handlers and starts the tasks."""
        for name, pin in self.dev.pins.items():
            if pin.mode == "in":
                self.levels[name] = pin.read()
                pin.watch(self._handler(name), "both", self.dev.board)
        if any(p.mode == "in" for p in self.dev.pins.values()):
            asyncio.create_task(self._settle())
        if self.dev.config.get("sensors") or any(p.mode == "adc" for p in self.dev.pins.values()):
            asyncio.create_task(self._sample())
        from wisp import ha
        period = ha.diag_period_s(self.dev)
        del ha
        unload("wisp.ha")  # the next connect loads it again, for as long as it announces
        if period:
            asyncio.create_task(self._diagnostics(period))

    def _handler(self, name):
        def on_edge(level):  # an IRQ (soft, from the scheduler): only note it, the task does the work
            if name not in self._dirty:
                self._dirty.append(name)
            self._edge.set()
        return on_edge

    async def _settle(self):
        while True:
            await self._edge.wait()  # clears the flag
            await asyncio.sleep_ms(limits.DEBOUNCE_MS)  # contacts bounce: read once it has settled
            names, self._dirty = self._dirty, []
            for name in names:
                level = self.dev.pins[name].read()
                if level == self.levels.get(name):
                    continue  # a bounce that came back
                self.levels[name] = level
                await self.dev.pin_changed(name)
                await self._run_routine(name, level)

    async def _run_routine(self, name, level):
        pin = self.dev.pins[name]
        routine, edge = pin.routine, pin.edge  # checked at boot (wisp/pins.py)
        if not routine or (edge == "rising" and not level) or (edge == "falling" and level):
            return
        result = await self.dev.routines.run(routine, trigger="edge")  # it logs its own summary
        self.dev.rest()
        await self.dev.event("routine", "%s (%s edge): %s" % (routine, name, result[:120]))

    async def _sample(self):
        period = sample_period_s(self.dev)
        while True:
            for name, pin in self.dev.pins.items():
                if pin.mode == "adc":
                    await self.dev.pin_changed(name)
            sensors = self.dev.config.get("sensors")
            for name in sensors if isinstance(sensors, dict) else ():
                await self._publish_sensor(name, sensors[name])
            await asyncio.sleep_ms(period * 1000)

    async def _publish_sensor(self, name, spec):
        from wisp.tools import sensors  # the same 2 s cache as the sensor_read tool
        try:
            temp, hum = sensors.reading(self.dev, name, spec)
            ok = True
        except Exception:
            ok = False  # sensor_read reports wiring problems when asked; here Home Assistant is told
        # every sample, retained (a broker that lost it heals at the next one): Home Assistant
        # shows the sensor unavailable, not its last value
        await self.dev.link.publish(self.dev.topic("avail/" + name), "online" if ok else "offline", True, 1, 0)
        if ok:
            # as the sensor measured: a DHT22 gives tenths (the driver's n * 0.1 reads 22.700000000000003,
            # or 22.699999 in an ESP32's single-precision floats), a DHT11 whole numbers (ints)
            f = "%.1f" if isinstance(temp, float) else "%d"
            await self.dev.link.publish(self.dev.topic("state/" + name), ('{"t":%s,"h":%s}' % (f, f)) % (temp, hum),
                                        True, 1, 0)

    async def _diagnostics(self, period):
        """What Home Assistant shows as the device's diagnostics, retained, every `period` s."""
        import gc
        b = self.dev.board
        while True:
            gc.collect()  # the heap really in use, not what the collector has yet to reclaim
            try:
                temp = round(b.chip_temp(), 1)
            except Exception:  # some chips have no sensor
                temp = None
            await self.dev.publish_json("diag", {"rssi": b.rssi(), "up": b.uptime_s(), "heap": b.free_heap(),
                                                 "boots": self.dev.boots, "temp": temp}, True)
            await asyncio.sleep_ms(period * 1000)
