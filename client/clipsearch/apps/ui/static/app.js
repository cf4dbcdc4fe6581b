// The search page: sends queries to the page's JSON API and draws the answers.
// Everything from the server is put on the page as text (textContent), never as HTML.
// The page's state (query, filters, k, mode, page) lives in its address, so a link or a
// reload shows the same results and Back goes to the previous search.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_K = "10";
const DEFAULT_MODE = "auto";
let maxUploadBytes = 16 * 1024 * 1024; // the server's limit, from /api/status
let filterFields = []; // the collection's filterable fields, from /api/status
const valuesSeen = new Map(); // keyword field -> values seen in results (the boxes suggest them)
let current = null; // {query: {kind: "text"|"image"|"similar", ...}, page}
let queryImageUrl = null; // object URL of the uploaded file, revoked when replaced
let searchGeneration = 0; // answers to superseded searches are dropped

// -- filters from the schema -----------------------------------------------------------------

const ACRONYMS = new Set(["sku", "id", "ean", "upc", "gtin", "isbn", "mpn"]);

function label(name) {
  if (ACRONYMS.has(name.toLowerCase())) return name.toUpperCase();
  const words = name.replace(/[_-]+/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function control(tag, attributes) {
  const element = document.createElement(tag);
  Object.assign(element, attributes);
  return element;
}

function labelled(text, input) {
  const box = document.createElement("div");
  box.className = "filter";
  box.append(control("label", { htmlFor: input.id, textContent: text }), input);
  return box;
}

function buildFilters(fields) {
  filterFields = fields;
  const boxes = [];
  fields.forEach((field, i) => {
    const id = `filter-${i}`;
    if (field.kind === "range") {
      const unit = field.currency ? ` (${field.currency})` : "";
      const step = field.integer ? "1" : "any";
      const low = control("input", { id: `${id}-min`, type: "number", step, placeholder: "any" });
      const high = control("input", { id: `${id}-max`, type: "number", step, placeholder: "any" });
      low.dataset.param = `min_${field.name}`;
      high.dataset.param = `max_${field.name}`;
      if (field.currency) low.min = high.min = "0";
      const row = document.createElement("div");
      row.className = "row range";
      row.dataset.field = field.name;
      row.append(labelled(`Min ${field.name}${unit}`, low), labelled(`Max ${field.name}${unit}`, high));
      boxes.push(row);
    } else if (field.kind === "boolean") {
      const select = control("select", { id });
      select.dataset.param = field.name;
      for (const [value, text] of [["", "any"], ["true", "yes"], ["false", "no"]]) {
        select.append(control("option", { value, textContent: text }));
      }
      boxes.push(labelled(label(field.name), select));
    } else {
      // keyword: one value or several separated by commas; keywords (tags): any of them
      const list = control("datalist", { id: `${id}-values` });
      const input = control("input", { id, placeholder: field.kind === "keywords" ? "any (a, b)" : "any" });
      input.setAttribute("list", list.id);
      input.dataset.param = field.name;
      input.dataset.multi = "true";
      const box = labelled(label(field.name), input);
      box.append(list);
      boxes.push(box);
      valuesSeen.set(field.name, new Set());
    }
  });
  $("schema-filters").replaceChildren(...boxes);
}

function filterInputs() {
  return [...document.querySelectorAll("#schema-filters [data-param]")];
}

function filterParams(params) {
  for (const input of filterInputs()) {
    const value = input.value.trim();
    if (!value) continue;
    if (input.dataset.multi) {
      for (const part of value.split(",").map((v) => v.trim()).filter(Boolean)) params.append(input.dataset.param, part);
    } else {
      params.set(input.dataset.param, value);
    }
  }
  return params;
}

function countFilters() {
  const active = filterInputs().filter((input) => input.value.trim()).length;
  $("filter-count").textContent = active ? `(${active})` : "";
}

function rememberValues(hits) {
  for (const [name, seen] of valuesSeen) {
    const before = seen.size;
    for (const hit of hits) {
      const value = hit.metadata[name];
      for (const v of Array.isArray(value) ? value : [value]) if (typeof v === "string") seen.add(v);
    }
    if (seen.size === before) continue;
    const input = document.querySelector(`#schema-filters [data-param="${CSS.escape(name)}"]`);
    $(input.getAttribute("list")).replaceChildren(
      ...[...seen].sort().map((value) => control("option", { value }))
    );
  }
}

// -- the page's address ----------------------------------------------------------------------

function searchParams(page) {
  const params = filterParams(new URLSearchParams());
  params.set("k", $("k").value);
  if ($("mode").value && $("mode").value !== DEFAULT_MODE) params.set("mode", $("mode").value);
  if (page > 1) params.set("page", String(page));
  return params;
}

function addressOf(query, page) {
  const params = new URLSearchParams();
  if (query && query.kind === "text") params.set("q", query.text);
  if (query && query.kind === "similar") params.set("id", query.id);
  for (const [name, value] of searchParams(query && query.kind !== "image" ? page : 1)) {
    if (!(name === "k" && value === DEFAULT_K)) params.append(name, value);
  }
  const text = params.toString();
  return text ? "?" + text : window.location.pathname;
}

function remember(query, page, push) {
  const address = addressOf(query, page);
  if (address === window.location.search || (address === window.location.pathname && !window.location.search)) return;
  if (push) window.history.pushState(null, "", address);
  else window.history.replaceState(null, "", address);
}

function restore() {
  const params = new URLSearchParams(window.location.search);
  $("k").value = params.get("k") || DEFAULT_K;
  if ($("k").selectedIndex < 0) $("k").append(control("option", { textContent: params.get("k"), selected: true }));
  const mode = params.get("mode") || DEFAULT_MODE;
  if (![...$("mode").options].some((o) => o.value === mode)) $("mode").append(control("option", { value: mode, textContent: mode }));
  $("mode").value = mode;
  for (const input of filterInputs()) {
    const values = params.getAll(input.dataset.param);
    input.value = input.dataset.multi ? values.join(", ") : values[0] || "";
  }
  countFilters();
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  $("text").value = params.get("q") || "";
  if (params.get("q")) return run({ kind: "text", text: params.get("q") }, page, false);
  if (params.get("id")) return run({ kind: "similar", id: params.get("id"), title: params.get("id") }, page, false);
  current = null;
  $("results").replaceChildren();
  $("results").dataset.state = "idle";
  $("summary").textContent = "";
  $("query").hidden = true;
  $("pager").hidden = true;
}

// -- talking to the server -------------------------------------------------------------------

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function callApi(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new Error("The search page's server cannot be reached. Is `clipsearch ui` still running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    if (body && typeof body.error === "string") throw new Error(body.error);
    if (response.status === 413) throw new Error("That image is too large for the page.");
    throw new Error(`The page's server answered HTTP ${response.status}.`);
  }
  return body;
}

function request(query, page) {
  const params = searchParams(page);
  if (query.kind === "text") {
    params.set("q", query.text);
    return ["/api/search/text?" + params, undefined];
  }
  if (query.kind === "similar") {
    params.set("id", query.id);
    return ["/api/search/similar?" + params, undefined];
  }
  const init = { method: "POST", body: query.file, headers: { "content-type": query.file.type || "application/octet-stream" } };
  return ["/api/search/image?" + params, init];
}

// -- drawing ---------------------------------------------------------------------------------

function showQuery(query) {
  $("query").hidden = false;
  $("query").dataset.kind = query.kind;
  const image = $("query-image");
  const text = $("query-text");
  if (query.kind === "text") {
    image.hidden = true;
    image.removeAttribute("src");
    text.textContent = "“" + query.text + "”";
  } else if (query.kind === "image") {
    image.src = queryImageUrl;
    image.hidden = false;
    text.textContent = query.name;
  } else {
    image.hidden = !query.imageUrl;
    if (query.imageUrl) image.src = query.imageUrl;
    text.textContent = "More like: " + query.title;
  }
}

function formatValue(name, value) {
  const field = filterFields.find((f) => f.name === name);
  if (typeof value === "number" && field && field.currency) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency: field.currency }).format(value);
    } catch (error) {
      return `${value.toFixed(2)} ${field.currency}`;
    }
  }
  if (name === "price" && typeof value === "number") return value.toFixed(2);
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function addTagFilter(name, tag) {
  const input = document.querySelector(`#schema-filters [data-param="${CSS.escape(name)}"]`);
  if (!input) return;
  const tags = input.value.split(",").map((v) => v.trim()).filter(Boolean);
  if (!tags.includes(tag)) input.value = [...tags, tag].join(", ");
  optionsChanged();
}

