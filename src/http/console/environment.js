// The environment panel: role, lease (holder, epoch, expiry), replication lag, last checkpoint
// and the operation under way, read from GET / (every few seconds, every second while an
// operation runs); the checkpoint list with create, restore and delete; release-lease. Restore,
// delete and release ask first, naming what they will stop or remove. A long operation shows
// its elapsed time and the server's own account of it while it runs, then its outcome.

import { call, seg } from "./api.js";
import { $, NONE, bytes, el, millis, setText, when } from "./format.js";

const IDLE_POLL = 5000;
const BUSY_POLL = 1000;

export class Environment {
  /** `ui`: { admin, notify(text, kind), confirm(options), upNames() }. */
  constructor(ui) {
    this.ui = ui;
    this.status = null;
    this.busy = null;
    this.lastCheckpoint = undefined;
    this.outcome = null;
  }

  start() {
    $("checkpoint-create").addEventListener("click", () => this.create());
    $("lease-release").addEventListener("click", () => this.release());
    this.poll();
    this.listCheckpoints();
    this.clock = setInterval(() => this.paintOperation(), 200);
  }

  stop() {
    clearTimeout(this.timer);
    clearInterval(this.clock);
  }

  async poll() {
    clearTimeout(this.timer);
    try {
      this.status = await call("GET", "/");
      this.paint();
      const id = this.status.last_checkpoint ? this.status.last_checkpoint.id : null;
      if (this.lastCheckpoint !== undefined && id !== this.lastCheckpoint) this.listCheckpoints();
      this.lastCheckpoint = id;
    } catch (e) {
      setText($("node"), `status unavailable: ${e.detail || e.message}`);
    }
    const busy = this.busy || (this.status && this.status.operation);
    this.timer = setTimeout(() => this.poll(), busy ? BUSY_POLL : IDLE_POLL);
  }

