// Matte's page: images in (choose, drop, paste), one request at a time to the
// Stability endpoint, each cut-out shown beside its original.

import { ApiError, loadConfig, removeBackground, rgbOf } from "./api.js";
import { maskFromAlpha } from "./mask.js";
import { distinctNames, zipBlob } from "./zip.js";

const KEY_STORAGE = "matte.apiKey";
const DEFAULT_ENDPOINT = "/v2beta/stable-image/edit/remove-background";
const ZIP_NAME = "matte-cutouts.zip";
const EXTENSIONS = { "image/png": "png", "image/webp": "webp" };

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  items: [],
  queue: [],
  running: false,
  // With no keys configured the server takes any key: each visit sends its own
  // random one, so visitors do not share one rate-limit budget.
  visitKey: randomKey(),
  memoryKey: "",
};

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "page-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function announce(message) {
  $("status").textContent = message;
}

// --- The API key: in localStorage (in memory where storage is off), never in a URL.

function storedKey() {
  try {
    return window.localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return state.memoryKey;
  }
}

function storeKey(value) {
  state.memoryKey = value;
  try {
    if (value) window.localStorage.setItem(KEY_STORAGE, value);
    else window.localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage is disabled: the key lasts as long as the page.
  }
}

function currentKey() {
  return state.config.needs_key ? storedKey() : state.visitKey;
}

function showKeySection() {
  $("key-section").hidden = false;
  const saved = Boolean(storedKey());
  $("key-state").textContent = saved ? "A key is saved in this browser." : "No key is saved yet.";
  $("forget-key").disabled = !saved;
}

function askForKey(message) {
  showKeySection();
  announce(message);
  $("key").focus();
}

function saveKey(event) {
  event.preventDefault();
  const value = $("key").value.trim();
  if (!value) return;
  storeKey(value);
  $("key").value = "";
  showKeySection();
  // What failed for want of a key runs again with it.
  for (const item of state.items) {
    if (item.state === "failed" && item.status === 401) enqueue(item);
  }
  announce("The key is saved in this browser.");
  pump();
}

function forgetKey() {
  storeKey("");
  showKeySection();
  announce("The key is forgotten.");
}

// --- Options, as the form fields the endpoint reads.

function currentOptions() {
  return {
    format: document.querySelector('input[name="format"]:checked').value,
    alphaMatting: $("alpha-matting").checked,
    onlyMask: $("only-mask").checked,
    bgcolor: $("use-bgcolor").checked ? rgbOf($("bgcolor").value) : null,
  };
}

// --- Items: one per image, each a <li> cloned from the template.

function addFiles(files) {
  const list = Array.from(files);
  for (const file of list) {
    const item = createItem(file);
    state.items.push(item);
    enqueue(item);
  }
  if (list.length) {
    updateToolbar();
    pump();
  }
}

function createItem(file) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  const part = (selector) => node.querySelector(selector);
  const item = {
    file,
    node,
    name: file.name || "pasted image",
    originalUrl: URL.createObjectURL(file),
    state: "waiting",
    status: 0,
    options: null,
    controller: null,
    result: null,
    resultUrl: null,
    mask: null,
    maskUrl: null,
    showingMask: false,
    parts: {
      name: part(".name"),
      original: part(".original"),
      resultPane: part(".result-pane"),
      cutout: part(".cutout"),
      overlay: part(".overlay"),
      caption: part(".caption"),
      working: part(".working"),
      workingText: part(".working-text"),
      error: part(".error"),
      controls: part(".controls"),
      compare: part(".compare"),
      maskToggle: part(".mask-toggle"),
      download: part(".download"),
      retry: part(".retry"),
      remove: part(".remove"),
    },
  };
  const p = item.parts;
  p.name.textContent = item.name;
  p.original.alt = `Original: ${item.name}`;
  // A file the browser cannot show (the server will say what is wrong with it).
  p.original.addEventListener("error", () => {
    p.original.hidden = true;
  });
  p.original.src = item.originalUrl;
  p.overlay.src = item.originalUrl;
  p.compare.addEventListener("input", () => reveal(item));
  p.maskToggle.addEventListener("click", () => toggleMask(item));
  p.retry.setAttribute("aria-label", `Cut out ${item.name} again`);
  p.retry.addEventListener("click", () => {
    enqueue(item);
    pump();
  });
  p.remove.setAttribute("aria-label", `Remove ${item.name}`);
  p.remove.addEventListener("click", () => removeItem(item));
  $("results").append(node);
  return item;
}

