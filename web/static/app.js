// The commissioning page: polls the unit for pictures and state, draws zones and boxes over the picture.
"use strict";

const $ = (id) => document.getElementById(id);
const KIND_COLOURS = { detect: "#00ff66", ignore: "#00bfff", privacy: "#ff40ff" };
const FRAME_MS = 250, STATE_MS = 400;
let zones = [];          // the unit's saved zones
let draft = [];          // corners of the zone being drawn, normalised [x, y]
let boxes = [];          // detections on the latest picture, normalised
let walkSeen = 0;        // walk-test lines already shown (beep on new ones)
let dragging = null;     // the corner under the finger: {corners, index} (a draft's or a saved zone's)
let dragged = false;     // the last press moved a corner: its click adds no new one
const GRAB_PX = 24;      // a finger this close to a corner takes hold of it

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, Object.assign({ cache: "no-store", credentials: "same-origin" }, options));
  if (response.status === 401) { showLogin(); throw new Error("log in first"); }
  return response;
}

function showLogin() { $("login").hidden = false; $("app").hidden = true; }

async function login() {
  $("login-error").textContent = "";
  const response = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password: $("password").value }) });
  if (!response.ok) { $("login-error").textContent = "Wrong password"; return; }
  $("login").hidden = true; $("app").hidden = false;
  await loadZones();
  pollFrame(); pollState();
}

async function pollFrame() {
  if ($("app").hidden) return;
  try {
    const response = await api("/api/frame.jpg");
    if (response.ok) {
      const url = URL.createObjectURL(await response.blob());
      const old = $("picture").src;
      $("picture").onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); draw(); };
      $("picture").src = url;
    }
    if ($("show-mask").checked) await pollMask();
  } catch (error) { /* the unit is busy or restarting: try again */ }
  setTimeout(pollFrame, FRAME_MS);
}

async function pollMask() {  // asked for only while shown: the unit encodes it only then
  const response = await api("/api/mask.png");
  if (!response.ok) return;
  const url = URL.createObjectURL(await response.blob()), old = $("mask").src;
  $("mask").onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
  $("mask").src = url;
}

async function pollState() {
  if ($("app").hidden) return;
  try {
    const state = await (await api("/api/state")).json();
    boxes = state.view.boxes || [];
    showStatus(state.status);
    showWalk(state.walk);
    draw();
  } catch (error) { /* try again */ }
  setTimeout(pollState, STATE_MS);
}

function showStatus(s) {
  if (s.armed === undefined) { $("status").textContent = "Waiting for the unit…"; return; }
  $("status").textContent = [s.armed ? "ARMED" : "DISARMED", s.alarm ? "ALARM" : s.phase, "link " + s.link,
    "outbox " + s.outbox, "temp " + (s.temp_c === null || s.temp_c === undefined ? "—" : s.temp_c + " °C"),
    s.tamper ? "TAMPER " + s.tamper : "", s.walk_test ? "WALK TEST" : "",
    s.clock].filter(Boolean).join(" · ");
  $("status").classList.toggle("alarm", Boolean(s.alarm));
}

function showWalk(walk) {
  $("walk-toggle").textContent = walk.active ? "Stop walk test" : "Start walk test";
  $("walk-toggle").dataset.active = walk.active ? "1" : "";
  $("walk-status").textContent = walk.active ?
    "On: ends by itself in " + Math.ceil(walk.seconds_left / 60) + " min" : "Off";
  const list = $("walk-list");
  list.replaceChildren(...walk.detections.map((d) => {
    const item = document.createElement("li");
    item.className = "walk-detection" + (d.alarm ? " alarm" : "");
    item.textContent = (d.alarm ? "ALARM " : "") + d.class + " in " + d.zone +
      (d.bearing_deg === null ? "" : " at " + d.bearing_deg + "°") + " · " + d.time.slice(11, 19);
    return item;
  }));
  if (walk.detections.length > walkSeen) signal();
  walkSeen = walk.detections.length;
}

function signal() {  // beep and flash: the installer is walking, not looking
  document.body.classList.add("flash");
  setTimeout(() => document.body.classList.remove("flash"), 300);
  try {
    const audio = signal.audio || (signal.audio = new AudioContext());
    const tone = audio.createOscillator();
    tone.connect(audio.destination); tone.frequency.value = 1200;
    tone.start(); tone.stop(audio.currentTime + 0.15);
  } catch (error) { /* no sound on this phone */ }
}

function draw() {
  const canvas = $("overlay"), picture = $("picture");
  canvas.width = picture.clientWidth; canvas.height = picture.clientHeight;
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  g.lineWidth = 3; g.font = "bold 18px sans-serif";
  if ($("show-zones").checked) {
    for (const zone of zones) {
      polygon(g, zone.polygon, KIND_COLOURS[zone.kind], zone.name, w, h, true);
      g.fillStyle = KIND_COLOURS[zone.kind];  // handles: a saved zone's corners can be dragged too
      for (const [x, y] of zone.polygon) g.fillRect(x * w - 6, y * h - 6, 12, 12);
    }
  }
  if (draft.length) polygon(g, draft, "#ffd400", $("zone-name").value, w, h, draft.length >= 3);
  for (const [x, y] of draft) { g.fillStyle = "#ffd400"; g.fillRect(x * w - 8, y * h - 8, 16, 16); }
  $("mask").hidden = !$("show-mask").checked;
  if ($("show-boxes").checked) {
    g.strokeStyle = "#ff3030";
    for (const b of boxes) {
      g.strokeRect(b.x * w, b.y * h, b.w * w, b.h * h);
      g.fillStyle = "#ff3030"; g.fillText(b.class + (b.zone ? " · " + b.zone : ""), b.x * w, b.y * h - 4);
    }
  }
}

