// The operator channel (protocol 2): one WebSocket, requests answered by id,
// events passed on; reconnects with backoff after a lost connection.

const REVOKED = 4001;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export class Channel {
  /**
   * @param {string} path the [operator] path
   * @param {object} hooks onHello(hello), onEvent(event), onState(state, detail)
   *   states: "connecting", "open", "reconnecting" (detail: seconds until the
   *   next try), "refused" (detail: why), "closed"
   */
  constructor(path, hooks) {
    this.path = path;
    this.hooks = hooks;
    this.socket = null;
    this.token = null;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.everOpened = false;
    this.timer = null;
    this.stopped = true;
  }

  start(token) {
    this.token = token;
    this.stopped = false;
    this.attempt = 0;
    this.everOpened = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) { this.socket.close(1000); }
    this.socket = null;
    this.failPending("signed out");
  }

  connect() {
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // Browsers cannot set an Authorization header on a WebSocket: the
    // channel takes the token as a query parameter (never logged).
    const url = scheme + location.host + this.path + "?token=" + encodeURIComponent(this.token);
    this.hooks.onState(this.everOpened ? "reconnecting" : "connecting", null);
    let opened = false;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => { opened = true; };
    socket.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.type === "hello") {
        this.attempt = 0;
        this.everOpened = true;
        this.hooks.onState("open", null);
        this.hooks.onHello(event);
      } else if ((event.type === "ok" || event.type === "error") && this.pending.has(event.id)) {
        const waiter = this.pending.get(event.id);
        this.pending.delete(event.id);
        if (event.type === "ok") { waiter.resolve(event); } else { waiter.reject(new Error(event.error)); }
      } else {
        this.hooks.onEvent(event);
      }
    };
    socket.onclose = (close) => {
      if (this.socket !== socket) { return; }
      this.socket = null;
      this.failPending("connection lost");
      if (this.stopped) { return; }
      if (close.code === REVOKED) {
        this.stopped = true;
        this.hooks.onState("refused", "Your operator token was revoked. Ask your administrator for a new one.");
        return;
      }
      if (!opened) {
        // A refused handshake and a daemon that is down look the same to a
        // WebSocket (1006); the page's own origin answering tells them apart.
        this.daemonAnswers().then((answers) => {
          if (this.stopped) { return; }
          if (answers) {
            this.stopped = true;
            this.hooks.onState("refused", this.everOpened
              ? "The daemon no longer accepts your token. Sign in again."
              : "The daemon refused this token. Check it and try again.");
          } else {
            this.retry();
          }
        });
        return;
      }
      this.retry();
    };
  }

  daemonAnswers() {
    return fetch(location.pathname, { method: "HEAD", cache: "no-store" })
      .then((response) => response.ok, () => false);
  }

  retry() {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.hooks.onState("reconnecting", Math.ceil(jittered / 1000));
    this.timer = setTimeout(() => this.connect(), jittered);
  }

  retryNow() {
    if (!this.stopped && !this.socket) { this.connect(); }
  }

  failPending(why) {
    for (const waiter of this.pending.values()) { waiter.reject(new Error(why)); }
    this.pending.clear();
  }

  get open() { return this.socket !== null && this.socket.readyState === WebSocket.OPEN; }

  /** Send a request; a promise of its ok answer (rejected with the error's text). */
  request(body) {
    if (!this.open) { return Promise.reject(new Error("not connected")); }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify(Object.assign({ id }, body)));
    });
  }
}
