// The composer: Enter sends, Shift+Enter is a new line, "/" opens the canned
// replies, and the visitor sees "typing" while the operator types (at most
// one request every few seconds, off after a pause or on sending).

import { el } from "./format.js";

const TYPING_RENEW_MS = 2000;
const TYPING_IDLE_MS = 4000;
/** Canned replies shown at once in the menu. */
const MENU_SIZE = 8;

export class Composer {
  constructor({ form, text, menu, error, modes, onSend, onTyping, cannedValues }) {
    this.form = form;
    this.text = text;
    this.menu = menu;
    this.error = error;
    this.modes = modes;
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.cannedValues = cannedValues;
    this.canned = [];
    this.choices = [];
    this.active = 0;
    this.typingSince = 0;
    this.idle = 0;
    this.busy = false;
    form.addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
    text.addEventListener("keydown", (event) => this.keydown(event));
    text.addEventListener("input", () => this.input());
    text.addEventListener("blur", () => { setTimeout(() => this.closeMenu(), 150); });
    for (const mode of modes) { mode.addEventListener("change", () => this.modeChanged()); }
  }

  get mode() {
    for (const mode of this.modes) { if (mode.checked) { return mode.value; } }
    return "reply";
  }

  setMode(value) {
    for (const mode of this.modes) { mode.checked = mode.value === value; }
    this.modeChanged();
  }

  modeChanged() {
    const note = this.mode === "note";
    this.form.classList.toggle("note-mode", note);
    this.text.placeholder = note
      ? "Write a private note: only your team sees it"
      : "Type a reply. Enter sends, Shift+Enter adds a line, / for canned replies";
    if (note) { this.stopTyping(); }
  }

  clear() {
    this.text.value = "";
    this.error.textContent = "";
    this.closeMenu();
    this.stopTyping();
  }

  keydown(event) {
    if (!this.menu.hidden) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.active = (this.active + (event.key === "ArrowDown" ? 1 : -1) + this.choices.length) % this.choices.length;
        this.drawMenu();
        return;
      }
      if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        this.choose(this.choices[this.active]);
        return;
      }
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); this.closeMenu(); return; }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.send();
    }
  }

  input() {
    const value = this.text.value;
    const match = /^\/([A-Za-z0-9_-]*)$/.exec(value);
    if (match && this.mode === "reply" && this.canned.length) {
      const wanted = match[1].toLowerCase();
      this.choices = this.canned.filter((c) => c.shortcut.startsWith(wanted))
        .concat(this.canned.filter((c) => !c.shortcut.startsWith(wanted) && c.shortcut.includes(wanted)))
        .slice(0, MENU_SIZE);
      this.active = 0;
      if (this.choices.length) { this.drawMenu(); } else { this.closeMenu(); }
    } else {
      this.closeMenu();
    }
    if (this.mode === "reply") { this.typing(value.trim() !== ""); }
  }

  drawMenu() {
    this.menu.replaceChildren(...this.choices.map((choice, i) => {
      const item = el("li", "canned-item" + (i === this.active ? " active" : ""),
        el("span", "shortcut", "/" + choice.shortcut), el("span", "canned-text", this.cannedValues(choice.text)));
      item.id = "canned-" + i;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", i === this.active ? "true" : "false");
      item.addEventListener("mousedown", (event) => { event.preventDefault(); this.choose(choice); });
      return item;
    }));
    this.menu.hidden = false;
    this.text.setAttribute("aria-activedescendant", "canned-" + this.active);
  }

  closeMenu() {
    this.menu.hidden = true;
    this.text.removeAttribute("aria-activedescendant");
  }

  choose(choice) {
    if (!choice) { return; }
    this.text.value = this.cannedValues(choice.text);
    this.closeMenu();
    this.text.focus();
    this.text.setSelectionRange(this.text.value.length, this.text.value.length);
    this.typing(true);
  }

  typing(on) {
    const now = Date.now();
    clearTimeout(this.idle);
    if (!on) { this.stopTyping(); return; }
    if (!this.typingSince || now - this.typingSince > TYPING_RENEW_MS) {
      this.typingSince = now;
      this.onTyping(true);
    }
    this.idle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idle);
    if (this.typingSince) {
      this.typingSince = 0;
      this.onTyping(false);
    }
  }

  send() {
    const text = this.text.value;
    if (!text.trim() || this.busy) { return; }
    this.busy = true;
    this.error.textContent = "";
    const mode = this.mode;
    this.typingSince = 0;  // a reply ends the daemon's typing itself
    clearTimeout(this.idle);
    this.onSend(mode, text).then(() => {
      if (this.text.value === text) { this.text.value = ""; }
    }, (error) => {
      this.error.textContent = "Not sent: " + error.message;
    }).finally(() => { this.busy = false; });
  }
}
