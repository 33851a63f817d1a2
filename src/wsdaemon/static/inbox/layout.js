// The inbox's layout and the states shown around the conversation: the side
// panel behind "Details" (a column when the screen is wide, over the thread
// when not), on phones the list or the conversation (with a back button),
// the connection's state beside the availability, and, under the composer,
// that the visitor is not connected.

import { ago, emailNode } from "./format.js";

/** Wider than this, the side panel is a column, open unless closed. */
const WIDE = "(min-width: 1101px)";

/**
 * @param {object} deps $ (by id)
 * @return {{showConversation, showConnected, showAway, closeOverlay}}
 */
export function installLayout({ $ }) {
  const wide = window.matchMedia(WIDE);
  function setPanel(open) {
    $("app").classList.toggle("panel-open", open);
    $("panel-toggle").setAttribute("aria-expanded", String(open));
  }
  setPanel(wide.matches);
  wide.addEventListener("change", () => setPanel(wide.matches));
  $("panel-toggle").addEventListener("click", () => {
    const open = !$("app").classList.contains("panel-open");
    setPanel(open);
    if (open && !wide.matches) { $("panel").setAttribute("tabindex", "-1"); $("panel").focus(); }
  });
  $("panel-close").addEventListener("click", () => { setPanel(false); $("panel-toggle").focus(); });
  $("back").addEventListener("click", () => {
    $("app").classList.remove("showing-conversation");
    if (!wide.matches) { setPanel(false); }
    const row = document.querySelector(".conversation-row.selected .row-button");
    if (row) { row.focus(); }
  });

  /** Esc: the panel over the thread (narrow screens) closes; whether it was open. */
  function closeOverlay() {
    if (wide.matches || !$("app").classList.contains("panel-open")) { return false; }
    setPanel(false);
    $("panel-toggle").focus();
    return true;
  }

  /** A conversation opened: on a phone it takes the screen from the list. */
  function showConversation() {
    $("app").classList.add("showing-conversation");
  }

  /** Lost: the dot is grey and says "Offline — reconnecting" until the hello redraws it. */
  function showConnected(on) {
    $("connection-state").hidden = on;
    $("availability").disabled = !on;
    if (!on) { $("availability-dot").className = "dot offline"; }
  }

  /** Under the composer: the visitor is not connected, so a reply waits for their return. */
  function showAway(c, resolved) {
    const away = $("visitor-away");
    const gone = c.visitor_online === false && !resolved;
    away.hidden = !gone;
    if (!gone) { away.replaceChildren(); return; }
    const parts = ["Not connected: they will see your reply when they come back"
      + (c.visitor_last_seen ? " (last seen " + ago(c.visitor_last_seen) + ")." : ".")];
    const email = c.email || c.contact;
    if (email) { parts.push(" Or write to them: ", emailNode(email, "away-email")); }
    away.replaceChildren(...parts);
  }

  return { showConversation, showConnected, showAway, closeOverlay };
}