function photos(hit, main) {
  // The product's pictures, best-matching first; choosing one shows it large.
  const strip = document.createElement("ul");
  strip.className = "thumbs";
  strip.setAttribute("aria-label", `${hit.images.length} photos`);
  hit.images.forEach((picture, i) => {
    const button = control("button", { type: "button", className: "thumb" });
    button.setAttribute("aria-label", `Photo ${i + 1} of ${hit.images.length}`);
    button.setAttribute("aria-pressed", String(i === 0));
    button.dataset.item = picture.id;
    button.append(control("img", { src: picture.url, alt: "" }));
    button.addEventListener("click", () => {
      main.src = picture.url;
      main.dataset.item = picture.id;
      for (const other of strip.querySelectorAll(".thumb")) other.setAttribute("aria-pressed", String(other === button));
    });
    const item = document.createElement("li");
    item.append(button);
    strip.append(item);
  });
  return strip;
}

function card(hit) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.id = hit.product;
  item.dataset.photos = String(hit.images.length);

  const image = control("img", { alt: hit.title, className: "photo" });
  if (hit.image_url) image.src = hit.image_url;
  image.dataset.item = hit.images.length ? hit.images[0].id : hit.id;
  item.append(image);
  if (hit.images.length > 1) item.append(photos(hit, image));

  const body = document.createElement("div");
  body.className = "body";
  const title = control("h3", { textContent: hit.title });
  const line = document.createElement("p");
  line.className = "line";
  const money = filterFields.find((f) => f.currency && typeof hit.metadata[f.name] === "number");
  const price = money || (typeof hit.metadata.price === "number" ? { name: "price" } : null);
  if (price) line.append(control("span", { className: "price", textContent: formatValue(price.name, hit.metadata[price.name]) }));
  line.append(control("span", { className: "score", textContent: "score " + hit.score.toFixed(3) }));
  body.append(title, line);
  if (hit.matched && hit.matched.length) {
    // The words the product matched (hybrid search): "rde→red" shows a corrected typo.
    body.append(control("p", { className: "matched", textContent: "matches " + hit.matched.join(", ") }));
  }

  const tagFields = filterFields.filter((f) => f.kind === "keywords" && Array.isArray(hit.metadata[f.name]));
  if (tagFields.length) {
    const tags = document.createElement("p");
    tags.className = "tags";
    for (const field of tagFields) {
      for (const tag of hit.metadata[field.name]) {
        const chip = control("button", { type: "button", className: "tag", textContent: tag });
        chip.title = `Only products tagged ${tag}`;
        chip.addEventListener("click", () => addTagFilter(field.name, tag));
        tags.append(chip);
      }
    }
    body.append(tags);
  }

  const details = document.createElement("details");
  details.append(control("summary", { textContent: "Details" }));
  const list = document.createElement("dl");
  for (const [key, value] of [...Object.entries(hit.metadata), ["id", hit.product]]) {
    const description = control("dd", { textContent: formatValue(key, value) });
    description.dataset.value = Array.isArray(value) ? value.join("|") : String(value);
    list.append(control("dt", { textContent: key }), description);
  }
  details.append(list);
  body.append(details);

  const more = control("button", { type: "button", className: "secondary more-like-this", textContent: "More like this" });
  more.addEventListener("click", () =>
    run({ kind: "similar", id: image.dataset.item, title: hit.title, imageUrl: image.src || null }, 1, true)
  );
  body.append(more);

  item.append(body);
  return item;
}

