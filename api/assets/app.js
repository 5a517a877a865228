// The lro dashboard: lists operations of a parent, filters and pages them, shows one operation,
// cancels one or a selection, deletes. Everything it shows comes from the REST surface (`v1/...`,
// relative to the page, so the same origin); the page itself holds no data.
//
// Live updates are polling: the current page (and the open operation) is read again one second
// after the previous read finished, so a change shows within about 1–1.5 s and a slow api is
// never asked twice at once. Polling needs nothing but the list call the api already has (no
// stream endpoint, no extra connection per tab); it pauses while the tab is hidden.
//
// With authentication on, a 401 brings up a form for a bearer token, kept in sessionStorage (this
// tab only) and sent as `Authorization: Bearer …` with every call.
//
// Stable hooks (the contract): rows `data-operation="<name>"`; inside, `data-field="state"` and
// `data-field="progress"`; `data-action="cancel"`, `data-action="select"`;
// `data-action="cancel-selected"`; `data-control="filter"`, `data-control="parent"`.

const POLL_MS = 1000;
const TOKEN_KEY = "lro.token";
const DONE_STATES = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

const $ = (sel) => document.querySelector(sel);
const el = {
  live: $("#live"),
  error: $("#error"),
  errorText: $("#error-text"),
  dismissError: $('[data-action="dismiss-error"]'),
  signIn: $("#sign-in"),
  signInWhy: $("#sign-in-why"),
  token: $("#token"),
  signOut: $('[data-action="sign-out"]'),
  workspace: $("#workspace"),
  query: $("#query"),
  parent: $('[data-control="parent"]'),
  filter: $('[data-control="filter"]'),
  pageSize: $('[data-control="page-size"]'),
  collection: $("#collection"),
  cancelSelected: $('[data-action="cancel-selected"]'),
  selectedCount: $('[data-field="selected-count"]'),
  selectPage: $('[data-action="select-page"]'),
  rows: $("#rows"),
  empty: $("#empty"),
  first: $('[data-action="first-page"]'),
  prev: $('[data-action="prev-page"]'),
  next: $('[data-action="next-page"]'),
  pageNo: $("#page-no"),
  detail: $("#detail"),
  detailTitle: $("#detail-title"),
  detailName: $("#detail-name"),
  detailMeta: $("#detail-meta"),
  detailOutcome: $("#detail-outcome"),
  detailJson: $("#detail-json"),
};

const view = {
  parent: "",
  filter: "",
  pageSize: 25,
  // Tokens of the pages before the current one (the first page's is "").
  tokens: [""],
  nextToken: null,
  selected: new Set(),
  open: null, // name of the operation shown in detail
  ops: new Map(), // name → operation JSON of the current page
  rows: new Map(), // name → <tr>
};

let timer = null;
let generation = 0; // bumped when the query changes, so a late answer for the old one is dropped
let waitingForToken = false;

/** An error answer of the api, from its envelope. */
class ApiFailure extends Error {
  constructor(http, status, message) {
    super(message);
    this.http = http;
    this.status = status;
  }
}

/** `v1/<path>` with the token, JSON in and out; throws ApiFailure with the envelope's message. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`v1/${path}`, init);
  } catch (e) {
    throw new ApiFailure(0, "UNAVAILABLE", `the api did not answer (${e.message})`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = (json && json.error) || {};
    const failure = new ApiFailure(res.status, e.status || `HTTP ${res.status}`, e.message || text || res.statusText);
    if (res.status === 401) askForToken(failure.message);
    throw failure;
  }
  return json || {};
}

/** A resource name as a path: each segment percent-encoded, slashes kept. */
const pathOf = (name) => name.split("/").map(encodeURIComponent).join("/");

