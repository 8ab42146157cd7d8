// The log panel: follows one process through GET /processes/{name}/logs?follow=true (the last
// lines, then each new one as it is written). Pause keeps receiving but holds new lines back
// until resumed; search shows only the lines that contain the text, with it marked. The panel
// keeps the newest MAX_LINES lines.

import { follow, seg } from "./api.js";
import { $, el, setText } from "./format.js";

const MAX_LINES = 2000;
const TAIL = 200;

export class Logs {
  constructor() {
    this.name = null;
    this.stream = null;
    this.paused = false;
    this.held = [];
    this.search = "";
  }

  start() {
    $("log-process").addEventListener("change", (e) => this.show(e.target.value));
    $("log-pause").addEventListener("click", () => this.setPaused(!this.paused));
    $("log-search").addEventListener("input", (e) => {
      this.search = e.target.value;
      this.refilter();
    });
  }

  /** The processes that can be chosen; follows the first one if none is chosen yet. */
  setNames(names) {
    const select = $("log-process");
    const current = [...select.options].map((o) => o.value);
    if (current.join("\n") !== names.join("\n")) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
      if (this.name && names.includes(this.name)) select.value = this.name;
    }
    if ((!this.name || !names.includes(this.name)) && names.length) this.show(names[0]);
  }

  show(name) {
    if (this.stream) this.stream.stop();
    this.name = name;
    $("log-process").value = name;
    $("log-lines").replaceChildren();
    this.held = [];
    this.setPaused(false);
    this.count();
    this.stream = follow(`/processes/${seg(name)}/logs?tail=${TAIL}&follow=true`, {
      // A reconnection sends the last lines again: start from a clean panel.
      onOpen: () => $("log-lines").replaceChildren(),
      onEvent: (kind, data) => {
        if (kind === "log") this.line(data);
        else if (kind === "lagged") this.line({ at: null, stream: "lagged", line: `… ${data.missed} lines missed` });
      },
      onState: (state, detail) => {
        const text = state === "live" ? `following ${name}` : `${state}${detail ? `: ${detail}` : ""}`;
        setText($("log-state"), text);
        $("log-state").className = `live ${state}`;
      },
    });
  }

  focus(name) {
    if (name !== this.name) this.show(name);
    $("logs").scrollIntoView({ block: "nearest" });
    $("log-lines").focus();
  }

  setPaused(paused) {
    this.paused = paused;
    const b = $("log-pause");
    b.setAttribute("aria-pressed", String(paused));
    b.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const held = this.held;
      this.held = [];
      for (const l of held) this.line(l);
    }
    this.count();
  }

  line(l) {
    if (this.paused) {
      this.held.push(l);
      if (this.held.length > MAX_LINES) this.held.shift();
      this.count();
      return;
    }
    const list = $("log-lines");
    const follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    const li = el("li", { class: `line ${l.stream}`, "data-text": l.line });
    this.paint(li);
    list.append(li);
    while (list.children.length > MAX_LINES) list.firstElementChild.remove();
    if (follow) list.scrollTop = list.scrollHeight;
    this.count();
  }

  /** Fill `li` with its text, the search term marked; hide it when it does not match. */
  paint(li) {
    const text = li.dataset.text;
    const q = this.search;
    const at = q ? text.toLowerCase().indexOf(q.toLowerCase()) : -1;
    li.hidden = Boolean(q) && at < 0;
    if (at < 0) {
      li.textContent = text;
      return;
    }
    li.replaceChildren(text.slice(0, at), el("mark", {}, text.slice(at, at + q.length)), text.slice(at + q.length));
  }

  refilter() {
    for (const li of $("log-lines").children) this.paint(li);
    this.count();
  }

  count() {
    const lines = $("log-lines").children;
    const shown = this.search ? [...lines].filter((l) => !l.hidden).length : lines.length;
    let text = this.search ? `${shown} of ${lines.length} lines match` : `${lines.length} lines`;
    if (this.paused) text += ` · paused, ${this.held.length} new held back`;
    setText($("log-count"), text);
  }
}
