// The page's API on window.wsdaemon (also callable as wsdaemon("open"), as
// the stub queues calls):
//   identify({name, email, attributes, hash})  hash: hex HMAC-SHA256 of the
//       visitor id, or a function (visitorId) => hash or a promise of it
//   open() / close() / toggle()
//   on(event, fn) / off(event, fn)   message, open, close, unread, ready,
//       status, error, identified, push
//   token(value or function)   the identity token (identity = jwt), or a
//       function giving a fresh one (or a promise of it) before each connection
//   send(text)

export function installApi(api, widget) {
  api.identify = (data) => { widget.identify(data); return api; };
  api.open = () => { widget.setOpen(true, true); return api; };
  api.close = () => { widget.setOpen(false, true); return api; };
  api.toggle = () => { widget.setOpen(widget.view.panel.hidden, true); return api; };
  api.on = (event, fn) => {
    if (widget.listeners.has(event) && typeof fn === "function") { widget.listeners.get(event).add(fn); }
    return api;
  };
  api.off = (event, fn) => { widget.listeners.get(event)?.delete(fn); return api; };
  api.token = (value) => {
    widget.tokenSource = typeof value === "function" ? value : () => value;
    if (widget.connection && !widget.connection.open) { widget.connection.now(); }
    return api;
  };
  api.send = (text) => {
    if (typeof text === "string" && text.trim()) { widget.send(text.trim()); }
    return api;
  };
}
