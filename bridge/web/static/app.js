// The wisp dashboard: fleet list, device page (pins, chat, schedules, routines, memory, events) and tier
// health, from the REST API plus live updates over the /api/events WebSocket. Device data is shown with
// textContent only: names and texts come from devices and must never become markup.
"use strict";

const REFRESH_MS = 5000;        // fleet and tier tables are re-read this often (events cover the rest)
const ROUNDS_KEPT = 120;        // tier decisions kept for the latency chart
const EVENTS_SHOWN = 40;        // lines in a device's event list
const WS_RETRY_MAX_MS = 10000;  // reconnect backoff cap for the event stream

const S = {token: null, ws: null, wsRetryMs: 500, view: null, rounds: [], timer: null, handlers: []};

// ---- small DOM and API helpers --------------------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) n.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) n.append(k instanceof Node ? k : String(k));
  return n;
}

function ago(ts) {
  if (!ts) return "not since the bridge started";  // what the broker kept for it carries no time
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

function fmtState(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}=${x}`).join(" ");
  return String(v);
}

const usd = v => "$" + (v < 0.01 ? v.toFixed(6) : v.toFixed(4));

class ApiError extends Error {}

async function api(path, body) {
  const opts = {headers: {Authorization: "Bearer " + S.token}};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON: reported below */ }
  if (r.status === 401) { askToken("The token was not accepted."); throw new ApiError("not authorized"); }
  if (!r.ok) throw new ApiError((data && data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

// ---- token ----------------------------------------------------------------------------------------------
function readToken() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    localStorage.setItem("wisp_token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + "#/");  // keep the token out of the address bar
  }
  return localStorage.getItem("wisp_token");
}

function askToken(message) {
  localStorage.removeItem("wisp_token");
  S.token = null;
  if (S.ws) S.ws.close();  // it carries the old token; onclose does not retry without one
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("view").replaceChildren();
}

function useToken(token) {
  S.token = token;
  localStorage.setItem("wisp_token", token);
  document.getElementById("login").hidden = true;
  connectEvents();
  route();
}

document.getElementById("login").addEventListener("submit", ev => {
  ev.preventDefault();
  useToken(document.getElementById("token").value.trim());
});

// ---- live events ----------------------------------------------------------------------------------------
function connectEvents() {
  if (S.ws || !S.token) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/events?access_token=${encodeURIComponent(S.token)}`);
  const live = document.getElementById("live");
  S.ws = ws;
  ws.onopen = () => { S.wsRetryMs = 500; live.textContent = "live"; live.className = "live on"; };
  ws.onmessage = m => {
    const ev = JSON.parse(m.data);
    if (ev.type === "history") {  // the bridge's recent tier decisions: the latency chart starts full
      S.rounds = ev.events.slice(-ROUNDS_KEPT);
    }
    if (ev.type === "tier" && !ev.replayed) {  // a re-send answered again took no model call: no latency
      S.rounds.push(ev);
      if (S.rounds.length > ROUNDS_KEPT) S.rounds.shift();
    }
    if (ev.type === "dropped") refreshView();  // we missed events: re-read the page's data
    for (const h of S.handlers) h(ev);
  };
  ws.onclose = () => {
    S.ws = null;
    live.textContent = "reconnecting"; live.className = "live off";
    if (!S.token) return;
    setTimeout(connectEvents, S.wsRetryMs);
    S.wsRetryMs = Math.min(WS_RETRY_MAX_MS, S.wsRetryMs * 2);
  };
}

