// The operators' web inbox: wires the channel (operator protocol 2) to the
// list, the thread, the composer, the side panel and the notifications.

import { Channel } from "./connection.js";
import { Composer } from "./composer.js";
import { ago, clock, expandCanned, learnServerTime, linkedText, since, visitorName } from "./format.js";
import { installShortcuts } from "./keys.js";
import { installLayout } from "./layout.js";
import { ConversationList } from "./list.js";
import { installListing } from "./listing.js";
import { closeMenus, installMenus } from "./menus.js";
import { Notifier } from "./notify.js";
import { Panel } from "./panel.js";
import { Search } from "./search.js";
import { ThreadView } from "./thread.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("data").textContent);
const TOKEN_KEY = "wsdaemon-operator-token";
const AVAILABILITY_KEY = "wsdaemon-inbox-availability";
/** Canned replies fetched (the daemon holds at most 500). */
const MAX_CANNED = 500;

const state = { me: null, displayName: null, team: new Map(), open: null, opening: 0, profile: null };

const list = new ConversationList($("conversations"), {
  onSelect: (id) => openConversation(id),
  onNeedMore: () => loadMore(),
});
const thread = new ThreadView({ list: $("entries"), scroller: $("thread"), older: $("older"), full: $("thread-full"),
  onWhole: showWhole, nameOf: (o) => nameOf(o) });
const panel = new Panel({
  avatar: $("avatar"), name: $("visitor-name"), email: $("visitor-email"),
  visitorDetails: $("visitor-details"), conversationDetails: $("conversation-details"),
  labels: $("labels"), labelForm: $("label-form"), labelInput: $("label-input"), previous: $("previous"),
}, {
  onAddLabel: (label) => change({ type: "labels", add: [label] }),
  onRemoveLabel: (label) => change({ type: "labels", remove: [label] }),
  onOpen: (id) => openConversation(id),
  onJump: jumpTo,
});
const notifier = new Notifier({ soundBox: $("sound"), desktopButton: $("desktop-notify"), desktopState: $("desktop-state") });
const composer = new Composer({
  form: $("composer"), text: $("text"), menu: $("canned"), error: $("composer-error"),
  modes: [...document.querySelectorAll("input[name=mode]")],
  onSend: send,
  onTyping: (on) => { if (state.open) { channel.request({ type: "typing", conversation: state.open, on }).catch(() => {}); } },
  cannedValues: (text) => {
    const c = list.get(state.open) || thread.summary || {};
    return expandCanned(text, { name: c.name, alias: c.alias, email: c.email || c.contact, operator: state.displayName });
  },
});

const layout = installLayout({ $ });

const channel = new Channel(config.channel, { onHello, onEvent, onState });

// -- signing in ---------------------------------------------------------------

function onState(name, detail) {
  const banner = $("banner");
  if (name === "connecting") {
    $("signin-button").disabled = true;
    $("signin-button").textContent = "Signing in…";
  } else if (name === "open") {
    banner.hidden = true;
    layout.showConnected(true);
    $("signin").hidden = true;
    $("app").hidden = false;
  } else if (name === "reconnecting" && $("app").hidden) {
    // Never signed in yet: the form says it, and keeps trying.
    $("signin-error").hidden = false;
    $("signin-error").textContent = "Cannot reach the daemon" + (detail ? "; trying again in " + detail + " s…" : "…");
  } else if (name === "reconnecting") {
    layout.showConnected(false);
    banner.hidden = false;
    banner.className = "banner warning";
    const retry = document.createElement("button");
    retry.className = "link";
    retry.textContent = "Retry now";
    retry.addEventListener("click", () => channel.retryNow());
    banner.replaceChildren(detail ? "Connection lost. Reconnecting in " + detail + " s… " : "Reconnecting… ", detail ? retry : "");
  } else if (name === "refused") {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(detail);
  }
}

