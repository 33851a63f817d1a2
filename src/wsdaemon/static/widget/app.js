// The widget's controller: the thread as the daemon numbers it, what the
// visitor has read, the API on window.wsdaemon. Imported by widget.js.

import { Connection } from "./connection.js";
import { textsFor } from "./texts.js";
import { ChatView } from "./view.js";
import { installApi } from "./api.js";
import { Saved } from "./saved.js";
import { Thread } from "./thread.js";
import { VisitorTyping } from "./typing.js";

/** Messages held in memory (the oldest go; "show earlier" fetches them again). */
const MAX_KEPT = 500;
/** Messages written while offline, waiting to go out. */
const MAX_PENDING = 20;
/** Messages asked for at a time when scrolling back. */
const HISTORY_PAGE = 50;
/** Messages seen before, shown again on a new page (the rest: "show earlier"). */
const REPLAYED = 30;
const MAX_SEQ = 2 ** 53 - 1;
/** An operator's typing indicator that was never turned off goes after this (ms). */
const OPERATOR_TYPING_MAX = 30000;
const EVENTS = ["message", "open", "close", "unread", "ready", "status", "error", "identified",
  "push"];
// Pushes (the admin API's POST /push) shown in the thread at once, at most.
const PUSHES_SHOWN = 20;
const IDENTIFY_KEYS = ["name", "email", "attributes", "hash"];
/** The page's `error` event when connections keep failing before they open. */
const REFUSED = "the server refused the connection: check the page's token and origin";

export function start(options, api, queue) {
  const widget = new Widget(options);
  const mount = () => { widget.mount(api, queue); };
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
}

class Widget {
  constructor(options) {
    this.options = options;
    this.t = textsFor(options.lang);
    this.saved = new Saved(options.socket);
    this.listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this.thread = new Thread(MAX_KEPT);
    this.pending = new Map();   // client id -> entry
    this.operatorsRead = this.saved.seen;
    this.receivedSent = 0;
    this.status = null;
    this.available = null;
    this.replyWithin = null;
    this.welcomed = false;
    this.firstWelcome = true;
    this.asked = null;
    this.identity = null;
    this.visitor = null;
    this.contact = null;
    /** The daemon knows an email address of this visitor (proven, or left): no form asks for it. */
    this.emailKnown = false;
    this.typing = new VisitorTyping(
      (on) => this.welcomed && this.connection.send({ type: "typing", on }));
    this.operatorTyping = null;
    this.countdown = null;
    this.lost = false;
    this.counter = 0;
    const token = options.token;
    this.tokenSource = () => token;
  }

  mount(api, queue) {
    const host = document.createElement("div");
    host.id = "wsdaemon-chat";
    document.body.appendChild(host);
    this.view = new ChatView(host, {
      position: this.options.position, title: this.options.title,
      greeting: this.options.greeting, color: this.options.color,
      launcher: this.options.launcher,
      stylesheet: this.options.assets + "widget.css",
    }, this.t, {
      toggle: (open) => this.setOpen(open, true),
      send: (text) => this.send(text),
      typing: () => this.typing.typed(),
      retry: () => this.connection.now(),
      earlier: () => this.earlier(),
      contact: (email, text) => this.leaveContact(email, text),
      skip: () => { this.skipContact = true; this.refresh(); },
      resend: (key) => this.resend(key),
    });
    installApi(api, this);
    this.connection = new Connection(this.options.socket, () => this.tokenSource(), {
      opened: () => this.opened(),
      frame: (frame) => this.frame(frame),
      state: (state, seconds) => this.connectionState(state, seconds),
      refused: () => this.emit("error", { request: null, error: REFUSED }),
    });
    for (const call of queue) { api.apply(null, call); }
    queue.length = 0;
    document.addEventListener("visibilitychange", () => this.markRead());
    this.refresh();
    if (this.saved.open || this.options.open) { this.setOpen(true, false); }
    this.connection.start();
  }

  emit(event, data) {
    for (const fn of this.listeners.get(event)) {
      try { fn(data); } catch (error) { console.error("wsdaemon widget: a listener failed", error); }
    }
  }

  // -- the connection ------------------------------------------------------

