"use strict";
// The marking view: one film, zoom and pan, window/level, circles and boxes a reader draws, moves, resizes and
// deletes (with the mouse or the keyboard alone), then submitted as a .roi.json document; the device's answer is
// shown when its result is written. Region coordinates are film pixels (x right, y down; a pixel's centre is an
// integer), exactly what `.roi.json` and `mammo-edge once --roi` take.

const scanId = location.pathname.split("/").pop();
const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const view = {scale: 1, x: 0, y: 0};  // screen = (film - view.xy) * scale
const state = {
  facts: null, image: null, regions: [], suggestions: [], selected: -1, tool: "circle", drag: null, submitted: false,
};
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const MIN_SIZE = 3;  // film pixels: a region smaller than this is a slip of the mouse
const HANDLE = 8;  // screen pixels

// -- coordinates ---------------------------------------------------------------------------------------------------
function toFilm(clientX, clientY) {
  const box = canvas.getBoundingClientRect();
  return {x: (clientX - box.left) / view.scale + view.x - 0.5, y: (clientY - box.top) / view.scale + view.y - 0.5};
}

function toClient(x, y) {
  const box = canvas.getBoundingClientRect();
  return {x: box.left + (x + 0.5 - view.x) * view.scale, y: box.top + (y + 0.5 - view.y) * view.scale};
}

function round1(value) {
  return Math.round(value * 10) / 10;
}

function fit() {
  if (!state.facts) return;
  view.scale = Math.min(canvas.width / state.facts.width, canvas.height / state.facts.height);
  view.x = (state.facts.width - canvas.width / view.scale) / 2;
  view.y = (state.facts.height - canvas.height / view.scale) / 2;
  draw();
}

function zoom(factor, centre) {
  const at = centre || {x: canvas.width / 2, y: canvas.height / 2};
  const filmX = at.x / view.scale + view.x;
  const filmY = at.y / view.scale + view.y;
  view.scale = Math.min(32, Math.max(0.02, view.scale * factor));
  view.x = filmX - at.x / view.scale;
  view.y = filmY - at.y / view.scale;
  draw();
}

// -- regions -------------------------------------------------------------------------------------------------------
function relabel() {
  state.regions.forEach((region, index) => { region.label = LETTERS[index] || "R" + (index + 1); });
}

function bounds(region) {
  if (region.kind === "circle") {
    return {x0: region.x - region.r, y0: region.y - region.r, x1: region.x + region.r, y1: region.y + region.r};
  }
  return region;
}

function clampToFilm(region) {
  const w = state.facts.width;
  const h = state.facts.height;
  if (region.kind === "circle") {
    region.x = Math.min(w - 0.5, Math.max(0, region.x));
    region.y = Math.min(h - 0.5, Math.max(0, region.y));
    region.r = Math.max(MIN_SIZE, region.r);
  } else {
    const width = Math.min(w, region.x1 - region.x0);
    const height = Math.min(h, region.y1 - region.y0);
    region.x0 = Math.min(w - width, Math.max(0, region.x0));
    region.y0 = Math.min(h - height, Math.max(0, region.y0));
    region.x1 = region.x0 + width;
    region.y1 = region.y0 + height;
  }
}

function addRegion(region) {
  if (state.regions.length >= 16) {
    say("At most 16 regions on one film.");
    return;
  }
  clampToFilm(region);
  state.regions.push(region);
  state.selected = state.regions.length - 1;
  changed();
}

function removeSelected() {
  if (state.selected < 0) return;
  state.regions.splice(state.selected, 1);
  state.selected = Math.min(state.selected, state.regions.length - 1);
  changed();
}

function moveSelected(dx, dy) {
  const region = state.regions[state.selected];
  if (!region) return false;
  if (region.kind === "circle") {
    region.x += dx;
    region.y += dy;
  } else {
    region.x0 += dx; region.x1 += dx; region.y0 += dy; region.y1 += dy;
  }
  clampToFilm(region);
  changed();
  return true;
}

function resizeSelected(factor) {
  const region = state.regions[state.selected];
  if (!region) return;
  if (region.kind === "circle") {
    region.r *= factor;
  } else {
    const cx = (region.x0 + region.x1) / 2, cy = (region.y0 + region.y1) / 2;
    const hw = Math.max(MIN_SIZE, (region.x1 - region.x0) * factor) / 2;
    const hh = Math.max(MIN_SIZE, (region.y1 - region.y0) * factor) / 2;
    Object.assign(region, {x0: cx - hw, x1: cx + hw, y0: cy - hh, y1: cy + hh});
  }
  clampToFilm(region);
  changed();
}

