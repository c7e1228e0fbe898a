// gridsight inspector app: the list of my orders (pushed by server-sent events), one
// order's page, its buttons, and a queue of updates that survives being offline.
"use strict";

const API = "/inspector/api";
const $ = (id) => document.getElementById(id);
const store = {
  get(k, d) { try { return JSON.parse(localStorage.getItem("gs." + k)) ?? d; } catch (e) { return d; } },
  set(k, v) { localStorage.setItem("gs." + k, JSON.stringify(v)); },
};

let me = null;            // {inspector, name}
const firstSeen = {};     // order id → when this page first had it (ms), for the tests' push delay
window.gsFirstSeen = firstSeen;
let orders = [];          // the last list
let skew = 0;             // server clock minus ours (ms)
let events = null;        // the EventSource
let shown = null;         // the order on screen, if any
let liveTimer = null, clipTimer = null;
const pendingVoice = [];  // voice URLs not played yet (autoplay refused)

function problem(text) {
  const p = $("problem");
  p.textContent = text || "";
  p.hidden = !text;
}

function link(state) {
  const l = $("link");
  l.textContent = { up: "live", down: "offline", wait: "reconnecting" }[state];
  l.className = "pill " + (state === "up" ? "up" : state === "down" ? "down" : "");
}

function show(section) {
  for (const s of ["login", "list", "order"]) $(s).hidden = s !== section;
}

async function call(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(API + path, { credentials: "same-origin", ...init });
  let v = null;
  try { v = await r.json(); } catch (e) { v = null; }
  return { status: r.status, v };
}

// --- the list ---------------------------------------------------------------------

const words = (s) => (s || "").replace(/_/g, " ");

function left(o) {
  if (!o.open || !o.deadline_ms) return { text: o.open ? "" : words(o.state), late: false };
  const ms = o.deadline_ms - (Date.now() + skew);
  const m = Math.floor(Math.abs(ms) / 60000), s = Math.floor(Math.abs(ms) / 1000) % 60;
  const t = `${m}:${String(s).padStart(2, "0")}`;
  const what = o.deadline_kind === "accept" ? "to accept" : "to resolve";
  return ms >= 0 ? { text: `${t} left ${what}`, late: false } : { text: `${t} late ${what}`, late: true };
}

function renderList() {
  const ul = $("orders");
  ul.replaceChildren();
  $("empty").hidden = orders.length > 0;
  for (const o of orders) {
    const li = document.createElement("li");
    li.className = `${o.priority} ${o.open ? "open" : "closed"}`;
    li.dataset.id = o.id;
    if (o.snapshot_url) {
      const img = document.createElement("img");
      img.src = o.snapshot_url;
      img.alt = "snapshot";
      img.loading = "lazy";
      li.append(img);
    }
    const d = document.createElement("div");
    const l = left(o);
    d.innerHTML = `<div class="t"></div><div class="p small"></div><div><span class="pill"></span> <span class="left"></span></div>`;
    d.querySelector(".t").textContent = `${words(o.category)} · ${o.priority}`;
    d.querySelector(".p").textContent = `${o.place} · ${new Date(o.created_ms).toLocaleTimeString()}`;
    d.querySelector(".pill").textContent = words(o.state);
    const lt = d.querySelector(".left");
    lt.textContent = l.text;
    lt.classList.toggle("late", l.late);
    li.append(d);
    li.addEventListener("click", () => { location.hash = "order=" + encodeURIComponent(o.id); });
    ul.append(li);
  }
}

function tick() {
  for (const li of $("orders").children) {
    const o = orders.find((x) => x.id === li.dataset.id);
    if (!o) continue;
    const l = left(o), el = li.querySelector(".left");
    el.textContent = l.text;
    el.classList.toggle("late", l.late);
  }
  if (shown) {
    const l = left(shown);
    $("o-left").textContent = l.text;
    $("o-left").classList.toggle("late", l.late);
  }
}

function took(list) {
  skew = list.now_ms - Date.now();
  orders = list.orders;
  for (const o of orders) if (!(o.id in firstSeen)) firstSeen[o.id] = Date.now();
  store.set("orders", list);
  renderList();
  announce();
  if (shown && orders.some((o) => o.id === shown.id)) openOrder(shown.id, true);
}

// --- voice --------------------------------------------------------------------------

function announce() {
  const heard = new Set(store.get("heard", []));
  for (const o of orders) {
    if (o.open && !heard.has(o.id)) {
      heard.add(o.id);
      pendingVoice.push(o.voice_url);
    }
    // The control room's voice messages, each once.
    for (const m of o.open ? o.messages || [] : []) {
      if (!heard.has(m.url)) { heard.add(m.url); pendingVoice.push(m.url); }
    }
  }
  store.set("heard", [...heard].slice(-500));
  playNext();
}

