// The newest unread reply, shown above the closed launcher (as Intercom and
// Crisp do): a click opens the chat; it can be dismissed until the next one.

import { el, icon } from "./dom.js";

/** The longest text shown (characters; two lines are shown at most anyway). */
const SHOWN = 140;

export class Preview {
  constructor(t, open) {
    this.t = t;
    this.box = el("div", "preview");
    this.box.hidden = true;
    const button = el("button", "preview-open");
    button.type = "button";
    this.name = el("span", "preview-name");
    this.text = el("span", "preview-text");
    button.append(this.name, this.text);
    button.addEventListener("click", open);
    const dismiss = el("button", "preview-dismiss");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", t.dismiss);
    dismiss.append(icon("close"));
    dismiss.addEventListener("click", () => { this.box.hidden = true; });
    this.box.append(button, dismiss);
  }

  /** entry: a message of the thread, or null to hide. */
  show(entry) {
    this.box.hidden = entry === null;
    if (entry !== null) {
      this.name.textContent = entry.name || (entry.author === "bot" ? this.t.bot : this.t.team);
      this.text.textContent = entry.text.length > SHOWN ? entry.text.slice(0, SHOWN - 1) + "…"
        : entry.text;
    }
  }
}