function roiDocument() {
  // The .roi.json document the device validates and answers.
  return {regions: state.regions.map((region) => region.kind === "circle"
    ? {label: region.label, x: round1(region.x), y: round1(region.y), radius: round1(region.r)}
    : {label: region.label, box: [region.x0, region.y0, region.x1, region.y1].map(Math.round)})};
}

function hit(point) {
  // The region under `point` (film pixels) and what of it: "resize" near its edge or corner, "move" inside.
  const tolerance = HANDLE / view.scale;
  for (let index = state.regions.length - 1; index >= 0; index -= 1) {
    const region = state.regions[index];
    if (region.kind === "circle") {
      const distance = Math.hypot(point.x - region.x, point.y - region.y);
      if (Math.abs(distance - region.r) <= tolerance) return {index, part: "resize"};
      if (distance < region.r) return {index, part: "move"};
    } else {
      const nearX = Math.abs(point.x - region.x1) <= tolerance, nearY = Math.abs(point.y - region.y1) <= tolerance;
      if (nearX && nearY) return {index, part: "resize"};
      if (point.x > region.x0 && point.x < region.x1 && point.y > region.y0 && point.y < region.y1) {
        return {index, part: "move"};
      }
    }
  }
  return null;
}

// -- drawing -------------------------------------------------------------------------------------------------------
function draw() {
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  if (!state.image) return;
  context.imageSmoothingEnabled = view.scale < 2;
  context.setTransform(view.scale, 0, 0, view.scale, -view.x * view.scale, -view.y * view.scale);
  context.drawImage(state.image, 0, 0);
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.setLineDash([6, 4]);  // the device's suggestions: dashed, until the reader accepts one
  context.lineWidth = 2;
  context.strokeStyle = context.fillStyle = "#ff9f1a";
  context.font = "bold 14px sans-serif";
  for (const suggestion of state.suggestions.filter((item) => !item.accepted)) {
    const centre = toCanvas(suggestion.x, suggestion.y);
    context.beginPath();
    context.arc(centre.x, centre.y, suggestion.r * view.scale, 0, 2 * Math.PI);
    context.stroke();
    const radius = suggestion.r * view.scale;
    context.fillText(`suggested ${suggestion.label}`, centre.x - radius, centre.y - radius - 4);
  }
  context.setLineDash([]);
  state.regions.forEach((region, index) => {
    const selected = index === state.selected;
    context.lineWidth = selected ? 3 : 2;
    context.strokeStyle = selected ? "#ffd400" : "#00d8ff";
    context.beginPath();
    const corner = toCanvas(region.kind === "circle" ? region.x - region.r : region.x0,
      region.kind === "circle" ? region.y - region.r : region.y0);
    if (region.kind === "circle") {
      const centre = toCanvas(region.x, region.y);
      context.arc(centre.x, centre.y, region.r * view.scale, 0, 2 * Math.PI);
    } else {
      context.rect(corner.x, corner.y, (region.x1 - region.x0) * view.scale, (region.y1 - region.y0) * view.scale);
    }
    context.stroke();
    context.font = "bold 16px sans-serif";
    context.fillStyle = context.strokeStyle;
    context.fillText(region.label, corner.x, corner.y - 4);
  });
}

function toCanvas(x, y) {
  return {x: (x + 0.5 - view.x) * view.scale, y: (y + 0.5 - view.y) * view.scale};
}

// -- the regions list (also the keyboard's way to type exact numbers) -----------------------------------------------
function number(region, key, labelText) {
  const label = document.createElement("label");
  label.textContent = labelText + " ";
  const input = document.createElement("input");
  input.type = "number";
  input.step = "1";
  input.value = String(Math.round(region[key]));
  input.dataset.key = key;
  input.addEventListener("change", () => {
    const value = Number(input.value);
    if (Number.isFinite(value)) {
      region[key] = value;
      clampToFilm(region);
      changed();
    }
  });
  label.appendChild(input);
  return label;
}