// ---- routing --------------------------------------------------------------------------------------------
function route() {
  if (!S.token) return;
  clearInterval(S.timer);
  S.handlers = [];
  const m = location.hash.match(/^#\/device\/([a-z0-9_-]{1,32})$/);
  S.view = m ? {name: "device", id: m[1]} : {name: "fleet"};
  const view = document.getElementById("view");
  view.replaceChildren();
  if (S.view.name === "device") deviceView(view, S.view.id); else fleetView(view);
}

function refreshView() { if (S.view && S.view.refresh) S.view.refresh(); }

function showError(box, e) {
  if (!(e instanceof ApiError) || e.message !== "not authorized") box.replaceChildren(el("p", {class: "error"}, e.message));
}

// ---- fleet page -----------------------------------------------------------------------------------------
function fleetView(view) {
  const devices = el("div", {id: "fleet"}, el("p", {class: "muted"}, "Loading devices…"));
  const tiers = el("div", {id: "tiers"});
  const charts = el("div", {class: "charts"});
  view.append(el("section", {class: "card"}, el("h2", {}, "Devices"), devices),
              el("section", {class: "card"}, el("h2", {}, "Inference tiers"), tiers, charts));
  let last = null;  // the tier data of the last refresh: history redraws the charts alone
  const drawCharts = () => { if (last) charts.replaceChildren(...tierCharts(Object.keys(last.t.tiers), last.u.by_tier, last.week.daily)); };
  const refresh = async () => {
    try {
      const [d, t, u, week] = await Promise.all([api("/api/devices"), api("/api/tiers"), api("/api/usage"),
                                                 api("/api/usage?days=7")]);
      const cutOff = d.broker_connected === false ? [el("p", {class: "error", "data-broker": "down"},
        "This bridge has lost its broker: the devices are shown as it last heard them, and nothing can be sent to them.")] : [];
      devices.replaceChildren(...cutOff, fleetTable(d.devices));
      tiers.replaceChildren(tierTable(t.tiers, u.by_tier));
      last = {t, u, week};
      drawCharts();
    } catch (e) { showError(devices, e); }
  };
  S.view.refresh = refresh;
  S.handlers.push(ev => {
    if (ev.type === "history") drawCharts();
    else if (ev.type === "status" || ev.type === "tier" || ev.type === "ota") refresh();
  });
  S.timer = setInterval(refresh, REFRESH_MS);
  refresh();
}

function fleetTable(list) {
  if (!list.length) return el("p", {class: "muted"}, "No devices yet: start one with `wisp sim` or `wisp run`.");
  return el("table", {}, el("thead", {}, el("tr", {}, ["", "device", "firmware", "board", "pins", "last seen", "last update"].map(h => el("th", {}, h)))),
    el("tbody", {}, list.map(d => el("tr", {"data-device-row": d.id},
      el("td", {}, el("span", {class: "dot " + (d.online ? "on" : "off"), title: d.online ? "online" : "offline"})),
      el("td", {}, el("a", {href: `#/device/${d.id}`, "data-device": d.id}, d.id)),
      el("td", {}, d.fw || "–"), el("td", {}, d.board || "–"), el("td", {}, d.pins),
      el("td", {}, d.online ? ago(d.last_seen) : "offline, " + ago(d.last_seen)),
      el("td", {"data-ota": d.id, title: (d.ota || {}).text || ""}, otaText(d.ota))))));
}

// A device's over-the-air update as it reports it (docs/ota.md): progress while fetching, else the outcome.
function otaText(o) {
  if (!o || !o.state) return "–";
  if (o.state === "fetching" && o.size) return `fetching ${o.ver || ""} ${Math.round(100 * (o.off || 0) / o.size)} %`;
  return o.state + (o.ver ? " " + o.ver : "");
}

function tierTable(tiers, byTier) {
  const names = Object.keys(tiers);
  if (!names.length) return el("p", {class: "muted"}, "No inference tier configured (see docs/bridge.md).");
  const ms = v => v === null || v === undefined ? "–" : `${v} ms`;
  return el("table", {}, el("thead", {}, el("tr", {}, ["tier", "breaker", "requests", "error rate", "first output ewma",
      "p50", "p99", "cost today"].map(h => el("th", {}, h)))),
    el("tbody", {}, names.map(n => {
      const t = tiers[n], cost = (byTier[n] || {}).cost_usd || 0;
      return el("tr", {"data-tier": n},
        el("td", {}, el("span", {class: "swatch", style: `background:${tierColor(n, names)}`}), n),
        el("td", {}, el("span", {class: "badge " + t.breaker}, t.breaker)), el("td", {}, t.requests),
        el("td", {}, (t.error_rate * 100).toFixed(1) + " %"), el("td", {}, ms(t.ttft_ms.ewma)),
        el("td", {}, ms(t.ttft_ms.p50)), el("td", {}, ms(t.ttft_ms.p99)), el("td", {}, usd(cost)));
    })));
}

function tierCharts(names, byTier, daily) {
  const rounds = S.rounds.filter(r => r.tier).map(r => ({t: r.ts * 1000, v: r.ms, series: r.tier}));
  return [
    el("figure", {}, el("figcaption", {}, "Round latency by tier (recent)"), timeSeries(rounds, names, "ms")),
    el("figure", {}, el("figcaption", {}, "Cost today by tier"),
       barChart(names.map(n => ({label: n, value: (byTier[n] || {}).cost_usd || 0, color: tierColor(n, names)})), usd)),
    el("figure", {}, el("figcaption", {}, "Cost per day (UTC), last 7 days"),
       barChart(daily.map(d => ({label: d.day, value: d.cost_usd})), usd)),
  ];
}

// ---- device page ----------------------------------------------------------------------------------------
function deviceView(view, id) {
  const head = el("div", {class: "device-head"});
  const pins = el("div", {id: "pins"});
  const chatLog = el("div", {id: "chat-log", class: "chat"});
  const text = el("input", {id: "ask-text", placeholder: "Ask the device, e.g. turn on the porch light", maxlength: 512});
  const form = el("form", {id: "ask-form", class: "ask"}, text, el("button", {type: "submit"}, "Ask"));
  const events = el("ul", {id: "events", class: "events"});
  const lists = {schedules: el("pre", {id: "schedules"}, "…"), routines: el("pre", {id: "routines"}, "…"),
                 memory: el("pre", {id: "memory"}, "…")};
  const listCard = (what, title) => el("section", {class: "card"},
    el("h2", {}, title, " ", el("button", {class: "small", onclick: () => loadList(what)}, "refresh")), lists[what]);
  view.append(el("p", {}, el("a", {href: "#/"}, "← fleet")), head,
    el("div", {class: "grid"},
      el("section", {class: "card"}, el("h2", {}, "Pins and sensors"), pins),
      el("section", {class: "card"}, el("h2", {}, "Chat"), chatLog, form),
      listCard("schedules", "Schedules"), listCard("routines", "Routines"), listCard("memory", "Memory"),
      el("section", {class: "card"}, el("h2", {}, "Recent events"), events)));

  const shown = new Set();
  const say = (key, who, body, meta) => {
    if (key && shown.has(key)) return null;
    if (key) shown.add(key);
    const line = el("div", {class: "msg " + who}, el("span", {class: "who"}, who), el("span", {class: "text"}, body),
                    meta ? el("span", {class: "meta"}, meta) : null);
    chatLog.append(line);
    chatLog.scrollTop = chatLog.scrollHeight;
    return line;
  };
  const replyMeta = r => [r.path, r.tier, r.ms !== undefined && r.ms !== null ? r.ms + " ms" : null].filter(Boolean).join(" · ");
  const addEvent = ev => {
    const what = ev.type === "event" ? `${ev.kind}: ${ev.text}` : ev.type === "ask" ? `ask: ${ev.text}` :
      ev.type === "reply" ? `reply (${ev.ok ? "ok" : "failed"}): ${ev.text}` :
      ev.type === "cmd_res" ? `cmd ${ev.ok ? "ok" : "failed"}: ${ev.result}` :
      ev.type === "tier" && ev.replayed ? `round ${ev.round} re-sent by the device: answered again, no model call` :
      ev.type === "tier" ? `round ${ev.round} on ${ev.tier || "no tier"} in ${ev.ms} ms` +
        ((ev.calls || []).length ? `, called ${ev.calls.join(", ")}` : "") + (ev.err ? ": " + ev.err : "") : null;
    if (!what) return;
    events.prepend(el("li", {}, el("time", {}, new Date(ev.ts * 1000).toLocaleTimeString()), " ", what));
    while (events.children.length > EVENTS_SHOWN) events.lastChild.remove();
  };
  const loadList = async what => {
    lists[what].textContent = "…";
    try {
      const r = await api(`/api/devices/${id}/${what}`);
      lists[what].textContent = r.result;
      lists[what].className = r.ok ? "" : "error";
    } catch (e) { lists[what].textContent = e.message; lists[what].className = "error"; }
  };
  const refresh = async () => {
    try {
      const d = await api(`/api/devices/${id}`);
      head.replaceChildren(el("h1", {}, id, " ", el("span", {id: "online", class: "badge " + (d.online ? "online" : "offline")},
        d.online ? "online" : "offline")),
        el("p", {class: "muted"}, `firmware ${d.fw || "?"} · board ${d.board || "?"} · boots ${d.boots ?? "?"} · last seen ${ago(d.last_seen)}`),
        ...(d.ota ? [el("p", {id: "ota", class: "muted"}, `last update: ${otaText(d.ota)}${d.ota.text ? " · " + d.ota.text : ""}`)] : []));
      pins.replaceChildren(pinTable(id, d.pins));
      events.replaceChildren();
      for (const ev of d.recent) addEvent(ev);
    } catch (e) { showError(head, e); }
  };
  S.view.refresh = refresh;

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const q = text.value.trim();
    if (!q) return;
    text.value = "";
    const pending = say(null, "you", q, "sending…");
    try {
      const r = await api(`/api/devices/${id}/ask`, {text: q});
      pending.remove();
      say("ask:" + r.id, "you", q);
      say("reply:" + r.id, r.ok ? "device" : "error", r.text, replyMeta(r));
    } catch (e) {
      pending.remove();
      say(null, "you", q);
      say(null, "error", e.message);
    }
  });

  S.handlers.push(ev => {
    if (ev.device !== id) return;
    if (ev.type === "state") updatePin(ev.name, ev.value);
    else if (ev.type === "status" || ev.type === "manifest" || ev.type === "ota") refresh();
    else if (ev.type === "ask") say("ask:" + ev.id, "you", ev.text);
    else if (ev.type === "reply") say("reply:" + ev.id, ev.ok ? "device" : "error", ev.text, replyMeta(ev));
    addEvent(ev);
  });
  refresh();
  for (const what of Object.keys(lists)) loadList(what);
}

