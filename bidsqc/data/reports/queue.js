// The group report's review queue: every image of the modality in one table that sorts,
// filters and pages, built from #queue-data; rows are rated with the keys of review.js.
// Each page shows PAGE_SIZE rows, and a thumbnail loads only when its row scrolls into view.
"use strict";

(() => {
  const PAGE_SIZE = 100;
  const data = JSON.parse(document.getElementById("queue-data").textContent);
  const table = document.getElementById("queue");
  const headers = Array.from(table.tHead.rows[0].cells);
  const filterInput = document.getElementById("queue-filter");
  const decisionSelect = document.getElementById("queue-decision");
  const ratingSelect = document.getElementById("queue-rating");
  const pageLabel = document.getElementById("queue-page");
  const decisionRank = { fail: 0, review: 1, pass: 2 };
  let order = data.rows.map((_, i) => i); // "review first": the order of #queue-data
  let visible = order;
  let page = 0;

  const rating = (row) => bidsqcReview.read(row.filename)?.rating || "";
  const sortValue = (row, key) => {
    if (key === "name") return row.name;
    if (key === "decision") return decisionRank[row.decision];
    if (key === "rating") return rating(row);
    if (key === "uncertainty" || key === "flags") return row[key];
    return row.cells[Number(key)][1];
  };

  function compare(a, b) {
    if (a === "" || b === "") return (a === "") - (b === "");
    const [x, y] = [Number(a), Number(b)];
    if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function sortBy(header) {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const other of headers) other.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const key = header.dataset.key;
    order = data.rows
      .map((_, i) => i)
      .sort((i, j) => {
        const [a, b] = [sortValue(data.rows[i], key), sortValue(data.rows[j], key)];
        if (a === "" || b === "") return compare(a, b); // blanks last either way
        return ascending ? compare(a, b) : compare(b, a);
      });
    update();
  }

  function filtered() {
    const text = filterInput.value.trim().toLowerCase();
    const decision = decisionSelect.value;
    const wanted = ratingSelect.value;
    return order.filter((i) => {
      const row = data.rows[i];
      if (text && !row.filename.toLowerCase().includes(text)) return false;
      if (decision && row.decision !== decision) return false;
      const given = rating(row);
      return !wanted || (wanted === "unrated" ? !given : given === wanted);
    });
  }

  const td = (...children) => {
    const cell = document.createElement("td");
    cell.append(...children);
    return cell;
  };

  function renderRow(row) {
    const tr = document.createElement("tr");
    const outputs = { decision: row.decision, ...Object.fromEntries(data.seen.map(([name, i]) => [name, row.cells[i][0]])) };
    Object.assign(tr.dataset, { filename: row.filename, name: row.name, outputs: JSON.stringify(outputs) });
    if (row.failed) tr.className = "failed";
    const thumbnail = document.createElement("img");
    thumbnail.loading = "lazy";
    thumbnail.alt = "";
    thumbnail.addEventListener("error", () => thumbnail.remove());
    thumbnail.src = row.thumbnail;
    const thumb = td(thumbnail);
    thumb.className = "thumb";
    const link = Object.assign(document.createElement("a"), { href: row.href, textContent: row.name });
    const name = td(link);
    if (row.failed) {
      const error = Object.assign(document.createElement("div"), { className: "error", textContent: row.error });
      name.append(error);
    }
    const badge = Object.assign(document.createElement("span"), {
      className: `badge ${{ fail: "bad", review: "warn" }[row.decision] || "ok"}`,
      textContent: row.decision,
      title: row.reasons,
    });
    const summary = document.createElement("span");
    summary.dataset.ratingSummary = "";
    const uncertainty = td(row.uncertainty.toFixed(2));
    const flags = td(row.flags ? String(row.flags) : "");
    uncertainty.className = flags.className = "num";
    tr.append(thumb, name, td(badge), td(summary), uncertainty, flags);
    for (const [text, , flagged] of row.cells) {
      const cell = td(text);
      cell.className = flagged ? "num flag" : "num";
      tr.append(cell);
    }
    return tr;
  }

  function render() {
    const first = page * PAGE_SIZE;
    const rows = visible.slice(first, first + PAGE_SIZE).map((i) => renderRow(data.rows[i]));
    table.tBodies[0].replaceChildren(...rows);
    for (const row of rows) bidsqcReview.show(row);
    pageLabel.textContent = visible.length
      ? `${first + 1}–${first + rows.length} of ${visible.length} (${data.rows.length} in all)`
      : `none of ${data.rows.length}`;
  }

  function update() {
    visible = filtered();
    page = 0;
    render();
  }

  function turn(pages) {
    const last = Math.max(0, Math.ceil(visible.length / PAGE_SIZE) - 1);
    page = Math.min(Math.max(page + pages, 0), last);
    render();
  }

  // j and k walk the filtered, sorted rows across pages.
  bidsqcReview.navigator.items = () => Array.from(table.tBodies[0].rows);
  bidsqcReview.navigator.move = (delta) => {
    const current = table.querySelector("tr.current");
    const position = current ? visible.findIndex((i) => data.rows[i].filename === current.dataset.filename) : -1;
    const target = Math.min(Math.max(position + delta, 0), visible.length - 1);
    if (target < 0) return;
    if (Math.floor(target / PAGE_SIZE) !== page) {
      page = Math.floor(target / PAGE_SIZE);
      render();
    }
    bidsqcReview.select(table.tBodies[0].rows[target % PAGE_SIZE], true);
  };

  for (const header of headers) header.querySelector("button")?.addEventListener("click", () => sortBy(header));
  document.getElementById("queue-order").addEventListener("click", () => {
    for (const header of headers) header.removeAttribute("aria-sort");
    order = data.rows.map((_, i) => i);
    update();
  });
  filterInput.addEventListener("input", update);
  decisionSelect.addEventListener("change", update);
  ratingSelect.addEventListener("change", update);
  document.getElementById("queue-previous").addEventListener("click", () => turn(-1));
  document.getElementById("queue-next").addEventListener("click", () => turn(1));
  update();
  performance.mark("queue-rendered"); // for benchmarks/group_report_load.py
})();
