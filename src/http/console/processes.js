// The live process table: seeded by GET /processes, then kept current by the event stream
// (`transition` events change a row at once, `usage` events carry CPU and memory), with the
// rows that changed read again shortly after so that restarts and health are exact; a change
// of the process set (a stack added, scaled, replaced or removed, from this page or elsewhere)
// reads the whole list again. Filter by glob, select rows, start / stop / restart one or the
// selection; scale or remove a row's stack. Keyboard: ↑ ↓ Home End move between rows, Space
// selects, Enter opens the row's logs.

import { call, follow, seg } from "./api.js";
import { $, NONE, bytes, duration, el, exit, globRegExp, percent, setText } from "./format.js";

const UP = new Set(["starting", "running", "stopping"]);
// States in which there is nothing to stop (Start is offered instead).
const DOWN = new Set(["stopped", "exited", "fatal"]);
const DOING = { start: "Starting", stop: "Stopping", restart: "Restarting" };
const DONE = { start: "started", stop: "stopped", restart: "restarted" };
// The changes (an event's `change.action`) after which the set of rows is read again.
const SET_CHANGES = new Set(["add", "remove", "replace", "scale"]);

function health(p) {
  if (p.state !== "running") return NONE;
  if (p.ready === false) return "not ready";
  // Without a probe nothing has vouched for it: running is all there is to say.
  if (p.last_probe == null) return NONE;
  if (p.healthy === true) return "healthy";
  if (p.healthy === false) return "unhealthy";
  return NONE;
}

export class Processes {
  /** `ui`: { admin, notify(text, kind), showLogs(name), onNames(names), scale(stack),
   * remove(stack) }. */
  constructor(ui) {
    this.ui = ui;
    this.info = new Map();
    this.rows = new Map();
    this.glob = null;
    this.stale = new Set();
    this.refreshTimer = null;
  }

  start() {
    $("filter").addEventListener("input", () => this.setFilter($("filter").value.trim()));
    $("pick-all").addEventListener("change", (e) => this.pickAll(e.target.checked));
    for (const b of document.querySelectorAll("[data-bulk]")) {
      b.addEventListener("click", () => this.act(b.dataset.bulk, this.selected()));
    }
    $("process-rows").addEventListener("keydown", (e) => this.key(e));
    this.stream = follow("/events/stream?usage=true", {
      onOpen: () => this.load(),
      onEvent: (name, data) => this.event(name, data),
      onState: (state, detail) => {
        setText($("live"), state === "live" ? "live" : `${state}${detail ? `: ${detail}` : ""}`);
        $("live").className = `live ${state}`;
      },
    });
    this.clock = setInterval(() => this.tick(), 1000);
  }

  stop() {
    if (this.stream) this.stream.stop();
    clearInterval(this.clock);
  }

  async load() {
    try {
      this.replace(await call("GET", "/processes"));
    } catch (e) {
      this.ui.notify(`Cannot list the processes: ${e.detail || e.message}`, "error");
    }
  }

