// The conversation list: the pages loaded so far (most waiting first, as the
// daemon orders them), kept live from the channel's events, drawn with one
// row element per conversation reused across redraws (one redraw a frame).

import { el, initials, hue, since, visitorName } from "./format.js";

/** Where a conversation sorts, as the daemon's sort_key. */
function sortKey(c) {
  return c.waiting_since !== null && c.waiting_since !== undefined
    ? [0, c.waiting_since, c.id] : [1, -c.last_activity_at, c.id];
}
function compareKeys(a, b) {
  for (let i = 0; i < 3; i++) {
    if (a[i] < b[i]) { return -1; }
    if (a[i] > b[i]) { return 1; }
  }
  return 0;
}

/** The most conversations kept on the page; past it the list stops paging. */
export const MAX_LOADED = 2000;

export class ConversationList {
  constructor(root, { onSelect, onNeedMore }) {
    this.root = root;
    this.onSelect = onSelect;
    this.onNeedMore = onNeedMore;
    this.me = null;
    this.filter = { view: "all", status: null, search: "" };
    this.items = new Map();
    this.order = [];
    this.rows = new Map();
    this.total = 0;
    this.more = false;
    this.next = null;
    this.selected = null;
    this.shownSelection = null;
    this.frame = 0;
    this.loading = false;
  }

  /** The listing request for the current filter (and a page's cursor). */
  request(after) {
    if (this.filter.status === "resolved") {
      // Resolved ones are the store's, not the live list: the search
      // request with a status and no words (every tab alike).
      return Object.assign({ type: "search", status: "resolved", limit: 50 }, after ? { after } : {});
    }
    const body = { type: "conversations", view: this.filter.view, limit: 100 };
    if (this.filter.status) { body.status = this.filter.status; }
    if (this.filter.search) { body.search = this.filter.search; }
    if (after) { body.after = after; }
    return body;
  }

  /** A first page (hello, a new filter, a resync). */
  reset(answer) {
    this.items.clear();
    this.take(answer);
  }

  /** A further page. */
  take(answer) {
    if (answer.results) {
      answer = { conversations: answer.results.map((r) => r.conversation), total: answer.total,
                 more: answer.more, next: answer.next, scope: answer.scope };
    }
    this.scope = answer.scope || null;
    for (const c of answer.conversations) { this.items.set(c.id, c); }
    this.total = answer.total;
    this.more = answer.more && this.items.size < MAX_LOADED;
    this.next = answer.next;
    this.loading = false;
    this.sort();
    this.schedule();
  }

  matches(c) {
    if (this.filter.status === "resolved") { return c.status === "resolved"; }
    if (c.status === "resolved") { return false; }
    if (this.filter.status && c.status !== this.filter.status) { return false; }
    if (this.filter.view === "mine" && c.assignee !== this.me) { return false; }
    if (this.filter.view === "unassigned" && (c.assignee || c.status !== "open")) { return false; }
    const needle = this.filter.search.toLowerCase();
    if (needle) {
      const fields = [c.preview, c.visitor, c.id, c.alias, c.contact || "", c.name || "", ...(c.labels || [])];
      if (!fields.some((f) => String(f || "").toLowerCase().includes(needle))) { return false; }
    }
    return true;
  }

  /** A conversation's new summary, from any event: in, moved, or out of the list. */
  upsert(c) {
    const had = this.items.has(c.id);
    if (!this.matches(c)) {
      if (had) {
        this.items.delete(c.id);
        this.total = Math.max(0, this.total - 1);
        this.order = this.order.filter((id) => id !== c.id);
        this.schedule();
      }
      return;
    }
    if (!had) {
      this.total += 1;
      // Past the pages loaded it comes with a later page.
      const last = this.order.length ? this.items.get(this.order[this.order.length - 1]) : null;
      if (this.more && last && compareKeys(sortKey(c), sortKey(last)) > 0) { return; }
    }
    this.items.set(c.id, c);
    this.place(c);
    this.schedule();
  }

