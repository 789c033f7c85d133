// The page of `mnist-gpu serve`: one WebSocket to the server (protocol: mnist_gpu/serve/protocol.py),
// frames pulled at the browser's drawing rate while the Learn view is visible, a drawing sent
// whenever it changed and no earlier one is still being scored. No library, nothing from elsewhere.
"use strict";

const PACES = [1, 2, 5, 10, 30, 100, 1000, 10000, null];  // steps a second; null: full speed
const $ = (id) => document.getElementById(id);
const stats = { redraws: 0, frames: 0, firstMaps: null, connects: 0 };
window.mnistServe = stats;  // read by the browser tests and the bench

let socket = null, about = null, state = null;
let have = { run: null, version: null }, framePending = false, drawPending = false;
let drawDirty = false, drawEmpty = true, retry = 250;

// ------------------------------------------------------------------ connection

function connect() {
  socket = new WebSocket(`ws://${location.host}/socket`);
  socket.onopen = () => {
    retry = 250;
    stats.connects += 1;
    showConnection(true, "connected");
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    socket = null;
    framePending = drawPending = false;
    showConnection(false, `lost the connection: reconnecting in ${(retry / 1000).toFixed(1)} s`);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 4000);
  };
  socket.onerror = () => {};  // onclose follows, and says it
}