function listRegions() {
  const list = document.getElementById("regions");
  list.replaceChildren();
  state.regions.forEach((region, index) => {
    const item = document.createElement("li");
    item.className = index === state.selected ? "selected" : "";
    const name = document.createElement("button");
    name.type = "button";
    name.textContent = region.label + (region.kind === "circle" ? " (circle)" : " (box)");
    name.setAttribute("aria-pressed", String(index === state.selected));
    name.addEventListener("click", () => { state.selected = index; changed(); });
    item.appendChild(name);
    const keys = region.kind === "circle" ? [["x", "x"], ["y", "y"], ["r", "radius"]]
      : [["x0", "left"], ["y0", "top"], ["x1", "right"], ["y1", "bottom"]];
    for (const [key, text] of keys) item.appendChild(number(region, key, text));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete " + region.label;
    remove.addEventListener("click", () => { state.selected = index; removeSelected(); });
    item.appendChild(remove);
    list.appendChild(item);
  });
  document.getElementById("submit").disabled = state.regions.length === 0 || state.submitted;
}

function listSuggestions() {
  const list = document.getElementById("suggestions");
  list.replaceChildren();
  for (const suggestion of state.suggestions) {
    const item = document.createElement("li");
    const accept = document.createElement("button");
    accept.type = "button";
    accept.textContent = `Accept suggestion ${suggestion.label} (score ${suggestion.score.toFixed(2)})`;
    accept.disabled = suggestion.accepted || state.submitted;
    accept.addEventListener("click", () => {
      suggestion.accepted = true;
      addRegion({kind: "circle", x: suggestion.x, y: suggestion.y, r: suggestion.r});
    });
    item.appendChild(accept);
    list.appendChild(item);
  }
}

function changed() {
  relabel();
  listRegions();
  listSuggestions();
  draw();
}

function say(text) {
  document.getElementById("progress").textContent = text;
}

// -- input ---------------------------------------------------------------------------------------------------------
canvas.addEventListener("pointerdown", (event) => {
  canvas.focus();
  canvas.setPointerCapture(event.pointerId);
  const point = toFilm(event.clientX, event.clientY);
  if (state.tool === "pan") {
    state.drag = {kind: "pan", last: {x: event.clientX, y: event.clientY}};
  } else if (state.tool === "select") {
    const found = hit(point);
    state.selected = found ? found.index : -1;
    state.drag = found ? {kind: found.part, last: point} : null;
    changed();
  } else if (state.tool === "circle") {
    state.drag = {kind: "new", region: {kind: "circle", x: point.x, y: point.y, r: 0}};
  } else {
    state.drag = {kind: "new", start: point, region: {kind: "box", x0: point.x, y0: point.y, x1: point.x, y1: point.y}};
  }
});

canvas.addEventListener("pointermove", (event) => {
  const drag = state.drag;
  if (!drag) return;
  const point = toFilm(event.clientX, event.clientY);
  if (drag.kind === "pan") {
    view.x -= (event.clientX - drag.last.x) / view.scale;
    view.y -= (event.clientY - drag.last.y) / view.scale;
    drag.last = {x: event.clientX, y: event.clientY};
  } else if (drag.kind === "move") {
    moveSelected(point.x - drag.last.x, point.y - drag.last.y);
    drag.last = point;
  } else if (drag.kind === "resize") {
    const region = state.regions[state.selected];
    if (region.kind === "circle") {
      region.r = Math.max(MIN_SIZE, Math.hypot(point.x - region.x, point.y - region.y));
    } else {
      region.x1 = Math.max(region.x0 + MIN_SIZE, point.x);
      region.y1 = Math.max(region.y0 + MIN_SIZE, point.y);
    }
    changed();
  } else if (drag.region.kind === "circle") {
    drag.region.r = Math.hypot(point.x - drag.region.x, point.y - drag.region.y);
  } else {
    Object.assign(drag.region, {
      x0: Math.min(drag.start.x, point.x), y0: Math.min(drag.start.y, point.y),
      x1: Math.max(drag.start.x, point.x), y1: Math.max(drag.start.y, point.y),
    });
  }
  draw();
  if (drag.kind === "new") drawPending(drag.region);
});