function showSignIn(error) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-button").disabled = false;
  $("signin-button").textContent = "Sign in";
  $("signin-error").hidden = !error;
  $("signin-error").textContent = error || "";
  $("token").setAttribute("aria-invalid", error ? "true" : "false");
  $("token").focus();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) { showSignIn("Enter your operator token."); return; }
  $("signin-error").hidden = true;
  sessionStorage.setItem(TOKEN_KEY, token);
  channel.start(token);
});
$("signout").addEventListener("click", () => {
  channel.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  showSignIn(null);
});

function onHello(hello) {
  state.me = hello.operator;
  state.displayName = hello.display_name;
  list.me = hello.operator;
  $("me").textContent = hello.display_name;
  $("me").title = "Signed in as " + hello.operator;
  setTeam(hello.team);
  if (list.filter.view === "all" && !list.filter.status && !list.filter.search) {
    list.reset(hello);
    summarize();
  } else {
    reload();
  }
  refreshCounts();
  loadCanned();
  const wanted = localStorage.getItem(AVAILABILITY_KEY) || "online";
  const mine = state.team.get(state.me);
  if (!mine || mine.availability !== wanted) { setAvailability(wanted); }
  if (state.open) { openConversation(state.open); }
}

async function loadCanned() {
  const replies = [];
  let after = null;
  try {
    do {
      const page = await channel.request(Object.assign({ type: "canned", limit: 500 }, after ? { after } : {}));
      replies.push(...page.canned);
      after = page.more ? page.next : null;
    } while (after && replies.length < MAX_CANNED);
  } catch (e) { /* none, or the connection went: the next hello asks again */ }
  composer.canned = replies;
}

// -- the team and availability ---------------------------------------------------------

function setTeam(entries) {
  state.team = new Map(entries.map((o) => [o.name, o]));
  drawTeam();
}

function drawTeam() {
  const mine = state.team.get(state.me);
  const availability = mine ? mine.availability : "offline";
  $("availability").value = availability;
  $("availability-dot").className = "dot " + availability;
  drawAssignee();
}

function setAvailability(value) {
  localStorage.setItem(AVAILABILITY_KEY, value);
  channel.request({ type: "availability", availability: value })
    .then((answer) => setTeam(answer.team), (e) => toast("Availability not changed: " + e.message));
}
$("availability").addEventListener("change", (event) => setAvailability(event.target.value));

// -- the list ---------------------------------------------------------------

const { reload, loadMore, summarize, refreshCounts } = installListing({ channel, list, $, toast });

const search = new Search({
  box: $("search"), panel: $("search-panel"), summary: $("search-summary"), scope: $("search-scope"),
  results: $("search-results"), more: $("search-more"), notes: $("search-notes"), status: $("search-status"),
}, {
  channel, nameOf: (o) => o === state.me ? "You" : nameOf(o), onOpen: (id) => openConversation(id),
  onActive: (on) => document.querySelector(".sidebar").classList.toggle("searching", on),
});

// -- events -------------------------------------------------------------------

function onEvent(event) {
  const c = event.conversation;
  if (c && typeof c === "object") {
    if (c.waiting_since !== null && typeof c.waiting === "number") { learnServerTime(c.waiting_since + c.waiting); }
    list.upsert(c);
    if (state.open === c.id) { showSummary(c, event.actor || null); }
    const message = event.message;
    if (message && state.open === c.id) { thread.add(message); }
    if (event.note && state.open === c.id) { thread.add(event.note); }
    if (message && message.author === "visitor") {
      notifier.visitorWrote(visitorName(c), message.text, () => openConversation(c.id));
      if (state.open === c.id && notifier.looking) { markRead(c); }
    }
    refreshCounts();
    summarize();
  } else if (event.type === "team") {
    // A name removed from the configuration has left the team.
    if (event.operator.left) { state.team.delete(event.operator.name); }
    else { state.team.set(event.operator.name, event.operator); }
    drawTeam();
  } else if (event.type === "viewing") {
    const shown = list.get(event.conversation);
    if (shown) { list.upsert(Object.assign({}, shown, { viewing: event.operators })); }
    if (state.open === event.conversation && thread.summary) {
      showSummary(Object.assign({}, thread.summary, { viewing: event.operators }));
    }
  } else if (event.type === "resync") {
    reload();
  } else if (event.type === "undeliverable") {
    toast("A message could not be delivered to the visitor.");
  } else if (event.type === "error") {
    toast(event.error);
  }
}

