// One conversation's thread: messages and private notes in time order, with
// who wrote them, when, and (for what we sent) delivered / read.

import { clock, el, fullTime, linkedText, serverNow, visitorName } from "./format.js";

/** Entries kept on the page for one conversation; older ones reload on scroll up. */
export const MAX_ENTRIES = 1000;

function keyOf(entry) {
  if (entry.kind === "event") { return "e" + entry.event_id; }
  return entry.kind === "note" ? "n" + entry.note_id : "m" + entry.seq;
}
function orderOf(entry) {
  if (entry.kind === "event") { return [entry.at, 2, entry.event_id]; }
  return [entry.at, entry.kind === "note" ? 1 : 0, entry.kind === "note" ? entry.note_id : entry.seq];
}
let events = 0;

/** What changed between two summaries of one conversation, for a system line (or null). */
export function changeLine(before, after, by) {
  const suffix = by ? " by " + by : "";
  if (before.status !== after.status) {
    if (after.status === "resolved") { return "Resolved" + suffix; }
    if (after.status === "snoozed") { return "Snoozed" + suffix; }
    if (before.status === "resolved") { return "Reopened" + suffix; }
    if (before.status === "snoozed") { return "Woke from snooze" + suffix; }
  }
  if ((before.assignee || null) !== (after.assignee || null)) {
    if (!after.assignee) { return "Unassigned" + suffix; }
    const to = after.assignee_name || after.assignee;
    return (before.assignee ? "Transferred to " : "Assigned to ") + to + suffix;
  }
  return null;
}
function before(a, b) {
  const x = orderOf(a), y = orderOf(b);
  for (let i = 0; i < 3; i++) {
    if (x[i] !== y[i]) { return x[i] < y[i]; }
  }
  return false;
}

export class ThreadView {
  constructor({ list, scroller, older, full, onWhole, nameOf }) {
    this.nameOf = nameOf || ((o) => o);
    this.list = list;
    this.scroller = scroller;
    this.older = older;
    this.full = full;
    this.onWhole = onWhole;
    this.entries = [];
    this.nodes = new Map();
    this.summary = null;
    this.cursor = null;
  }

  /** The answer of `open`: the newest page. */
  show(answer, me) {
    this.me = me;
    this.summary = answer.conversation;
    this.entries = [];
    this.nodes.clear();
    this.episodeStarts = null;
    this.list.replaceChildren();
    this.full.hidden = true;
    for (const entry of answer.entries) { this.place(entry); }
    this.page(answer);
    this.scrollToEnd();
  }

  page(answer) {
    this.cursor = answer.more ? { before: answer.before, before_note: answer.before_note } : null;
    this.older.hidden = this.cursor === null;
  }

  /** An older page, above what is shown (its newest entries, up to MAX_ENTRIES in all). */
  prepend(answer) {
    const height = this.scroller.scrollHeight;
    const room = Math.max(0, MAX_ENTRIES - this.entries.length);
    const taken = answer.entries.slice(Math.max(0, answer.entries.length - room));
    for (const entry of taken) { this.place(entry); }
    this.page(answer);
    if (taken.length < answer.entries.length) {
      this.cursor = null;
      this.older.hidden = true;
      this.full.hidden = false;
    }
    this.scroller.scrollTop += this.scroller.scrollHeight - height;
  }

  /** A message or note from an event (or a reply's answer): once, in place. */
  add(entry) {
    const atEnd = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 80;
    this.place(entry);
    if (this.entries.length > MAX_ENTRIES) {
      while (this.entries.length > MAX_ENTRIES) {
        const dropped = this.entries.shift();
        this.nodes.get(keyOf(dropped)).remove();
        this.nodes.delete(keyOf(dropped));
      }
      // Older pages resume before what is still shown (a note seen twice is placed once).
      const seqs = this.entries.filter((e) => e.kind === "message").map((e) => e.seq);
      const notes = this.entries.filter((e) => e.kind === "note").map((e) => e.note_id);
      this.cursor = { before: seqs.length ? Math.min(...seqs) : null,
                      before_note: notes.length ? Math.min(...notes) : null };
      this.older.hidden = false;
      this.full.hidden = true;
    }
    if (atEnd || entry.operator === this.me) { this.scrollToEnd(); }
  }

