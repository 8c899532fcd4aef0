// The /ws event stream, reconnected with jittered exponential backoff.
//
// Every (re)connection starts with a "snapshot" event, so nothing missed while away needs replaying:
// the page simply replaces its state with the snapshot.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class LiveSocket {
  // onEvent(event) for every message; onState(state, detail) with state "connecting" | "live" | "retrying".
  constructor(url, onEvent, onState) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.failures = 0;
    this.socket = null;
    this.retryTimer = null;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.onState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return; // not ours: ignore
      }
      if (event.type === "snapshot") {
        this.failures = 0;
        this.onState("live");
      }
      this.onEvent(event);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
    const delay = ceiling * (0.5 + 0.5 * Math.random()); // jitter: clients do not all return at once
    this.failures += 1;
    this.onState("retrying", delay);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

export function socketUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}
