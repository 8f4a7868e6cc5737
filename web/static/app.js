// The commissioning page: polls the unit for pictures and state, draws zones and boxes over the picture.
"use strict";

const $ = (id) => document.getElementById(id);
const KIND_COLOURS = { detect: "#00ff66", ignore: "#00bfff", privacy: "#ff40ff" };
const FRAME_MS = 250, STATE_MS = 400;
let zones = [];          // the unit's saved zones
let draft = [];          // corners of the zone being drawn, normalised [x, y]
let boxes = [];          // detections on the latest picture, normalised
let walkSeen = 0;        // walk-test lines already shown (beep on new ones)
let dragging = null;     // what is under the finger: {corners, index} (a corner) or {marker: "far" | "near"}
let dragged = false;     // the last press moved a corner: its click adds no new one
let editIndex = null;    // the saved zone open in the editor (null: a new zone)
let line = { far: 0.03, near: 0.45 };  // the unit's image-wide person heights at the picture's top and bottom
let rulerShown = "";     // the bearings ruler last drawn (redrawn only when it changes)
const GRAB_PX = 24;      // a finger this close to a corner takes hold of it
const HEAD_PX = 30;      // ... and this close to a person marker's head
const FIELDS = { name: "zone-name", kind: "zone-kind", sensitivity: "zone-sensitivity", min_area: "zone-min-size",
                 person_height_far: "zone-far-height", person_height_near: "zone-near-height",
                 polygon: "corner-count" };

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
    showRuler(state.view.scale || null);
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

function showRuler(scale) {  // the 360° unit: bearings and sector names along the panorama's bottom edge
  const key = JSON.stringify(scale);
  if (key === rulerShown) return;
  rulerShown = key;
  const ruler = $("ruler");
  ruler.hidden = !scale;
  document.body.classList.toggle("panorama", Boolean(scale));
  if (!scale) { ruler.replaceChildren(); $("stage").style.width = ""; return; }
  const mark = (cls, left, text, width) => {
    const item = document.createElement("span");
    item.className = cls; item.textContent = text; item.style.left = (left * 100) + "%";
    if (width !== undefined) item.style.width = (width * 100) + "%";
    return item;
  };
  ruler.replaceChildren(...scale.sectors.map((s) => mark("sector", s.x0, s.name, s.x1 - s.x0)),
                        ...scale.ticks.map((t) => mark("bearing", t.x, t.label)));
  // a strip many times wider than tall: shown at a height a finger can draw on, scrolled sideways
  $("stage").style.width = Math.max(100, Math.round(scale.aspect * 240 / $("stage-scroll").clientWidth * 100)) + "%";
  draw();
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
    for (const zone of zones.filter((_, i) => i !== editIndex)) {  // the zone being edited is the draft
      polygon(g, zone.polygon, KIND_COLOURS[zone.kind], zone.name, w, h, true);
      g.fillStyle = KIND_COLOURS[zone.kind];  // handles: a saved zone's corners can be dragged too
      for (const [x, y] of zone.polygon) g.fillRect(x * w - 6, y * h - 6, 12, 12);
    }
  }
  if (draft.length) polygon(g, draft, "#ffd400", $("zone-name").value, w, h, draft.length >= 3);
  for (const [x, y] of draft) { g.fillStyle = "#ffd400"; g.fillRect(x * w - 8, y * h - 8, 16, 16); }
  if (markersShown()) for (const which of ["far", "near"]) drawMarker(g, which, w, h);
  $("mask").hidden = !$("show-mask").checked;
  if ($("show-boxes").checked) {
    g.strokeStyle = "#ff3030";
    for (const b of boxes) {
      g.strokeRect(b.x * w, b.y * h, b.w * w, b.h * h);
      label(g, b.class + (b.zone ? " · " + b.zone : ""), b.x * w, Math.max(18, b.y * h - 4), "#ff5050");
      g.strokeStyle = "#ff3030";
    }
  }
}

function polygon(g, corners, colour, name, w, h, closed) {
  g.strokeStyle = colour; g.fillStyle = colour + "40";
  g.beginPath();
  corners.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * h) : g.moveTo(x * w, y * h)));
  if (closed) { g.closePath(); g.fill(); }
  g.stroke();
  if (corners.length) label(g, name, corners[0][0] * w + 6, corners[0][1] * h + 22, colour);
}

function label(g, text, x, y, colour) {  // text over the picture: outlined in black, readable on any scene
  g.save();
  g.font = "bold 18px sans-serif"; g.lineWidth = 5; g.lineJoin = "round"; g.strokeStyle = "#000";
  g.strokeText(text, x, y); g.fillStyle = colour; g.fillText(text, x, y);
  g.restore();
}

function markersShown() { return draft.length >= 3 && $("zone-kind").value === "detect"; }