function drawPending(region) {
  context.setLineDash([6, 4]);
  context.strokeStyle = "#ffd400";
  context.lineWidth = 2;
  context.beginPath();
  if (region.kind === "circle") {
    const centre = toCanvas(region.x, region.y);
    context.arc(centre.x, centre.y, region.r * view.scale, 0, 2 * Math.PI);
  } else {
    const corner = toCanvas(region.x0, region.y0);
    context.rect(corner.x, corner.y, (region.x1 - region.x0) * view.scale, (region.y1 - region.y0) * view.scale);
  }
  context.stroke();
  context.setLineDash([]);
}

canvas.addEventListener("pointerup", () => {
  const drag = state.drag;
  state.drag = null;
  if (drag && drag.kind === "new") {
    const region = drag.region;
    const size = region.kind === "circle" ? region.r : Math.min(region.x1 - region.x0, region.y1 - region.y0);
    if (size >= MIN_SIZE) addRegion(region);
    else draw();
  }
});

canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  const box = canvas.getBoundingClientRect();
  zoom(event.deltaY < 0 ? 1.25 : 0.8, {x: event.clientX - box.left, y: event.clientY - box.top});
}, {passive: false});

canvas.addEventListener("keydown", (event) => {
  const step = (event.shiftKey ? 40 : 8) / view.scale;
  const key = event.key;
  const tools = {c: "circle", b: "box", v: "select", h: "pan"};
  const arrows = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
  if (key.toLowerCase() in tools && !event.ctrlKey && !event.metaKey) {
    setTool(tools[key.toLowerCase()]);
  } else if (key in arrows) {
    const [dx, dy] = arrows[key];
    if (!moveSelected(dx * step, dy * step)) {
      view.x += dx * step;
      view.y += dy * step;
      draw();
    }
  } else if (key === "n" || key === "N") {
    addAtCentre();
  } else if (key === "[" || key === "]") {
    resizeSelected(key === "]" ? 1.1 : 1 / 1.1);
  } else if (key === "." || key === ",") {
    if (state.regions.length) {
      const count = state.regions.length;
      state.selected = (state.selected + (key === "." ? 1 : count - 1) + count) % count;
      changed();
    }
  } else if (key === "Delete" || key === "Backspace") {
    removeSelected();
  } else if (key === "+" || key === "=") {
    zoom(1.25);
  } else if (key === "-") {
    zoom(0.8);
  } else if (key === "f" || key === "F" || key === "0") {
    fit();
  } else if (key === "Enter") {
    submit();
  } else {
    return;
  }
  event.preventDefault();
});

function addAtCentre() {
  const x = view.x + canvas.width / view.scale / 2 - 0.5;
  const y = view.y + canvas.height / view.scale / 2 - 0.5;
  addRegion({kind: "circle", x, y, r: Math.max(MIN_SIZE, 40 / view.scale)});
}

function setTool(tool) {
  state.tool = tool;
  document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
}

document.querySelectorAll("input[name=tool]").forEach((input) => {
  input.addEventListener("change", () => { state.tool = input.value; });
});
document.getElementById("zoom-in").addEventListener("click", () => zoom(1.25));
document.getElementById("zoom-out").addEventListener("click", () => zoom(0.8));
document.getElementById("fit").addEventListener("click", fit);
document.getElementById("add").addEventListener("click", addAtCentre);
document.getElementById("submit").addEventListener("click", submit);

// -- window / level ------------------------------------------------------------------------------------------------
let windowTimer = null;

function loadImage(windowing) {
  const query = windowing ? `?center=${windowing.centre}&width=${windowing.width}` : "";
  const image = new Image();
  image.addEventListener("load", () => {
    state.image = image;
    draw();
    document.body.dataset.loaded = "true";
  });
  image.src = `/api/scans/${scanId}/image${query}`;
}

function setUpWindowing(facts) {
  const [low, high] = facts.range;
  const centre = document.getElementById("centre");
  const width = document.getElementById("width");
  const span = high - low;
  Object.assign(centre, {min: low, max: high, step: span / 1000, value: facts.window[0]});
  Object.assign(width, {min: span / 1000, max: span * 2, step: span / 1000, value: facts.window[1]});
  const show = () => {
    document.getElementById("centre-value").textContent = Number(centre.value).toFixed(0);
    document.getElementById("width-value").textContent = Number(width.value).toFixed(0);
  };
  show();
  for (const input of [centre, width]) {
    input.addEventListener("input", () => {
      show();
      clearTimeout(windowTimer);
      windowTimer = setTimeout(() => loadImage({centre: centre.value, width: width.value}), 250);
    });
  }
  document.getElementById("default-window").addEventListener("click", () => {
    centre.value = facts.window[0];
    width.value = facts.window[1];
    show();
    loadImage(null);
  });
}

