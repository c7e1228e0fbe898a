// gridsight residents' app: file a report (category, words, photo, voice note, place) through
// POST /api/v1/reports, then follow it (pushed) and rate the result.
"use strict";

const $ = (id) => document.getElementById(id);
const mine = () => { try { return JSON.parse(localStorage.getItem("gs.reports")) || []; } catch (e) { return []; } };
const words = (s) => (s || "").replace(/_/g, " ");
let config = { categories: [], micro_grids: [] };
let point = null;          // {lat, lon}
let voice = null;          // Blob
let recorder = null, recTimer = null;
let stream = null;         // the EventSource of the report on screen
let stars = 0;

function problem(text) { $("problem").textContent = text || ""; $("problem").hidden = !text; }
function done(text) { $("done").textContent = text || ""; $("done").hidden = !text; }

// --- the map: every micro-grid with an outline, tap to place the report ---------------------------

let bounds = null;
function drawMap() {
  const svg = $("map");
  svg.replaceChildren();
  const areas = config.micro_grids.filter((m) => m.area);
  if (!areas.length) { svg.style.display = "none"; return; }
  const all = areas.flatMap((m) => m.area);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const k = 90 / Math.max(x1 - x0, y1 - y0, 1e-9);
  bounds = { x0, y0, k };
  const ns = "http://www.w3.org/2000/svg";
  for (const m of areas) {
    const poly = document.createElementNS(ns, "polygon");
    poly.setAttribute("points", m.area.map(([x, y]) => `${5 + (x - x0) * k},${95 - (y - y0) * k}`).join(" "));
    poly.setAttribute("fill", "rgba(29,95,191,.15)");
    poly.setAttribute("stroke", "#1d5fbf");
    poly.setAttribute("stroke-width", ".6");
    const title = document.createElementNS(ns, "title");
    title.textContent = m.name;
    poly.append(title);
    svg.append(poly);
  }
  svg.addEventListener("click", (e) => {
    const r = svg.getBoundingClientRect();
    const vx = ((e.clientX - r.left) / r.width) * 100, vy = ((e.clientY - r.top) / r.height) * 100;
    place({ lon: bounds.x0 + (vx - 5) / bounds.k, lat: bounds.y0 + (95 - vy) / bounds.k }, "on the map");
  });
}

function place(p, how) {
  point = p;
  $("micro_grid").value = "";
  $("where").textContent = `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)} (${how})`;
  let dot = $("dot");
  if (bounds) {
    if (!dot) {
      dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
      dot.id = "dot";
      dot.setAttribute("r", "2.2");
      dot.setAttribute("fill", "#c0392b");
      $("map").append(dot);
    }
    dot.setAttribute("cx", 5 + (p.lon - bounds.x0) * bounds.k);
    dot.setAttribute("cy", 95 - (p.lat - bounds.y0) * bounds.k);
  }
}

$("here").addEventListener("click", () => {
  if (!navigator.geolocation) { problem("this browser cannot tell where you are: tap the map instead"); return; }
  $("where").textContent = "finding you…";
  navigator.geolocation.getCurrentPosition(
    (pos) => { problem(""); place({ lat: pos.coords.latitude, lon: pos.coords.longitude }, `±${Math.round(pos.coords.accuracy)} m`); },
    (err) => { $("where").textContent = ""; problem(`your location is not available (${err.message}): tap the map or pick an area`); },
    { enableHighAccuracy: true, timeout: 15000 },
  );
});
$("micro_grid").addEventListener("change", () => {
  if ($("micro_grid").value) { point = null; $("where").textContent = "the area below"; }
});

// --- the voice note ---------------------------------------------------------------------------

$("rec").addEventListener("click", async () => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(media);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      media.getTracks().forEach((t) => t.stop());
      voice = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
      $("rec-play").src = URL.createObjectURL(voice);
      $("rec-play").hidden = false;
      $("rec-state").textContent = `recorded ${(voice.size / 1024).toFixed(0)} KB`;
      $("rec").hidden = false;
      $("stop").hidden = true;
      clearTimeout(recTimer);
    };
    recorder.start();
    $("rec-state").textContent = "recording…";
    $("rec").hidden = true;
    $("stop").hidden = false;
    recTimer = setTimeout(() => recorder.state === "recording" && recorder.stop(), 60000);
  } catch (e) {
    problem(`the microphone is not available (${e.message}); send the report without a voice note`);
  }
});
$("stop").addEventListener("click", () => { if (recorder && recorder.state === "recording") recorder.stop(); });

// --- sending ------------------------------------------------------------------------------------

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  problem("");
  const f = new FormData();
  f.append("category", $("category").value);
  f.append("text", $("text").value.trim());
  if ($("micro_grid").value) f.append("micro_grid", $("micro_grid").value);
  else if (point) { f.append("lat", point.lat.toFixed(6)); f.append("lon", point.lon.toFixed(6)); }
  else { problem("say where it is: use your location, tap the map or pick an area"); return; }
  const photo = $("photo").files[0];
  if (photo) f.append("photo", photo, photo.name);
  if (voice) f.append("audio", voice, "voice.webm");
  $("send").disabled = true;
  try {
    const r = await fetch("/api/v1/reports", { method: "POST", body: f });
    const v = await r.json().catch(() => null);
    if (r.status !== 201 || !v || !v.ok) {
      problem((v && v.reason) || `the report was not accepted (status ${r.status})`);
      return;
    }
    const list = mine();
    list.unshift({ id: v.id, token: v.token, category: $("category").value, at: Date.now() });
    localStorage.setItem("gs.reports", JSON.stringify(list.slice(0, 50)));
    $("form").reset();
    voice = null; point = null;
    $("rec-play").hidden = true; $("rec-state").textContent = ""; $("where").textContent = "";
    done(v.left_out ? `Report ${v.id} sent. ${v.note}` : `Report ${v.id} sent. Thank you.`);
    location.hash = "report=" + v.id;
  } catch (err) {
    problem("the report could not be sent: there is no network. Nothing was sent; try again when you are online");
  } finally {
    $("send").disabled = false;
  }
});

