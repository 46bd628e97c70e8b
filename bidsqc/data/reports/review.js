// The review loop of a report: rate images with the keyboard, keep the ratings in the browser,
// export them as a TSV that bidsqc-finetune reads. Nothing is sent anywhere.
//
// The page marks each image it rates with data-filename and data-outputs (the model outputs
// shown), and holds the keys in #review-keys. Ratings live in localStorage under
// "bidsqc:<dataset>:<filename>", so every report of one dataset shares them.
"use strict";

const bidsqcReview = (() => {
  const page = document.querySelector("[data-review-dataset]");
  const keys = JSON.parse(document.getElementById("review-keys").textContent);
  const prefix = `bidsqc:${page.dataset.reviewDataset}:`;
  const raterKey = "bidsqc:rater";
  const raterInput = document.getElementById("rater");
  let current = null;

  // Storage: one JSON record per rated image.
  function read(filename) {
    try {
      return JSON.parse(localStorage.getItem(prefix + filename)) || null;
    } catch {
      return null;
    }
  }

  function write(item, change) {
    const filename = item.dataset.filename;
    const record = { rating: "", artefacts: [], comment: "", ...read(filename), ...change };
    record.rater = raterInput.value.trim();
    record.time = new Date().toISOString();
    record.outputs = JSON.parse(item.dataset.outputs || "{}");
    if (!record.rating && !record.artefacts.length && !record.comment) {
      localStorage.removeItem(prefix + filename);
    } else {
      localStorage.setItem(prefix + filename, JSON.stringify(record));
    }
    show(item);
    showCount();
  }

  function records() {
    const found = [];
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key.startsWith(prefix)) found.push([key.slice(prefix.length), read(key.slice(prefix.length))]);
    }
    return found.filter(([, record]) => record).sort(([a], [b]) => a.localeCompare(b));
  }

  // Export: one row per rated image, then the model outputs the rater saw.
  const cell = (value) => String(value ?? "").replace(/[\t\r\n]+/g, " ");

  function exportText() {
    const rated = records();
    const outputs = [];
    for (const [, record] of rated) {
      for (const name of Object.keys(record.outputs || {})) {
        if (!outputs.includes(name)) outputs.push(name);
      }
    }
    const lines = [[...keys.columns, ...outputs].join("\t")];
    for (const [filename, record] of rated) {
      const fields = { ...record, filename, artefacts: record.artefacts.join(",") };
      lines.push(
        [...keys.columns.map((c) => cell(fields[c])), ...outputs.map((c) => cell(record.outputs[c]))].join("\t"),
      );
    }
    return lines.join("\n") + "\n";
  }

  function download() {
    const url = URL.createObjectURL(new Blob([exportText()], { type: "text/tab-separated-values" }));
    const link = Object.assign(document.createElement("a"), { href: url, download: "bidsqc_ratings.tsv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // The widget: a subject report has one per image, the group report one for the current row.
  const widgetFor = (item) => item.querySelector("[data-rating-widget]") || document.getElementById("rating-panel");

  function show(item) {
    const record = read(item.dataset.filename) || { rating: "", artefacts: [], comment: "" };
    const widget = widgetFor(item);
    if (widget && (widget.id !== "rating-panel" || item === current)) {
      for (const button of widget.querySelectorAll("[data-rating]")) {
        button.setAttribute("aria-pressed", String(button.dataset.rating === record.rating));
      }
      for (const button of widget.querySelectorAll("[data-tag]")) {
        button.setAttribute("aria-pressed", String(record.artefacts.includes(button.dataset.tag)));
      }
      const comment = widget.querySelector("[data-comment]");
      if (document.activeElement !== comment) comment.value = record.comment;
      const name = widget.querySelector("[data-current-name]");
      if (name) name.textContent = item.dataset.name || item.dataset.filename;
    }
    const elsewhere = document.querySelectorAll(`[data-rating-for="${CSS.escape(item.dataset.filename)}"]`);
    for (const summary of [...item.querySelectorAll("[data-rating-summary]"), ...elsewhere]) {
      summary.textContent = [record.rating, record.artefacts.join(", ")].filter(Boolean).join(": ");
      summary.dataset.rating = record.rating;
    }
  }

  // How many images of the dataset are rated: after each change, not for each row shown.
  function showCount() {
    document.getElementById("rated-count").textContent = String(records().length);
  }

  function rate(item, rating) {
    write(item, { rating });
  }

  function toggleTag(item, tag) {
    const artefacts = (read(item.dataset.filename) || { artefacts: [] }).artefacts;
    write(item, { artefacts: artefacts.includes(tag) ? artefacts.filter((t) => t !== tag) : [...artefacts, tag] });
  }

  // Navigation: the group report replaces items() and move() with its queue's.
  const navigator = {
    items: () => Array.from(document.querySelectorAll("[data-filename]")),
    move(delta) {
      const items = this.items();
      const index = items.indexOf(current);
      const next = items[Math.min(Math.max(index + delta, 0), items.length - 1)];
      if (next) select(next, true);
    },
  };

  function select(item, scroll = false) {
    if (current) current.classList.remove("current");
    current = item;
    item.classList.add("current");
    if (scroll) item.scrollIntoView({ block: item.tagName === "TR" ? "nearest" : "start" });
    show(item);
  }

  function bindWidget(widget) {
    const target = () => (widget.id === "rating-panel" ? current : widget.closest("[data-filename]"));
    widget.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      const item = target();
      if (!button || !item) return;
      select(item);
      const rating = button.dataset.rating;
      if (rating) rate(item, read(item.dataset.filename)?.rating === rating ? "" : rating);
      if (button.dataset.tag) toggleTag(item, button.dataset.tag);
    });
    widget.querySelector("[data-comment]").addEventListener("input", (event) => {
      const item = target();
      if (item) write(item, { comment: event.target.value });
    });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const key = event.key;
    if (!current) {
      navigator.move(0); // the first key of a page selects its first image
      if (key === "j" || key === "k") return event.preventDefault();
    }
    const item = current;
    const viewer = item && item.querySelector(".viewer[data-ready]");
    if (item && key in keys.ratings) rate(item, keys.ratings[key]);
    else if (item && key === "0") write(item, { rating: "", artefacts: [], comment: "" });
    else if (item && key in keys.tags) toggleTag(item, keys.tags[key]);
    else if (key === "j") navigator.move(1);
    else if (key === "k") navigator.move(-1);
    else if (viewer && (key === "]" || key === "[")) viewer.step(key === "]" ? 1 : -1);
    else if (viewer && key === "v") viewer.nextView();
    else if (viewer && key === "a") viewer.toggleOverlay();
    else if (item && key === "c") widgetFor(item).querySelector("[data-comment]").focus();
    else if (key === "e") download();
    else return;
    event.preventDefault();
  }

  raterInput.value = localStorage.getItem(raterKey) || "";
  raterInput.addEventListener("input", () => localStorage.setItem(raterKey, raterInput.value.trim()));
  document.addEventListener("keydown", onKey);
  for (const button of document.querySelectorAll("[data-export]")) button.addEventListener("click", download);
  for (const widget of document.querySelectorAll("[data-rating-widget]")) bindWidget(widget);
  document.addEventListener("click", (event) => {
    const item = event.target.closest("[data-filename]");
    if (item && item !== current) select(item);
  });
  for (const item of navigator.items()) show(item);
  showCount();

  return { navigator, read, select, show, exportText, records };
})();