function showConnection(up, text) {
  const element = $("connection");
  element.textContent = text;
  element.classList.toggle("up", up);
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function receive(message) {
  if (message.type === "hello") {
    about = message;
    have = { run: null, version: null };
    setUpChoices();
    if (drawDirty || !drawEmpty) drawDirty = true;
  } else if (message.type === "frame") {
    framePending = false;
    stats.frames += 1;
    if (performance.now() - lastAsked >= 1000 / 60) askFrame();
    showState(message.state);
    if (message.snapshot) showSnapshot(message.snapshot);
  } else if (message.type === "ok") {
    showState(message.state);
  } else if (message.type === "scores") {
    drawPending = false;
    showScores(message);
  } else if (message.type === "refused") {
    drawPending = false;
    const element = $("refused");
    element.textContent = `refused: ${message.reason}`;
    element.hidden = false;
  }
}

function setUpChoices() {
  const preset = $("preset");
  preset.replaceChildren(...Object.keys(about.presets).map((name) => new Option(name, name)));
  const model = $("model");
  const options = [new Option("the run's network, as it learns", "live")];
  if (about.saved) options.unshift(new Option(`saved: ${about.saved}`, "saved"));
  model.replaceChildren(...options);
  const note = $("note");
  note.textContent = about.note;
  note.hidden = !about.note;
}

// ------------------------------------------------------------------ frames

// At most one frame asked for at a time, and at most one per display refresh: asked at each
// animation frame, or as soon as the last one arrives when a refresh has passed since it was asked
// (the server then makes the next while this one is drawn).
let lastAsked = 0;

function askFrame() {
  if (!document.hidden && !$("learn").hidden && !framePending &&
      send({ type: "frame", run: have.run, version: have.version })) {
    framePending = true;
    lastAsked = performance.now();
  }
}

function tick() {
  askFrame();
  if (!$("draw").hidden && drawDirty && !drawPending) sendDrawing();
  requestAnimationFrame(tick);
}

function setIfIdle(element, value) {
  if (document.activeElement !== element) element.value = value;
}

function showState(s) {
  state = s;
  $("seen").textContent = s.seen.toLocaleString("en");
  const rate = s.playing ? s.images_per_second : 0;
  $("rate").textContent = `${Math.round(rate).toLocaleString("en")} images/s`;
  $("status").textContent = `${s.status}${s.message ? ": " + s.message : ""}` +
    (s.kernel ? ` (${s.kernel})` : "");
  setIfIdle($("preset"), s.preset);
  if (s.alpha !== null) setIfIdle($("alpha"), s.alpha);
  if (s.batch_size) setIfIdle($("batch"), s.batch_size);
  if (s.epochs) setIfIdle($("epochs"), s.epochs);
  const index = PACES.indexOf(s.pace);
  if (index >= 0) setIfIdle($("pace"), index);
  $("pace-text").textContent = paceText(s.pace);
  $("play").disabled = s.playing;
  $("pause").disabled = !s.playing;
  const last = s.curve.length ? s.curve[s.curve.length - 1] : null;
  const full = s.checkpoints.length ? s.checkpoints[s.checkpoints.length - 1] : null;
  $("accuracy").textContent = last ? `${(100 * last[1]).toFixed(1)}% (1,000 images)` +
    (full ? `, ${(100 * full[1]).toFixed(2)}% (all 10,000 at ${full[0].toLocaleString("en")})` : "")
    : "-";
  drawCurve(s);
  showCheckpoints(s);
}

function paceText(pace) {
  return pace === null ? "full speed" : `${pace.toLocaleString("en")} steps/s`;
}

function bytes(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// The diverging scale: byte 128 is 0 (white), 1 is -scale (blue), 255 is +scale (red).
function colour(level) {
  const v = (level - 128) / 127;
  return v < 0 ? [255 * (1 + v), 255 * (1 + v), 255] : [255, 255 * (1 - v), 255 * (1 - v)];
}

function showSnapshot(snap) {
  have = { run: snap.run, version: snap.version };
  drawMaps(snap.maps);
  showCurrent(snap.current);
  stats.redraws += 1;
  if (stats.firstMaps === null) stats.firstMaps = performance.now();
}

function drawMaps(maps) {
  const canvas = $("maps"), context = canvas.getContext("2d");
  const data = bytes(maps.data), count = maps.count;
  const columns = count === 10 ? 5 : 10, size = count === 10 ? 72 : 38, label = count === 10 ? 16 : 0;
  canvas.width = columns * (size + 4);
  canvas.height = Math.ceil(count / columns) * (size + 4 + label);
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const tile = new ImageData(28, 28), scratch = document.createElement("canvas");
  scratch.width = scratch.height = 28;
  const scratchContext = scratch.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.font = "12px sans-serif";
  context.fillStyle = "#222";
  for (let unit = 0; unit < count; unit++) {
    for (let p = 0; p < 784; p++) {
      const [r, g, b] = colour(data[unit * 784 + p]);
      tile.data.set([r, g, b, 255], 4 * p);
    }
    scratchContext.putImageData(tile, 0, 0);
    const x = (unit % columns) * (size + 4), y = Math.floor(unit / columns) * (size + 4 + label);
    if (label) context.fillText(`${unit}`, x + size / 2 - 3, y + 12);
    context.drawImage(scratch, x, y + label, size, size);
  }
  $("maps-caption").textContent = count === 10 ?
    "the weights: one 28x28 map per digit" :
    `the first layer: ${count} of its ${maps.units} hidden units' 28x28 maps`;
  $("legend-low").textContent = (-maps.scale).toPrecision(3);
  $("legend-high").textContent = `+${maps.scale.toPrecision(3)}`;
}

function drawLegend() {
  const canvas = $("legend"), context = canvas.getContext("2d");
  for (let x = 0; x < canvas.width; x++) {
    const [r, g, b] = colour(1 + Math.round(254 * x / (canvas.width - 1)));
    context.fillStyle = `rgb(${r},${g},${b})`;
    context.fillRect(x, 0, 1, canvas.height);
  }
}

function drawGray(canvas, pixels) {
  const context = canvas.getContext("2d"), image = new ImageData(28, 28);
  for (let p = 0; p < 784; p++) image.data.set([pixels[p], pixels[p], pixels[p], 255], 4 * p);
  const scratch = document.createElement("canvas");
  scratch.width = scratch.height = 28;
  scratch.getContext("2d").putImageData(image, 0, 0);
  context.imageSmoothingEnabled = false;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}

function showCurrent(current) {
  if (!current) return;
  drawGray($("current-canvas"), bytes(current.image));
  const guess = current.pred.indexOf(Math.max(...current.pred));
  $("current-caption").textContent = `the next image: training image ${current.index + 1}`;
  $("current-label").textContent = current.label;
  $("current-guess").textContent = guess;
  const rows = current.loss === "ce" ?
    [["p", current.pred], ["delta", current.delta]] :
    [["pred", current.pred], ["delta", current.delta], ["error", current.error]];
  $("predictions-body").replaceChildren(...rows.map(([name, values]) => {
    const row = document.createElement("tr");
    const head = document.createElement("th");
    head.textContent = name;
    row.append(head, ...values.map((value, digit) => {
      const cell = document.createElement("td");
      cell.textContent = value.toFixed(4);
      if (digit === current.label) cell.classList.add("label");
      if (digit === guess) cell.classList.add("guess");
      return cell;
    }));
    return row;
  }));
  $("lines").textContent = current.loss === "ce" ?
    `p = softmax(network(x)); delta = p - y; loss = -log p[${current.label}] = ${current.error[0].toFixed(4)}` :
    "pred = x @ W\ndelta = pred - y\nerror = delta ** 2\nW -= alpha * outer(x, delta)";
}

function drawCurve(s) {
  const canvas = $("curve"), context = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 40, bottom = 24, top = 8, right = 10;
  const total = Math.max(s.n_train * (s.epochs || 1), s.seen, 1);
  const x = (seen) => left + (w - left - right) * seen / total;
  const y = (accuracy) => h - bottom - (h - bottom - top) * accuracy;
  context.clearRect(0, 0, w, h);
  context.strokeStyle = "#ccc";
  context.fillStyle = "#666";
  context.font = "11px sans-serif";
  for (let a = 0; a <= 1.0001; a += 0.25) {
    context.beginPath(); context.moveTo(left, y(a)); context.lineTo(w - right, y(a)); context.stroke();
    context.fillText(`${Math.round(100 * a)}%`, 4, y(a) + 4);
  }
  context.fillText("0", left, h - 8);
  context.fillText(total.toLocaleString("en"), w - right - 44, h - 8);
  context.strokeStyle = "#2c6fbb";
  context.beginPath();
  s.curve.forEach(([seen, accuracy], i) => i ? context.lineTo(x(seen), y(accuracy)) : context.moveTo(x(seen), y(accuracy)));
  context.stroke();
  context.fillStyle = "#d9534f";
  for (const [seen, accuracy] of s.checkpoints) {
    context.beginPath(); context.arc(x(seen), y(accuracy), 3.5, 0, 2 * Math.PI); context.fill();
  }
  if (about && s.preset === "tutorial") {
    context.fillStyle = "#000";
    for (const [seen, accuracy] of Object.entries(about.tutorial_points)) {
      if (Number(seen) <= total) context.fillRect(x(Number(seen)) - 4, y(accuracy) - 4, 8, 8);
    }
  }
}

function showCheckpoints(s) {
  const published = (about && s.preset === "tutorial") ? about.tutorial_points : {};
  $("checkpoints-body").replaceChildren(...s.checkpoints.map(([seen, accuracy]) => {
    const row = document.createElement("tr");
    const theirs = published[String(seen)];
    for (const text of [seen.toLocaleString("en"), `${(100 * accuracy).toFixed(2)}%`,
                        theirs === undefined ? "" : `${(100 * theirs).toFixed(2)}%`]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

// ------------------------------------------------------------------ controls

function wireControls() {
  for (const action of ["play", "pause", "step", "reset"]) {
    $(action).addEventListener("click", () => send({ type: "control", action }));
  }
  $("pace").addEventListener("input", () => {
    const pace = PACES[Number($("pace").value)];
    $("pace-text").textContent = paceText(pace);
    send({ type: "pace", value: pace });
  });
  $("alpha").addEventListener("change", () => send({ type: "alpha", value: Number($("alpha").value) }));
  const setup = () => send({ type: "setup", preset: $("preset").value,
                             batch_size: wholeOrNull($("batch").value),
                             epochs: wholeOrNull($("epochs").value) });
  $("preset").addEventListener("change", () => send({ type: "setup", preset: $("preset").value }));
  $("batch").addEventListener("change", setup);
  $("epochs").addEventListener("change", setup);
  $("tab-learn").addEventListener("click", () => showView("learn"));
  $("tab-draw").addEventListener("click", () => showView("draw"));
  $("refused").addEventListener("click", () => { $("refused").hidden = true; });
}

function wholeOrNull(text) {
  const value = Number(text);
  return Number.isInteger(value) && value > 0 ? value : null;
}

function showView(name) {
  for (const view of ["learn", "draw"]) {
    $(view).hidden = view !== name;
    $(`tab-${view}`).classList.toggle("active", view === name);
  }
}

// ------------------------------------------------------------------ drawing

function wireCanvas() {
  const canvas = $("draw-canvas"), context = canvas.getContext("2d");
  clearDrawing();
  let drawing = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
            (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = event.pointerId;
    const [x, y] = at(event);
    context.lineWidth = event.pointerType === "pen" && event.pressure ? 10 + 14 * event.pressure : 18;
    context.lineCap = context.lineJoin = "round";
    context.strokeStyle = context.fillStyle = "#000";
    context.beginPath();
    context.arc(x, y, context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    context.beginPath();
    context.moveTo(x, y);
    drawEmpty = false;
    drawDirty = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (drawing !== event.pointerId) return;
    const [x, y] = at(event);
    context.lineTo(x, y);
    context.stroke();
    context.beginPath();
    context.moveTo(x, y);
    drawDirty = true;
  });
  const end = (event) => { if (drawing === event.pointerId) drawing = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", clearDrawing);
  $("model").addEventListener("change", () => { if (!drawEmpty) drawDirty = true; });
}

function clearDrawing() {
  const canvas = $("draw-canvas"), context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  drawEmpty = true;
  drawDirty = false;
  showScores({ empty: true });
}

function sendDrawing() {
  if (drawEmpty) { drawDirty = false; return; }
  const canvas = $("draw-canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const gray = new Uint8Array(canvas.width * canvas.height);
  for (let p = 0; p < gray.length; p++) gray[p] = pixels[4 * p];
  let text = "";
  for (let i = 0; i < gray.length; i += 8192) text += String.fromCharCode(...gray.subarray(i, i + 8192));
  if (send({ type: "draw", width: canvas.width, height: canvas.height, model: $("model").value || "live",
             pixels: btoa(text) })) {
    drawPending = true;
    drawDirty = false;
  }
}

function showScores(reply) {
  const box = $("scores"), seen = $("seen28");
  if (reply.empty || drawEmpty) {
    box.textContent = "draw a digit";
    box.removeAttribute("data-digit");
    seen.getContext("2d").clearRect(0, 0, seen.width, seen.height);
    return;
  }
  drawGray(seen, bytes(reply.image));
  const largest = Math.max(...reply.scores.map(Math.abs), 1e-12);
  box.dataset.digit = reply.digit;
  box.replaceChildren(...reply.scores.map((score, digit) => {
    const row = document.createElement("div");
    row.className = digit === reply.digit ? "score best" : "score";
    const name = document.createElement("span"), bar = document.createElement("span");
    const value = document.createElement("span");
    name.textContent = digit;
    bar.className = "bar";
    bar.style.width = `${Math.max(0, 160 * score / largest)}px`;
    value.className = "value";
    value.textContent = score.toFixed(3);
    row.append(name, value, bar);
    return row;
  }));
}

wireControls();
wireCanvas();
drawLegend();
connect();
requestAnimationFrame(tick);
