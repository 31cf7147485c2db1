// The live-events socket (docs/websocket.md): token as subprotocol, one subscription, pong on
// ping, reconnect with back-off; each reconnect after the first asks views to resync.

import { current, signOut } from "./api.js";

const EVENTS = ["lead_scored", "batch_processing", "model_status", "escalation"];
const bus = new EventTarget();
let socket = null;
let wanted = false;
let retry = 0;
let retryTimer = null;
let opened = 0;
let statusEl = null;

export const onLive = (type, listener) => bus.addEventListener(type, (e) => listener(e.detail));

function setStatus(state, text) {
  if (!statusEl) return;
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

export function connect(status) {
  statusEl = status;
  wanted = true;
  open();
}

export function disconnect() {
  wanted = false;
  clearTimeout(retryTimer);
  if (socket) socket.close(1000, "signed out");
  socket = null;
  setStatus("offline", "offline");
}

/** Reconnect now with the current token (after a renewal the old one will expire). */
export function refresh() {
  if (socket && socket.readyState === WebSocket.OPEN) socket.close(1000, "new token");
}

function open() {
  const session = current();
  if (!wanted || !session) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ml/ws/live-scores`, ["bearer", session.token]);
  socket = ws;
  setStatus("connecting", "connecting…");
  ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", events: EVENTS }));
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.event_type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (event.event_type === "subscription_updated") {
      retry = 0;
      opened += 1;
      setStatus("live", "live");
      if (opened > 1) bus.dispatchEvent(new CustomEvent("resync", { detail: null }));
    } else if (EVENTS.includes(event.event_type)) {
      bus.dispatchEvent(new CustomEvent(event.event_type, { detail: event }));
    }
  };
  ws.onclose = (close) => {
    if (socket !== ws) return;
    socket = null;
    if (!wanted) return;
    if (close.code === 4403) {
      signOut("The API key was revoked.");
      return;
    }
    // 4401: the token expired (a renewed one is in the session by now); others: back off.
    const delay = close.code === 1000 ? 0 : Math.min(30000, 500 * 2 ** retry);
    retry += 1;
    setStatus("offline", close.code === 1000 ? "reconnecting…" : `offline, retrying in ${Math.round(delay / 1000)} s`);
    retryTimer = setTimeout(open, delay);
  };
}
