// The search box: the store-wide `search` request (resolved conversations
// too, not only the live list), debounced; each result with its matching
// snippets, the matches highlighted from the daemon's offsets (text nodes and
// <mark>, never HTML); "More results" pages on; whether the search stopped
// at its bound or could only look at live conversations is said. Escape (or
// an empty box) brings the live list back.

import { el, hue, initials, markedParts, since, visitorName } from "./format.js";

/** Conversations a page of results asks for (the daemon gives at most 50). */
export const PAGE = 20;
/** Results kept on the page; past them "More results" is not offered. */
export const MAX_RESULTS = 200;
/** Milliseconds after the last key before the search is sent. */
const DEBOUNCE = 300;
/** Characters of a search's text (the daemon's MAX_QUERY_CHARS). */
const MAX_CHARS = 200;

const STATUS = { open: "Open", snoozed: "Snoozed", resolved: "Resolved" };
const KIND = { note: "Private note", visitor: "Visitor", preview: "Latest message" };

export class Search {
  /**
   * @param {object} ids box, panel, summary, scope, results, more, notes, status
   * @param {object} deps channel (requests), onOpen(id), onActive(searching),
   *   nameOf(operator) for assignees
   */
  constructor(ids, { channel, onOpen, onActive, nameOf }) {
    this.ids = ids;
    this.channel = channel;
    this.onOpen = onOpen;
    this.onActive = onActive;
    this.nameOf = nameOf;
    this.ticket = 0;
    this.timer = 0;
    this.count = 0;
    this.next = null;
    this.selected = null;
    this.active = false;
    ids.box.maxLength = MAX_CHARS;
    ids.box.addEventListener("input", () => {
      clearTimeout(this.timer);
      // An emptied box shows the live list at once; words wait for a pause.
      if (!ids.box.value.trim()) { this.stop(); return; }
      this.timer = setTimeout(() => this.run(null), DEBOUNCE);
    });
    ids.box.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && (ids.box.value || this.active)) {
        event.preventDefault();
        event.stopPropagation();
        this.clear();
      } else if (event.key === "Enter") {
        clearTimeout(this.timer);
        this.run(null);
      }
    });
    ids.notes.addEventListener("change", () => this.run(null));
    ids.status.addEventListener("change", () => this.run(null));
    ids.more.addEventListener("click", () => { if (this.next) { this.run(this.next); } });
  }

  /** Empty the box and go back to the live list. */
  clear() {
    clearTimeout(this.timer);
    this.ids.box.value = "";
    this.stop();
  }

  stop() {
    this.ticket++;
    this.count = 0;
    this.next = null;
    this.ids.results.replaceChildren();
    this.ids.more.hidden = true;
    this.setActive(false);
  }

  setActive(on) {
    if (this.active === on) { return; }
    this.active = on;
    this.ids.panel.hidden = !on;
    this.onActive(on);
  }

  /** The first page (after null) or the next one. */
  run(after) {
    const text = this.ids.box.value.trim();
    if (!text) { this.stop(); return; }
    const ticket = ++this.ticket;
    const body = { type: "search", text, limit: PAGE };
    if (this.ids.notes.checked) { body.notes = true; }
    if (this.ids.status.value) { body.status = this.ids.status.value; }
    if (after) { body.after = after; }
    this.setActive(true);
    this.ids.more.disabled = true;
    if (!after) { this.ids.summary.textContent = "Searching…"; }
    this.channel.request(body).then((answer) => {
      if (ticket !== this.ticket) { return; }
      if (!after) {
        this.count = 0;
        this.ids.results.replaceChildren();
        this.ids.results.scrollTop = 0;
      }
      this.take(answer);
    }, (e) => {
      if (ticket !== this.ticket) { return; }
      this.ids.summary.textContent = "Search failed: " + e.message;
      this.ids.more.disabled = false;
    });
  }

  take(answer) {
    const results = Array.isArray(answer.results) ? answer.results : [];
    const room = Math.max(0, MAX_RESULTS - this.count);
    for (const result of results.slice(0, room)) {
      if (result && result.conversation) { this.ids.results.append(this.row(result)); }
    }
    this.count += Math.min(results.length, room);
    this.next = answer.more ? answer.next : null;
    const total = Number(answer.total) || 0;
    let summary = total === 1 ? "1 conversation found" : total + " conversations found";
    if (!total) { summary = "Nothing found"; }
    this.ids.summary.textContent = summary;
    const notes = [];
    if (answer.partial) { notes.push("The search stopped at its time bound: add a word to narrow it."); }
    if (answer.scope === "live") { notes.push("Open and snoozed conversations only: this daemon's store keeps no search index."); }
    this.ids.scope.textContent = notes.join(" ");
    this.ids.scope.hidden = !notes.length;
    this.ids.more.hidden = !(this.next && this.count < MAX_RESULTS);
    this.ids.more.disabled = false;
  }

  /** Mark the result of the conversation shown (the others unmarked). */
  select(id) {
    this.selected = id;
    for (const li of this.ids.results.children) {
      const on = li.dataset.id === id;
      li.classList.toggle("selected", on);
      li.firstChild.setAttribute("aria-current", on ? "true" : "false");
    }
  }

  row(result) {
    const c = result.conversation;
    const name = visitorName(c);
    const avatar = el("span", "avatar small hue-" + (hue(c.visitor) % 8), initials(name));
    avatar.setAttribute("aria-hidden", "true");
    const time = el("span", "row-time", since(c.last_activity_at));
    time.title = "last activity";
    const hits = el("span", "result-hits");
    for (const hit of (result.hits || []).slice(0, 3)) {
      const line = el("span", "snippet" + (hit.kind === "note" ? " note" : ""));
      if (KIND[hit.kind]) { line.append(el("span", "snippet-kind", KIND[hit.kind] + ": ")); }
      for (const part of markedParts(hit.snippet, hit.marks)) {
        line.append(part.mark ? el("mark", "", part.text) : document.createTextNode(part.text));
      }
      hits.append(line);
    }
    const meta = el("span", "row-meta",
      el("span", "chip status-" + (STATUS[c.status] ? c.status : "open"), STATUS[c.status] || String(c.status)),
      el("span", "assignee" + (c.assignee ? "" : " none"), c.assignee ? this.nameOf(c.assignee) : "Unassigned"));
    const button = el("button", "row-button result-button", avatar,
      el("span", "row-body", el("span", "row-top", el("span", "row-name", name), time), hits, meta));
    button.type = "button";
    button.setAttribute("aria-current", c.id === this.selected ? "true" : "false");
    button.addEventListener("click", () => { this.select(c.id); this.onOpen(c.id); });
    const li = el("li", "result-row" + (c.id === this.selected ? " selected" : ""), button);
    li.dataset.id = c.id;
    return li;
  }
}