function polygon(g, corners, colour, label, w, h, closed) {
  g.strokeStyle = colour; g.fillStyle = colour + "40";
  g.beginPath();
  corners.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * h) : g.moveTo(x * w, y * h)));
  if (closed) { g.closePath(); g.fill(); }
  g.stroke();
  if (corners.length) { g.fillStyle = colour; g.fillText(label, corners[0][0] * w + 6, corners[0][1] * h + 20); }
}

function pointAt(event) {  // the pointer's place on the picture, normalised and kept inside it
  const rect = $("overlay").getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, Math.round(v * 1000) / 1000));
  return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
}

function addCorner(event) {
  if (dragged) { dragged = false; return; }  // the press moved a corner
  draft.push(pointAt(event));
  $("corner-count").textContent = draft.length;
  draw();
}

function cornerNear(event) {  // the draft's corners first: they are what the installer is working on
  const rect = $("overlay").getBoundingClientRect();
  const shown = $("show-zones").checked ? zones.map((zone) => zone.polygon) : [];
  for (const corners of [draft, ...shown]) {
    const index = corners.findIndex(([x, y]) =>
      Math.hypot(x * rect.width - (event.clientX - rect.left), y * rect.height - (event.clientY - rect.top)) < GRAB_PX);
    if (index >= 0) return { corners, index };
  }
  return null;
}

function pressCorner(event) {
  dragging = cornerNear(event);
  dragged = false;
  if (dragging) $("overlay").setPointerCapture(event.pointerId);
}

function moveCorner(event) {
  if (!dragging) return;
  dragging.corners[dragging.index] = pointAt(event);
  dragged = true;
  if (dragging.corners !== draft) $("save-moved").hidden = false;  // a saved zone changed: saved on request
  draw();
}

function releaseCorner() { dragging = null; }

async function loadZones() {
  zones = (await (await api("/api/zones")).json()).zones;
  showZones();
}

function showZones() {
  $("zone-list").replaceChildren(...zones.map((zone, index) => {
    const item = document.createElement("li");
    item.textContent = zone.name + " (" + zone.kind + ", " + zone.polygon.length + " corners) ";
    const remove = document.createElement("button");
    remove.type = "button"; remove.textContent = "Delete"; remove.className = "delete-zone";
    remove.onclick = () => saveZones(zones.filter((_, i) => i !== index), null);
    item.appendChild(remove);
    return item;
  }));
}

async function saveZones(candidate, draftIndex) {
  for (const id of ["zone-name", "zone-kind", "zone-sensitivity", "corner-count"]) $(id).classList.remove("invalid");
  $("zone-errors").replaceChildren(); $("zone-result").textContent = "";
  const response = await api("/api/zones", { zones: candidate });
  const answer = await response.json();
  if (!response.ok) {
    for (const problem of answer.errors || []) {
      const item = document.createElement("li");
      item.textContent = problem.field + ": " + problem.message;
      $("zone-errors").appendChild(item);
      const prefix = "detection.zones." + draftIndex + ".";
      if (draftIndex !== null && problem.field.startsWith(prefix)) {
        const key = problem.field.slice(prefix.length).split(".")[0];
        const field = { name: "zone-name", kind: "zone-kind", sensitivity: "zone-sensitivity",
                        polygon: "corner-count" }[key];
        if (field) $(field).classList.add("invalid");
      }
    }
    return;
  }
  $("save-moved").hidden = true;
  $("zone-result").textContent = "Saved " + answer.saved + " zone(s); applied " + answer.applied + ".";
  if (draftIndex !== null) { draft = []; $("corner-count").textContent = "0"; }
  await loadZones();
  draw();
}

function saveDraft() {
  const zone = { name: $("zone-name").value.trim(), kind: $("zone-kind").value, polygon: draft,
                 sensitivity: Number($("zone-sensitivity").value) };
  saveZones(zones.concat([zone]), zones.length);
}

async function toggleWalk() {
  const on = !$("walk-toggle").dataset.active;
  showWalk(await (await api("/api/walk", { on })).json());
}

$("login-button").onclick = login;
$("password").addEventListener("keydown", (event) => { if (event.key === "Enter") login(); });
$("overlay").addEventListener("click", addCorner);
$("overlay").addEventListener("pointerdown", pressCorner);
$("overlay").addEventListener("pointermove", moveCorner);
$("overlay").addEventListener("pointerup", releaseCorner);
$("overlay").addEventListener("pointercancel", releaseCorner);
$("save-moved").onclick = () => saveZones(zones, null);
$("show-mask").onchange = draw;
$("undo-corner").onclick = () => { draft.pop(); $("corner-count").textContent = draft.length; draw(); };
$("clear-corners").onclick = () => { draft = []; $("corner-count").textContent = "0"; draw(); };
$("save-zone").onclick = saveDraft;
$("walk-toggle").onclick = toggleWalk;
$("show-boxes").onchange = draw;
$("show-zones").onchange = draw;
window.addEventListener("resize", draw);
// already logged in (a reload): the cookie still works
fetch("/api/state", { cache: "no-store" }).then((r) => { if (r.ok) { $("login").hidden = true; $("app").hidden = false;
  loadZones(); pollFrame(); pollState(); } });
