// The one modal dialog of the page: a confirmation with a title, a body (text and inputs) and
// two buttons. It is the native <dialog> shown modally, so focus stays inside it, Escape
// cancels, and focus goes back to where it was when it closes. A dangerous action's dialog
// opens with the focus on Cancel, so Enter alone never confirms it.

import { $, el } from "./format.js";

let pending = null;

function close(answer) {
  const dialog = $("dialog");
  if (!pending) return;
  const { resolve, opener } = pending;
  pending = null;
  dialog.close();
  if (opener && opener.isConnected) opener.focus();
  resolve(answer);
}

export function setUpDialog() {
  const dialog = $("dialog");
  $("dialog-cancel").addEventListener("click", () => close(false));
  $("dialog-ok").addEventListener("click", () => close(true));
  dialog.addEventListener("cancel", (e) => {
    e.preventDefault();
    close(false);
  });
  dialog.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target instanceof HTMLInputElement && e.target.type !== "checkbox") {
      e.preventDefault();
      close(true);
    }
  });
}

/**
 * Ask before acting. `body` is a list of strings (paragraphs) and nodes. Resolves to true when
 * confirmed, false when cancelled.
 */
export function confirm({ title, body, ok, danger = false }) {
  const dialog = $("dialog");
  if (pending) close(false);
  $("dialog-title").textContent = title;
  const holder = $("dialog-body");
  holder.replaceChildren(...body.map((b) => (typeof b === "string" ? el("p", {}, b) : b)));
  const okButton = $("dialog-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "primary";
  return new Promise((resolve) => {
    pending = { resolve, opener: document.activeElement };
    dialog.showModal();
    const input = holder.querySelector("input:not([type=checkbox])");
    (input || (danger ? $("dialog-cancel") : okButton)).focus();
  });
}
