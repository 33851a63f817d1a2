// Telling an operator who looks elsewhere: new visitor messages counted in
// the tab's title, an optional beep (off by default, made with WebAudio), a
// desktop notification once allowed (asked once, on a click).

const TITLE = "Inbox · wsdaemon";
const SOUND_KEY = "wsdaemon-inbox-sound";
const ASKED_KEY = "wsdaemon-inbox-notifications-asked";

export class Notifier {
  constructor({ soundBox, desktopButton, desktopState }) {
    this.unseen = 0;
    this.soundBox = soundBox;
    this.desktopButton = desktopButton;
    this.desktopState = desktopState;
    this.audio = null;
    soundBox.checked = localStorage.getItem(SOUND_KEY) === "on";
    soundBox.addEventListener("change", () => {
      localStorage.setItem(SOUND_KEY, soundBox.checked ? "on" : "off");
      if (soundBox.checked) { this.beep(); }
    });
    desktopButton.addEventListener("click", () => this.askDesktop());
    const back = () => { if (this.looking) { this.unseen = 0; this.title(); } };
    document.addEventListener("visibilitychange", back);
    window.addEventListener("focus", back);
    this.showDesktopState();
  }

  get looking() { return !document.hidden && document.hasFocus(); }

  title() {
    document.title = this.unseen ? "(" + this.unseen + ") " + TITLE : TITLE;
  }

  /** A visitor wrote (`who`: its name, `text`: what). */
  visitorWrote(who, text, onClick) {
    if (this.looking) { return; }
    this.unseen += 1;
    this.title();
    if (this.soundBox.checked) { this.beep(); }
    if ("Notification" in window && Notification.permission === "granted") {
      // A notification shows its text as text.
      const shown = new Notification(who, { body: text.slice(0, 200), tag: "wsdaemon-inbox" });
      shown.onclick = () => { window.focus(); onClick(); shown.close(); };
    }
  }

  beep() {
    try {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) { return; }
      this.audio = this.audio || new Context();
      const now = this.audio.currentTime;
      const tone = this.audio.createOscillator();
      const gain = this.audio.createGain();
      tone.type = "sine";
      tone.frequency.setValueAtTime(880, now);
      tone.frequency.setValueAtTime(660, now + 0.09);
      gain.gain.setValueAtTime(0.0001, now);
      gain.gain.exponentialRampToValueAtTime(0.15, now + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.22);
      tone.connect(gain).connect(this.audio.destination);
      tone.start(now);
      tone.stop(now + 0.25);
    } catch (e) { /* no sound device: nothing to do */ }
  }

  askDesktop() {
    if (!("Notification" in window)) { return; }
    localStorage.setItem(ASKED_KEY, "yes");
    Notification.requestPermission().then(() => this.showDesktopState());
  }

  showDesktopState() {
    if (!("Notification" in window)) {
      this.desktopButton.hidden = true;
      this.desktopState.textContent = "This browser has no desktop notifications.";
      return;
    }
    const permission = Notification.permission;
    // Asked once: the browser remembers the answer; only "default" may ask.
    this.desktopButton.hidden = permission !== "default";
    this.desktopState.textContent = permission === "granted" ? "Desktop notifications are on."
      : permission === "denied" ? "Desktop notifications are blocked in this browser's site settings."
        : localStorage.getItem(ASKED_KEY) ? "Desktop notifications were not allowed yet." : "";
  }
}