  paint() {
    const s = this.status;
    const lease = s.lease || {};
    const r = s.replication;
    const c = s.last_checkpoint;
    setText($("node"), s.configured ? `${s.role || NONE} · v${s.version}` : `not configured · v${s.version}`);
    $("node").dataset.role = s.role || "none";
    const facts = [
      ["Role", s.role || (s.configured ? NONE : "not configured (POST /config)")],
      ["Lease holder", lease.holder || (lease.released ? "released: free to take" : NONE)],
      ["Epoch", lease.epoch ?? NONE],
      ["Lease expires", when(lease.expires_at)],
      ["Replication lag", r ? millis(r.lag_ms) + (r.last_error ? ` (last error: ${r.last_error})` : "") : NONE],
      ["Last checkpoint", c ? `${c.label ? `${c.label} · ` : ""}${when(c.created_at)} · ${bytes(c.bytes)}` : NONE],
      ["Storage", s.storage || NONE],
    ];
    if (s.node_error) facts.push(["Last error", s.node_error]);
    for (const w of s.warnings || []) facts.push(["Warning", w]);
    $("env-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  }

  async listCheckpoints() {
    let list;
    try {
      list = (await call("GET", "/checkpoints?limit=20")).checkpoints;
    } catch (e) {
      $("checkpoints").replaceChildren();
      const empty = $("no-checkpoints");
      empty.hidden = false;
      setText(empty, e.detail || e.message);
      return;
    }
    $("no-checkpoints").hidden = list.length > 0;
    setText($("no-checkpoints"), "No checkpoint yet.");
    $("checkpoints").replaceChildren(...list.map((c) => this.checkpointItem(c)));
  }

  checkpointItem(c) {
    const button = (label, cls, onClick) => {
      const b = el("button", { type: "button", class: `admin ${cls}`, "aria-label": `${label} ${c.id}` }, label);
      b.disabled = !this.ui.admin;
      if (!this.ui.admin) b.title = "needs a token with the admin scope";
      b.addEventListener("click", onClick);
      return b;
    };
    return el(
      "li",
      { "data-id": c.id },
      el(
        "div",
        { class: "what" },
        el("strong", {}, c.label || c.id),
        el("small", {}, `${c.label ? `${c.id} · ` : ""}${when(c.created_at)} · ${c.files} files · ${bytes(c.bytes)}`),
      ),
      el(
        "div",
        { class: "buttons" },
        button("Restore", "", () => this.restore(c)),
        button("Delete", "danger", () => this.remove(c)),
      ),
    );
  }

  async create() {
    const label = el("input", { id: "checkpoint-label", type: "text", maxlength: "200", spellcheck: "false" });
    const ok = await this.ui.confirm({
      title: "Take a checkpoint",
      body: [
        "The processes are frozen for a moment while their files are staged; they keep running.",
        el("label", { for: "checkpoint-label" }, "Label (optional)"),
        label,
      ],
      ok: "Take the checkpoint",
    });
    if (!ok) return;
    const body = label.value.trim() ? { label: label.value.trim() } : undefined;
    await this.run("Taking a checkpoint", call("POST", "/checkpoint", body), (c) =>
      `Checkpoint ${c.id} taken: ${c.files} files, ${bytes(c.bytes)} (${bytes(c.uploaded_bytes)} uploaded) in ${millis(c.duration_ms)}.`,
    );
  }

  async restore(c) {
    const up = this.ui.upNames();
    const stops = up.length
      ? `This stops ${up.length === 1 ? "1 process" : `${up.length} processes`}: ${up.join(", ")}.`
      : "No process is running, so none is stopped.";
    const ok = await this.ui.confirm({
      title: `Restore ${c.label || c.id}?`,
      body: [
        stops,
        `The environment directory is replaced by checkpoint ${c.id} (${c.files} files, ${bytes(c.bytes)}); an undo checkpoint of the current files is taken first. Then the processes start again.`,
      ],
      ok: "Stop and restore",
      danger: true,
    });
    if (!ok) return;
    await this.run("Restoring", call("POST", "/restore", { checkpoint: c.id }), (r) =>
      `Restored ${r.restored}: ${r.files} files, ${bytes(r.bytes)} in ${millis(r.duration_ms)}. Undo checkpoint: ${r.undo_checkpoint}.`,
    );
  }

  async remove(c) {
    const ok = await this.ui.confirm({
      title: `Delete ${c.label || c.id}?`,
      body: [`Checkpoint ${c.id} can no longer be restored once deleted.`],
      ok: "Delete",
      danger: true,
    });
    if (!ok) return;
    await this.run("Deleting a checkpoint", call("DELETE", `/checkpoints/${seg(c.id)}`), () => `Deleted checkpoint ${c.id}.`);
  }

  async release() {
    const up = this.ui.upNames();
    const final = el("input", { id: "release-checkpoint", type: "checkbox", checked: true });
    const ok = await this.ui.confirm({
      title: "Release the lease?",
      body: [
        up.length ? `This stops every process (${up.join(", ")}).` : "No process is running.",
        "Replication is flushed and the lease released: another node may take the environment over at once, and this one stays on standby.",
        el("label", { class: "check" }, final, " Take a final checkpoint first"),
      ],
      ok: "Stop and release",
      danger: true,
    });
    if (!ok) return;
    await this.run("Releasing the lease", call("POST", "/release-lease", { checkpoint: final.checked }), (r) =>
      `Released the lease (epoch ${r.released_epoch})${r.final_checkpoint ? `; final checkpoint ${r.final_checkpoint.id}` : ""}.`,
    );
  }

  /** Show `what` with its elapsed time while `promise` runs, then its outcome. */
  async run(what, promise, outcome) {
    this.busy = { what, started: Date.now() };
    this.outcome = null;
    for (const b of $("environment").querySelectorAll("button.admin")) b.disabled = true;
    this.poll();
    this.paintOperation();
    try {
      const value = await promise;
      this.outcome = { text: outcome(value), kind: "ok" };
    } catch (e) {
      this.outcome = { text: `${what} failed: ${e.detail || e.message}`, kind: "error" };
    } finally {
      this.ui.notify(this.outcome.text, this.outcome.kind);
      this.busy = null;
      for (const b of $("environment").querySelectorAll("button.admin")) b.disabled = !this.ui.admin;
      this.paintOperation();
      this.poll();
      this.listCheckpoints();
    }
  }

  paintOperation() {
    const box = $("operation");
    const server = this.status && this.status.operation;
    if (!this.busy && !server) {
      // The outcome of the last operation stays until the next one starts.
      box.hidden = !this.outcome;
      if (this.outcome) {
        box.className = `operation done ${this.outcome.kind}`;
        setText(box, this.outcome.text);
      }
      return;
    }
    box.hidden = false;
    box.className = "operation";
    const started = this.busy ? this.busy.started : Date.parse(server.since);
    const elapsed = ((Date.now() - started) / 1000).toFixed(1);
    const what = this.busy ? this.busy.what : `A ${server.kind} is under way`;
    const detail = server ? ` (server: ${server.kind} since ${new Date(server.since).toLocaleTimeString()})` : "";
    setText(box, `${what}… ${elapsed} s${detail}`);
  }
}
