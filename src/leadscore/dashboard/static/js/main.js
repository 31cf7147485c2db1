// The command center's entry: sign-in (also from a `#key=` link), views by URL fragment, the
// live socket while signed in.

import { current, onAuth, resume, signIn, signOut } from "./api.js";
import { $ } from "./dom.js";
import { connect, disconnect, refresh } from "./live.js";
import * as downloads from "./downloads.js";
import * as queue from "./queue.js";
import * as upload from "./upload.js";

const VIEWS = ["sign-in", "queue", "lead", "qualify", "team", "model", "upload"];
const lazy = {}; // views loaded on first use: {team, model, detail, qualify}

async function module(name) {
  lazy[name] ??= import(`./${name}.js`).then((m) => {
    m.setup?.();
    return m;
  });
  return lazy[name];
}

function showView(name) {
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.view = name;
}

async function route() {
  if (!current()) {
    showView("sign-in");
    return;
  }
  const [, view = "queue", arg] = location.hash.match(/^#\/([a-z]+)\/?(.*)$/) ?? [];
  const name = VIEWS.includes(view) && view !== "sign-in" ? view : "queue";
  const previous = document.body.dataset.view;
  showView(name);
  if (previous !== name && previous !== "sign-in" && previous) $("main").focus({ preventScroll: true });
  if (name === "team") (await module("team")).show(true);
  else lazy.team?.then((m) => m.show(false));
  if (name === "model") (await module("model")).show(true);
  else lazy.model?.then((m) => m.show(false));
  if (name === "qualify") (await module("qualify")).show(true);
  else lazy.qualify?.then((m) => m.show(false));
  if (name === "lead") (await module("detail")).show(decodeURIComponent(arg));
}

function signedIn(session) {
  $("nav").hidden = false;
  $("session").hidden = false;
  $("who").textContent = `${session.team} · ${session.role}`;
  // Out of the hidden form: the view takes the focus, so keyboard and screen reader follow.
  if (!document.activeElement || document.activeElement === document.body || $("view-sign-in").contains(document.activeElement)) {
    $("main").focus({ preventScroll: true });
  }
  // The queue's request first, then the socket; the team's polling once its rows are in.
  queue.reload().finally(() => {
    if (current()) module("team").then((m) => m.start());
  });
  connect($("live-status"));
  route();
}

function signedOut(reason) {
  disconnect();
  $("nav").hidden = true;
  $("session").hidden = true;
  lazy.team?.then((m) => m.stop());
  lazy.model?.then((m) => m.reset());
  $("sign-in-error").textContent = reason ?? "";
  showView("sign-in");
  $("api-key").focus();
}

async function submit(event) {
  event.preventDefault();
  const input = $("api-key");
  const button = event.target.querySelector("button");
  button.disabled = true;
  $("sign-in-error").textContent = "";
  try {
    await signIn(input.value.trim());
    input.value = "";
  } catch (error) {
    $("sign-in-error").textContent = error.status === 401 || error.status === 403
      ? `That key was refused: ${error.message}`
      : `Could not sign in: ${error.message}`;
    input.focus();
  } finally {
    button.disabled = false;
  }
}

/** `#key=<api key>`: sign in at once, then drop the key from the address bar and history. */
function keyFromFragment() {
  const found = location.hash.match(/^#key=([^&]+)/);
  if (!found) return null;
  history.replaceState(null, "", `${location.pathname}${location.search}#/queue`);
  return decodeURIComponent(found[1]);
}

function boot() {
  queue.setup();
  downloads.setup();
  upload.setup(); // the file field works, and batch events are followed, from the start
  $("sign-in-form").addEventListener("submit", submit);
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  onAuth(({ detail }) => {
    if (detail.session && detail.reason === "renewed") refresh();
    else if (detail.session) signedIn(detail.session);
    else signedOut(detail.reason);
  });
  const key = keyFromFragment();
  if (key) {
    signIn(key).catch((error) => signedOut(`The link's key was refused: ${error.message}`));
  } else if (!resume()) {
    signedOut(null);
  }
}

boot();