  opened() {
    // Resume: everything after what this page has; a new page shows the
    // last few messages seen before (HISTORY_PAGE more on "show earlier").
    const thread = this.thread;
    const after = thread.size ? thread.maxSeq() : Math.max(0, this.saved.seq - REPLAYED);
    this.connection.send({ type: "hello", after });
  }

  connectionState(state, seconds) {
    this.welcomed = false;
    this.asked = null;  // its answer will not come
    clearInterval(this.countdown);
    this.countdown = null;
    if (state === "waiting" && this.connection.refused) {
      // Refused, most likely for good (a bad token, an origin not allowed):
      // a calm line, not a countdown; the tries go on with the backoff.
      this.lost = true;
      this.view.setNotice(this.t.unavailable);
    } else if (state === "waiting") {
      this.lost = true;
      let left = Math.max(1, Math.round(seconds));
      const show = () => { this.view.setNotice(this.t.reconnecting(left)); left = Math.max(1, left - 1); };
      show();
      this.countdown = setInterval(show, 1000);
    } else {
      // Trying again after a loss: the notice stays up, saying so, until welcome.
      this.view.setNotice(!this.lost ? null
        : this.connection.refused ? this.t.unavailable : this.t.connecting);
    }
    this.refresh();
  }

  frame(frame) {
    const handler = {
      welcome: () => this.welcome(frame), message: () => this.merge([frame], true),
      history: () => this.history(frame), ack: () => this.ack(frame),
      refused: () => this.fail(frame.id, frame.text), error: () => this.error(frame),
      ok: () => this.ok(frame), typing: () => this.typingShown(frame.on, frame.name),
      read: () => this.operatorsReadUpto(frame.upto), status: () => this.setStatus(frame.status),
      availability: () => this.setAvailable(frame.available, frame.reply_within),
      push: () => this.pushed(frame),
    }[frame.type];
    if (handler) { handler(); }
  }

  /**
   * A push from the site's backend (POST /push): not a message of the
   * conversation (not stored, not numbered), shown in the thread after what
   * is there, as the daemon's own notices are, and given to the page's
   * on("push") listeners. The newest PUSHES_SHOWN stay on screen.
   */
  pushed(frame) {
    if (typeof frame.text !== "string" || !frame.text) { return; }
    this.pushes = this.pushes || [];
    const key = "push-" + (this.pushCount = (this.pushCount || 0) + 1);
    this.view.put({ key, seq: this.thread.size ? this.thread.maxSeq() : 0, author: "system",
      name: "", text: frame.text, at: Date.now() / 1000 });
    this.pushes.push(key);
    while (this.pushes.length > PUSHES_SHOWN) { this.view.remove(this.pushes.shift()); }
    this.emit("push", { text: frame.text });
  }

  welcome(frame) {
    this.welcomed = true;
    if (frame.email_known === true) { this.emailKnown = true; }
    this.connection.settled();
    this.lost = false;
    this.view.setNotice(null);
    if (frame.status === null && this.saved.seq) {
      this.saved.update({ seq: 0, read: 0, seen: 0 });  // another visitor's numbers (cookie cleared)
    }
    this.merge(frame.messages || [], false);
    if (frame.more) {
      this.ask({ after: this.thread.maxSeq() });  // behind: page forward to the end
    } else if (this.firstWelcome && frame.status !== null && !this.thread.size && this.saved.seq) {
      this.ask({ before: MAX_SEQ, limit: REPLAYED });  // the seq kept was past the end
    }
    this.firstWelcome = false;
    this.setStatus(frame.status);
    this.setAvailable(frame.operators_available, this.replyWithin);
    for (const entry of this.pending.values()) {
      if (entry.state === "sending") { this.connection.send({ type: "message", id: entry.id, text: entry.text }); }
    }
    this.visitor = typeof frame.visitor === "string" ? frame.visitor : null;
    this.sendIdentity();
    if (this.contact) { this.connection.send({ type: "contact", email: this.contact }); }
    this.emit("ready", { visitor: this.visitor, status: this.status, available: this.available });
  }

  /** One history request at a time; what it was decides what "more" means. */
  ask(request) {
    this.asked = "after" in request ? "after" : "before";
    this.connection.send({ type: "history", ...request });
  }

