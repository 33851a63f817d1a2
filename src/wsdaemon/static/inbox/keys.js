// Keyboard shortcuts: j/k or Alt+Up/Down move through the list, e resolves,
// r / n write a reply / a note, ? shows the help, Esc closes what is open.

function typingInField(target) {
  return target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
    (target.tagName === "INPUT" && !["checkbox", "radio", "button"].includes(target.type)));
}

export function installShortcuts({ help, helpClose, next, previous, resolve, reply, note, escape }) {
  let returnFocus = null;
  const openHelp = () => {
    returnFocus = document.activeElement;
    help.hidden = false;
    helpClose.focus();
  };
  const closeHelp = () => {
    help.hidden = true;
    if (returnFocus && returnFocus.focus) { returnFocus.focus(); }
  };
  helpClose.addEventListener("click", closeHelp);
  help.addEventListener("click", (event) => { if (event.target === help) { closeHelp(); } });
  document.addEventListener("keydown", (event) => {
    if (!help.hidden) {
      if (event.key === "Escape" || event.key === "?") { event.preventDefault(); closeHelp(); }
      if (event.key === "Tab") { event.preventDefault(); helpClose.focus(); }
      return;
    }
    if (event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      event.preventDefault();
      if (event.key === "ArrowDown") { next(); } else { previous(); }
      return;
    }
    if (event.key === "Escape") { escape(event); return; }
    if (event.ctrlKey || event.metaKey || event.altKey || typingInField(event.target)) { return; }
    const action = { j: next, k: previous, e: resolve, r: reply, n: note, "?": openHelp }[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
  return { openHelp };
}
