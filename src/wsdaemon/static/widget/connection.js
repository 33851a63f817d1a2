// The widget's WebSocket: the structured visitor protocol (wsdaemon.chat.v1,
// docs/conversations.md section 7), reconnecting with backoff.

export const SUBPROTOCOL = "wsdaemon.chat.v1";
/** Seconds before each new attempt (then the last, again), each +-20%. */
const DELAYS = [1, 2, 4, 8, 15, 30];
/**
 * Attempts in a row that closed before they opened, after which the widget
 * takes it as a refusal (the browser hides the handshake's 403 or 400: a bad
 * token, an origin the route does not list) rather than a passing loss.
 */
export const REFUSED_AFTER = 3;

export class Connection {
  /**
   * @param url the route's ws:// or wss:// URL.
   * @param token a function giving the identity token (or a promise of it,
   *   or null): called before every attempt, so a page can mint a fresh one.
   * @param handlers {frame(object), opened(), state(name, seconds),
   *   refused() (REFUSED_AFTER attempts in a row failed before opening)}.
   */
  constructor(url, token, handlers) {
    this.url = url;
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.timer = null;
    this.attempt = 0;
    this.connecting = false;
    /** Attempts in a row that closed before they opened. */
    this.unopened = 0;
  }

  /** Did the last REFUSED_AFTER attempts (or more) all fail before opening? */
  get refused() { return this.unopened >= REFUSED_AFTER; }

  start() {
    window.addEventListener("online", () => this.now());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") { this.now(); }
    });
    this.connect();
  }

  async connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket || this.connecting) { return; }
    this.connecting = true;
    this.handlers.state("connecting", 0);
    let url = this.url;
    let socket;
    try {
      const token = await this.token();
      if (token) { url += (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token); }
      socket = new WebSocket(url, [SUBPROTOCOL]);
    } catch (error) {
      console.warn("wsdaemon widget: cannot connect", error);
      this.connecting = false;
      this.retry();
      return;
    }
    this.connecting = false;
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.unopened = 0;
      if (socket.protocol !== SUBPROTOCOL) {  // not a conversations route
        console.error("wsdaemon widget: the route does not speak " + SUBPROTOCOL);
        socket.close(1000);
        return;
      }
      this.handlers.opened();
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") { return; }
      let frame;
      try { frame = JSON.parse(event.data); } catch (error) { return; }
      if (frame && typeof frame.type === "string") { this.handlers.frame(frame); }
    };
    socket.onclose = () => {
      if (this.socket !== socket) { return; }
      this.socket = null;
      if (!opened) {
        this.unopened += 1;
        if (this.unopened === REFUSED_AFTER) { this.handlers.refused(); }
      }
      this.retry();
    };
  }

  retry() {
    const base = DELAYS[Math.min(this.attempt, DELAYS.length - 1)];
    this.attempt += 1;
    const delay = base * (0.8 + Math.random() * 0.4);
    this.handlers.state("waiting", delay);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }

  /** The daemon answered: the next loss starts the backoff again. */
  settled() { this.attempt = 0; }

  /** Try at once (back online, tab shown, the visitor asked). */
  now() {
    if (!this.socket && !this.connecting) { this.connect(); }
  }

  get open() { return this.socket !== null && this.socket.readyState === WebSocket.OPEN; }

  /** @return whether the frame went out (false: not connected). */
  send(frame) {
    if (!this.open) { return false; }
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}
