# What the device reports by itself: input pins on change (debounced) and sensors on an
# interval, as retained state/<name> topics; an input pin may also run a routine on its edge,
# locally, with no network ("door": {"pin": 4, "mode": "in", "routine": "porch_on", "edge": "rising"}).
import asyncio
import json

from wisp import limits


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
        await self.dev.event("routine", "%s (%s edge): %s" % (routine, name, result[:120]))

    async def _sample(self):
        period = self.dev.config.get("sensor_interval_s", limits.SENSOR_INTERVAL_S)  # checked by config.load
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
        except Exception:
            return  # sensor_read reports wiring problems when asked; here just skip a sample
        await self.dev.link.publish(self.dev.topic("state/" + name), json.dumps({"t": temp, "h": hum}), True, 1, 0)
