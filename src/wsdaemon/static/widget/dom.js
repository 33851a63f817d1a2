// Small DOM helpers of the widget: elements, icons, message text with its
// links (always built as nodes from the text, never parsed as HTML), the
// colour that reads on the accent.

import { linkedText } from "../shared/links.js";

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
  close: "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z",
  send: "M3 20.5 21 12 3 3.5v6.6L15 12 3 13.9z",
};

export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon", "icon-" + name);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  return svg;
}

/** The text colour that reads on the accent: dark on a light one. */
export function accentText(color) {
  const ctx = document.createElement("canvas").getContext("2d");
  if (!ctx) { return "#ffffff"; }
  ctx.fillStyle = "#000000";
  ctx.fillStyle = color;
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(ctx.fillStyle);
  if (!hex) { return "#ffffff"; }
  const [r, g, b] = hex.slice(1).map((h) => {
    const c = parseInt(h, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.35 ? "#111111" : "#ffffff";
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  if (text !== undefined) { node.textContent = text; }
  return node;
}

/** A message's text, its addresses as links (the rule both pages share). */
export function bubble(text) {
  return linkedText("bubble", text);
}