  /** Move one conversation to where it sorts now (a binary search, no full sort). */
  place(c) {
    const at = this.order.indexOf(c.id);
    if (at >= 0) { this.order.splice(at, 1); }
    const key = sortKey(c);
    let low = 0, high = this.order.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (compareKeys(sortKey(this.items.get(this.order[middle])), key) < 0) { low = middle + 1; } else { high = middle; }
    }
    this.order.splice(low, 0, c.id);
  }

  get(id) { return this.items.get(id); }

  sort() {
    const keyed = [...this.items.values()].map((c) => [sortKey(c), c.id]);
    keyed.sort((a, b) => compareKeys(a[0], b[0]));
    this.order = keyed.map((k) => k[1]);
  }

  select(id) {
    this.selected = id;
    this.schedule();
  }

  /** The conversation `step` rows from the selected one (for j/k). */
  neighbour(step) {
    if (!this.order.length) { return null; }
    const at = this.order.indexOf(this.selected);
    if (at < 0) { return this.order[0]; }
    const to = Math.min(this.order.length - 1, Math.max(0, at + step));
    return this.order[to];
  }

  schedule() {
    if (this.frame) { return; }
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  /** Redraw now; `retime`: every row's waiting time too (every half minute). */
  draw(retime) {
    this.retime = Boolean(retime);
    const rows = this.order.map((id) => this.row(this.items.get(id)));
    const current = [...this.root.children];
    if (current.length !== rows.length || current.some((node, i) => node !== rows[i])) {
      this.root.replaceChildren(...rows);
    }
    for (const id of [...this.rows.keys()]) {
      if (!this.items.has(id)) { this.rows.delete(id); }
    }
    // Brought into view once when selected, not at every redraw (the
    // operator may be scrolling the list while events come).
    if (this.selected && this.selected !== this.shownSelection && this.rows.has(this.selected)) {
      this.shownSelection = this.selected;
      const button = this.rows.get(this.selected).firstChild;
      if (document.activeElement && document.activeElement.closest && document.activeElement.closest(".conversations")) {
        button.focus({ preventScroll: true });
      }
      button.scrollIntoView({ block: "nearest" });
    }
  }

  row(c) {
    let li = this.rows.get(c.id);
    if (!li) {
      li = el("li", "conversation-row");
      const button = el("button", "row-button");
      button.type = "button";
      button.addEventListener("click", () => this.onSelect(c.id));
      li.append(button);
      li.dataset.id = c.id;
      this.rows.set(c.id, li);
    }
    const selected = c.id === this.selected;
    if (li.shown === c && li.shownSelected === selected && !this.retime) { return li; }
    li.shown = c;
    li.shownSelected = selected;
    const button = li.firstChild;
    const name = visitorName(c);
    const waiting = c.waiting_since !== null && c.waiting_since !== undefined;
    const typing = (c.typing || []).includes("visitor");
    const avatar = el("span", "avatar small hue-" + (hue(c.visitor) % 8), initials(name));
    avatar.setAttribute("aria-hidden", "true");
    const time = el("span", "row-time" + (waiting ? " waiting" : ""),
      waiting ? since(c.waiting_since) : since(c.last_activity_at));
    time.title = waiting ? "waiting for an answer" : "last activity";
    const top = el("span", "row-top", el("span", "row-name", name), time);
    const preview = el("span", "row-preview" + (typing ? " typing-now" : ""), typing ? "typing…" : (c.preview || ""));
    const chips = el("span", "row-meta");
    chips.append(el("span", "assignee" + (c.assignee ? "" : " none"),
      c.assignee ? (c.assignee === this.me ? "You" : (c.assignee_name || c.assignee)) : "Unassigned"));
    if (c.status === "snoozed") { chips.append(el("span", "chip snoozed", "Snoozed")); }
    if (c.with_bot) { chips.append(el("span", "chip bot-chip", "Bot answering")); }
    for (const label of (c.labels || []).slice(0, 2)) { chips.append(el("span", "chip", label)); }
    if (c.unread) {
      const badge = el("span", "badge", c.unread > 99 ? "99+" : String(c.unread));
      badge.setAttribute("aria-label", c.unread + " unread");
      chips.append(badge);
    }
    const body = el("span", "row-body", top, preview, chips);
    button.replaceChildren(avatar, body);
    button.setAttribute("aria-current", c.id === this.selected ? "true" : "false");
    li.classList.toggle("selected", c.id === this.selected);
    li.classList.toggle("unread", Boolean(c.unread));
    return li;
  }
}
