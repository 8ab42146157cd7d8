// The console's entry: sign-in with a pasted token (checked with GET /whoami, then kept in
// sessionStorage), the notices every panel reports to, and the wiring of the three panels and
// of the process set's dialogs (add, scale, remove).
// With a read token every control that changes something is disabled, visibly, and says why.

import { ApiError, call, token, whenUnauthorized } from "./api.js";
import { ask, confirm, setUpDialog } from "./dialogs.js";
import { Environment } from "./environment.js";
import { $, el, setText } from "./format.js";
import { Logs } from "./logs.js";
import { Processes } from "./processes.js";
import { Stacks } from "./stacks.js";

const NOTICES = 4;

/** Show `text` to the operator: kind "ok", "busy" or "error" (errors stay until dismissed).
 * Returns the notice, for its owner to remove once what it announces is over. */
function notify(text, kind = "ok") {
  const box = $("notices");
  const close = el("button", { type: "button", class: "quiet", "aria-label": "Dismiss" }, "×");
  const note = el("p", { class: `notice ${kind}` }, el("span", {}, text), close);
  close.addEventListener("click", () => note.remove());
  box.prepend(note);
  for (const old of [...box.querySelectorAll(".notice.busy")].slice(1)) old.remove();
  while (box.children.length > NOTICES) box.lastElementChild.remove();
  if (kind !== "error") setTimeout(() => note.remove(), kind === "busy" ? 30000 : 8000);
  return note;
}

const FLASH = "state-manager.notice";

/** Leave the console: forget the token and start over with a fresh page (no handler or stream
 * of the old session survives), saying why. */
function signOut(message) {
  token.clear();
  sessionStorage.setItem(FLASH, message);
  window.location.reload();
}

function showSignIn(message) {
  $("console-view").hidden = true;
  $("sign-in-view").hidden = false;
  setText($("sign-in-error"), message || "");
  $("token").value = "";
  $("token").focus();
}

async function signIn(candidate) {
  token.set(candidate);
  let me;
  try {
    me = await call("GET", "/whoami");
  } catch (e) {
    token.clear();
    showSignIn(e instanceof ApiError ? e.detail : e.message);
    return;
  }
  begin(me);
}

function begin(me) {
  const admin = me.scope === "admin";
  document.body.classList.toggle("read-only", !admin);
  $("sign-in-view").hidden = true;
  $("console-view").hidden = false;
  $("read-only").hidden = admin;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  setText($("who"), `${me.sub || "token"} · ${me.scope}`);
  for (const c of document.querySelectorAll(".admin")) {
    c.disabled = !admin;
    if (!admin) c.title = "needs a token with the admin scope";
  }
  let processes = null;
  let stacks = null;
  const logs = new Logs();
  const ui = {
    admin,
    notify,
    confirm,
    ask,
    showLogs: (name) => logs.focus(name),
    instancesOf: (stack) => (processes ? processes.instancesOf(stack) : []),
    fromFile: (stack) => Boolean(processes && processes.fromFile(stack)),
    scale: (stack) => stacks.scale(stack),
    remove: (stack) => stacks.remove(stack),
    onNames: (names) => logs.setNames(names),
    upNames: () =>
      processes
        ? [...processes.info.values()].filter((p) => p.pid).map((p) => p.name)
        : [],
  };
  processes = new Processes(ui);
  stacks = new Stacks(ui);
  const environment = new Environment(ui);
  logs.start();
  processes.start();
  stacks.start($("process-add"));
  environment.start();
  processes.countSelected();
}

function main() {
  setUpDialog();
  // Once signed in, a refused token (expired, or the key changed) ends the session.
  whenUnauthorized((e) => {
    if (!$("console-view").hidden) signOut(`Signed out: ${e.detail}`);
  });
  $("sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    if (t) signIn(t);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  const flash = sessionStorage.getItem(FLASH);
  sessionStorage.removeItem(FLASH);
  const saved = token.get();
  if (saved) signIn(saved);
  else showSignIn(flash);
}

main();
