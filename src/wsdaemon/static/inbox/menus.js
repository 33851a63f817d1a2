// The menus that drop down from a button (snooze, settings): one open at a
// time, focus on its first choice; the snooze choices' times.

/** Every menu closed, and every menu button saying so (Escape, a choice made). */
export function closeMenus() {
  for (const menu of document.querySelectorAll(".menu")) { menu.hidden = true; }
  for (const button of document.querySelectorAll("[aria-haspopup]")) { button.setAttribute("aria-expanded", "false"); }
}

function toggleMenu(button, menu) {
  const open = menu.hidden;
  for (const other of document.querySelectorAll(".menu")) { other.hidden = true; }
  for (const other of document.querySelectorAll("[aria-haspopup]")) { other.setAttribute("aria-expanded", "false"); }
  menu.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  if (open) { const first = menu.querySelector("button, input"); if (first) { first.focus(); } }
}

/** @param {object} deps $ (by id), onSnooze(until: Unix seconds, or null: until the visitor replies) */
export function installMenus({ $, onSnooze }) {
  $("snooze-button").addEventListener("click", () => toggleMenu($("snooze-button"), $("snooze-menu")));
  $("settings-button").addEventListener("click", () => toggleMenu($("settings-button"), $("settings")));
  for (const choice of document.querySelectorAll("[data-snooze]")) {
    choice.addEventListener("click", () => {
      const kind = choice.dataset.snooze;
      let until = null;
      if (kind === "tomorrow") {
        const t = new Date();
        t.setDate(t.getDate() + 1);
        t.setHours(9, 0, 0, 0);
        until = t.getTime() / 1000;
      } else if (kind !== "reply") {
        until = Date.now() / 1000 + Number(kind);
      }
      $("snooze-menu").hidden = true;
      $("snooze-button").setAttribute("aria-expanded", "false");
      $("snooze-button").focus();
      onSnooze(until);
    });
  }
}