function feet(which) {  // where the marker stands: the middle of the zone's top (far) or bottom (near) edge
  const sorted = [...draft].sort((a, b) => a[1] - b[1]);
  const two = which === "far" ? sorted.slice(0, 2) : sorted.slice(-2);
  return [(two[0][0] + two[1][0]) / 2, which === "far" ? sorted[0][1] : sorted[sorted.length - 1][1]];
}

function typedShare(id) {  // a % field as a share of the picture (null when empty)
  const text = $(id).value.trim();
  return text === "" ? null : Number(text) / 100;
}

function markerShare(which) {  // the typed (or dragged) height, else the unit's line at that edge
  const typed = typedShare("zone-" + which + "-height");
  if (typed !== null && typed > 0) return { share: typed, own: true };
  return { share: line.far + (line.near - line.far) * feet(which)[1], own: false };
}

function drawMarker(g, which, w, h) {  // a person's figure, feet on the edge, as tall as one standing there
  const [fx, fy] = feet(which), { share, own } = markerShare(which);
  const x = fx * w, tall = Math.max(6, share * h), head = fy * h - tall, handle = handleY(head);
  const body = () => {
    g.beginPath(); g.arc(x, head + tall * 0.1, tall * 0.1, 0, 2 * Math.PI);
    g.rect(x - tall * 0.2, head + tall * 0.2, tall * 0.4, tall * 0.8);
  };
  g.setLineDash(own ? [] : [6, 4]);
  body(); g.fillStyle = own ? "#ffffffd0" : "#ffffff70"; g.fill();
  g.lineWidth = 3; g.strokeStyle = "#000"; g.stroke();
  g.setLineDash([]);
  g.beginPath(); g.arc(x, handle, 12, 0, 2 * Math.PI);  // the handle: big enough for a finger
  g.fillStyle = "#ffd400"; g.fill(); g.strokeStyle = "#000"; g.stroke();
  const text = which + " " + (share * 100).toFixed(1) + "%" + (own ? "" : " (default)");
  g.font = "bold 18px sans-serif";
  const right = x + 16 + g.measureText(text).width > w;  // kept on the picture: left of the handle at its right
  label(g, text, right ? x - 16 - g.measureText(text).width : x + 16, handle + 6, "#fff");
}

function handleY(head) { return Math.max(14, head); }  // a head at the picture's top keeps its handle inside

function markerNear(event) {
  if (!markersShown()) return null;
  const rect = $("overlay").getBoundingClientRect();
  for (const which of ["near", "far"]) {
    const [fx, fy] = feet(which), head = handleY((fy - markerShare(which).share) * rect.height);
    if (Math.hypot(fx * rect.width - (event.clientX - rect.left), head - (event.clientY - rect.top)) < HEAD_PX) {
      return { marker: which };
    }
  }
  return null;
}

function setHeight(which, share) {  // from a drag: both edges get a value, as the unit takes them together
  const other = which === "far" ? "near" : "far";
  if (typedShare("zone-" + other + "-height") === null) {
    $("zone-" + other + "-height").value = (markerShare(other).share * 100).toFixed(1);
  }
  $("zone-" + which + "-height").value = (Math.min(1, Math.max(0.005, share)) * 100).toFixed(1);
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
  const shown = $("show-zones").checked ? zones.filter((_, i) => i !== editIndex).map((zone) => zone.polygon) : [];
  for (const corners of [draft, ...shown]) {
    const index = corners.findIndex(([x, y]) =>
      Math.hypot(x * rect.width - (event.clientX - rect.left), y * rect.height - (event.clientY - rect.top)) < GRAB_PX);
    if (index >= 0) return { corners, index };
  }
  return null;
}

function pressCorner(event) {
  dragging = markerNear(event) || cornerNear(event);
  dragged = false;
  if (dragging) $("overlay").setPointerCapture(event.pointerId);
}

function moveCorner(event) {
  if (!dragging) return;
  dragged = true;
  if (dragging.marker) {  // the head follows the finger, the feet stay on the edge
    setHeight(dragging.marker, feet(dragging.marker)[1] - pointAt(event)[1]);
    draw();
    return;
  }
  dragging.corners[dragging.index] = pointAt(event);
  dragged = true;
  if (dragging.corners !== draft) $("save-moved").hidden = false;  // a saved zone changed: saved on request
  draw();
}

function releaseCorner() { dragging = null; }

async function loadZones() {
  const answer = await (await api("/api/zones")).json();
  zones = answer.zones;
  if (answer.person_height) line = answer.person_height;
  showZones();
}

