// The thread as this page holds it: the daemon's messages by seq, at most
// `max` of them (the oldest go first; "show earlier" fetches them again).

export class Thread {
  constructor(max) {
    this.max = max;
    this.bySeq = new Map();
  }

  get size() { return this.bySeq.size; }

  /** The highest seq held (0: none). */
  maxSeq() { let m = 0; for (const seq of this.bySeq.keys()) { m = Math.max(m, seq); } return m; }

  /** The lowest seq held (Infinity: none). */
  minSeq() { let m = Infinity; for (const seq of this.bySeq.keys()) { m = Math.min(m, seq); } return m; }

  /**
   * @return the entry for a message frame or page entry, or null when it is
   *   malformed or already held.
   */
  add(m) {
    if (!m || !Number.isSafeInteger(m.seq) || m.seq < 1 || this.bySeq.has(m.seq)) { return null; }
    const entry = {
      key: "s" + m.seq, seq: m.seq, author: String(m.author), name: m.name || null,
      text: String(m.text ?? "") + (m.truncated ? "…" : ""), at: m.at, id: m.id || null,
    };
    this.bySeq.set(entry.seq, entry);
    return entry;
  }

  /** @return the entries dropped to stay within the bound. */
  trim() {
    const dropped = [];
    while (this.bySeq.size > this.max) {
      const oldest = this.minSeq();
      dropped.push(this.bySeq.get(oldest));
      this.bySeq.delete(oldest);
    }
    return dropped;
  }

  /** Messages from operators, the bot or the daemon after `read`. */
  unread(read) {
    let n = 0;
    for (const entry of this.bySeq.values()) {
      if (entry.seq > read && entry.author !== "visitor") { n += 1; }
    }
    return n;
  }

  /** The newest message from operators or the bot after `read` (null: none). */
  newestUnread(read) {
    let found = null;
    for (const entry of this.bySeq.values()) {
      if (entry.seq > read && (entry.author === "operator" || entry.author === "bot")
          && (!found || entry.seq > found.seq)) { found = entry; }
    }
    return found;
  }

  /** The visitor's messages with from < seq <= upto. */
  visitorBetween(from, upto) {
    return [...this.bySeq.values()].filter(
      (entry) => entry.author === "visitor" && entry.seq > from && entry.seq <= upto);
  }
}
