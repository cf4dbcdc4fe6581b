// The search page: sends queries to the page's JSON API and draws the answers.
// Everything from the server is put on the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadBytes = 16 * 1024 * 1024; // the server's limit, from /api/status
const categoriesSeen = new Set();
let lastQuery = null; // {kind: "text"|"image"|"similar", ...}, re-run when a filter changes
let queryImageUrl = null; // object URL of the uploaded file, revoked when replaced
let searchGeneration = 0; // answers to superseded searches are dropped

function options() {
  const params = new URLSearchParams();
  params.set("k", $("k").value);
  for (const [id, name] of [["category", "category"], ["min-price", "min_price"], ["max-price", "max_price"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

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

function imageUrl(id) {
  return "/api/image?id=" + encodeURIComponent(id);
}

function showQuery(query) {
  $("query").hidden = false;
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
    image.src = query.imageUrl || imageUrl(query.id);
    image.hidden = false;
    text.textContent = "More like: " + query.title;
  }
}

function card(hit) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.id = hit.id;

  const image = document.createElement("img");
  image.alt = hit.title;
  if (hit.image_url) image.src = hit.image_url;
  item.append(image);

  const body = document.createElement("div");
  body.className = "body";
  const title = document.createElement("h3");
  title.textContent = hit.title;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = "score " + hit.score.toFixed(3);
  body.append(title, score);

  const details = document.createElement("dl");
  for (const [key, value] of Object.entries(hit.metadata)) {
    const term = document.createElement("dt");
    term.textContent = key;
    const description = document.createElement("dd");
    description.textContent = key === "price" && typeof value === "number" ? value.toFixed(2) : String(value);
    details.append(term, description);
  }
  const idTerm = document.createElement("dt");
  idTerm.textContent = "id";
  const idValue = document.createElement("dd");
  idValue.textContent = hit.id;
  details.append(idTerm, idValue);
  body.append(details);

  const more = document.createElement("button");
  more.type = "button";
  more.className = "secondary more-like-this";
  more.textContent = "More like this";
  more.addEventListener("click", () => run({ kind: "similar", id: hit.id, title: hit.title, imageUrl: hit.image_url }));
  body.append(more);

  item.append(body);
  return item;
}

function rememberCategories(hits) {
  let added = false;
  for (const hit of hits) {
    const category = hit.metadata.category;
    if (typeof category === "string" && !categoriesSeen.has(category)) {
      categoriesSeen.add(category);
      added = true;
    }
  }
  if (!added) return;
  const list = $("categories");
  list.replaceChildren(
    ...[...categoriesSeen].sort().map((name) => Object.assign(document.createElement("option"), { value: name }))
  );
}

function request(query) {
  const params = options();
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

async function run(query) {
  const generation = ++searchGeneration;
  lastQuery = query;
  showMessage("");
  showQuery(query);
  const results = $("results");
  results.dataset.state = "loading";
  $("summary").textContent = "Searching…";
  try {
    const [url, init] = request(query);
    const answer = await callApi(url, init);
    if (generation !== searchGeneration) return;
    results.replaceChildren(...answer.hits.map(card));
    rememberCategories(answer.hits);
    const count = answer.hits.length;
    $("summary").textContent = count
      ? `${count} result${count === 1 ? "" : "s"} in ${Math.round(answer.took_ms)} ms`
      : "No products match. Try another query or loosen the filters.";
    results.dataset.state = "done";
  } catch (error) {
    if (generation !== searchGeneration) return;
    results.replaceChildren();
    $("summary").textContent = "";
    showMessage(error.message);
    results.dataset.state = "error";
  }
}

async function loadStatus() {
  const status = $("status");
  try {
    const answer = await callApi("/api/status");
    maxUploadBytes = answer.limits.max_upload_bytes;
    const problems = ["encoder", "index"].filter((name) => !answer[name].ok).map((name) => answer[name].message);
    if (problems.length) {
      status.textContent = "Not ready";
      status.className = "bad";
      showMessage(problems.join("\n"));
      return;
    }
    status.className = "";
    status.textContent =
      `collection “${answer.collection}”: ${answer.index.items} products · model ${answer.encoder.model}`;
  } catch (error) {
    status.textContent = "Not ready";
    status.className = "bad";
    showMessage(error.message);
  }
}

function searchText(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) {
    showMessage("Type a description to search for, e.g. “a red dress”.");
    return;
  }
  const url = new URL(window.location.href);
  url.searchParams.set("q", text);
  window.history.replaceState(null, "", url);
  run({ kind: "text", text });
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
  run({ kind: "image", file, name: file.name });
}

function rerun() {
  if (lastQuery) run(lastQuery);
}

document.addEventListener("DOMContentLoaded", () => {
  $("text-form").addEventListener("submit", searchText);
  $("image").addEventListener("change", searchImage);
  $("options").addEventListener("change", rerun);
  $("query-image").addEventListener("error", () => { $("query-image").hidden = true; });
  loadStatus();
  const initial = new URLSearchParams(window.location.search);
  if (initial.get("k")) $("k").value = initial.get("k");
  if (initial.get("category")) $("category").value = initial.get("category");
  if (initial.get("q")) {
    $("text").value = initial.get("q");
    run({ kind: "text", text: initial.get("q") });
  }
});