let playing = false;
function playNext() {
  if (playing || !pendingVoice.length) return;
  playing = true;
  const url = pendingVoice[0];
  const a = new Audio(url);
  a.onended = a.onerror = () => { pendingVoice.shift(); playing = false; playNext(); };
  a.play().then(() => { $("sound").hidden = true; }).catch(() => {
    // The browser wants a tap before it plays sound.
    playing = false;
    $("sound").hidden = false;
  });
}

// --- the stream -----------------------------------------------------------------------

function connect() {
  if (events) events.close();
  link("wait");
  events = new EventSource(API + "/events");
  events.addEventListener("orders", (e) => { link("up"); problem(""); took(JSON.parse(e.data)); });
  events.onopen = () => { link("up"); flush(); };
  events.onerror = async () => {
    link(navigator.onLine ? "wait" : "down");
    if (navigator.onLine) {
      // A withdrawn token ends here: the stream answers 401 and EventSource retries forever.
      try {
        const r = await call("/me");
        if (r.status === 401) { events.close(); events = null; signedOut("you were signed out: sign in again"); }
      } catch (err) { /* offline: EventSource retries */ }
    }
  };
}

// --- updates, kept while offline ----------------------------------------------------------

function newId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return "app-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function queued() { return store.get("queue", []); }

function showQueue() {
  const n = queued().length;
  const q = $("queue");
  q.hidden = n === 0;
  q.textContent = n ? `${n} update(s) wait for the network; they are sent as soon as the phone is back online.` : "";
}

function send(order, action, extra) {
  const q = queued();
  q.push({ order, body: { id: newId(), action, ...extra } });
  store.set("queue", q);
  showQueue();
  flush();
}

let flushing = false;
async function flush() {
  if (flushing) return;
  flushing = true;
  try {
    for (;;) {
      const q = queued();
      if (!q.length) break;
      const u = q[0];
      let r;
      try {
        r = await call(`/orders/${encodeURIComponent(u.order)}/update`, u.body);
      } catch (e) {
        link("down");
        break; // offline: kept, sent again later with the same id
      }
      if (r.status >= 500) break; // the dispatcher could not store it: try again later
      store.set("queue", queued().slice(1));
      if (r.status === 401) { signedOut("you were signed out: sign in again; your update was not sent"); break; }
      if (!r.v || !r.v.ok) problem(`${words(u.body.action)} refused: ${(r.v && r.v.reason) || "status " + r.status}`);
      else problem("");
    }
  } finally {
    flushing = false;
    showQueue();
    if (shown) openOrder(shown.id, true);
  }
}

// --- one order ------------------------------------------------------------------------------

function stopTimers() {
  clearInterval(liveTimer);
  clearTimeout(clipTimer);
  liveTimer = clipTimer = null;
}

function drawMap(map) {
  const svg = $("o-map"), cap = $("map-cap");
  svg.replaceChildren();
  if (!map) { $("f-map").hidden = true; return; }
  $("f-map").hidden = false;
  const pts = (map.area || []).concat(map.at ? [map.at] : []);
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  // A lone point gets a 300 m square around it.
  const span = Math.max(x1 - x0, y1 - y0, 0.003);
  const k = 90 / span, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const px = ([x, y]) => [50 + (x - cx) * k, 50 - (y - cy) * k];
  const ns = "http://www.w3.org/2000/svg";
  if (map.area) {
    const poly = document.createElementNS(ns, "polygon");
    poly.setAttribute("points", map.area.map((p) => px(p).join(",")).join(" "));
    poly.setAttribute("fill", "rgba(240,160,32,.25)");
    poly.setAttribute("stroke", "#f0a020");
    poly.setAttribute("stroke-width", "1");
    svg.append(poly);
  }
  if (map.at) {
    const [x, y] = px(map.at);
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("r", "3");
    dot.setAttribute("fill", "#e0504a");
    dot.setAttribute("stroke", "#fff");
    svg.append(dot);
  }
  const where = map.at ? `${map.what} at ${map.at[1].toFixed(5)}, ${map.at[0].toFixed(5)}` : `${map.what}: no position in the config`;
  const area = map.micro_grid ? `micro-grid ${map.name || map.micro_grid}${map.area ? "" : " (no outline in the config)"}` : "";
  cap.textContent = [area, where].filter(Boolean).join(" · ");
}

async function openOrder(id, refresh) {
  let r;
  try { r = await call("/orders/" + encodeURIComponent(id)); } catch (e) {
    const o = orders.find((x) => x.id === id);
    if (o && !refresh) { shown = o; renderOrder(o, true); }
    return;
  }
  if (r.status !== 200) { problem((r.v && r.v.reason) || `order ${id}: status ${r.status}`); location.hash = ""; return; }
  renderOrder(r.v, false, refresh);
}

