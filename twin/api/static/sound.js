// A sound and a browser notification when a red alert is raised (or an alert turns red), at most once per alert,
// and a mute switch that the browser remembers.
//
// The beep is made with WebAudio (two tones, no audio file to load). Browsers let a page play sound only after
// the user has clicked or typed on it: the first pointer or key press on the page resumes the audio; before
// that a beep may be silent, which is caught and ignored. Muting stops the beep; the notification is still
// shown, silently, because a red alert is not something to miss [design].

const STORAGE_KEY = "citytwin.muted";
export const NOTIFICATION_TITLE = "红色预警 · Red alert";
// Two tones, high then low, twice: [frequency Hz, start s, length s] [design: a two-tone alarm, well inside the
// 500–1,000 Hz band people hear best at low volume]
const TONES = [[880, 0, 0.22], [660, 0.25, 0.22], [880, 0.5, 0.22], [660, 0.75, 0.22]];
const VOLUME = 0.18; // peak gain [1] [design]
const RAMP_S = 0.02; // fade in and out of each tone, so it does not click [s]

// An observed alert (CAP certainty Observed, or none given), not a forecast.
const observed = (p) => !p.certainty || p.certainty === "Observed";
const observedRed = (feature) => {
  const p = feature?.properties;
  return Boolean(p) && p.level === 4 && observed(p);
};

// The ids of the alerts that are observed red in `next` and were not in `previous` (both Map id -> GeoJSON
// Feature as the page keeps them; `previous` may be null on the first snapshot). A forecast red never counts:
// it is an expectation, not a red alert.
export function newReds(previous, next) {
  const out = [];
  for (const [id, feature] of next || []) {
    if (observedRed(feature) && !observedRed(previous?.get(id))) out.push(id);
  }
  return out;
}

// The notification's text: the place and the headline in both languages, as far as the alert has them.
function notificationBody(p) {
  const place = p.place_name || p.area_desc || p.areaDesc || "";
  const lines = [place, p.headline_zh, p.headline].filter(Boolean);
  return [...new Set(lines)].join("\n");
}

export class Alarm {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    this.rung = new Set(); // alert ids already rung
    this.beeps = 0; // beeps played (or tried: the browser may still hold audio back)
    this.notified = 0; // notifications shown
    this.audio = null;
    this._muted = this.read() === "1";
    // the first gesture on the page unlocks audio for the rest of the session
    const unlock = () => this.unlock();
    if (typeof document !== "undefined") {
      for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, unlock, { once: true, capture: true });
    }
  }

  get muted() {
    return this._muted;
  }

  setMuted(muted) {
    this._muted = Boolean(muted);
    try {
      this.storage?.setItem(STORAGE_KEY, this._muted ? "1" : "0");
    } catch {
      // storage full or blocked (private mode): the switch still holds for this page
    }
  }

  read() {
    try {
      return this.storage?.getItem(STORAGE_KEY) ?? null;
    } catch {
      return null;
    }
  }

  // Create or resume the audio context (call from a user gesture; harmless otherwise).
  unlock() {
    try {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      if (!this.audio) this.audio = new Context();
      if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
      return this.audio;
    } catch {
      return null;
    }
  }

  // Ring for a red alert (a GeoJSON Feature): the beep unless muted, and a notification if the page may show
  // them; once per alert id. Returns whether it rang (false: already rung, or no id).
  ring(feature) {
    const p = feature?.properties || {};
    const id = p.identifier ?? feature?.id;
    if (id == null || this.rung.has(id)) return false;
    this.rung.add(id);
    if (!this._muted) this.beep();
    this.notify(id, p);
    return true;
  }

  beep() {
    try {
      const audio = this.unlock();
      if (!audio) return;
      const t0 = audio.currentTime + 0.02;
      for (const [hz, start, length] of TONES) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = "sine";
        osc.frequency.value = hz;
        gain.gain.setValueAtTime(0, t0 + start);
        gain.gain.linearRampToValueAtTime(VOLUME, t0 + start + RAMP_S);
        gain.gain.setValueAtTime(VOLUME, t0 + start + length - RAMP_S);
        gain.gain.linearRampToValueAtTime(0, t0 + start + length);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + start);
        osc.stop(t0 + start + length + 0.01);
      }
      this.beeps++;
    } catch {
      // no audio device, or audio not allowed yet: the list and the map still show the alert
    }
  }

  notify(id, p) {
    try {
      if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
      new Notification(NOTIFICATION_TITLE, { body: notificationBody(p), tag: `citytwin-red-${id}`, silent: this._muted });
      this.notified++;
    } catch {
      // some browsers (Chrome on Android) allow notifications only from a service worker
    }
  }

  // Ask for permission to show notifications (call from a click). Returns "granted", "denied", "default" or
  // "unsupported".
  async askPermission() {
    if (typeof Notification === "undefined") return "unsupported";
    try {
      if (Notification.permission === "default") return await Notification.requestPermission();
      return Notification.permission;
    } catch {
      return Notification.permission;
    }
  }
}