  replace(list) {
    const names = list.map((p) => p.name);
    for (const name of [...this.rows.keys()]) {
      if (!names.includes(name)) {
        this.rows.get(name).tr.remove();
        this.rows.delete(name);
        this.info.delete(name);
      }
    }
    const body = $("process-rows");
    for (const p of list) this.set(p);
    names.forEach((name, i) => {
      const tr = this.rows.get(name).tr;
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    this.ui.onNames(names);
    this.applyFilter();
  }

  set(p) {
    const old = this.info.get(p.name);
    const upAt = p.uptime_s === null || p.uptime_s === undefined ? null : Date.now() - p.uptime_s * 1000;
    const usage = p.usage || (old && old.pid === p.pid ? old.usage : null);
    this.info.set(p.name, { ...p, upAt, usage: UP.has(p.state) ? usage : null });
    if (!this.rows.has(p.name)) this.rows.set(p.name, this.row(p.name, p.stack || p.name));
    this.paint(p.name);
  }

  /** The names of the processes of `stack` (a stack's instances, or the one process). */
  instancesOf(stack) {
    return [...this.info.values()].filter((p) => (p.stack || p.name) === stack).map((p) => p.name);
  }

  /** Whether `stack` is the config file's (origin `file`), not one the API added or changed. */
  fromFile(stack) {
    return [...this.info.values()].some((p) => (p.stack || p.name) === stack && p.origin === "file");
  }

  row(name, stack) {
    const cell = (label, cls) => el("td", { "data-label": label, class: cls });
    const cells = {
      pick: el("input", { type: "checkbox", class: "admin", "aria-label": `Select ${name}` }),
      state: el("span", { class: "state" }),
      reason: el("small", { class: "reason" }),
      pid: cell("PID"),
      uptime: cell("Uptime"),
      restarts: cell("Restarts"),
      health: cell("Health"),
      cpu: cell("CPU", "num"),
      rss: cell("Memory", "num"),
      exit: cell("Last exit"),
    };
    cells.pick.disabled = !this.ui.admin;
    cells.pick.addEventListener("change", () => this.countSelected());
    const button = (label, target, onClick, cls = "") => {
      const b = el("button", { type: "button", class: `admin ${cls}`.trim(), "aria-label": `${label} ${target}` }, label);
      b.disabled = !this.ui.admin;
      if (!this.ui.admin) b.title = "needs a token with the admin scope";
      b.addEventListener("click", onClick);
      return b;
    };
    const act = (action, label) => {
      cells[action] = button(label, name, () => this.act(action, [name]));
      return cells[action];
    };
    // Scale and Remove act on the row's stack (every instance of it), and say so.
    const scale = button("Scale", `the stack ${stack}`, () => this.ui.scale(stack), "stack");
    const remove = button("Remove", `the stack ${stack}`, () => this.ui.remove(stack), "stack danger");
    const logs = el("button", { type: "button", "aria-label": `Logs of ${name}` }, "Logs");
    logs.addEventListener("click", () => this.ui.showLogs(name));
    const tr = el(
      "tr",
      { tabindex: this.rows.size === 0 ? "0" : "-1", "data-name": name },
      el("td", { class: "pick" }, cells.pick),
      el("th", { scope: "row", "data-label": "Name" }, name),
      el("td", { "data-label": "State" }, cells.state, cells.reason),
      cells.pid, cells.uptime, cells.restarts, cells.health, cells.cpu, cells.rss, cells.exit,
      el(
        "td",
        { class: "actions" },
        el("div", { class: "acts" }, act("start", "Start"), act("stop", "Stop"), act("restart", "Restart"), logs, scale, remove),
      ),
    );
    tr.addEventListener("focus", () => this.rove(tr));
    return { tr, cells };
  }

  paint(name) {
    const p = this.info.get(name);
    const { tr, cells } = this.rows.get(name);
    setText(cells.state, p.state || NONE);
    cells.state.className = `state s-${p.state}`;
    setText(cells.reason, p.reason || "");
    setText(cells.pid, p.pid ? String(p.pid) : NONE);
    setText(cells.uptime, p.upAt === null ? NONE : duration((Date.now() - p.upAt) / 1000));
    setText(cells.restarts, String(p.restarts ?? NONE));
    setText(cells.health, health(p));
    setText(cells.cpu, percent(p.usage ? p.usage.cpu_percent : null));
    setText(cells.rss, bytes(p.usage ? p.usage.rss_bytes : null));
    setText(cells.exit, exit(p.last_exit));
    // An admin sees Start only where something is down and Stop only where something is up;
    // a read token sees every control disabled whatever the state.
    if (this.ui.admin) {
      cells.start.disabled = UP.has(p.state);
      cells.start.title = cells.start.disabled ? `${name} is ${p.state}` : "";
      cells.stop.disabled = DOWN.has(p.state);
      cells.stop.title = cells.stop.disabled ? `${name} is ${p.state}` : "";
    }
    tr.dataset.state = p.state;
  }

  tick() {
    for (const [name, p] of this.info) if (p.upAt !== null) this.paint(name);
  }

  event(kind, data) {
    if (kind === "transition") this.transition(data);
    else if (kind === "usage") this.usage(data);
    else if (kind === "lagged") this.load();
  }

  transition(e) {
    const p = this.info.get(e.process);
    if (!p || (e.change && SET_CHANGES.has(e.change.action))) {
      this.refresh(null);
      return;
    }
    p.state = e.to;
    p.reason = e.reason || null;
    if (e.exit) p.last_exit = e.exit;
    if (UP.has(e.to)) {
      if (e.pid && e.pid !== p.pid) {
        p.pid = e.pid;
        p.upAt = Date.parse(e.at);
        p.usage = null;
      }
    } else {
      p.pid = null;
      p.upAt = null;
      p.usage = null;
    }
    this.paint(e.process);
    this.refresh(e.process);
  }

  usage(list) {
    const by = new Map(list.map((u) => [u.process, u]));
    for (const [name, p] of this.info) {
      const u = by.get(name);
      const next = u && u.pid === p.pid ? u : null;
      if (next || p.usage) {
        p.usage = next;
        this.paint(name);
      }
    }
  }

  /** Read `name` (null: every process) again shortly, once the burst of events is over. */
  refresh(name) {
    this.stale.add(name);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      const names = [...this.stale];
      this.stale.clear();
      if (names.includes(null) || names.length > 10) return this.load();
      for (const n of names) {
        try {
          this.set(await call("GET", `/processes/${seg(n)}`));
        } catch (e) {
          if (e.status === 404) this.load();
        }
      }
    }, 250);
  }

