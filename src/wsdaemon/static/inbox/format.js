// Small helpers: building elements (text always as text, never HTML) and
// showing times the way people say them.

// A message's text with its addresses as links: the widget's rule, one module.
export { linkedText } from "../shared/links.js";

/** An element with a class and children (strings become text nodes). */
export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  for (const child of children) {
    if (child === null || child === undefined || child === false) { continue; }
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** The daemon's clock minus ours, in seconds (learnt from summaries). */
let skew = 0;
export function learnServerTime(serverNow) {
  if (typeof serverNow === "number" && isFinite(serverNow)) { skew = serverNow - Date.now() / 1000; }
}
export function serverNow() { return Date.now() / 1000 + skew; }

/** "now", "4 min", "2 h", "3 d": how long since a time (Unix seconds). */
export function since(at) {
  const seconds = Math.max(0, serverNow() - at);
  if (seconds < 60) { return "now"; }
  if (seconds < 3600) { return Math.floor(seconds / 60) + " min"; }
  if (seconds < 86400) {
    const hours = Math.floor(seconds / 3600), minutes = Math.floor((seconds % 3600) / 60);
    return hours + " h" + (minutes && hours < 10 ? " " + minutes + " min" : "");
  }
  return Math.floor(seconds / 86400) + " d";
}

/** A message's time: "14:05" today, "Mon 14:05" this week, else the date. */
export function clock(at) {
  const date = new Date((at - skew) * 1000);
  const now = new Date();
  // The browser's locale, no leading zero ("3:38 PM", "15:38"), as the widget shows it.
  const time = date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) { return time; }
  if (now - date < 6 * 86400000) { return date.toLocaleDateString([], { weekday: "short" }) + " " + time; }
  return date.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
}

export function fullTime(at) {
  return new Date((at - skew) * 1000).toLocaleString();
}

/** Initials for an avatar: "Ann Lee" -> "AL", "Visitor 4821" -> "V4". */
export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).slice(0, 2);
  return words.map((w) => w.charAt(0).toUpperCase()).join("") || "?";
}

/** A hue from a string, for avatars that tell visitors apart. */
export function hue(text) {
  let h = 0;
  for (const ch of String(text)) { h = (h * 31 + ch.codePointAt(0)) % 360; }
  return h;
}

/** A duration for people: "under a minute", "4 min", "2 h 5 min", "3 d". */
export function duration(seconds) {
  if (seconds < 60) { return "under a minute"; }
  if (seconds < 3600) { return Math.floor(seconds / 60) + " min"; }
  if (seconds < 86400) {
    const hours = Math.floor(seconds / 3600), minutes = Math.floor((seconds % 3600) / 60);
    return hours + " h" + (minutes && hours < 10 ? " " + minutes + " min" : "");
  }
  return Math.floor(seconds / 86400) + " d";
}

/** "just now" or "4 min ago". */
export function ago(at) {
  const text = since(at);
  return text === "now" ? "just now" : text + " ago";
}

/** A canned reply's text with its placeholders filled (as wsdaemon.support.canned.expand). */
export function expandCanned(text, values) {
  const name = values.name || values.alias || "";
  const filled = { name, alias: values.alias || "", email: values.email || "", operator: values.operator || "" };
  return text.replace(/\{\{|\}\}|\{(name|alias|email|operator)\}/g, (match, key) => {
    if (match === "{{") { return "{"; }
    if (match === "}}") { return "}"; }
    return filled[key];
  });
}

/** Who a conversation is, for people: its name, else its alias. */
export function visitorName(summary) {
  return summary.name || summary.alias || "Visitor";
}

/**
 * A search snippet cut into plain and matched parts: [{text, mark}]. The
 * daemon's marks are [start, end) offsets into the snippet (never HTML);
 * any that are not whole numbers in order inside it are ignored, so the
 * parts always join back into the snippet exactly.
 */
export function markedParts(snippet, marks) {
  const text = String(snippet || "");
  const parts = [];
  let at = 0;
  for (const mark of Array.isArray(marks) ? marks : []) {
    if (!Array.isArray(mark) || mark.length !== 2) { continue; }
    const [start, end] = mark;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < at || end <= start || end > text.length) { continue; }
    if (start > at) { parts.push({ text: text.slice(at, start), mark: false }); }
    parts.push({ text: text.slice(start, end), mark: true });
    at = end;
  }
  if (at < text.length || !parts.length) { parts.push({ text: text.slice(at), mark: false }); }
  return parts;
}

/** "mailto:ann@example.com" for what looks like one address, else null. */
export function mailtoHref(email) {
  const text = String(email || "").trim();
  const match = /^([^\s@<>"(),;:]+)@([^\s@<>"(),;:]+\.[^\s@<>"(),;:]+)$/.exec(text);
  if (!match) { return null; }
  return "mailto:" + encodeURIComponent(match[1]) + "@" + encodeURIComponent(match[2]);
}

/** An email as a mailto link when it is one, else as text. */
export function emailNode(email, className) {
  const href = mailtoHref(email);
  if (!href) { return el("span", className || "", String(email)); }
  const a = el("a", className || "", String(email).trim());
  a.href = href;
  return a;
}