/** The parent input as `collection/id/...`, or throws a message for the user. */
function parseParent(raw) {
  let p = raw.trim().replace(/^\/+|\/+$/g, "").replace(/^v1\//, "");
  if (p === "operations") p = "";
  p = p.replace(/\/operations$/, "");
  if (p === "") return "";
  const segments = p.split("/");
  if (segments.length % 2 !== 0 || segments.some((s) => s === "")) {
    throw new Error(`parent ${JSON.stringify(raw.trim())} is not collection/id pairs (e.g. projects/p)`);
  }
  return p;
}

const collectionOf = (parent) => (parent ? `${parent}/operations` : "operations");

// ---- errors and status line -------------------------------------------------------------------

// A failed read is shown until a read succeeds again; a failed action (cancel, delete) stays
// until it is dismissed or the next action, so that the next poll does not wipe it away.
let sticky = false;

function showError(message, { action = false } = {}) {
  if (sticky && !action) return;
  sticky = action;
  el.errorText.textContent = message;
  el.dismissError.hidden = !action;
  el.error.hidden = false;
}

function clearError({ action = false } = {}) {
  if (sticky && !action) return;
  sticky = false;
  el.error.hidden = true;
  el.errorText.textContent = "";
}

el.dismissError.addEventListener("click", () => clearError({ action: true }));

function describe(e) {
  return e instanceof ApiFailure ? `${e.status}: ${e.message}` : e.message || String(e);
}

// ---- credentials ------------------------------------------------------------------------------

function askForToken(why) {
  const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  el.signOut.hidden = true;
  el.signInWhy.textContent = hadToken
    ? `The token was refused: ${why}. Paste another.`
    : "This api asks for credentials: paste a bearer token to see its operations.";
  if (!waitingForToken) {
    waitingForToken = true;
    el.signIn.hidden = false;
    el.workspace.hidden = true;
    el.token.value = "";
    el.token.focus();
  }
  stopPolling();
  el.live.textContent = "waiting for a token";
}

el.signIn.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = el.token.value.trim().replace(/^Bearer\s+/i, "");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  el.token.value = "";
  waitingForToken = false;
  el.signIn.hidden = true;
  el.workspace.hidden = false;
  el.signOut.hidden = false;
  clearError({ action: true });
  refresh();
});

el.signOut.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  el.signOut.hidden = true;
  refresh();
});

// ---- reading ----------------------------------------------------------------------------------

function stopPolling() {
  clearTimeout(timer);
  timer = null;
}

/** Reads the current page (and the open operation) now, then again every POLL_MS. */
async function refresh() {
  stopPolling();
  if (waitingForToken) return;
  const gen = generation;
  const token = view.tokens[view.tokens.length - 1];
  const params = new URLSearchParams({ pageSize: String(view.pageSize) });
  if (view.filter) params.set("filter", view.filter);
  if (token) params.set("pageToken", token);
  try {
    const page = await api("GET", `${pathOf(collectionOf(view.parent))}?${params}`);
    if (gen !== generation) return;
    renderPage(page.operations || [], page.nextPageToken || null);
    if (view.open) await refreshDetail();
    clearError();
    el.live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (gen !== generation || waitingForToken) return;
    showError(describe(e));
    el.live.textContent = "live · last read failed";
  } finally {
    if (gen === generation && !waitingForToken && !document.hidden) {
      stopPolling();
      timer = setTimeout(refresh, POLL_MS);
    }
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) stopPolling();
  else refresh();
});

// ---- the list ---------------------------------------------------------------------------------

function meta(op) {
  return op.metadata || {};
}

function stateOf(op) {
  return meta(op).state || (op.done ? (op.error ? "FAILED" : "SUCCEEDED") : "QUEUED");
}

function shortName(name) {
  const id = name.split("/").pop();
  return id.length > 13 ? `…${id.slice(-12)}` : id;
}

function timeCell(td, iso) {
  td.replaceChildren();
  if (!iso) {
    td.textContent = "—";
    return;
  }
  const t = document.createElement("time");
  t.dateTime = iso;
  t.title = iso;
  // Today's times without the date; older ones with it.
  const when = new Date(iso);
  t.textContent =
    when.toDateString() === new Date().toDateString() ? when.toLocaleTimeString() : when.toLocaleString();
  td.append(t);
}