// -- submitting and the answer -------------------------------------------------------------------------------------
async function submit() {
  if (!state.regions.length || state.submitted) return;
  state.submitted = true;
  listRegions();
  say("Submitted; the device is classifying the regions...");
  const response = await api(`/api/scans/${scanId}/regions`, {method: "POST", body: JSON.stringify(roiDocument())});
  const answer = await response.json();
  if (response.status !== 202) {
    state.submitted = false;
    listRegions();
    say("Refused: " + answer.error);
    return;
  }
  document.body.dataset.answer = answer.id;
  waitForAnswer(answer.id);
}

async function waitForAnswer(id) {
  for (;;) {
    const scan = await (await api(`/api/scans/${id}`)).json();
    if (scan.scan && scan.result) {
      showAnswer(scan);
      return;
    }
    if (scan.scan && scan.scan.state === "quarantined") {
      say("The device refused the regions: " + scan.scan.reason);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function showAnswer(scan) {
  const body = document.querySelector("#answer tbody");
  body.replaceChildren();
  for (const region of scan.result.regions) {
    const row = body.insertRow();
    cell(row, region.label);
    cell(row, region.probability.toFixed(6)).className = "probability";
    cell(row, region.decision);
    cell(row, region.marked_by + (region.reader ? " (" + region.reader + ")" : ""));
  }
  document.getElementById("answer").hidden = false;
  const link = document.getElementById("overlay-link");
  link.replaceChildren();
  if (scan.result.heatmap) {
    const a = document.createElement("a");
    a.href = "/results/" + scan.result.heatmap;
    a.textContent = "The overlay: each region with its Grad-CAM heat";
    link.appendChild(a);
  }
  say(`Answered (result ${scan.scan.id}).`);
  document.body.dataset.answered = "true";
}

// -- start ---------------------------------------------------------------------------------------------------------
function resize() {
  const box = document.getElementById("viewer").getBoundingClientRect();
  canvas.width = Math.max(320, Math.floor(box.width));
  canvas.height = Math.max(320, Math.floor(window.innerHeight - 24));  // the film fills the window when scrolled to
  fit();
}

function fact(name, value) {
  if (!value) return;
  const list = document.getElementById("facts");
  const term = document.createElement("dt");
  term.textContent = name;
  const detail = document.createElement("dd");
  detail.textContent = value;
  list.append(term, detail);
}

async function start() {
  await startSession();
  const response = await api(`/api/scans/${scanId}`);
  if (!response.ok) {
    say((await response.json()).error);
    return;
  }
  const scan = await response.json();
  if (!scan.film) {
    say("This scan has no film to mark (" + (scan.scan.reason || scan.scan.state) + ").");
    return;
  }
  state.facts = scan.film;
  fact("Film", scan.scan.input);
  fact("Laterality", scan.film.laterality);
  fact("View", scan.film.view);
  fact("Study date", scan.film.study_date);
  fact("Accession", scan.film.accession);
  fact("Size", `${scan.film.width} x ${scan.film.height} px`);
  document.getElementById("state").textContent = scan.scan.status === "needs_roi"
    ? "Waiting for a region: " + (scan.result ? scan.result.reason : "")
    : `Answered before (${scan.scan.label}); marking adds a new answer.`;
  const result = scan.result || {};
  state.suggestions = (result.suggestions || []).map(
    (item) => ({label: item.label, x: item.x, y: item.y, r: item.radius, score: item.score, accepted: false}));
  document.getElementById("suggestions-note").textContent = state.suggestions.length
    ? "The device's detector proposes these places (dashed on the film). Accept one to mark it: "
      + "it is classified with the regions you submit."
    : result.suggestions_reason ? `No suggestions: ${result.suggestions_reason}.` : "No suggestions for this film.";
  setUpWindowing(scan.film);
  resize();
  loadImage(null);
  window.addEventListener("resize", resize);
  changed();
}

// For tests and tools driving the page: the film <-> screen mapping, the document it would submit and the device's
// suggestions as shown (copies: `accepted` once the reader took one).
const suggestions = () => state.suggestions.map((item) => ({...item}));
window.mammoMark = {toClient, toFilm, document: roiDocument, suggestions};
start();
