// digitops: the drawing page. Plain JavaScript, no build step, no dependencies.
//
// Draw: strokes are kept in the canvas's own unit square and redrawn whenever the canvas changes size, so
// the drawing survives a rotation of the phone. The canvas stays transparent: the ink is its alpha.
// Each stroke's release (and every THROTTLE_MS while drawing) sends the canvas as a PNG to POST /digit,
// with at most one request in flight; an answer about an older drawing is never shown over a newer one.
"use strict";

(() => {
  const THROTTLE_MS = 250;
  const INK = "#14213d";
  const STROKE_FRACTION = 1 / 14;   // the stroke width, as a share of the canvas side (a pen digit)
  const MAX_SIDE = 840;             // backing pixels at most (a sharp drawing, a small PNG)
  const PHOTO_MAX_BYTES = 8e6;      // larger photos are scaled down before they are sent
  const PHOTO_MAX_PIXELS = 12e6;
  const PHOTO_SIDE = 3000;
  const LOW_CONFIDENCE = 0.8;       // a digit read with less is shown in amber: worth checking by eye

  const $ = (id) => document.getElementById(id);
  const canvas = $("pad");
  const context = canvas.getContext("2d");
  const hint = $("pad-hint");
  const prediction = $("prediction");
  const digitOut = $("digit");
  const confidenceOut = $("confidence");
  const predictionError = $("prediction-error");
  const bars = $("bars");
  const labels = $("labels");
  const feedbackStatus = $("feedback-status");
  const modelVersion = $("model-version");

  // ---- answers from the service ---------------------------------------------------------------------

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  // {"error": "..."} from our routes; from BentoML's, {"error": "...", "detail": [{"loc": [...], "msg": "..."}]}
  // (validation) or [{"error": "..."}] (a BadInput raised by the service).
  function errorMessage(body, response) {
    if (Array.isArray(body)) body = { detail: body };
    if (body && Array.isArray(body.detail) && body.detail.length) {
      const messages = body.detail
        .map((item) => {
          if (!item || typeof item !== "object") return String(item);
          const text = String(item.msg || item.error || "").replace(/^Value error, /, "");
          const where = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
          return where && text ? `${where}: ${text}` : text;
        })
        .filter(Boolean);
      if (messages.length) return messages.join("; ");
    }
    if (body && typeof body.error === "string" && body.error) return body.error;
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
    if (response.status === 503) return "the service is busy: try again in a moment";
    return `the service answered ${response.status} ${response.statusText}`.trim();
  }

  function percent(value, digits = 1) {
    return `${(100 * value).toFixed(digits)}%`;
  }

  // ---- the drawing ----------------------------------------------------------------------------------

  let strokes = [];          // [[{x, y}, ...], ...] in the unit square
  let activePointer = null;  // the pointer drawing now
  let version = 0;           // bumped by every change of the drawing
  let shownVersion = 0;      // the drawing the prediction on screen is about
  let generation = 0;        // bumped by Clear: answers sent before it are dropped
  let inFlight = false;
  let lastSent = 0;
  let redrawQueued = false;

  function lineWidth() {
    return Math.max(2, canvas.width * STROKE_FRACTION);
  }

  function redraw() {
    redrawQueued = false;
    const side = canvas.width;
    context.clearRect(0, 0, side, side);
    context.strokeStyle = INK;
    context.fillStyle = INK;
    context.lineWidth = lineWidth();
    context.lineCap = "round";
    context.lineJoin = "round";
    for (const stroke of strokes) {
      const points = stroke.map((p) => ({ x: p.x * side, y: p.y * side }));
      if (points.length === 1) {  // a dot
        context.beginPath();
        context.arc(points[0].x, points[0].y, lineWidth() / 2, 0, 2 * Math.PI);
        context.fill();
        continue;
      }
      // Smooth: a quadratic curve through the midpoints, each sample point its control point.
      context.beginPath();
      context.moveTo(points[0].x, points[0].y);
      for (let i = 1; i < points.length - 1; i++) {
        const mid = { x: (points[i].x + points[i + 1].x) / 2, y: (points[i].y + points[i + 1].y) / 2 };
        context.quadraticCurveTo(points[i].x, points[i].y, mid.x, mid.y);
      }
      const last = points[points.length - 1];
      context.lineTo(last.x, last.y);
      context.stroke();
    }
  }

  function queueRedraw() {
    if (!redrawQueued) {
      redrawQueued = true;
      requestAnimationFrame(redraw);
    }
  }

  function fitCanvas() {
    const side = Math.round(Math.min(MAX_SIDE, Math.max(1, canvas.clientWidth) * (window.devicePixelRatio || 1)));
    if (side !== canvas.width) {
      canvas.width = side;   // resizing clears the canvas: draw the strokes again
      canvas.height = side;
      redraw();
    }
  }

  function pointOf(event) {
    const box = canvas.getBoundingClientRect();  // the content box lies inside the border
    const left = box.left + canvas.clientLeft;
    const top = box.top + canvas.clientTop;
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((event.clientX - left) / canvas.clientWidth), y: clamp((event.clientY - top) / canvas.clientHeight) };
  }

  function changed() {
    version += 1;
    hint.hidden = strokes.length > 0;
    setLabelsEnabled(strokes.length > 0);
    updateBusy();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    strokes.push([pointOf(event)]);
    feedbackStatus.textContent = "";
    feedbackStatus.className = "message";
    changed();
    queueRedraw();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    const stroke = strokes[strokes.length - 1];
    const samples = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const sample of samples.length ? samples : [event]) {
      const point = pointOf(sample);
      const last = stroke[stroke.length - 1];
      if (Math.hypot(point.x - last.x, point.y - last.y) > 0.002) stroke.push(point);
    }
    changed();
    queueRedraw();
    if (performance.now() - lastSent >= THROTTLE_MS) predict();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    redraw();  // now, so that the PNG sent holds the whole stroke
    updateBusy();
    predict();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  function canvasPng() {
    if (redrawQueued) redraw();
    return new Promise((resolve, reject) =>
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the canvas gave no PNG"))), "image/png"),
    );
  }

  $("clear").addEventListener("click", () => {
    strokes = [];
    activePointer = null;
    generation += 1;
    changed();
    shownVersion = version;
    redraw();
    showNothing();
    feedbackStatus.textContent = "";
    feedbackStatus.className = "message";
    updateBusy();
  });

  // ---- the prediction -------------------------------------------------------------------------------

  function updateBusy() {
    const waiting = strokes.length > 0 && (activePointer !== null || inFlight || shownVersion !== version);
    prediction.setAttribute("aria-busy", String(waiting));
  }

  async function predict() {
    if (inFlight || strokes.length === 0 || shownVersion === version) return;
    inFlight = true;
    lastSent = performance.now();
    const sent = version;
    const sentGeneration = generation;
    updateBusy();
    try {
      const png = await canvasPng();
      const response = await fetch("/digit", { method: "POST", headers: { "Content-Type": "image/png" }, body: png });
      const body = await readJson(response);
      if (sentGeneration === generation) {
        if (response.ok && body && Array.isArray(body.probabilities)) showPrediction(body);
        else showError(errorMessage(body, response));
        shownVersion = sent;
      }
    } catch (error) {
      if (sentGeneration === generation) {
        showError(`the service could not be reached (${error.message})`);
        shownVersion = sent;
      }
    } finally {
      inFlight = false;
      updateBusy();
      // The drawing changed while this one was on its way: send it too (throttled while drawing).
      if (activePointer === null) predict();
    }
  }

  const barRows = [];
  for (let digit = 0; digit < 10; digit++) {
    const row = document.createElement("li");
    row.className = "bar";
    row.dataset.digit = String(digit);
    row.innerHTML =
      `<span class="bar-label"><span aria-hidden="true">${digit}</span><span class="visually-hidden"></span></span>` +
      `<span class="bar-track" aria-hidden="true"><span class="bar-fill"></span></span>` +
      `<span class="bar-value" aria-hidden="true"></span>`;
    bars.append(row);
    barRows.push({
      row,
      text: row.querySelector(".visually-hidden"),
      fill: row.querySelector(".bar-fill"),
      value: row.querySelector(".bar-value"),
    });
  }

  function showBars(probabilities) {
    const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    barRows.forEach((bar, digit) => {
      const p = probabilities ? probabilities[digit] : 0;
      bar.fill.style.width = percent(p, 2);
      bar.value.textContent = probabilities ? percent(p).replace(/^0\.0%$/, "0%") : "";
      bar.text.textContent = probabilities ? `Digit ${digit}: ${percent(p)}` : `Digit ${digit}: no answer yet`;
      bar.row.classList.toggle("is-top", digit === top);
      bar.row.dataset.probability = probabilities ? String(p) : "";
    });
  }

  function showPrediction(body) {
    digitOut.textContent = String(body.digit);
    confidenceOut.textContent = `Confidence ${percent(body.confidence)}`;
    predictionError.hidden = true;
    predictionError.textContent = "";
    showBars(body.probabilities);
    if (body.model_version) modelVersion.textContent = body.model_version;
  }

  function showError(message) {
    digitOut.textContent = "";
    confidenceOut.textContent = "";
    predictionError.textContent = `No prediction: ${message}.`.replace(/\.\.$/, ".");
    predictionError.hidden = false;
    showBars(null);
  }

  function showNothing() {
    digitOut.textContent = "";
    confidenceOut.textContent = "Draw a digit to see what the model reads.";
    predictionError.hidden = true;
    predictionError.textContent = "";
    showBars(null);
  }

  // ---- Wrong? Pick the right digit --------------------------------------------------------------------

  const labelButtons = [];
  for (let digit = 0; digit < 10; digit++) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "label-button";
    button.textContent = String(digit);
    button.setAttribute("aria-label", `Save this drawing as a ${digit}`);
    button.addEventListener("click", () => sendFeedback(digit));
    labels.append(button);
    labelButtons.push(button);
  }
  let feedbackInFlight = false;
  // Where the service asks contributors for a token (serve.feedback), the page asks for it once and keeps
  // it for this browser session only.
  const TOKEN_KEY = "digitops-feedback-token";

  function postFeedback(form) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    return fetch("/feedback", { method: "POST", body: form, headers });
  }

  function setLabelsEnabled(enabled) {
    for (const button of labelButtons) button.disabled = !enabled || feedbackInFlight;
  }

  async function sendFeedback(digit) {
    if (strokes.length === 0 || feedbackInFlight) return;
    feedbackInFlight = true;
    setLabelsEnabled(false);
    feedbackStatus.className = "message";
    feedbackStatus.textContent = `Saving as a ${digit}…`;
    try {
      const form = new FormData();
      form.append("images", await canvasPng(), "drawing.png");
      form.append("labels", JSON.stringify([digit]));
      let response = await postFeedback(form);
      if (response.status === 401) {
        const token = window.prompt("This service takes drawings from contributors with a token. Your token:");
        if (token && token.trim()) {
          sessionStorage.setItem(TOKEN_KEY, token.trim());
          response = await postFeedback(form);
        }
        if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      }
      const body = await readJson(response);
      const stored = body && Array.isArray(body.stored) ? body.stored[0] : null;
      if (response.ok && stored) {
        feedbackStatus.className = "message good";
        feedbackStatus.textContent = stored.duplicate
          ? `Thanks: already saved as a ${stored.label}.`
          : `Thanks: saved as a ${stored.label}.`;
      } else {
        feedbackStatus.className = "message error";
        feedbackStatus.textContent = `Not saved: ${errorMessage(body, response)}.`.replace(/\.\.$/, ".");
      }
    } catch (error) {
      feedbackStatus.className = "message error";
      feedbackStatus.textContent = `Not saved: the service could not be reached (${error.message}).`;
    } finally {
      feedbackInFlight = false;
      setLabelsEnabled(strokes.length > 0);
    }
  }

  // ---- Read a photo -----------------------------------------------------------------------------------

  const photoInput = $("photo");
  const photoResult = $("photo-result");
  const photoText = $("photo-text");
  const photoError = $("photo-error");
  const photoFigure = $("photo-figure");
  const photoFrame = $("photo-frame");
  const photoImage = $("photo-image");
  let photoUrl = null;
  let photoRequest = 0;

  // A very large photo (a phone's full resolution) is scaled down, upright, before it is sent; the boxes
  // are then in the scaled photo's pixels, and that is the photo shown.
  async function photoToSend(file) {
    if (typeof createImageBitmap !== "function") return file;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      return file;  // not decodable here: let the service say what is wrong with it
    }
    const pixels = bitmap.width * bitmap.height;
    if (file.size <= PHOTO_MAX_BYTES && pixels <= PHOTO_MAX_PIXELS) {
      bitmap.close();
      return file;
    }
    const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    const scaled = document.createElement("canvas");
    scaled.width = Math.round(bitmap.width * scale);
    scaled.height = Math.round(bitmap.height * scale);
    scaled.getContext("2d").drawImage(bitmap, 0, 0, scaled.width, scaled.height);
    bitmap.close();
    const blob = await new Promise((resolve) => scaled.toBlob(resolve, "image/jpeg", 0.9));
    return blob || file;
  }

  function clearBoxes() {
    for (const box of photoFrame.querySelectorAll(".box")) box.remove();
  }

  photoInput.addEventListener("change", async () => {
    const file = photoInput.files && photoInput.files[0];
    if (!file) return;
    const request = ++photoRequest;
    photoResult.setAttribute("aria-busy", "true");
    photoError.hidden = true;
    photoText.textContent = "Reading the photo…";
    clearBoxes();
    try {
      const upload = await photoToSend(file);
      if (photoUrl) URL.revokeObjectURL(photoUrl);
      photoUrl = URL.createObjectURL(upload);
      photoImage.src = photoUrl;
      photoFigure.hidden = false;
      const form = new FormData();
      form.append("image", upload, upload === file ? file.name : "photo.jpg");
      const response = await fetch("/read", { method: "POST", body: form });
      const body = await readJson(response);
      if (request !== photoRequest) return;
      if (!response.ok || !body || !Array.isArray(body.digits)) {
        photoText.textContent = "";
        photoError.textContent = `Could not read the photo: ${errorMessage(body, response)}.`.replace(/\.\.$/, ".");
        photoError.hidden = false;
        return;
      }
      await photoImage.decode().catch(() => undefined);
      showBoxes(body.digits);
      if (body.digits.length === 0) {
        photoText.textContent = "No digits found in this photo.";
      } else {
        const count = body.digits.length;
        const low = body.digits.filter((item) => item.confidence < LOW_CONFIDENCE).length;
        photoText.textContent = "Read: ";
        photoText.append(readText(body.text, body.digits));
        let note = ` (${count} digit${count === 1 ? "" : "s"}`;
        if (typeof body.confidence === "number") note += `, confidence ${percent(body.confidence, 0)}`;
        if (low > 0) note += `; check the ${low === 1 ? "amber digit" : `${low} amber digits`}`;
        const marks = Array.isArray(body.separators) ? body.separators.map((item) => item.mark) : [];
        if (marks.length > 0) note += `; separators left out: ${marks.join(" ")}`;
        photoText.append(`${note})`);
      }
    } catch (error) {
      if (request !== photoRequest) return;
      photoText.textContent = "";
      photoError.textContent = `Could not read the photo: the service could not be reached (${error.message}).`;
      photoError.hidden = false;
    } finally {
      if (request === photoRequest) photoResult.setAttribute("aria-busy", "false");
      photoInput.value = "";  // choosing the same file again reads it again
    }
  });

  // The text read, one span per digit (the digits come in the text's order, newlines between lines), a
  // digit read with low confidence marked so that the reader checks it.
  function readText(text, digits) {
    const read = document.createElement("span");
    read.className = "read";
    let index = 0;
    for (const character of text) {
      if (character === "\n" || index >= digits.length) {
        read.append(character);
        continue;
      }
      const item = digits[index++];
      const span = document.createElement("span");
      span.textContent = character;
      if (item.confidence < LOW_CONFIDENCE) {
        span.className = "low";
        span.title = `Read as ${item.digit} with ${percent(item.confidence, 0)} confidence: please check`;
      }
      read.append(span);
    }
    return read;
  }

  // Boxes in percentages of the photo's own size: they follow the image when it is shown smaller.
  function showBoxes(digits) {
    clearBoxes();
    const width = photoImage.naturalWidth;
    const height = photoImage.naturalHeight;
    if (!width || !height) return;
    for (const item of digits) {
      const [x, y, w, h] = item.box;
      const box = document.createElement("div");
      box.className = item.confidence < LOW_CONFIDENCE ? "box low" : "box";
      box.style.left = `${(100 * x) / width}%`;
      box.style.top = `${(100 * y) / height}%`;
      box.style.width = `${(100 * w) / width}%`;
      box.style.height = `${(100 * h) / height}%`;
      box.title = `${item.digit} (${percent(item.confidence, 0)})`
        + (item.confidence < LOW_CONFIDENCE ? ": low confidence, please check" : "");
      const label = document.createElement("span");
      label.className = "box-label";
      label.textContent = String(item.digit);
      label.setAttribute("aria-hidden", "true");
      box.append(label);
      photoFrame.append(box);
    }
  }

  // ---- start ------------------------------------------------------------------------------------------

  showNothing();
  setLabelsEnabled(false);
  fitCanvas();
  if (typeof ResizeObserver === "function") new ResizeObserver(fitCanvas).observe(canvas);
  else window.addEventListener("resize", fitCanvas);
})();