/** A new row for `name`, with its cells and controls (filled in by updateRow). */
function makeRow(name) {
  const tr = document.createElement("tr");
  tr.dataset.operation = name;
  const cell = (label, cls) => {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (cls) td.className = cls;
    tr.append(td);
    return td;
  };

  const pick = cell("Select", "pick");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.dataset.action = "select";
  box.setAttribute("aria-label", `Select ${name}`);
  pick.append(box);

  const nameTd = cell("Name", "name");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.dataset.action = "details";
  open.title = name;
  open.setAttribute("aria-label", `Details of ${name}`);
  nameTd.append(open);

  cell("Kind", "kind");
  const stateTd = cell("State", "state");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.field = "state";
  stateTd.append(badge);

  const progTd = cell("Progress", "progress");
  const bar = document.createElement("progress");
  bar.max = 100;
  const pct = document.createElement("span");
  pct.className = "pct";
  const num = document.createElement("span");
  num.dataset.field = "progress";
  pct.append(num, "%");
  const msg = document.createElement("span");
  msg.className = "progress-message";
  progTd.append(bar, pct, msg);

  cell("Worker", "worker");
  cell("Created", "time created");
  cell("Updated", "time updated");

  const actions = cell("Actions", "actions");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "danger";
  cancel.dataset.action = "cancel";
  cancel.textContent = "Cancel";
  cancel.setAttribute("aria-label", `Cancel ${name}`);
  const del = document.createElement("button");
  del.type = "button";
  del.className = "quiet";
  del.dataset.action = "delete";
  del.textContent = "Delete";
  del.setAttribute("aria-label", `Delete ${name}`);
  actions.append(cancel, del);
  return tr;
}

function updateRow(tr, op) {
  const m = meta(op);
  const state = stateOf(op);
  const percent = Number(m.progressPercent || 0);
  const q = (sel) => tr.querySelector(sel);
  q('[data-action="details"]').textContent = shortName(op.name);
  q("td.kind").textContent = m.kind || "—";
  const badge = q('[data-field="state"]');
  badge.textContent = state;
  badge.className = `badge s-${state.toLowerCase()}`;
  q("progress").value = percent;
  q("progress").setAttribute("aria-label", `${percent} percent`);
  q('[data-field="progress"]').textContent = String(percent);
  q(".progress-message").textContent = m.progressMessage || "";
  q("td.worker").textContent = m.worker || "—";
  timeCell(q("td.created"), m.createTime);
  timeCell(q("td.updated"), m.updateTime);
  const box = q('[data-action="select"]');
  box.checked = view.selected.has(op.name);
  q('[data-action="cancel"]').disabled = op.done === true || state === "CANCELLING";
  tr.classList.toggle("selected", box.checked);
  tr.classList.toggle("open", view.open === op.name);
}

/** Updates the table in place (rows keyed by name), so focus and selection survive a poll. */
function renderPage(ops, nextToken) {
  view.ops = new Map(ops.map((op) => [op.name, op]));
  view.nextToken = nextToken;
  for (const [name, tr] of view.rows) {
    if (!view.ops.has(name)) {
      tr.remove();
      view.rows.delete(name);
    }
  }
  let before = el.rows.firstChild;
  for (const op of ops) {
    let tr = view.rows.get(op.name);
    if (!tr) {
      tr = makeRow(op.name);
      view.rows.set(op.name, tr);
    }
    updateRow(tr, op);
    if (tr !== before) el.rows.insertBefore(tr, before);
    before = tr.nextSibling;
  }
  el.empty.hidden = ops.length > 0;
  el.next.disabled = !nextToken;
  el.prev.disabled = view.tokens.length <= 1;
  el.first.disabled = view.tokens.length <= 1;
  el.pageNo.textContent = `Page ${view.tokens.length}`;
  syncSelection();
}

function syncSelection() {
  el.selectedCount.textContent = String(view.selected.size);
  el.cancelSelected.disabled = view.selected.size === 0;
  const onPage = [...view.ops.keys()];
  const picked = onPage.filter((n) => view.selected.has(n)).length;
  el.selectPage.checked = onPage.length > 0 && picked === onPage.length;
  el.selectPage.indeterminate = picked > 0 && picked < onPage.length;
}