  place(entry) {
    const key = keyOf(entry);
    // A stored entry never changes: the second copy (a reply's answer and
    // its event, a page overlapping what is shown) is the same.
    if (this.nodes.has(key)) { return; }
    const node = this.draw(entry);
    this.nodes.set(key, node);
    this.markEpisode(key, node);
    let at = this.entries.length;
    while (at > 0 && before(entry, this.entries[at - 1])) { at -= 1; }
    this.entries.splice(at, 0, entry);
    const next = this.entries[at + 1];
    this.list.insertBefore(node, next ? this.nodes.get(keyOf(next)) : null);
  }

  /**
   * The conversation changed (delivery, read, typing): redraw the states.
   * An assignment, transfer, resolve, snooze or reopen seen here adds a
   * small system line ("Assigned to Bob by Alice"), `actor` the operator
   * who did it; the daemon does not store these, so they are seen live only.
   */
  update(summary, actor) {
    const before = this.summary;
    this.summary = summary;
    if (before && before.id === summary.id) {
      const line = changeLine(before, summary, actor ? (actor === this.me ? "you" : this.nameOf(actor)) : null);
      if (line) { this.add({ kind: "event", event_id: ++events, author: "system", at: serverNow(), text: line }); }
    }
    for (const entry of this.entries) {
      if (entry.kind === "message" && (entry.author === "operator" || entry.author === "bot")) {
        const state = this.nodes.get(keyOf(entry)).querySelector(".state");
        if (state) { this.setState(state, entry); }
      }
    }
  }

  setState(node, entry) {
    const s = this.summary || {};
    const read = entry.seq <= (s.visitor_read_upto || 0);
    const delivered = read || entry.seq <= (s.delivered_upto || 0);
    const known = s.delivered_upto !== undefined;
    const waits = s.visitor_online === false ? "Sent · waits for the visitor to come back" : "Sent";
    node.textContent = !known ? "" : read ? "✓✓ Read" : delivered ? "✓ Delivered" : waits;
    node.className = "state" + (read ? " read" : delivered ? " delivered" : "");
  }

  draw(entry) {
    const note = entry.kind === "note";
    const author = note ? "note" : entry.author;
    const li = el("li", "entry " + author);
    li.dataset.key = keyOf(entry);
    if (author === "system") {
      li.append(el("p", "system-text", entry.text));
      const time = el("time", "muted small", " · " + clock(entry.at));
      time.title = fullTime(entry.at);
      li.firstChild.append(time);
      return li;
    }
    let who;
    if (note) { who = (entry.operator === this.me ? "You" : this.nameOf(entry.operator)) + " · private note"; }
    else if (author === "visitor") { who = visitorName(this.summary || {}); }
    else if (author === "bot") { who = entry.name || "Bot"; }
    else { who = entry.operator === this.me ? "You" : (entry.name || entry.operator || "Operator"); }
    const time = el("time", "", clock(entry.at));
    time.dateTime = new Date(entry.at * 1000).toISOString();
    time.title = fullTime(entry.at);
    const head = el("div", "entry-head", el("span", "who", who), time);
    if (author === "bot") { head.append(el("span", "chip bot-chip", "Bot")); }
    const bubble = el("div", "bubble", linkedText("text", entry.text));
    if (entry.truncated) {
      const whole = el("button", "link", "Show all (" + (entry.length - entry.text.length) + " more characters)");
      whole.type = "button";
      whole.addEventListener("click", () => this.onWhole(entry, bubble.firstChild, whole));
      bubble.append(whole);
    }
    li.append(head, bubble);
    if (!note && (author === "operator" || author === "bot")) {
      const state = el("span", "state");
      this.setState(state, entry);
      li.append(state);
    }
    return li;
  }

  scrollToEnd() { this.scroller.scrollTop = this.scroller.scrollHeight; }

  /** Where the later episodes began (seq -> "Reopened ..."): marked above their first message. */
  markEpisodes(starts) {
    this.episodeStarts = starts;
    for (const [key, node] of this.nodes) { this.markEpisode(key, node); }
  }

  markEpisode(key, node) {
    const label = this.episodeStarts ? this.episodeStarts.get(key) : undefined;
    node.classList.toggle("episode-start", Boolean(label));
    if (label) { node.dataset.episode = label; } else { delete node.dataset.episode; }
  }

  /** Whether message `seq` is shown; if so, scrolled to and pointed out. */
  reveal(seq) {
    const node = this.nodes.get("m" + seq);
    if (!node) { return false; }
    node.scrollIntoView({ block: "start" });
    node.classList.add("pointed");
    setTimeout(() => node.classList.remove("pointed"), 2000);
    return true;
  }

  get lastSeq() {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (this.entries[i].kind === "message") { return this.entries[i].seq; }
    }
    return 0;
  }
}