// --- following a report -------------------------------------------------------------------------

function cookieFor(r) { document.cookie = `gs_r_${r.id}=${r.token}; path=/report/; SameSite=Strict; max-age=31536000`; }

function renderStatus(s, r) {
  $("t-title").textContent = words(s.category);
  $("t-text").textContent = `“${s.text}” (report ${s.id})`;
  $("t-state").textContent = words(s.state);
  $("r-photo").hidden = !s.photo;
  if (s.photo && !$("r-photo").src) $("r-photo").src = `/report/api/reports/${encodeURIComponent(s.id)}/photo.jpg`;
  const tl = $("timeline");
  tl.replaceChildren();
  for (const e of s.timeline || []) {
    const li = document.createElement("li");
    li.textContent = `${words(e.event)} · ${new Date(e.at).toLocaleString()}${e.detail ? " · " + e.detail : ""}`;
    tl.append(li);
  }
  $("t-note").textContent = s.note ? `The inspector's note: ${s.note}` : "";
  const resolved = s.state === "resolved";
  $("rate").hidden = !(resolved && s.rating == null);
  $("rated").hidden = s.rating == null;
  $("rated").textContent = s.rating != null ? `You rated it ${s.rating} of 5. Thank you.` : "";
}

function follow(id) {
  const r = mine().find((x) => x.id === id);
  if (stream) { stream.close(); stream = null; }
  if (!r) { problem(`this phone has no key for report ${id}`); location.hash = ""; return; }
  cookieFor(r);
  $("new").hidden = true;
  $("report").hidden = false;
  $("r-photo").removeAttribute("src");
  stream = new EventSource(`/report/api/reports/${encodeURIComponent(id)}/events`);
  stream.addEventListener("report", (e) => { problem(""); renderStatus(JSON.parse(e.data), r); });
  stream.onerror = () => { if (!navigator.onLine) problem("offline: the report's state shows again when you are back online"); };
  stars = 0;
  drawStars();
}

function drawStars() {
  const box = $("stars");
  box.replaceChildren();
  for (let n = 1; n <= 5; n++) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "★";
    b.title = `${n} of 5`;
    b.dataset.n = n;
    b.className = n <= stars ? "on" : "";
    b.addEventListener("click", () => { stars = n; drawStars(); });
    box.append(b);
  }
}

$("rate-send").addEventListener("click", async () => {
  const id = (location.hash.match(/^#report=(.+)$/) || [])[1];
  const r = mine().find((x) => x.id === decodeURIComponent(id || ""));
  if (!r) return;
  if (!stars) { problem("choose 1 to 5 stars first"); return; }
  try {
    const res = await fetch(`/api/v1/reports/${encodeURIComponent(r.id)}/rating`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + r.token },
      body: JSON.stringify({ rating: stars, comment: $("comment").value.trim() }),
    });
    const v = await res.json().catch(() => null);
    if (res.status !== 200) { problem((v && v.reason) || `the rating was not accepted (status ${res.status})`); return; }
    problem("");
    done(v && v.reopened ? "Thank you: the order is reopened and goes back to the inspectors." : "Thank you for your rating.");
  } catch (e) {
    problem("the rating could not be sent: there is no network; try again when you are online");
  }
});

function listMine() {
  const box = $("mine");
  box.replaceChildren();
  const list = mine();
  if (!list.length) return;
  const h = document.createElement("h3");
  h.textContent = "Your reports";
  box.append(h);
  for (const r of list) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "plain";
    b.textContent = `${words(r.category)} · ${new Date(r.at).toLocaleString()} · ${r.id}`;
    b.addEventListener("click", () => { location.hash = "report=" + r.id; });
    box.append(b, document.createElement("br"));
  }
}

function route() {
  const m = location.hash.match(/^#report=(.+)$/);
  if (m) { follow(decodeURIComponent(m[1])); return; }
  if (stream) { stream.close(); stream = null; }
  $("report").hidden = true;
  $("new").hidden = false;
  listMine();
}

$("back").addEventListener("click", () => { location.hash = ""; done(""); });
addEventListener("hashchange", route);

async function start() {
  try {
    const r = await fetch("/report/api/config");
    config = await r.json();
  } catch (e) {
    problem("the district cannot be reached: reports can be sent when you are online");
  }
  const sel = $("category");
  sel.replaceChildren();
  for (const c of config.categories) {
    const o = document.createElement("option");
    o.value = c;
    o.textContent = words(c);
    sel.append(o);
  }
  for (const m of config.micro_grids) {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = m.name;
    $("micro_grid").append(o);
  }
  drawMap();
  route();
}

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/report/sw.js").catch(() => {});
start();