function pinTable(id, pins) {
  if (!pins.length) return el("p", {class: "muted"}, "This device has no named pins.");
  return el("table", {}, el("tbody", {}, pins.map(p => el("tr", {"data-pin": p.name, "data-mode": p.mode || ""},
    el("td", {}, p.name), el("td", {class: "muted"}, p.mode || ""),
    el("td", {}, el("span", {class: "pin-state " + stateClass(p.state)}, fmtState(p.state))),
    el("td", {}, pinControl(id, p))))));
}

function stateClass(v) { return v === "ON" ? "on" : v === "OFF" ? "off" : ""; }

function pinControl(id, p) {
  if (p.mode === "out") {
    const b = el("button", {class: "pin-toggle"}, p.state === "ON" ? "Turn off" : "Turn on");
    b.addEventListener("click", async () => {
      const row = b.closest("tr"), now = row.querySelector(".pin-state").textContent;
      b.disabled = true;
      try {
        const r = await api(`/api/devices/${id}/pins/${encodeURIComponent(p.name)}`, {state: now === "ON" ? "OFF" : "ON"});
        updatePin(p.name, r.state);
      } catch (e) { alert(e.message); } finally { b.disabled = false; }
    });
    return b;
  }
  if (p.mode === "pwm") {
    const r = el("input", {type: "range", min: 0, max: 100, step: 5, class: "pin-pwm", value: Number(p.state) || 0});
    r.addEventListener("change", () => api(`/api/devices/${id}/pins/${encodeURIComponent(p.name)}`, {state: Number(r.value)})
      .then(x => updatePin(p.name, x.state)).catch(e => alert(e.message)));
    return r;
  }
  return null;  // inputs and sensors are read-only: they update live
}

function updatePin(name, value) {
  const row = document.querySelector(`tr[data-pin="${CSS.escape(name)}"]`);
  if (!row) { refreshView(); return; }  // a pin we did not know yet
  const s = row.querySelector(".pin-state");
  s.textContent = fmtState(value);
  s.className = "pin-state " + stateClass(value);
  const b = row.querySelector(".pin-toggle");
  if (b) b.textContent = value === "ON" ? "Turn off" : "Turn on";
  row.classList.remove("flash"); void row.offsetWidth; row.classList.add("flash");
}

// ---- start ----------------------------------------------------------------------------------------------
window.addEventListener("hashchange", () => {
  const given = readToken();
  if (given && given !== S.token) useToken(given); else route();
});
const saved = readToken();
if (saved) useToken(saved); else askToken();