function showZones() {
  const percent = (share) => +(share * 100).toFixed(2) + "%";
  $("zone-list").replaceChildren(...zones.map((zone, index) => {
    const item = document.createElement("li");
    const facts = [zone.kind, zone.polygon.length + " corners"];
    if (zone.kind === "detect") {
      facts.push("sensitivity " + zone.sensitivity);
      if (zone.min_area !== null) facts.push("smallest " + percent(zone.min_area));
      if (zone.person_height_far !== null) {
        facts.push("person " + percent(zone.person_height_far) + " to " + percent(zone.person_height_near));
      }
    }
    item.textContent = zone.name + " (" + facts.join(", ") + ") ";
    const edit = document.createElement("button");
    edit.type = "button"; edit.textContent = "Edit"; edit.className = "edit-zone";
    edit.onclick = () => editZone(index);
    const remove = document.createElement("button");
    remove.type = "button"; remove.textContent = "Delete"; remove.className = "delete-zone";
    remove.onclick = () => {  // the editor lets go of a zone open in it: its index no longer holds
      if (editIndex !== null) newZone();
      saveZones(zones.filter((_, i) => i !== index), null);
    };
    const buttons = document.createElement("div");
    buttons.className = "buttons"; buttons.append(edit, remove);
    item.append(buttons);
    return item;
  }));
}

function fillEditor(zone) {
  const percent = (share) => (share === null || share === undefined ? "" : String(+(share * 100).toFixed(3)));
  $("zone-name").value = zone.name; $("zone-kind").value = zone.kind;
  $("zone-sensitivity").value = zone.sensitivity;
  $("zone-min-size").value = percent(zone.min_area);
  $("zone-far-height").value = percent(zone.person_height_far);
  $("zone-near-height").value = percent(zone.person_height_near);
  $("corner-count").textContent = draft.length;
  $("cancel-edit").hidden = editIndex === null;
  $("zone-legend").textContent = editIndex === null ? "New zone: tap its corners on the picture" :
    "Editing zone " + zone.name + ": drag its corners and the figures";
}

function editZone(index) {
  editIndex = index;
  draft = zones[index].polygon.map(([x, y]) => [x, y]);
  fillEditor(zones[index]);
  clearErrors();
  $("zone-draft").scrollIntoView({ block: "start" });
  draw();
}

function newZone() {
  editIndex = null; draft = [];
  fillEditor({ name: "", kind: "detect", sensitivity: 1, min_area: null, person_height_far: null,
               person_height_near: null });
  draw();
}

function clearErrors() {
  for (const id of Object.values(FIELDS)) { $(id).classList.remove("invalid"); $(id + "-error").textContent = ""; }
  $("zone-errors").replaceChildren(); $("zone-result").textContent = "";
}

async function saveZones(candidate, draftIndex) {
  clearErrors();
  const response = await api("/api/zones", { zones: candidate });
  const answer = await response.json();
  if (!response.ok) {  // the agent's own validation: each message beside its field (the rest in the list)
    for (const problem of answer.errors || []) {
      const prefix = "detection.zones." + draftIndex + ".";
      const key = draftIndex !== null && problem.field.startsWith(prefix) ?
        problem.field.slice(prefix.length).split(".")[0] : null;
      const field = key === null ? undefined : FIELDS[key];
      if (field) {
        $(field).classList.add("invalid");
        $(field + "-error").textContent = problem.message;
      } else {
        const item = document.createElement("li");
        item.textContent = problem.field + ": " + problem.message;
        $("zone-errors").appendChild(item);
      }
    }
    return;
  }
  $("save-moved").hidden = true;
  if (draftIndex !== null) newZone();
  $("zone-result").textContent = "Saved " + answer.saved + " zone(s); applied " + answer.applied + ".";
  await loadZones();
  draw();
}

function saveDraft() {
  const sensitivity = $("zone-sensitivity").value.trim();
  const zone = { name: $("zone-name").value.trim(), kind: $("zone-kind").value, polygon: draft,
                 sensitivity: sensitivity === "" ? null : Number(sensitivity), min_area: typedShare("zone-min-size"),
                 person_height_far: typedShare("zone-far-height"),
                 person_height_near: typedShare("zone-near-height") };
  if (editIndex === null) saveZones(zones.concat([zone]), zones.length);
  else saveZones(zones.map((old, i) => (i === editIndex ? zone : old)), editIndex);
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
$("clear-corners").onclick = () => { draft = []; $("corner-count").textContent = "0"; clearErrors(); draw(); };
$("save-zone").onclick = saveDraft;
$("cancel-edit").onclick = () => { newZone(); clearErrors(); };
$("zone-kind").onchange = draw;
for (const which of ["far", "near"]) $("zone-" + which + "-height").addEventListener("input", draw);
$("walk-toggle").onclick = toggleWalk;
$("show-boxes").onchange = draw;
$("show-zones").onchange = draw;
window.addEventListener("resize", draw);
// already logged in (a reload): the cookie still works
fetch("/api/state", { cache: "no-store" }).then((r) => { if (r.ok) { $("login").hidden = true; $("app").hidden = false;
  loadZones(); pollFrame(); pollState(); } });
