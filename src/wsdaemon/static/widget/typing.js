// The visitor's typing, told to operators: on at the first key, renewed at
// most every TYPING_EVERY while keys come, off after TYPING_IDLE without one
// (or when the message goes). The daemon turns it off after its own
// typing_timeout (6 s) unless renewed.

/** Typing on is renewed at most this often (ms); off after this long without a key. */
const TYPING_EVERY = 2000;
const TYPING_IDLE = 4000;

export class VisitorTyping {
  /** @param tell (on) => whether it went out (false: not connected). */
  constructor(tell) {
    this.tell = tell;
    this.sentAt = 0;
    this.idle = null;
  }

  typed() {
    const now = Date.now();
    if (now - this.sentAt > TYPING_EVERY && this.tell(true)) { this.sentAt = now; }
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.off(), TYPING_IDLE);
  }

  off() {
    clearTimeout(this.idle);
    if (this.sentAt) {
      this.sentAt = 0;
      this.tell(false);
    }
  }
}