function showPager(page, hasMore) {
  $("pager").hidden = page === 1 && !hasMore;
  $("previous").disabled = page <= 1;
  $("next").disabled = !hasMore;
  $("page-number").textContent = `Page ${page}`;
}

async function run(query, page, push) {
  const generation = ++searchGeneration;
  current = { query, page };
  remember(query, page, push);
  showMessage("");
  showQuery(query);
  countFilters();
  const results = $("results");
  results.dataset.state = "loading";
  $("summary").textContent = "Searching…";
  try {
    const [url, init] = request(query, page);
    const answer = await callApi(url, init);
    if (generation !== searchGeneration) return;
    if (answer.source && query.kind === "similar") {
      query.title = answer.source.title;
      query.imageUrl = query.imageUrl || answer.source.image_url;
      showQuery(query);
    }
    results.replaceChildren(...answer.hits.map(card));
    rememberValues(answer.hits);
    const count = answer.hits.length;
    const where = page > 1 ? ` · page ${page}` : "";
    $("summary").textContent = count
      ? `${count} product${count === 1 ? "" : "s"} in ${Math.round(answer.took_ms)} ms${where}`
      : "No products match. Try another query or loosen the filters.";
    showPager(page, answer.has_more);
    results.dataset.state = "done";
  } catch (error) {
    if (generation !== searchGeneration) return;
    results.replaceChildren();
    $("summary").textContent = "";
    $("pager").hidden = true;
    showMessage(error.message);
    results.dataset.state = "error";
  }
}