// ---- the open operation -----------------------------------------------------------------------

async function refreshDetail() {
  const name = view.open;
  try {
    renderDetail(await api("GET", pathOf(name)));
  } catch (e) {
    if (e instanceof ApiFailure && e.http === 404 && view.open === name) {
      el.detailOutcome.textContent = "This operation no longer exists (deleted, or past its retention).";
      el.detailOutcome.className = "outcome gone";
      return;
    }
    throw e;
  }
}

function renderDetail(op) {
  if (op.name !== view.open) return;
  const m = meta(op);
  el.detailTitle.textContent = `${m.kind || "Operation"} · ${stateOf(op)}`;
  el.detailName.textContent = op.name;
  const rows = [
    ["State", stateOf(op)],
    ["Kind", m.kind],
    ["Progress", `${m.progressPercent || 0}%${m.progressMessage ? ` · ${m.progressMessage}` : ""}`],
    ["Attempt", m.attempt],
    ["Worker", m.worker],
    ["Created", m.createTime],
    ["Started", m.startTime],
    ["Updated", m.updateTime],
    ["Ended", m.endTime],
    ["Timeout", m.timeout],
    ["Request id", m.requestId],
    ["Cancel requested", m.cancelRequested ? `${m.cancelTime || "yes"}${m.cancelRequestedBy ? ` by ${m.cancelRequestedBy}` : ""}` : null],
    ["Stop forced", m.stopForced ? "yes" : null],
    ["Next attempt", m.nextAttemptTime],
    ["Last attempt's error", m.lastAttemptError ? `${m.lastAttemptError.code}: ${m.lastAttemptError.message || ""}` : null],
  ];
  const frag = document.createDocumentFragment();
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    frag.append(dt, dd);
  }
  el.detailMeta.replaceChildren(frag);
  if (op.error) {
    el.detailOutcome.className = "outcome failed";
    el.detailOutcome.textContent = `Error ${op.error.code}: ${op.error.message || ""}`;
  } else if (op.response) {
    el.detailOutcome.className = "outcome succeeded";
    const response = document.createElement("pre");
    response.textContent = JSON.stringify(op.response, null, 2);
    el.detailOutcome.replaceChildren("Response", response);
  } else {
    el.detailOutcome.className = "outcome";
    el.detailOutcome.textContent = "Not done yet.";
  }
  const json = JSON.stringify(op, null, 2);
  if (el.detailJson.textContent !== json) el.detailJson.textContent = json;
}

async function openDetail(name) {
  view.open = name;
  el.detail.hidden = false;
  el.detailName.textContent = name;
  el.detailMeta.replaceChildren();
  el.detailOutcome.textContent = "";
  el.detailJson.textContent = "";
  for (const [n, tr] of view.rows) tr.classList.toggle("open", n === name);
  el.detailTitle.focus();
  try {
    await refreshDetail();
  } catch (e) {
    showError(describe(e));
  }
}

function closeDetail() {
  const name = view.open;
  view.open = null;
  el.detail.hidden = true;
  const tr = name && view.rows.get(name);
  if (tr) {
    tr.classList.remove("open");
    tr.querySelector('[data-action="details"]').focus();
  }
}

$('[data-action="close-detail"]').addEventListener("click", closeDetail);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && view.open) closeDetail();
});

// ---- actions ----------------------------------------------------------------------------------

async function cancel(names) {
  clearError({ action: true });
  const results = await Promise.allSettled(names.map((n) => api("POST", `${pathOf(n)}:cancel`, {})));
  const failed = results
    .map((r, i) => [r, names[i]])
    .filter(([r]) => r.status === "rejected");
  for (const [r, n] of results.map((r, i) => [r, names[i]])) {
    if (r.status === "fulfilled") view.selected.delete(n);
  }
  await refresh();
  if (failed.length) {
    showError(failed.map(([r, n]) => `cancel ${n}: ${describe(r.reason)}`).join("\n"), { action: true });
  }
}