  history(frame) {
    const asked = this.asked;
    this.asked = null;
    this.merge(frame.messages || [], false);
    if (asked === "after" && frame.more && this.thread.size) {
      this.ask({ after: this.thread.maxSeq() });  // still behind
    }
  }

  // -- the thread ------------------------------------------------------------

  merge(list, live) {
    for (const m of list) {
      const entry = this.thread.add(m);
      if (!entry) { continue; }
      if (entry.author === "visitor" && entry.id && this.pending.has(entry.id)) {
        this.pending.delete(entry.id);
        this.view.remove("p" + entry.id);
      }
      this.show(entry);
      if (entry.author === "operator" || entry.author === "bot") { this.typingShown(false, null); }
      if (live && entry.author !== "visitor") {
        this.emit("message", { seq: entry.seq, author: entry.author, name: entry.name,
                               text: entry.text, at: entry.at });
      }
    }
    for (const dropped of this.thread.trim()) { this.view.remove(dropped.key); }
    const top = this.thread.maxSeq();
    if (top > this.receivedSent) {
      this.receivedSent = top;
      this.connection.send({ type: "received", upto: top });
    }
    if (top) { this.saved.update({ seq: top }); }
    this.view.showEarlier(this.thread.size > 0 && this.thread.minSeq() > 1);
    this.markRead();
  }

  show(entry) {
    const state = entry.author === "visitor" ? (entry.seq <= this.operatorsRead ? "read" : "sent") : null;
    this.view.put({ ...entry, state });
  }

  earlier() {
    if (this.thread.size && !this.asked) {
      this.ask({ before: this.thread.minSeq(), limit: HISTORY_PAGE });
    }
  }

  unread() { return this.thread.unread(this.saved.read); }

  markRead() {
    const top = this.thread.maxSeq();
    if (this.view.reading && top > this.saved.read) {
      this.saved.update({ read: top });
      this.connection.send({ type: "read", upto: top });
    }
    const n = this.unread();
    const newest = this.view.reading ? null : this.thread.newestUnread(this.saved.read);
    if (newest !== this.previewed) {
      this.previewed = newest;
      this.view.setPreview(newest && this.options.launcher ? newest : null);
    }
    if (n !== this.lastUnread) {
      this.lastUnread = n;
      this.view.setUnread(n);
      this.emit("unread", n);
    }
  }

  // -- the visitor writes ----------------------------------------------------

  /** @return whether the message was taken (at most MAX_PENDING wait for their ack). */
  send(text) {
    if (this.pending.size >= MAX_PENDING) { return false; }
    this.counter += 1;
    const id = "w-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 8) + this.counter;
    const entry = { key: "p" + id, id, seq: null, author: "visitor", text, at: null, state: "sending" };
    this.pending.set(id, entry);
    this.view.put(entry);
    this.view.scrollToEnd();
    this.typing.off();
    if (this.welcomed) { this.connection.send({ type: "message", id, text }); }
    return true;
  }

  resend(key) {
    const entry = this.pending.get(key.slice(1));
    if (!entry) { return; }
    entry.state = "sending";
    entry.note = null;
    this.view.put(entry);
    if (this.welcomed) { this.connection.send({ type: "message", id: entry.id, text: entry.text }); }
  }

  ack(frame) {
    const entry = this.pending.get(frame.id);
    if (!entry || !Number.isSafeInteger(frame.seq)) { return; }
    this.pending.delete(frame.id);
    this.view.remove(entry.key);
    // A visitor's message reopens a resolved conversation (the daemon says
    // so only of an operator's reopening).
    if (this.status === "resolved" && !frame.duplicate) { this.setStatus("open"); }
    this.merge([{ seq: frame.seq, author: "visitor", text: entry.text, at: frame.at, id: entry.id }], false);
  }

  fail(id, note) {
    const entry = this.pending.get(id);
    if (!entry) { return; }
    entry.state = "failed";
    entry.note = note || null;
    this.view.put(entry);
  }

  leaveContact(email, text) {
    this.contact = email;
    if (text) { this.send(text); }
    if (this.welcomed) { this.connection.send({ type: "contact", email }); }
  }