function renderOrder(o, offline, refresh) {
  const first = !shown || shown.id !== o.id;
  shown = o;
  show("order");
  $("o-title").textContent = `${words(o.category)} · ${o.priority}`;
  $("o-place").textContent = o.place;
  $("o-state").textContent = words(o.state);
  $("o-note").textContent = o.note ? `Note: ${o.note}` : (o.media_note || "");
  tick();
  const acts = $("o-actions");
  acts.replaceChildren();
  const label = { accept: "Accept", reject: "Reject", arrive: "I am on site", resolve: "Resolve" };
  for (const a of o.actions || []) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = "act-" + a;
    b.textContent = label[a] || a;
    if (a === "reject") b.className = "reject";
    b.addEventListener("click", () => act(a));
    acts.append(b);
  }
  if (!(o.actions || []).includes("resolve")) $("resolve-form").hidden = true;
  if (!(o.actions || []).includes("reject")) $("reject-form").hidden = true;
  const msgs = $("o-messages");
  msgs.replaceChildren();
  for (const m of o.messages || []) {
    const li = document.createElement("li");
    li.textContent = `from the control room, ${new Date(m.at).toLocaleTimeString()} `;
    const a = document.createElement("audio");
    a.controls = true;
    a.preload = "none";
    a.src = m.url;
    li.append(a);
    msgs.append(li);
  }
  const tl = $("o-timeline");
  tl.replaceChildren();
  for (const e of o.timeline || []) {
    const li = document.createElement("li");
    li.innerHTML = "<b></b> <span></span>";
    li.querySelector("b").textContent = words(e.event);
    li.querySelector("span").textContent = `${new Date(e.at).toLocaleTimeString()}${e.by ? " · " + e.by : ""}${e.detail ? " · " + e.detail : ""}`;
    tl.append(li);
  }
  if (refresh && !first) return;
  stopTimers();
  const pic = (fig, img, url) => {
    $(fig).hidden = !url;
    if (url) $(img).src = url;
  };
  pic("f-snapshot", "o-snapshot", o.snapshot_url);
  pic("f-photo", "o-photo", o.photo_url);
  if (o.report) {
    $("f-report").hidden = false;
    $("report-text").textContent = `Resident's report: “${o.report.text}”`;
    $("report-audio").hidden = !o.report.audio;
    if (o.report.audio) $("report-audio").src = `${API}/orders/${encodeURIComponent(o.id)}/report-audio`;
  } else {
    $("f-report").hidden = true;
  }
  drawMap(o.map);
  if (offline) return;
  if (o.live_url) {
    $("f-live").hidden = false;
    const img = $("o-live");
    img.onerror = () => { $("live-cap").textContent = "The camera has no picture now"; };
    img.onload = () => { $("live-cap").textContent = "The camera now (faces pixelated)"; };
    const load = () => { img.src = o.live_url + "?t=" + Date.now(); };
    load();
    liveTimer = setInterval(load, 2000);
  } else {
    $("f-live").hidden = true;
  }
  if (o.clip_url) {
    $("f-clip").hidden = false;
    const v = $("o-clip");
    let tries = 0;
    const load = () => {
      v.src = o.clip_url + "?t=" + Date.now();
      v.play().catch(() => {});
    };
    v.onerror = () => {
      $("clip-cap").textContent = "The clip is being made…";
      if (++tries < 40) clipTimer = setTimeout(load, 3000);
      else $("clip-cap").textContent = "No clip for this order (not made, or removed by retention)";
    };
    v.onloadeddata = () => { $("clip-cap").textContent = "Event clip (faces pixelated)"; };
    load();
  } else {
    $("f-clip").hidden = true;
  }
}

function act(a) {
  if (!shown) return;
  if (a === "resolve") { $("resolve-form").hidden = false; $("r-note").focus(); return; }
  if (a === "reject") { $("reject-form").hidden = false; $("j-reason").focus(); return; }
  send(shown.id, a, {});
}

function smaller(file) {
  return new Promise((ok, fail) => {
    const img = new Image();
    img.onload = () => {
      const k = Math.min(1, 1280 / Math.max(img.width, img.height));
      const c = document.createElement("canvas");
      c.width = Math.round(img.width * k);
      c.height = Math.round(img.height * k);
      c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
      URL.revokeObjectURL(img.src);
      ok(c.toDataURL("image/jpeg", 0.8));
    };
    img.onerror = () => fail(new Error("the photo cannot be read"));
    img.src = URL.createObjectURL(file);
  });
}

// --- on duty: the phone's position, for nearest assignment ---------------------------------------