el.rows.addEventListener("click", async (ev) => {
  const tr = ev.target.closest("tr[data-operation]");
  if (!tr) return;
  const name = tr.dataset.operation;
  const action = ev.target.closest("[data-action]")?.dataset.action;
  if (action === "select") return; // handled on change
  if (action === "cancel") {
    if (!window.confirm(`Cancel ${name}?`)) return;
    await cancel([name]);
  } else if (action === "delete") {
    if (!window.confirm(`Delete ${name}? This does not cancel its job.`)) return;
    clearError({ action: true });
    try {
      await api("DELETE", pathOf(name));
      view.selected.delete(name);
      if (view.open === name) closeDetail();
      await refresh();
    } catch (e) {
      showError(`delete ${name}: ${describe(e)}`, { action: true });
    }
  } else if (action === "details" || (!action && !ev.target.closest("a, input, button, select"))) {
    await openDetail(name);
  }
});

el.rows.addEventListener("change", (ev) => {
  if (ev.target.dataset.action !== "select") return;
  const tr = ev.target.closest("tr[data-operation]");
  const name = tr.dataset.operation;
  if (ev.target.checked) view.selected.add(name);
  else view.selected.delete(name);
  tr.classList.toggle("selected", ev.target.checked);
  syncSelection();
});

el.selectPage.addEventListener("change", () => {
  for (const [name, tr] of view.rows) {
    if (el.selectPage.checked) view.selected.add(name);
    else view.selected.delete(name);
    tr.querySelector('[data-action="select"]').checked = el.selectPage.checked;
    tr.classList.toggle("selected", el.selectPage.checked);
  }
  syncSelection();
});

el.cancelSelected.addEventListener("click", async () => {
  const names = [...view.selected];
  if (names.length === 0) return;
  if (!window.confirm(`Cancel ${names.length} operation${names.length === 1 ? "" : "s"}?`)) return;
  await cancel(names);
});

// ---- the query: parent, filter, page size, pages -----------------------------------------------

function applyQuery() {
  let parent;
  try {
    parent = parseParent(el.parent.value);
  } catch (e) {
    showError(e.message);
    return;
  }
  const filter = el.filter.value.trim();
  const pageSize = Number(el.pageSize.value) || 25;
  if (parent === view.parent && filter === view.filter && pageSize === view.pageSize) return;
  view.parent = parent;
  view.filter = filter;
  view.pageSize = pageSize;
  view.tokens = [""];
  view.selected.clear();
  generation += 1;
  el.collection.textContent = collectionOf(parent);
  writeHash();
  clearError();
  refresh();
}

// Typing applies the query after a short pause; Enter (the form's submit) applies it at once.
let typing = null;
for (const input of [el.parent, el.filter]) {
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(applyQuery, 400);
  });
}
el.pageSize.addEventListener("change", applyQuery);
el.query.addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearTimeout(typing);
  applyQuery();
});

function goToPage(tokens) {
  view.tokens = tokens;
  generation += 1;
  refresh();
}
el.next.addEventListener("click", () => view.nextToken && goToPage([...view.tokens, view.nextToken]));
el.prev.addEventListener("click", () => goToPage(view.tokens.slice(0, -1)));
el.first.addEventListener("click", () => goToPage([""]));

// The parent and filter live in the address (`#parent=…&filter=…`), so a view can be shared.
function writeHash() {
  const h = new URLSearchParams();
  if (view.parent) h.set("parent", view.parent);
  if (view.filter) h.set("filter", view.filter);
  const s = h.toString();
  history.replaceState(null, "", s ? `#${s}` : location.pathname + location.search);
}

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  el.parent.value = h.get("parent") || "";
  el.filter.value = h.get("filter") || "";
  try {
    view.parent = parseParent(el.parent.value);
  } catch {
    view.parent = "";
  }
  view.filter = el.filter.value.trim();
  el.collection.textContent = collectionOf(view.parent);
}

readHash();
el.signOut.hidden = sessionStorage.getItem(TOKEN_KEY) === null;
refresh();