// The slice viewer of a registered volume (8-bit, gzip, base64; see bidsqc.reports.volumes),
// with an artefact map as a switchable overlay. A viewer decodes its volume when it first
// scrolls into view.
(() => {
  const VIEWS = ["axial", "coronal", "sagittal"];
  const HEAD = 12; // grey level above which a voxel is in the head, where the map is drawn

  async function inflate(volume) {
    const bytes = Uint8Array.from(atob(volume.data), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return { shape: volume.shape, voxels: new Uint8Array(await new Response(stream).arrayBuffer()) };
  }

  // Slice `index` of `view` as rows top to bottom, columns left to right (RAS voxel axes):
  // axial anterior up, coronal and sagittal superior up, left on the left, anterior right.
  function slice({ shape: [nx, ny, nz], voxels }, view, index) {
    const at = (x, y, z) => voxels[(x * ny + y) * nz + z];
    const [width, height, value] = {
      axial: [nx, ny, (c, r) => at(c, ny - 1 - r, index)],
      coronal: [nx, nz, (c, r) => at(c, index, nz - 1 - r)],
      sagittal: [ny, nz, (c, r) => at(index, c, nz - 1 - r)],
    }[view];
    const out = new Uint8Array(width * height);
    for (let r = 0; r < height; r++) for (let c = 0; c < width; c++) out[r * width + c] = value(c, r);
    return { width, height, out };
  }

  function setUp(viewer) {
    const data = JSON.parse(document.getElementById(viewer.dataset.viewer).textContent);
    const canvas = viewer.querySelector("canvas");
    const range = viewer.querySelector("[data-slice]");
    const viewSelect = viewer.querySelector("[data-view]");
    const overlayOn = viewer.querySelector("[data-overlay-on]");
    const overlaySelect = viewer.querySelector("[data-overlay]");
    const label = viewer.querySelector("[data-slice-label]");
    let image = null;
    const overlays = [];
    const axis = () => VIEWS.indexOf(viewSelect.value);
    const size = () => image.shape[2 - axis()];

    function draw() {
      if (!image) return;
      const index = Math.min(Number(range.value), size() - 1);
      const grey = slice(image, viewSelect.value, index);
      const layer = overlayOn && overlayOn.checked && overlays[Number(overlaySelect.value)];
      const heat = layer ? slice(layer, viewSelect.value, index).out : null;
      canvas.width = grey.width;
      canvas.height = grey.height;
      const pixels = new ImageData(grey.width, grey.height);
      for (let i = 0; i < grey.out.length; i++) {
        const g = grey.out[i];
        const alpha = heat && g > HEAD ? (0.65 * heat[i]) / 255 : 0;
        pixels.data.set([g + alpha * (255 - g), g * (1 - alpha) + alpha * 70, g * (1 - alpha), 255], 4 * i);
      }
      canvas.getContext("2d").putImageData(pixels, 0, 0);
      label.textContent = `${viewSelect.value} ${index + 1} / ${size()}`;
    }

    function resetSlice() {
      range.max = String(size() - 1);
      range.value = String(Math.floor(size() / 2));
      draw();
    }

    viewer.step = (delta) => {
      range.value = String(Number(range.value) + delta);
      draw();
    };
    viewer.nextView = () => {
      viewSelect.value = VIEWS[(axis() + 1) % VIEWS.length];
      resetSlice();
    };
    viewer.toggleOverlay = () => {
      if (!overlayOn) return;
      overlayOn.checked = !overlayOn.checked;
      draw();
    };
    range.addEventListener("input", draw);
    viewSelect.addEventListener("change", resetSlice);
    for (const control of [overlayOn, overlaySelect]) if (control) control.addEventListener("change", draw);
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      viewer.step(Math.sign(event.deltaY));
    });
    Promise.all([inflate(data.image), ...data.overlays.map(inflate)]).then(([decoded, ...maps]) => {
      image = decoded;
      overlays.push(...maps);
      resetSlice();
      viewer.dataset.ready = "";
    });
  }

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        setUp(entry.target);
      }
    }
  });
  for (const viewer of document.querySelectorAll(".viewer[data-viewer]")) observer.observe(viewer);
})();
