// The widget's DOM, in a Shadow DOM so the page's styles and ours never meet.
// Every text from the network goes in through textContent, never as HTML.

import { accentText, bubble, el, icon } from "./dom.js";
import { OfflineForm } from "./offline.js";
import { Preview } from "./preview.js";

/** How long the "email saved" confirmation stays (ms). */
const THANKS_SHOWN = 8000;

export class ChatView {
  /**
   * @param host the element the shadow root is attached to.
   * @param options the tag's settings (position, texts, stylesheet URL).
   * @param t the texts.
   * @param on callbacks: toggle(), send(text) (false: not taken), typing(), retry(), earlier(),
   *   contact(email, text), skip(), resend(key).
   */
  constructor(host, options, t, on) {
    this.t = t;
    this.on = on;
    this.lang = t.lang === "zh" ? "zh-CN" : "en";
    this.items = new Map();  // key -> <li>
    if (options.color && CSS.supports("color", options.color)) {
      // Through the CSSOM, not a style attribute: allowed under a strict CSP.
      host.style.setProperty("--wsd-accent", options.color);
      host.style.setProperty("--wsd-on-accent", accentText(options.color));
    }
    const root = host.attachShadow({ mode: "open" });
    const sheet = el("link");
    sheet.rel = "stylesheet";
    sheet.href = options.stylesheet;
    this.frame = el("div", "frame pos-" + options.position
                    + (options.launcher === false ? " no-launcher" : ""));
    this.frame.lang = t.lang === "zh" ? "zh" : "en";
    // Hidden by the attribute (the browser's own style) until our sheet is in: never unstyled.
    this.frame.hidden = true;
    sheet.addEventListener("load", () => {
      this.frame.hidden = false;
      this.frame.classList.add("ready");
    });
    sheet.addEventListener("error", () => console.error(
      "wsdaemon widget: its style sheet did not load, so it stays hidden (" + sheet.href +
      "; a Content-Security-Policy needs this daemon in style-src)"));
    root.append(sheet, this.frame);
    this.panel = this._panel(options);
    this.launcher = this._launcher();
    this.launcher.hidden = options.launcher === false;
    this.preview = new Preview(t, () => this.on.toggle(true));
    this.frame.append(this.panel, this.preview.box, this.launcher);
    this.frame.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden) {
        event.preventDefault();
        this.on.toggle(false);
      }
    });
  }

  _launcher() {
    const button = el("button", "launcher");
    button.type = "button";
    button.setAttribute("aria-controls", "wsd-panel");
    button.setAttribute("aria-expanded", "false");
    button.append(icon("chat"), icon("close"));
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.badge.setAttribute("aria-hidden", "true");
    button.append(this.badge);
    button.addEventListener("click", () => this.on.toggle(this.panel.hidden));
    this._label(button, 0);
    return button;
  }

  _label(button, unread) {
    button.setAttribute("aria-label", this.panel.hidden
      ? this.t.open + (unread ? ", " + this.t.unread(unread) : "") : this.t.close);
  }

  _panel(options) {
    const t = this.t;
    const panel = el("section", "panel");
    panel.id = "wsd-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "false");
    panel.setAttribute("aria-labelledby", "wsd-title");

    const header = el("header", "header");
    const heading = el("div", "heading");
    const title = el("h2", "title", options.title || t.title);
    title.id = "wsd-title";
    this.status = el("p", "status");
    this.statusText = el("span", "status-text", t.connecting);
    this.status.append(el("span", "dot"), this.statusText);
    heading.append(title, this.status);
    const close = el("button", "close");
    close.type = "button";
    close.setAttribute("aria-label", t.close);
    close.append(icon("close"));
    close.addEventListener("click", () => this.on.toggle(false));
    header.append(heading, close);

    this.notice = el("div", "notice");
    this.notice.setAttribute("role", "status");
    this.noticeText = el("span");
    const retry = el("button", "link", t.retryNow);
    retry.type = "button";
    retry.addEventListener("click", () => this.on.retry());
    this.notice.append(this.noticeText, retry);
    this.notice.hidden = true;

    this.thread = el("div", "thread");
    this.earlier = el("button", "earlier link", t.earlier);
    this.earlier.type = "button";
    this.earlier.hidden = true;
    this.earlier.addEventListener("click", () => this.on.earlier());
    const greeting = el("p", "greeting", options.greeting || t.greeting);
    // One live log: new messages, "is typing" and "resolved" are read out
    // as they come; scrollable by keyboard too.
    this.thread.setAttribute("role", "log");
    this.thread.setAttribute("aria-live", "polite");
    this.thread.setAttribute("aria-label", t.thread);
    this.thread.tabIndex = 0;
    this.list = el("ol", "messages");
    this.resolved = el("p", "resolved", t.resolved);
    this.resolved.hidden = true;
    this.typing = el("p", "typing");
    this.typing.hidden = true;
    const dots = el("span", "dots");
    dots.setAttribute("aria-hidden", "true");
    dots.append(el("i"), el("i"), el("i"));
    this.typingText = el("span");
    this.typing.append(dots, this.typingText);
    this.thread.append(this.earlier, greeting, this.list, this.resolved, this.typing);

    this.offlineForm = new OfflineForm(t, {
      contact: (email, text) => this.on.contact(email, text),
      skip: (typed) => {
        // What was typed in the form goes on in the chat box, not lost.
        this.on.skip();
        if (typed && !this.input.value.trim()) {
          this.input.value = typed;
          this.fitInput();
        }
        this.input.focus();
      },
    });
    this.offline = this.offlineForm.form;
    this.offlineEmail = this.offlineForm.email;
    this.thanks = el("p", "thanks");
    this.thanks.setAttribute("role", "status");
    this.thanks.hidden = true;
    this.composer = this._composer();
    panel.append(header, this.notice, this.thread, this.offline, this.thanks, this.composer);
    return panel;
  }

  _composer() {
    const t = this.t;
    const form = el("form", "composer");
    const label = el("label", "visually-hidden", t.messageLabel);
    label.htmlFor = "wsd-input";
    const input = el("textarea");
    input.id = "wsd-input";
    input.rows = 1;
    input.placeholder = t.placeholder;
    input.setAttribute("aria-describedby", "wsd-hint");
    input.maxLength = 8000;
    const hint = el("span", "visually-hidden", t.hint);
    hint.id = "wsd-hint";
    const send = el("button", "send");
    send.type = "submit";
    send.setAttribute("aria-label", t.send);
    send.append(icon("send"));
    form.append(label, input, hint, send);
    const fit = () => { input.rows = Math.min(5, Math.max(1, input.value.split("\n").length)); };
    this.fitInput = fit;
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener("input", () => { fit(); if (input.value.trim()) { this.on.typing(); } });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || !this.on.send(text)) { return; }  // too many waiting: the text stays
      input.value = "";
      fit();
      input.focus();
    });
    this.input = input;
    return form;
  }

  /** @param focus move the focus into the panel (the visitor opened it). */
  setOpen(open, unread, focus) {
    this.panel.hidden = !open;
    if (open) { this.preview.show(null); }
    this.frame.classList.toggle("open", open);
    this.launcher.setAttribute("aria-expanded", String(open));
    this._label(this.launcher, unread);
    if (open) {
      this.scrollToEnd();
      if (focus) { (this.offline.hidden ? this.input : this.offlineEmail).focus(); }
    }
  }

  /** The newest unread reply by the closed launcher (null: none). */
  setPreview(entry) { this.preview.show(this.panel.hidden ? entry : null); }

  setUnread(n) {
    this.badge.hidden = n === 0;
    this.badge.textContent = n > 99 ? "99+" : String(n);
    this._label(this.launcher, n);
  }

  setStatus(kind, text) {
    this.status.dataset.state = kind;
    this.statusText.textContent = text;
  }

  setNotice(text) {
    this.notice.hidden = !text;
    this.noticeText.textContent = text || "";
  }

  _time(at) {
    const when = new Date(at * 1000);
    const today = new Date().toDateString() === when.toDateString();
    const format = today ? { hour: "numeric", minute: "2-digit" }
      : { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
    return new Intl.DateTimeFormat(this.lang, format).format(when);
  }

  /**
   * Show (or update) one message. entry: {key, seq (null while pending),
   * author, name, text, at, state: "sending" | "sent" | "read" | "failed"}.
   */
  put(entry) {
    let item = this.items.get(entry.key);
    const stick = this._atEnd();
    if (!item) {
      item = el("li");
      item.dataset.key = entry.key;
      this.items.set(entry.key, item);
    }
    item.replaceChildren();
    const author = entry.author;
    item.className = "message from-" + author + (entry.state ? " " + entry.state : "");
    if (entry.seq !== null) { item.dataset.seq = String(entry.seq); } else { delete item.dataset.seq; }
    item.dataset.who = author + ":" + (entry.name || "");
    const t = this.t;
    if (author === "operator" || author === "bot") {
      item.append(el("span", "name", entry.name || (author === "bot" ? t.bot : t.team)));
    } else if (author === "visitor") {
      item.append(el("span", "visually-hidden", t.you + ": "));
    }
    item.append(bubble(entry.text));
    const meta = el("span", "meta");
    if (entry.at) {
      const time = el("time", "", this._time(entry.at));
      time.dateTime = new Date(entry.at * 1000).toISOString();
      meta.append(time);
    }
    if (author === "visitor") {
      const label = { sending: t.sending, sent: t.sent, read: t.read, failed: t.failed }[entry.state];
      const tick = el("span", "tick " + (entry.state || ""), entry.state === "read" ? "✓✓"
        : entry.state === "sent" ? "✓" : entry.state === "failed" ? "!" : "…");
      tick.setAttribute("aria-hidden", "true");
      meta.append(tick, el("span", "visually-hidden", label || ""));
      if (entry.state === "failed") {
        if (entry.note) { meta.append(el("span", "note", entry.note)); }
        const again = el("button", "link retry", t.retry);
        again.type = "button";
        again.addEventListener("click", () => this.on.resend(entry.key));
        meta.append(again);
      }
    }
    item.append(meta);
    this._place(item, entry.seq);
    this._group(item);
    this._group(item.nextElementSibling);
    if (stick) { this.scrollToEnd(); }
  }

  /** In seq order; messages still sending after every numbered one. */
  _place(item, seq) {
    let before = null;
    if (seq !== null) {
      for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
        if (node === item) { continue; }
        if (node.dataset.seq === undefined || Number(node.dataset.seq) > seq) { before = node; } else { break; }
      }
    }
    if (item.parentNode !== this.list || item.nextElementSibling !== before) {
      this.list.insertBefore(item, before);
    }
  }

  /** A message right after another of the same sender shows no name again. */
  _group(item) {
    if (!item) { return; }
    const before = item.previousElementSibling;
    item.classList.toggle("continued", Boolean(before && before.dataset.who === item.dataset.who));
  }

  remove(key) {
    const item = this.items.get(key);
    if (item) {
      const next = item.nextElementSibling;
      item.remove();
      this.items.delete(key);
      this._group(next);
    }
  }

  showTyping(name) {
    this.typing.hidden = name === null;
    this.typingText.textContent = name === null ? "" : this.t.typing(name);
    if (name !== null && this._atEnd(80)) { this.scrollToEnd(); }
  }

  /** Shown at the end of the thread: in view when the visitor was at the end. */
  showResolved(resolved) {
    if (this.resolved.hidden !== resolved) { return; }
    const stick = this._atEnd();
    this.resolved.hidden = !resolved;
    if (stick) { this.scrollToEnd(); }
  }

  showOffline(show) {
    const moved = this.offline.hidden === show;
    const stick = this._atEnd();
    this.offline.hidden = !show;
    this.composer.hidden = show;
    if (moved && stick) { this.scrollToEnd(); }  // the thread's height changed
    const active = this.frame.getRootNode().activeElement;
    if (moved && active && (show ? this.composer : this.offline).contains(active)) {
      (show ? this.offlineEmail : this.input).focus();
    }
  }

  /** A short confirmation (the daemon's own notice, when configured, follows in the thread). */
  showThanks(text) {
    clearTimeout(this.thanksTimer);
    this.thanks.hidden = !text;
    this.thanks.textContent = text || "";
    if (text) { this.thanksTimer = setTimeout(() => this.showThanks(null), THANKS_SHOWN); }
  }

  showOfflineError(text) { this.offlineForm.showError(text); }

  showEarlier(show) { this.earlier.hidden = !show; }

  _atEnd(slack = 40) {
    const t = this.thread;
    return t.scrollHeight - t.scrollTop - t.clientHeight < slack;
  }

  scrollToEnd() { this.thread.scrollTop = this.thread.scrollHeight; }

  /** Is the thread on screen for the visitor to read? */
  get reading() { return !this.panel.hidden && document.visibilityState === "visible"; }
}