// -- one conversation -------------------------------------------------------------

async function openConversation(id) {
  if (!id) { return; }
  const ticket = ++state.opening;
  if (state.open !== id) { composer.clear(); }
  state.open = id;
  layout.showConversation();
  list.select(id);
  search.select(id);
  try {
    const answer = await channel.request({ type: "open", conversation: id, limit: 50 });
    if (ticket !== state.opening) { return; }
    $("empty").hidden = true;
    $("conversation").hidden = false;
    $("panel").hidden = false;
    state.profile = answer.profile || null;
    thread.show(answer, state.me);
    showEpisodes(answer.episodes || [], answer.previous || []);
    showSummary(answer.conversation);
    if (answer.conversation.unread && notifier.looking) { markRead(answer.conversation); }
  } catch (e) {
    if (ticket === state.opening) { toast("Could not open the conversation: " + e.message); }
  }
}

function showEpisodes(episodes, previous) {
  panel.showPrevious(episodes, previous);
  const later = episodes.slice(1).map((e) => ["m" + e.from_seq, "Reopened · " + clock(e.opened_at)]);
  thread.markEpisodes(new Map(later));
}

/** Show message `seq` of the open conversation, loading older pages until it is there. */
async function jumpTo(seq) {
  const id = state.open;
  try {
    while (!thread.reveal(seq) && thread.cursor && state.open === id) {
      const answer = await channel.request(Object.assign({ type: "history", conversation: id, limit: 100 }, thread.cursor));
      if (state.open !== id) { return; }
      thread.prepend(answer);
    }
  } catch (e) { toast("Could not load the earlier messages: " + e.message); }
}

function showSummary(c, actor) {
  thread.update(c, actor);
  panel.show(c, state.profile, (o) => o === state.me ? "You" : nameOf(o));
  $("conversation-title").textContent = visitorName(c);
  const parts = [];
  if (c.name) { parts.push(c.alias); }
  if (c.status === "snoozed") { parts.push("Snoozed"); } else if (c.status === "resolved") { parts.push("Resolved"); }
  if (c.visitor_online === true) { parts.push("Connected now"); }
  else if (c.visitor_online === false) { parts.push(c.visitor_last_seen ? "Last seen " + ago(c.visitor_last_seen) : "Not connected"); }
  if (c.with_bot) { parts.push("The bot is answering"); }
  if (c.waiting_since) {
    const waited = since(c.waiting_since);
    parts.push(waited === "now" ? "Waiting < 1 min" : "Waiting " + waited);
  }
  const others = (c.viewing || []).filter((o) => o !== state.me);
  if (others.length) { parts.push("Also viewing: " + others.map(nameOf).join(", ")); }
  $("conversation-subtitle").textContent = parts.join(" · ");
  const resolved = c.status === "resolved";
  $("resolve").textContent = resolved ? "Reopen" : "Resolve";
  $("resolve").classList.toggle("primary", !resolved);
  // A resolved conversation (found by search) is history: reopening it writes again.
  $("composer").hidden = resolved;
  $("resolved-bar").hidden = !resolved;
  $("snooze-button").hidden = resolved;
  layout.showAway(c, resolved);
  $("assignee").disabled = resolved;
  const typing = (c.typing || []).filter((who) => who !== state.me);
  $("typing").textContent = typing.length ? typing.map((who) => who === "visitor" ? visitorName(c) : nameOf(who)).join(", ")
    + (typing.length > 1 ? " are typing…" : " is typing…") : "";
  drawAssignee();
}

function nameOf(operator) {
  const known = state.team.get(operator);
  return known ? known.display_name : operator;
}

function drawAssignee() {
  const select = $("assignee");
  const c = thread.summary;
  const options = [["", "Unassigned"]];
  for (const o of state.team.values()) {
    options.push([o.name, (o.name === state.me ? "You (" + o.display_name + ")" : o.display_name) + " · " + o.availability]);
  }
  select.replaceChildren(...options.map(([value, label]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    return option;
  }));
  select.value = c && c.assignee ? c.assignee : "";
}

