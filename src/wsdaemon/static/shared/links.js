// Web addresses in a message's text as links: one rule for the chat widget
// (static/widget/dom.js) and the operators' inbox (static/inbox/format.js).
// Served at /_wsdaemon/shared/links.js; both import it as
// "../shared/links.js" (the widget's pages are on other sites: it comes with
// CORS, as the widget's own modules do). Links are built as nodes from the
// text, never parsed as HTML.

/** http(s) addresses; the punctuation that ends a sentence is left out. */
const LINK = /\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]'"]/g;

/**
 * A text cut into its parts: [{text}, {text, href}...], href for http(s)
 * addresses (punctuation after one is left out of it).
 */
export function linkParts(text) {
  const whole = String(text);
  const parts = [];
  let at = 0;
  for (const match of whole.matchAll(LINK)) {
    if (match.index > at) { parts.push({ text: whole.slice(at, match.index) }); }
    parts.push({ text: match[0], href: match[0] });
    at = match.index + match[0].length;
  }
  if (at < whole.length) { parts.push({ text: whole.slice(at) }); }
  return parts;
}

/**
 * A paragraph of class C{className} holding C{text}, its addresses as links
 * that open apart and tell the other site nothing (rel noopener noreferrer
 * nofollow).
 */
export function linkedText(className, text) {
  const p = document.createElement("p");
  if (className) { p.className = className; }
  for (const part of linkParts(text)) {
    if (!part.href) { p.append(part.text); continue; }
    const a = document.createElement("a");
    a.textContent = part.text;
    a.href = part.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    p.append(a);
  }
  return p;
}