  /**
   * The profile the site vouches for: sent on every connection (the daemon
   * keeps it per connection); its hash may be a function of the visitor's
   * id (from welcome) giving the hex HMAC, or a promise of it.
   */
  identify(data) {
    if (!data || typeof data !== "object") { return; }
    const frame = { type: "identify" };
    for (const key of IDENTIFY_KEYS) { if (data[key] !== undefined) { frame[key] = data[key]; } }
    this.identity = frame;
    if (this.welcomed) { this.sendIdentity(); }
  }

  async sendIdentity() {
    const pending = this.identity;
    if (!pending) { return; }
    const frame = { ...pending };
    if (typeof frame.hash === "function") {
      try {
        frame.hash = await frame.hash(this.visitor);
      } catch (error) {
        this.emit("error", { request: "identify", error: "the page's hash function failed" });
        return;
      }
    }
    if (this.identity === pending && this.welcomed) { this.connection.send(frame); }
  }

  // -- what the daemon says ----------------------------------------------------

  error(frame) {
    if (frame.request === "message" && frame.id) {
      this.fail(frame.id, frame.error);
    } else if (frame.request === "contact") {
      this.contact = null;
      this.view.showOfflineError(String(frame.error || ""));
    } else if (frame.request === "identify") {
      this.identity = null;  // not sent again on the next connection
      this.refresh();  // its email is not proven: the offline form may ask for one
      console.warn("wsdaemon widget: identify refused:", frame.error);
    }
    this.emit("error", { request: frame.request || null, error: String(frame.error || "") });
  }

  ok(frame) {
    if (frame.request === "contact" && this.contact) {
      this.saved.update({ contact: true });
      this.view.showThanks(this.t.contactThanks(this.contact));
      this.contact = null;
      this.refresh();
    } else if (frame.request === "identify") {
      if (this.identity && typeof this.identity.email === "string" && this.identity.email) {
        this.emailKnown = true;  // proven by the site's hash: no need to ask for it
        this.refresh();
      }
      this.emit("identified", {});
    }
  }

  typingShown(on, name) {
    clearTimeout(this.operatorTyping);
    this.view.showTyping(on ? String(name || "") : null);
    if (on) { this.operatorTyping = setTimeout(() => this.view.showTyping(null), OPERATOR_TYPING_MAX); }
  }

  operatorsReadUpto(upto) {
    if (!Number.isSafeInteger(upto) || upto <= this.operatorsRead) { return; }
    const before = this.operatorsRead;
    this.operatorsRead = upto;
    this.saved.update({ seen: upto });
    for (const entry of this.thread.visitorBetween(before, upto)) { this.show(entry); }
  }

  setStatus(status) {
    const changed = status !== this.status;
    this.status = status;
    this.view.showResolved(status === "resolved");
    if (changed) { this.emit("status", status); }
  }

  setAvailable(available, replyWithin) {
    this.available = typeof available === "boolean" ? available : null;
    this.replyWithin = typeof replyWithin === "number" && replyWithin > 0 ? replyWithin : null;
    this.refresh();
  }

  refresh() {
    const t = this.t;
    if (!this.welcomed) {
      this.view.setStatus("connecting", t.connecting);
    } else if (this.available === false) {
      this.view.setStatus("away", t.away);
    } else if (this.available) {
      this.view.setStatus("online", this.replyWithin ? t.replyWithin(this.replyWithin) : t.online);
    } else {
      this.view.setStatus("online", t.replySoon);
    }
    this.view.showOffline(this.welcomed && this.available === false && !this.saved.contact
                          && !this.contact && !this.skipContact && !this.emailKnown
                          && !(this.identity && this.identity.email));
  }

  setOpen(open, byVisitor) {
    if (open && byVisitor) { this.returnFocus = document.activeElement; }
    // Restored open on a new page: the focus stays where the page put it.
    this.view.setOpen(open, this.unread(), byVisitor);
    this.saved.update({ open });
    this.markRead();
    this.emit(open ? "open" : "close", {});
    if (!open && byVisitor) {
      // Back to the launcher, or (none) to what opened the panel: the page's own button.
      const back = this.options.launcher ? this.view.launcher : this.returnFocus;
      if (back && back.isConnected) { back.focus(); }
    }
  }
}
