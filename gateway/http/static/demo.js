// The demo page: one EventSource over the chosen channels, every event shown as text.
//
// Payloads are untrusted: everything is rendered with textContent, never as HTML.
// Resume after a disconnect is the browser's own (Last-Event-ID); the page itself only
// passes its cursor on when it opens a new EventSource (other channels, a new token).
"use strict";

const CONTROL_EVENTS = ["history_gap", "cursor_invalid", "reconnect"];
const FALLBACK_EVENTS = ["echo", "reverse_echo"];
const CHANNEL_RE = /^[A-Za-z0-9_.:\-]{1,64}$/;
const MAX_ROWS = 500;

const page = {
  channels: [],
  fromEarliest: false,
  startCursor: null, // a cursor given in the URL (?last_event_id=...)
  cursor: null, // the lastEventId of the newest event
  token: "",
  eventNames: FALLBACK_EVENTS,
  source: null,
  connection: 0, // connections opened, over every EventSource of this page
  reconnects: 0,
  events: 0,
  lost: false,
};

const $ = (id) => document.getElementById(id);

function setState(state, text) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = text;
}

function showProblem(text) {
  const problem = $("problem");
  problem.textContent = text;
  problem.hidden = !text;
}

function updateStatus() {
  $("cursor").textContent = page.cursor || "none yet";
  $("opens").textContent = String(page.connection);
  $("reconnects").textContent = String(page.reconnects);
  $("count").textContent = String(page.events);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A cursor may break after its commas only, not inside an id at its "-".
function cursorCell(cursor) {
  const td = cell("", "mono cursor");
  const parts = cursor.split(",");
  parts.forEach((part, index) => {
    const span = document.createElement("span");
    span.textContent = index < parts.length - 1 ? `${part},` : part;
    td.append(span, document.createElement("wbr"));
  });
  return td;
}

function addRow(kind, name, id, data) {
  const row = document.createElement("tr");
  row.className = kind;
  row.dataset.event = name;
  row.dataset.connection = String(page.connection);
  const number = kind === "note" ? "" : String(page.events);
  row.append(
    cell(number),
    cell(new Date().toLocaleTimeString([], { hour12: false }), "time"),
    cell(String(page.connection)),
    cell(name, "name"),
    cursorCell(id),
    cell(data, "mono data"),
  );
  const rows = $("rows");
  rows.prepend(row);
  while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
}

function note(text) {
  addRow("note", "connection", page.cursor || "", text);
}

// The position to open a new EventSource at: the page's cursor, narrowed to the channels
// now chosen; a channel new to it starts at `earliest` or live, as the checkbox says.
function startPosition() {
  if (!page.cursor) {
    if (page.startCursor) return page.startCursor;
    return page.fromEarliest ? "earliest" : null;
  }
  const known = new Map(
    page.cursor.split(",").map((part) => {
      const at = part.indexOf("=");
      return [part.slice(0, at), part.slice(at + 1)];
    }),
  );
  const parts = [];
  for (const channel of page.channels) {
    if (known.has(channel)) parts.push(`${channel}=${known.get(channel)}`);
    else if (page.fromEarliest) parts.push(`${channel}=earliest`);
  }
  return parts.length ? parts.join(",") : null;
}

function streamUrl() {
  const query = new URLSearchParams();
  for (const channel of page.channels) query.append("channel", channel);
  const start = startPosition();
  if (start) query.set("last_event_id", start);
  if (page.token) query.set("token", page.token);
  return `sse?${query}`;
}

// The address bar says what the page shows, so that a reload or a shared link opens it again.
function writeQuery() {
  const query = new URLSearchParams();
  for (const channel of page.channels) query.append("channel", channel);
  if (page.fromEarliest) query.set("last_event_id", "earliest");
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

function renderChannels() {
  const list = $("channels");
  list.replaceChildren();
  for (const channel of page.channels) {
    const item = document.createElement("li");
    item.dataset.channel = channel;
    const name = document.createElement("span");
    name.textContent = channel;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "\u00d7";
    remove.title = `unsubscribe from ${channel}`;
    remove.setAttribute("aria-label", `remove ${channel}`);
    remove.addEventListener("click", () => removeChannel(channel));
    item.append(name, remove);
    list.append(item);
  }
}

function onEvent(event) {
  if (event.lastEventId) page.cursor = event.lastEventId;
  page.events += 1;
  const control = CONTROL_EVENTS.includes(event.type);
  addRow(control ? "control" : "event", event.type, event.lastEventId, event.data);
  updateStatus();
  if (event.type === "reconnect") onReconnectHint(event.data);
}

function onReconnectHint(data) {
  let reason = "";
  try {
    reason = JSON.parse(data).reason;
  } catch {
    return;
  }
  if (reason === "token_expired") {
    // The browser would come back with the same (expired) token in the URL and be refused:
    // stop here; Connect with a fresh token resumes from the cursor.
    disconnect("token expired: paste a fresh token and press Connect to resume");
  } else {
    note(`the gateway asked to reconnect (${reason}); the browser resumes from the cursor`);
  }
}

function connect() {
  closeSource();
  showProblem("");
  writeQuery();
  if (!page.channels.length) {
    setState("idle", "not connected: add a channel");
    return;
  }
  const url = streamUrl();
  const source = new EventSource(url);
  page.source = source;
  let opens = 0;
  setState("connecting", "connecting\u2026");
  for (const name of new Set([...page.eventNames, ...CONTROL_EVENTS, "message"])) {
    source.addEventListener(name, onEvent);
  }
  source.onopen = () => {
    opens += 1;
    page.connection += 1;
    if (opens > 1) {
      page.reconnects += 1;
      note(`reconnected: connection ${page.connection} resumed with Last-Event-ID`);
    }
    page.lost = false;
    setState("open", `open: ${page.channels.join(", ")}`);
    updateStatus();
  };
  source.onerror = () => {
    if (source !== page.source) return;
    if (source.readyState === EventSource.CLOSED) {
      setState("failed", "refused: not reconnecting");
      explainRefusal(url);
      return;
    }
    setState("reconnecting", "connection lost: reconnecting\u2026");
    if (!page.lost) {
      page.lost = true;
      note("connection lost; the browser reconnects by itself");
    }
  };
}

// EventSource gives up after an HTTP error without saying why: ask once more, read the JSON.
async function explainRefusal(url) {
  const abort = new AbortController();
  try {
    const response = await fetch(url, { signal: abort.signal });
    if (response.ok) {
      showProblem("the stream failed; press Connect to try again");
      return;
    }
    const body = await response.json();
    const error = body.error || {};
    showProblem(`${response.status} ${error.code}: ${error.message}${error.hint ? ` (${error.hint})` : ""}`);
  } catch (exc) {
    showProblem(`the stream failed: ${exc}`);
  } finally {
    abort.abort();
  }
}

function closeSource() {
  if (page.source) {
    page.source.close();
    page.source = null;
  }
}

function disconnect(reason) {
  closeSource();
  setState("closed", reason || "disconnected");
}

function addChannel(name) {
  if (!CHANNEL_RE.test(name)) {
    showProblem(`${JSON.stringify(name)} is not a channel name: 1-64 of A-Z a-z 0-9 _ - . :`);
    return;
  }
  if (!page.channels.includes(name)) {
    page.channels = [...page.channels, name].sort();
    renderChannels();
  }
  connect();
}

function removeChannel(name) {
  page.channels = page.channels.filter((channel) => channel !== name);
  renderChannels();
  if (page.channels.length) connect();
  else {
    disconnect("not connected: add a channel");
    writeQuery();
  }
}

async function loadEventNames() {
  try {
    const response = await fetch("events/schema");
    if (response.ok) page.eventNames = Object.keys(await response.json());
  } catch {
    // Keep the fallback names: the stream still works, other types are just not shown.
  }
}

function readQuery() {
  const query = new URLSearchParams(location.search);
  page.channels = [...new Set(query.getAll("channel").filter((c) => c))].sort();
  const start = query.get("last_event_id");
  if (start === "earliest") page.fromEarliest = true;
  else if (start && start !== "live") page.startCursor = start;
  page.token = query.get("token") || "";
}

async function main() {
  readQuery();
  $("from-earliest").checked = page.fromEarliest;
  $("token").value = page.token;
  renderChannels();
  updateStatus();
  $("add-channel").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("channel-name");
    addChannel(input.value.trim());
    input.value = "";
  });
  $("from-earliest").addEventListener("change", (event) => {
    page.fromEarliest = event.target.checked;
    writeQuery();
  });
  $("token").addEventListener("change", (event) => {
    page.token = event.target.value.trim();
  });
  $("options").addEventListener("submit", (event) => {
    event.preventDefault();
    page.token = $("token").value.trim();
    connect();
  });
  $("disconnect").addEventListener("click", () => disconnect());
  await loadEventNames();
  if (page.channels.length) connect();
  else setState("idle", "not connected: add a channel");
}

main();
