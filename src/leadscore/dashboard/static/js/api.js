// Sign-in and the API: an API key is exchanged for a JWT (kept in sessionStorage), renewed
// before it expires while the key is in memory; every call carries the bearer token.

const TOKEN_KEY = "leadscore.session";
const RENEW_SHARE = 0.8; // renew at 80 % of the token's lifetime
const events = new EventTarget();
let session = null; // {token, expiresAt, role, team}
let apiKey = null; // only in memory: lost on reload, then the stored token serves until expiry
let renewTimer = null;

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(typeof detail === "string" ? detail : `${status} ${code}`);
    this.status = status;
    this.code = code;
  }
}

export const onAuth = (listener) => events.addEventListener("change", listener);
export const current = () => session;
export const isAdmin = () => session?.role === "admin";

function announce(reason = null) {
  events.dispatchEvent(new CustomEvent("change", { detail: { session, reason } }));
}

function store(next) {
  session = next;
  if (next) sessionStorage.setItem(TOKEN_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function exchange(key) {
  const response = await fetch("/api/v1/auth/token", { method: "POST", headers: { "X-API-Key": key } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.error ?? "error", body.detail ?? "sign-in failed");
  return {
    token: body.access_token,
    expiresAt: Date.now() + body.expires_in * 1000,
    lifetime: body.expires_in * 1000,
    role: body.role,
    team: body.team,
  };
}

function scheduleRenewal() {
  clearTimeout(renewTimer);
  if (!session) return;
  const left = session.expiresAt - Date.now();
  if (!apiKey) {
    // Without the key (the tab was reloaded) the token cannot be renewed: sign out at expiry.
    renewTimer = setTimeout(() => signOut("Your session expired: sign in again."), Math.max(0, left));
    return;
  }
  const wait = Math.max(1000, left - session.lifetime * (1 - RENEW_SHARE));
  renewTimer = setTimeout(renew, wait);
}

async function renew() {
  try {
    store(await exchange(apiKey));
    announce("renewed");
    scheduleRenewal();
  } catch (error) {
    if (error instanceof ApiError && error.status < 500) signOut("The API key no longer works: sign in again.");
    else renewTimer = setTimeout(renew, 5000); // the server is unreachable: try again shortly
  }
}

export async function signIn(key) {
  const next = await exchange(key);
  apiKey = key;
  store(next);
  scheduleRenewal();
  announce("signed-in");
}

export function resume() {
  const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? "null");
  if (!saved || saved.expiresAt - Date.now() < 5000) {
    store(null);
    return false;
  }
  session = saved;
  scheduleRenewal();
  announce("resumed");
  return true;
}

export function signOut(reason = null) {
  clearTimeout(renewTimer);
  apiKey = null;
  store(null);
  announce(reason);
}

export async function api(path, options = {}) {
  if (!session) throw new ApiError(401, "unauthorized", "not signed in");
  const headers = { Authorization: `Bearer ${session.token}`, ...(options.headers ?? {}) };
  const response = await fetch(path, { ...options, headers });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) signOut("Your session ended: sign in again.");
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? "error", body?.detail ?? response.statusText);
  }
  return body;
}

/** A file from the API (bearer-authenticated, so not a plain link): its blob and file name. */
export async function download(path) {
  if (!session) throw new ApiError(401, "unauthorized", "not signed in");
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } });
  if (response.status === 401) signOut("Your session ended: sign in again.");
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body?.error ?? "error", body?.detail ?? response.statusText);
  }
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const filename = disposition.match(/filename="([^"]+)"/)?.[1] ?? "download";
  return { blob: await response.blob(), filename };
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
