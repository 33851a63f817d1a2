// The side panel: who the visitor is (the profile item 3 of issue 22 adds,
// when the summary has it; else its alias), the labels, the conversation's
// facts, and its previous conversations: the visitor's conversations on
// other routes (one per route) and this one's earlier episodes (resolved,
// then reopened: they share the thread), as links.

import { ago, clock, duration, el, emailNode, fullTime, hue, initials, visitorName } from "./format.js";

/** Attributes shown from a visitor's profile (the daemon bounds them too). */
const MAX_ATTRIBUTES = 30;

export class Panel {
  constructor(ids, { onAddLabel, onRemoveLabel, onOpen, onJump }) {
    this.ids = ids;
    this.onOpen = onOpen;
    this.onJump = onJump;
    ids.labelForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const label = ids.labelInput.value.trim().toLowerCase();
      if (label) {
        onAddLabel(label).then(() => { ids.labelInput.value = ""; }, () => {});
      }
    });
    this.onRemoveLabel = onRemoveLabel;
  }

  /**
   * @param {object} c the conversation's summary
   * @param {object|null} profile the open answer's profile (name, email,
   *   attributes, source), when the visitor proved who it is
   * @param {function} nameOf an operator's display name
   */
  show(c, profile, nameOf) {
    const ids = this.ids;
    const name = visitorName(c);
    ids.avatar.textContent = initials(name);
    ids.avatar.className = "avatar large hue-" + (hue(c.visitor) % 8);
    ids.name.textContent = name;
    const email = c.email || c.contact;
    ids.email.replaceChildren(email ? emailNode(email) : "No email given");
    const details = [];
    if (c.name && c.alias) { details.push(["Alias", c.alias]); }
    if (profile && profile.source) {
      details.push(["Identified", profile.source === "jwt" ? "by the site's token" : "by the site (signed)"]);
    }
    const given = profile && profile.attributes && typeof profile.attributes === "object" ? profile.attributes : {};
    const attributes = Object.entries(given);
    for (const [key, value] of attributes.slice(0, MAX_ATTRIBUTES)) {
      details.push([key, typeof value === "string" ? value : JSON.stringify(value)]);
    }
    if (c.visitor_online === true) { details.push(["Connected", "Now"]); }
    else if (c.visitor_online === false) {
      details.push(["Connected", c.visitor_last_seen ? "No · last seen " + ago(c.visitor_last_seen) : "No"]);
    }
    details.push(["Visitor id", c.visitor]);
    details.push(["Channel", c.route]);
    this.list(ids.visitorDetails, details);
    this.list(ids.conversationDetails, [
      ["Status", c.status === "snoozed" && c.snoozed_until ? "Snoozed until " + fullTime(c.snoozed_until)
        : c.status.charAt(0).toUpperCase() + c.status.slice(1)],
      ["Assigned to", c.assignee ? (c.assignee_name || c.assignee) : "Nobody"],
      ["Opened", c.opened_at ? ago(c.opened_at) : "—"],
      ["First response", c.first_response_at && c.opened_at
        ? duration(Math.max(0, c.first_response_at - c.opened_at)) : "Not yet"],
      ["Viewing now", (c.viewing || []).map(nameOf).join(", ") || "—"],
      ["Conversation id", c.id],
    ]);
    ids.labels.replaceChildren(...(c.labels || []).map((label) => {
      const remove = el("button", "chip-remove", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", "Remove label " + label);
      remove.addEventListener("click", () => this.onRemoveLabel(label));
      return el("li", "chip label-chip", el("span", "", label), remove);
    }));
    if (!(c.labels || []).length) { ids.labels.append(el("li", "muted small", "No labels yet")); }
  }

  /**
   * @param {Array} episodes the open answer's: {from_seq, opened_at, resolved_at, current}
   * @param {Array} previous summaries of the visitor's conversations on other routes
   */
  showPrevious(episodes, previous) {
    const items = [];
    for (const c of previous.slice(0, 10)) {
      const link = el("button", "link previous-link", "On " + c.route);
      link.type = "button";
      link.addEventListener("click", () => this.onOpen(c.id));
      const state = c.status === "resolved" ? "Resolved" : c.status === "snoozed" ? "Snoozed" : "Open";
      items.push(el("li", "previous", el("span", "previous-head", link,
        el("span", "muted small", state + " · " + ago(c.last_activity_at))),
        c.preview ? el("span", "previous-preview muted small", c.preview) : null));
    }
    const past = episodes.filter((e) => !e.current);
    past.forEach((e, n) => {
      const link = el("button", "link previous-link", "Episode " + (n + 1) + " · " + clock(e.opened_at));
      link.type = "button";
      link.title = "Opened " + fullTime(e.opened_at) + ": show where it began";
      link.addEventListener("click", () => this.onJump(e.from_seq));
      const resolved = e.resolved_at ? "resolved after " + duration(Math.max(0, e.resolved_at - e.opened_at)) : "";
      items.push(el("li", "previous", el("span", "previous-head", link, el("span", "muted small", resolved))));
    });
    const current = episodes.find((e) => e.current);
    if (past.length && current) {
      const link = el("button", "link previous-link", "This episode · reopened " + ago(current.opened_at));
      link.type = "button";
      link.addEventListener("click", () => this.onJump(current.from_seq));
      items.push(el("li", "previous", link));
    }
    if (!items.length) { items.push(el("li", "muted small", "No earlier conversations")); }
    this.ids.previous.replaceChildren(...items);
  }

  list(dl, pairs) {
    const nodes = [];
    for (const [term, value] of pairs) {
      nodes.push(el("dt", "", term), el("dd", term.endsWith(" id") ? "mono" : "", String(value)));
    }
    dl.replaceChildren(...nodes);
  }
}
