// What the widget keeps in the page's localStorage, per daemon and route:
// the last seq it has (to resume), the last one the visitor read (the
// badge), the last one operators read (the ticks: welcome does not say),
// whether the panel was open, whether a contact was left. Never message
// texts. A browser that refuses storage gets a memory-only copy.

export class Saved {
  constructor(socketUrl) {
    this.key = "wsdaemon-widget:" + socketUrl;
    this.seq = 0;
    this.read = 0;
    this.seen = 0;
    this.open = false;
    this.contact = false;
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) || "{}");
      if (Number.isSafeInteger(stored.seq) && stored.seq > 0) { this.seq = stored.seq; }
      if (Number.isSafeInteger(stored.read) && stored.read > 0) { this.read = stored.read; }
      if (Number.isSafeInteger(stored.seen) && stored.seen > 0) { this.seen = stored.seen; }
      this.open = stored.open === true;
      this.contact = stored.contact === true;
    } catch (error) { /* no storage, or not ours: start afresh */ }
  }

  update(fields) {
    Object.assign(this, fields);
    try {
      localStorage.setItem(this.key, JSON.stringify({
        seq: this.seq, read: this.read, seen: this.seen, open: this.open, contact: this.contact,
      }));
    } catch (error) { /* storage full or refused: kept for this page only */ }
  }
}