function enqueue(item) {
  const p = item.parts;
  item.options = currentOptions();
  item.state = "waiting";
  item.node.setAttribute("aria-busy", "true");
  p.working.hidden = false;
  p.workingText.textContent = "Waiting";
  p.error.hidden = true;
  p.retry.disabled = true;
  if (!state.queue.includes(item)) state.queue.push(item);
}

// One request at a time: the server has its own line, and a page of twenty
// photos should not take twenty places in it.
async function pump() {
  if (state.running || state.config === null) return;
  state.running = true;
  try {
    while (state.queue.length > 0) {
      const key = currentKey();
      if (!key) {
        askForKey("Enter the API key to start.");
        return;
      }
      await run(state.queue.shift(), key);
    }
  } finally {
    state.running = false;
  }
}

async function run(item, key) {
  const p = item.parts;
  item.state = "working";
  item.controller = new AbortController();
  const started = performance.now();
  const tick = () => {
    p.workingText.textContent = `Cutting out… ${Math.floor((performance.now() - started) / 1000)} s`;
  };
  tick();
  const timer = setInterval(tick, 1000);
  announce(`Cutting out ${item.name}…`);
  try {
    const blob = await removeBackground(state.config.endpoint, item.file, item.options, key, item.controller.signal);
    if (item.state === "removed") return;
    await showResult(item, blob);
    announce(`${item.name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (error) {
    if (item.state !== "removed") showError(item, error);
  } finally {
    clearInterval(timer);
    item.controller = null;
  }
}

function finish(item, outcome) {
  item.state = outcome;
  item.node.setAttribute("aria-busy", "false");
  item.parts.working.hidden = true;
  item.parts.retry.disabled = false;
}

async function showResult(item, blob) {
  const p = item.parts;
  forgetResult(item);
  item.status = 200;
  item.result = blob;
  item.resultUrl = URL.createObjectURL(blob);
  item.isMask = item.options.onlyMask;
  item.showingMask = false;
  p.maskToggle.hidden = item.isMask; // the result already is the mask
  p.compare.value = "0";
  reveal(item);
  p.controls.hidden = false;
  p.resultPane.hidden = false;
  // Busy until the result is on screen, not just downloaded.
  await render(item);
  finish(item, "done");
  updateToolbar();
}

function showError(item, error) {
  const p = item.parts;
  const message = error instanceof ApiError ? error.message : `the request failed: ${error.message}`;
  item.status = error instanceof ApiError ? error.status : 0;
  p.error.textContent = message;
  p.error.hidden = false;
  finish(item, "failed");
  if (item.status === 401) {
    // Also when the page was told no key is needed: the server knows better.
    state.config.needs_key = true;
    askForKey(`${item.name}: ${message}. Enter the API key; the image is sent again once it is saved.`);
    return;
  }
  const retry = error instanceof ApiError && error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
  announce(`${item.name}: ${message}.${retry}`);
}

function baseName(item) {
  const dot = item.name.lastIndexOf(".");
  return dot > 0 ? item.name.slice(0, dot) : item.name;
}

function resultName(item) {
  const extension = EXTENSIONS[item.result.type] || item.options.format;
  return `${baseName(item)}${item.isMask ? "-mask" : ""}.${extension}`;
}

function shownName(item) {
  if (!item.showingMask) return resultName(item);
  return `${baseName(item)}-mask.${EXTENSIONS[item.mask.type] || "png"}`;
}

async function render(item) {
  const p = item.parts;
  const kind = item.showingMask || item.isMask ? "Mask" : "Cut-out";
  const url = item.showingMask ? item.maskUrl : item.resultUrl;
  p.cutout.src = url;
  p.cutout.alt = `${kind} of ${item.name}`;
  p.caption.textContent = kind;
  p.maskToggle.setAttribute("aria-pressed", String(item.showingMask));
  p.download.href = url;
  p.download.download = shownName(item);
  p.download.textContent = `Download ${shownName(item)}`;
  try {
    await p.cutout.decode();
  } catch {
    return; // replaced by a newer view before it was shown: that one tells its size
  }
  if (p.cutout.src === url) {
    p.caption.textContent = `${kind}, ${p.cutout.naturalWidth} × ${p.cutout.naturalHeight}`;
  }
}

// The compare slider lays the original over the result, from the left, up to its value.
function reveal(item) {
  const p = item.parts;
  const value = Number(p.compare.value);
  p.overlay.hidden = value === 0;
  p.overlay.style.clipPath = `inset(0 ${100 - value}% 0 0)`;
  p.compare.setAttribute("aria-valuetext", `${value}% original`);
}

async function toggleMask(item) {
  const p = item.parts;
  if (!item.showingMask && item.mask === null) {
    p.maskToggle.disabled = true;
    try {
      // Over a colour the cut-out has no alpha left to read: ask the server for the
      // mask, as a PNG (lossless and single-channel, whatever the cut-out's format).
      item.mask = item.options.bgcolor
        ? await removeBackground(
            state.config.endpoint,
            item.file,
            { ...item.options, format: "png", onlyMask: true, bgcolor: null },
            currentKey(),
          )
        : await maskFromAlpha(item.result);
      item.maskUrl = URL.createObjectURL(item.mask);
    } catch (error) {
      announce(`${item.name}: the mask could not be made: ${error.message}`);
      return;
    } finally {
      p.maskToggle.disabled = false;
    }
  }
  item.showingMask = !item.showingMask;
  await render(item);
}

function forgetResult(item) {
  for (const url of [item.resultUrl, item.maskUrl]) if (url) URL.revokeObjectURL(url);
  item.result = null;
  item.resultUrl = null;
  item.mask = null;
  item.maskUrl = null;
}

function removeItem(item) {
  item.state = "removed";
  if (item.controller) item.controller.abort();
  state.queue = state.queue.filter((queued) => queued !== item);
  state.items = state.items.filter((kept) => kept !== item);
  forgetResult(item);
  URL.revokeObjectURL(item.originalUrl);
  item.node.remove();
  updateToolbar();
  announce(`${item.name} removed.`);
  $("images-heading").focus();
}

function clearAll() {
  for (const item of [...state.items]) removeItem(item);
  announce("All images removed.");
}

function updateToolbar() {
  $("download-all").disabled = !state.items.some((item) => item.result !== null);
  $("clear").disabled = state.items.length === 0;
}

async function downloadAll() {
  const done = state.items.filter((item) => item.result !== null);
  if (done.length === 0) return;
  const names = distinctNames(done.map(resultName));
  const zip = await zipBlob(done.map((item, n) => ({ name: names[n], blob: item.result })));
  const url = URL.createObjectURL(zip);
  const link = document.createElement("a");
  link.href = url;
  link.download = ZIP_NAME;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // Long enough for the download to start; the blob goes after.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  announce(`${done.length} image${done.length === 1 ? "" : "s"} in ${ZIP_NAME}.`);
}

// --- Getting images in: the file input (its label is the drop zone), drop, paste.

function hasFiles(event) {
  return Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types).includes("Files");
}

function wireInputs() {
  const drop = $("drop");
  let depth = 0;
  $("file").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = ""; // the same file may be chosen again
  });
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    drop.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) drop.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  // Anywhere on the page, so a near miss does not open the file in the tab.
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    drop.classList.remove("dragging");
    addFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
    if (files.length === 0) return; // text pasted into the key field goes on as usual
    event.preventDefault();
    addFiles(files);
  });
  $("bgcolor").addEventListener("input", () => {
    $("use-bgcolor").checked = true;
  });
  $("key-form").addEventListener("submit", saveKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("download-all").addEventListener("click", downloadAll);
  $("clear").addEventListener("click", clearAll);
}

async function start() {
  wireInputs();
  try {
    state.config = await loadConfig();
  } catch (error) {
    // Try without a key; a 401 brings the prompt up all the same.
    state.config = { needs_key: false, endpoint: DEFAULT_ENDPOINT };
    announce(`The server's page settings could not be read (${error.message}).`);
  }
  if (state.config.needs_key) showKeySection();
  document.documentElement.dataset.ready = "true";
  pump();
}

start();
