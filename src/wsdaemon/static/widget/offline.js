// The widget's offline form, shown when nobody is online: a message and, if
// the visitor likes, an email address the team will see (the daemon sends no
// email). Enter sends, Shift+Enter is a new line, as in the chat box.

import { el } from "./dom.js";

export class OfflineForm {
  /**
   * @param t the texts.
   * @param on callbacks: contact(email, text), skip(typed: the message box's text).
   */
  constructor(t, on) {
    const form = el("form", "offline");
    form.noValidate = true;
    form.hidden = true;
    const email = el("input");
    email.type = "email";
    email.id = "wsd-email";
    email.autocomplete = "email";
    email.required = true;
    const text = el("textarea");
    text.id = "wsd-offline-text";
    text.rows = 3;
    text.maxLength = 8000;
    // As in the chat box: Enter sends, Shift+Enter is a new line.
    text.setAttribute("aria-describedby", "wsd-offline-hint");
    const hint = el("span", "visually-hidden", t.hint);
    hint.id = "wsd-offline-hint";
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.error = el("p", "error");
    this.error.setAttribute("role", "alert");
    const button = el("button", "primary", t.leave);
    button.type = "submit";
    const emailLabel = el("label", "", t.email);
    emailLabel.htmlFor = "wsd-email";
    const textLabel = el("label", "", t.message);
    textLabel.htmlFor = "wsd-offline-text";
    const skip = el("button", "link skip", t.skip);
    skip.type = "button";
    skip.addEventListener("click", () => {
      const typed = text.value.trim();
      text.value = "";
      on.skip(typed);
    });
    const actions = el("div", "actions");
    actions.append(button, skip);
    form.append(el("p", "intro", t.offlineIntro), emailLabel, email, textLabel, text, hint,
                this.error, actions);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const address = email.value.trim();
      if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address) || address.length > 254) {
        this.error.textContent = t.emailInvalid;
        email.setAttribute("aria-invalid", "true");
        email.focus();
        return;
      }
      email.removeAttribute("aria-invalid");
      this.error.textContent = "";
      on.contact(address, text.value.trim());
      text.value = "";
    });
    this.form = form;
    this.email = email;
  }

  showError(text) { this.error.textContent = text; }

}