  setFilter(text) {
    try {
      this.glob = text ? globRegExp(text) : null;
      $("filter").removeAttribute("aria-invalid");
      setText($("filter-help"), "names matching a glob: *, ?, [ab]");
    } catch (e) {
      $("filter").setAttribute("aria-invalid", "true");
      setText($("filter-help"), `not a glob: ${e.message}`);
      return;
    }
    this.applyFilter();
  }

  applyFilter() {
    let shown = 0;
    for (const [name, { tr }] of this.rows) {
      tr.hidden = this.glob !== null && !this.glob.test(name);
      if (!tr.hidden) shown += 1;
    }
    $("no-processes").hidden = shown > 0;
    this.countSelected();
  }

  visible() {
    return [...this.rows.values()].filter((r) => !r.tr.hidden);
  }

  selected() {
    return this.visible().filter((r) => r.cells.pick.checked).map((r) => r.tr.dataset.name);
  }

  pickAll(on) {
    for (const r of this.visible()) r.cells.pick.checked = on;
    this.countSelected();
  }

  countSelected() {
    const n = this.selected().length;
    setText($("selected"), n ? `${n} selected` : "none selected");
    for (const b of document.querySelectorAll("[data-bulk]")) b.disabled = !this.ui.admin || n === 0;
  }

  async act(action, names) {
    if (!names.length) return;
    const what = names.length === 1 ? names[0] : `${names.length} processes`;
    const busy = this.ui.notify(`${DOING[action]} ${what}…`, "busy");
    const results = await Promise.allSettled(
      names.map((n) => call("POST", `/processes/${seg(n)}/${action}`)),
    );
    const failed = results
      .map((r, i) => [r, names[i]])
      .filter(([r]) => r.status === "rejected")
      .map(([r, n]) => `${n}: ${r.reason.detail || r.reason.message}`);
    busy.remove();
    if (failed.length) this.ui.notify(`Could not ${action} ${failed.join("; ")}`, "error");
    else this.ui.notify(`${DONE[action]} ${names.join(", ")}`, "ok");
  }

  rove(tr) {
    for (const { tr: other } of this.rows.values()) other.tabIndex = other === tr ? 0 : -1;
  }

  key(e) {
    const tr = e.target.closest("tr");
    if (!tr || e.target !== tr) return;
    const rows = this.visible().map((r) => r.tr);
    const i = rows.indexOf(tr);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: rows.length - 1 }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      const next = rows[Math.max(0, Math.min(rows.length - 1, to))];
      if (next) next.focus();
    } else if (e.key === " " && this.ui.admin) {
      e.preventDefault();
      const pick = this.rows.get(tr.dataset.name).cells.pick;
      pick.checked = !pick.checked;
      this.countSelected();
    } else if (e.key === "Enter") {
      e.preventDefault();
      this.ui.showLogs(tr.dataset.name);
    }
  }
}