let watch = null, lastSent = null, lastFix = null, beat = null;

async function sharePosition(fix, force) {
  lastFix = fix;
  const moved = !lastSent || Math.hypot(fix.lat - lastSent.lat, (fix.lon - lastSent.lon) * Math.cos(fix.lat * Math.PI / 180)) * 111320 > 25;
  if (!force && !moved && Date.now() - lastSent.t < 15000) return;
  try {
    const r = await call("/position", { lat: fix.lat, lon: fix.lon, accuracy: fix.accuracy });
    if (r.status === 200) { lastSent = { ...fix, t: Date.now() }; $("duty-note").textContent = `Sharing: ±${Math.round(fix.accuracy)} m, sent ${new Date().toLocaleTimeString()}.`; }
    else problem((r.v && r.v.reason) || `the position was not accepted (status ${r.status})`);
  } catch (e) { /* offline: sent again with the next fix or beat */ }
}

function duty(on) {
  store.set("duty", on);
  $("duty").checked = on;
  if (watch !== null) { navigator.geolocation.clearWatch(watch); watch = null; }
  clearInterval(beat);
  if (!on) {
    lastSent = lastFix = null;
    call("/position", { on_duty: false }).catch(() => {});
    $("duty-note").textContent = "Not sharing your position.";
    return;
  }
  if (!navigator.geolocation) { problem("this browser cannot share a position"); $("duty").checked = false; return; }
  watch = navigator.geolocation.watchPosition(
    (p) => sharePosition({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy }, false),
    (err) => { problem(`your position is not available (${err.message}); orders are given by turn instead`); },
    { enableHighAccuracy: true, maximumAge: 10000, timeout: 30000 },
  );
  // A phone that stands still gets no new fix: the last one is sent again every minute.
  beat = setInterval(() => { if (lastFix) sharePosition(lastFix, true); }, 60000);
}

$("duty").addEventListener("change", () => duty($("duty").checked));

// --- start --------------------------------------------------------------------------------

function signedOut(why) {
  me = null;
  if (events) { events.close(); events = null; }
  $("who").textContent = "";
  show("login");
  problem(why || "");
}

function route() {
  const m = location.hash.match(/^#order=(.+)$/);
  stopTimers();
  if (m && me) { openOrder(decodeURIComponent(m[1])); return; }
  shown = null;
  if (me) show("list");
}

async function start() {
  let r;
  try { r = await call("/me"); } catch (e) {
    // Offline: the last list this phone saw.
    const last = store.get("orders", null);
    link("down");
    if (last) { me = { inspector: last.inspector }; show("list"); took(last); route(); }
    else signedOut("offline, and this phone has no orders yet");
    addEventListener("online", start, { once: true });
    return;
  }
  if (r.status === 401) { signedOut(""); return; }
  me = r.v;
  $("who").textContent = me.name;
  show("list");
  const last = store.get("orders", null);
  if (last && last.inspector === me.inspector) took(last);
  connect();
  route();
  flush();
  if (store.get("duty", false)) duty(true);
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const r = await call("/login", { token: $("token").value.trim() });
    if (r.status !== 200) { problem((r.v && r.v.reason) || `sign-in failed (status ${r.status})`); return; }
    $("token").value = "";
    problem("");
    start();
  } catch (err) {
    problem("the dispatcher cannot be reached: check the network and try again");
  }
});
$("logout").addEventListener("click", async () => {
  duty(false);
  try { await call("/logout", {}); } catch (e) { /* offline: the cookie stays until it expires */ }
  store.set("orders", null);
  signedOut("signed out");
});
$("resolve-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const extra = { note: $("r-note").value.trim() };
  const f = $("r-photo").files[0];
  if (f) {
    try { extra.photo = await smaller(f); } catch (err) { problem(err.message); return; }
  }
  $("resolve-form").hidden = true;
  $("r-note").value = "";
  $("r-photo").value = "";
  send(shown.id, "resolve", extra);
});
$("reject-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const reason = $("j-reason").value.trim();
  $("reject-form").hidden = true;
  $("j-reason").value = "";
  send(shown.id, "reject", { reason });
});
$("back").addEventListener("click", () => { location.hash = ""; });
$("replay").addEventListener("click", () => { if (shown) { pendingVoice.push(shown.voice_url); playNext(); } });
$("sound").addEventListener("click", () => { $("sound").hidden = true; playNext(); });
addEventListener("hashchange", route);
addEventListener("online", () => { link("wait"); flush(); if (!events) connect(); });
addEventListener("offline", () => link("down"));
setInterval(tick, 1000);
setInterval(() => { if (queued().length) flush(); }, 5000);
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/inspector/sw.js").catch(() => {});
showQueue();
start();