$("assignee").addEventListener("change", (event) => {
  const to = event.target.value || null;
  const c = thread.summary;
  const request = c && c.assignee && to ? { type: "transfer", to } : { type: "assign", operator: to };
  change(request);
});

/** A change to the open conversation; its answer's summary is shown. */
function change(body) {
  if (!state.open) { return Promise.reject(new Error("no conversation open")); }
  return channel.request(Object.assign({ conversation: state.open }, body)).then((answer) => {
    list.upsert(answer.conversation);
    if (state.open === answer.conversation.id) { showSummary(answer.conversation, state.me); }
    return answer;
  }, (e) => { toast(e.message); throw e; });
}

function markRead(c) {
  channel.request({ type: "read", conversation: c.id }).then((answer) => list.upsert(answer.conversation), () => {});
}

function send(mode, text) {
  if (!state.open) { return Promise.reject(new Error("no conversation open")); }
  return channel.request({ type: mode, conversation: state.open, text }).then((answer) => {
    const entry = answer.message || answer.note;
    if (entry && state.open === answer.conversation.id) { thread.add(entry); }
    list.upsert(answer.conversation);
    if (state.open === answer.conversation.id) { showSummary(answer.conversation, state.me); }
  });
}

async function showWhole(entry, textNode, button) {
  let text = "";
  const what = entry.kind === "note" ? { note: entry.note_id } : { seq: entry.seq };
  try {
    for (;;) {
      const part = await channel.request(Object.assign({ type: "text", conversation: entry.conversation, offset: text.length }, what));
      text += part.text;
      if (!part.more) { break; }
    }
    textNode.replaceWith(linkedText("text", text));
    button.remove();
  } catch (e) { toast("Could not load the whole text: " + e.message); }
}

$("older").addEventListener("click", () => {
  if (!thread.cursor || !state.open) { return; }
  const id = state.open;
  channel.request(Object.assign({ type: "history", conversation: id, limit: 50 }, thread.cursor))
    .then((answer) => { if (state.open === id) { thread.prepend(answer); } }, (e) => toast(e.message));
});

function resolveOrReopen() {
  const c = thread.summary;
  if (!c) { return; }
  change({ type: c.status === "resolved" ? "reopen" : "resolve" });
}
$("resolve").addEventListener("click", resolveOrReopen);
$("reopen").addEventListener("click", () => change({ type: "reopen" }).then(() => $("text").focus(), () => {}));

installMenus({ $, onSnooze: (until) => change({ type: "snooze", until }) });

function toast(text) {
  const box = $("banner");
  if (!channel.open) { return; }
  box.hidden = false;
  box.className = "banner error";
  const close = document.createElement("button");
  close.className = "link";
  close.textContent = "Dismiss";
  close.addEventListener("click", () => { box.hidden = true; });
  box.replaceChildren(String(text) + " ", close);
}

const shortcuts = installShortcuts({
  help: $("help"), helpClose: $("help-close"),
  next: () => openConversation(list.neighbour(1)),
  previous: () => openConversation(list.neighbour(-1)),
  resolve: resolveOrReopen,
  reply: () => { if (state.open) { composer.setMode("reply"); $("text").focus(); } },
  note: () => { if (state.open) { composer.setMode("note"); $("text").focus(); } },
  escape: (event) => {
    closeMenus();
    layout.closeOverlay();
    if (event.target === $("text")) { $("text").blur(); }
  },
});
$("help-button").addEventListener("click", () => { $("settings").hidden = true; shortcuts.openHelp(); });

// Back on the tab: what arrived in the open conversation meanwhile is read now.
function caughtUp() {
  const c = state.open ? list.get(state.open) || thread.summary : null;
  if (c && c.id === state.open && c.unread && notifier.looking) { markRead(c); }
}
window.addEventListener("focus", caughtUp);
document.addEventListener("visibilitychange", caughtUp);

setInterval(() => {
  list.draw(true);
  if (thread.summary && state.open) { showSummary(thread.summary); }
}, 30000);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  $("token").value = saved;
  channel.start(saved);
} else {
  showSignIn(null);
}
