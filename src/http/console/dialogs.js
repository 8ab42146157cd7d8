// The one modal dialog of the page: a title, a body (text and inputs) and two buttons. It is
// the native <dialog> shown modally, so focus stays inside it, Escape cancels, and focus goes
// back to where it was when it closes. A dangerous action's dialog opens with the focus on
// Cancel, so Enter alone never confirms it.
//
// `confirm` closes on either button. `ask` keeps the dialog open while its action runs (both
// buttons disabled, Escape ignored) and, when the action fails, shows the API's detail and
// every problem it listed inside the dialog, so the operator corrects the input or cancels. An
// error's `notes` (strings or nodes) are shown under its detail.

import { $, el } from "./format.js";

let pending = null;

function close(answer) {
  const dialog = $("dialog");
  if (!pending || pending.busy) return;
  const { resolve, opener } = pending;
  pending = null;
  dialog.close();
  if (opener && opener.isConnected) opener.focus();
  resolve(answer);
}

function setOk(label, danger) {
  const okButton = $("dialog-ok");
  okButton.textContent = label;
  okButton.className = danger ? "danger" : "primary";
}

function showError(e) {
  const box = $("dialog-error");
  if (!e) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const problems = (e.problem && e.problem.problems) || [];
  const notes = (e.notes || []).map((n) => (typeof n === "string" ? el("p", {}, n) : n));
  const parts = [el("p", {}, e.detail || e.message)];
  if (problems.length) {
    parts.push(el("ul", {}, problems.map((p) => el("li", {}, el("code", {}, p.path || "(body)"), `: ${p.message}`))));
  }
  box.replaceChildren(...parts, ...notes);
  box.hidden = false;
}

async function submit() {
  if (!pending || pending.busy) return;
  if (!pending.action) {
    close(true);
    return;
  }
  const { action } = pending;
  const okButton = $("dialog-ok");
  const label = okButton.textContent;
  pending.busy = true;
  $("dialog").setAttribute("aria-busy", "true");
  okButton.disabled = true;
  $("dialog-cancel").disabled = true;
  okButton.textContent = `${label}…`;
  let value;
  let failed = null;
  try {
    value = await action(pending.ctl);
  } catch (e) {
    failed = e;
  }
  pending.busy = false;
  $("dialog").removeAttribute("aria-busy");
  okButton.disabled = false;
  $("dialog-cancel").disabled = false;
  if (okButton.textContent === `${label}…`) okButton.textContent = label;
  if (failed) {
    // Announced (role=alert); the focus goes back to what to correct, or to Cancel.
    showError(failed);
    firstFocus(pending.danger).focus();
    return;
  }
  close(value === undefined ? true : value);
}

export function setUpDialog() {
  const dialog = $("dialog");
  $("dialog-cancel").addEventListener("click", () => close(null));
  $("dialog-ok").addEventListener("click", () => submit());
  dialog.addEventListener("cancel", (e) => {
    e.preventDefault();
    close(null);
  });
  dialog.addEventListener("keydown", (e) => {
    // Enter in a one-line input confirms, as does Ctrl+Enter anywhere (a textarea's Enter is a
    // new line).
    const field = e.target instanceof HTMLInputElement && e.target.type !== "checkbox";
    if (e.key === "Enter" && (field || e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      submit();
    }
  });
}

/** The first input of the body, else Cancel for a dangerous action, else OK. */
function firstFocus(danger) {
  const input = $("dialog-body").querySelector("input:not([type=checkbox]), textarea");
  return input || (danger ? $("dialog-cancel") : $("dialog-ok"));
}

function open({ title, body, ok, danger = false, action = null }) {
  const dialog = $("dialog");
  if (pending) {
    pending.busy = false;
    close(null);
  }
  $("dialog-title").textContent = title;
  const holder = $("dialog-body");
  holder.replaceChildren(...body.map((b) => (typeof b === "string" ? el("p", {}, b) : b)));
  showError(null);
  setOk(ok, danger);
  return new Promise((resolve) => {
    const ctl = { ok: (label, isDanger = danger) => setOk(label, isDanger) };
    pending = { resolve, opener: document.activeElement, action, ctl, danger, busy: false };
    dialog.showModal();
    firstFocus(danger).focus();
  });
}

/**
 * Ask before acting. `body` is a list of strings (paragraphs) and nodes. Resolves to true when
 * confirmed, false when cancelled.
 */
export async function confirm(options) {
  return (await open({ ...options, action: null })) === true;
}

/**
 * Ask, then act with the dialog still open: OK runs `action(ctl)`; its value (true when it
 * returns nothing) closes the dialog and is what this resolves to. A failure (an ApiError, or
 * any Error) is shown in the dialog, which stays open; `ctl.ok(label, danger)` relabels OK for
 * the next try ("Remove anyway"). Resolves to null when cancelled.
 */
export function ask(options) {
  return open(options);
}