async function loadStatus() {
  const status = $("status");
  try {
    const answer = await callApi("/api/status");
    maxUploadBytes = answer.limits.max_upload_bytes;
    buildFilters(answer.filters || []);
    const modes = answer.modes || [DEFAULT_MODE];
    $("mode").replaceChildren(...modes.map((mode) => control("option", { value: mode, textContent: mode })));
    $("mode-control").hidden = modes.length < 2;
    const problems = ["encoder", "index"].filter((name) => !answer[name].ok).map((name) => answer[name].message);
    if (problems.length) {
      status.textContent = "Not ready";
      status.className = "bad";
      showMessage(problems.join("\n"));
      return false;
    }
    status.className = "";
    status.textContent =
      `collection “${answer.collection}”: ${answer.index.items} items · model ${answer.encoder.model}`;
  } catch (error) {
    status.textContent = "Not ready";
    status.className = "bad";
    showMessage(error.message);
    return false;
  }
  return true;
}

// -- what the visitor does -------------------------------------------------------------------

function searchText(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) {
    showMessage("Type a description to search for, e.g. “a red dress”.");
    return;
  }
  run({ kind: "text", text }, 1, true);
}

function searchImage() {
  const file = $("image").files[0];
  if (!file) return;
  if (file.size > maxUploadBytes) {
    showMessage(`That image is too large: the page accepts up to ${maxUploadBytes / 1048576} MiB.`);
    return;
  }
  if (queryImageUrl) URL.revokeObjectURL(queryImageUrl);
  queryImageUrl = URL.createObjectURL(file);
  $("text").value = "";
  run({ kind: "image", file, name: file.name }, 1, true);
}

function optionsChanged() {
  countFilters();
  if (current) run(current.query, 1, true);
  else remember(null, 1, false);
}

function clearFilters() {
  for (const input of filterInputs()) input.value = "";
  optionsChanged();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("text-form").addEventListener("submit", searchText);
  $("image").addEventListener("change", searchImage);
  $("options").addEventListener("change", optionsChanged);
  $("clear-filters").addEventListener("click", clearFilters);
  $("previous").addEventListener("click", () => current && run(current.query, current.page - 1, true));
  $("next").addEventListener("click", () => current && run(current.query, current.page + 1, true));
  $("query-image").addEventListener("error", () => { $("query-image").hidden = true; });
  window.addEventListener("popstate", restore);
  // Wide screens show the filters; phones keep them folded under their summary.
  if (window.matchMedia("(min-width: 761px)").matches) $("filters").open = true;
  await loadStatus();
  // The address's search, unless the visitor started one while the status was on its way.
  if (!current) restore();
  document.body.dataset.ready = "true";
});
