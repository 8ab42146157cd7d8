// Changing the process set from the page: Add a stack (a JSON spec, the shape of the config
// file's `stacks`), Scale one (how many instances) and Remove one. Each is a dialog that stays
// open while the API works and shows its problem (the `detail`, and every field's problem of a
// 422) when it refuses, so the operator corrects the spec or cancels. Removing a stack others
// depend on is refused (409) with their names; the dialog then offers to remove it anyway
// (`?force=true`). The table itself changes from the event stream, not from these answers.

import { call, seg } from "./api.js";
import { el } from "./format.js";

/** What the Add dialog starts with: the least a process needs, ready to run as it is. */
export const EXAMPLE = `{
  "name": "hello",
  "command": "sh",
  "args": ["-c", "while :; do echo hello; sleep 5; done"]
}`;

const list = (names) => (names.length ? names.join(", ") : "none");
const depend = (names) => `${list(names)} ${names.length === 1 ? "depends" : "depend"} on it`;

export class Stacks {
  /** `ui`: { notify(text, kind), ask(options), instancesOf(stack), fromFile(stack) }. */
  constructor(ui) {
    this.ui = ui;
  }

  start(addButton) {
    addButton.addEventListener("click", () => this.add());
  }

  async add() {
    const spec = el("textarea", {
      id: "process-spec", rows: "8", spellcheck: "false", autocomplete: "off",
      "aria-describedby": "process-spec-help",
    });
    spec.value = EXAMPLE;
    const added = await this.ui.ask({
      title: "Add a process",
      body: [
        el("p", { id: "process-spec-help" },
          "A process as the config file's stacks write it: a name and a command at least, and ",
          el("code", {}, "instances"), ", ", el("code", {}, "env"), ", ", el("code", {}, "depends_on"),
          ", probes and the rest as in the configuration. It is checked with the whole set, then started (unless ",
          el("code", {}, "autostart"), " is false)."),
        el("label", { for: "process-spec" }, "Spec (JSON)"),
        spec,
      ],
      ok: "Add",
      action: () => {
        let body;
        try {
          body = JSON.parse(spec.value);
        } catch (e) {
          throw new Error(`The spec is not JSON: ${e.message}`);
        }
        return call("POST", "/processes", body);
      },
    });
    if (!added) return;
    const started = added.started.length ? `started ${list(added.started)}` : "not started (autostart is false)";
    this.ui.notify(`Added ${added.stack} (${list(added.created)}): ${started}.`, "ok");
  }

  async scale(stack) {
    const names = this.ui.instancesOf(stack);
    const single = names.length === 1 && names[0] === stack;
    const count = el("input", {
      id: "scale-instances", type: "number", min: "1", max: "10000", step: "1",
      inputmode: "numeric", value: String(Math.max(1, names.length)),
    });
    const how = single
      ? `It is one process: scaling it replaces ${stack} with ${stack}-1, ${stack}-2, …`
      : `More adds ${stack}-${names.length + 1} and on; fewer stops and drops the highest numbered. The others keep running.`;
    const scaled = await this.ui.ask({
      title: `Scale ${stack}`,
      body: [
        `${stack} has ${names.length === 1 ? "1 instance" : `${names.length} instances`}: ${list(names)}. ${how}`,
        el("label", { for: "scale-instances" }, "Instances (1 to 10,000)"),
        count,
      ],
      ok: "Scale",
      action: () => {
        const n = Number(count.value);
        if (!count.value.trim() || !Number.isInteger(n)) {
          throw new Error("Instances: a whole number from 1 to 10,000.");
        }
        return call("POST", `/processes/${seg(stack)}/scale`, { instances: n });
      },
    });
    if (!scaled) return;
    const did = [];
    if (scaled.started.length) did.push(`started ${list(scaled.started)}`);
    if (scaled.stopped.length) did.push(`stopped ${list(scaled.stopped)}`);
    this.ui.notify(`Scaled ${stack} to ${scaled.instances}: ${did.join("; ") || "nothing to change"}.`, "ok");
  }

  async remove(stack) {
    const names = this.ui.instancesOf(stack);
    const file = this.ui.fromFile(stack) ? ", although the config file declares it" : "";
    let force = false;
    let dependants = [];
    const removed = await this.ui.ask({
      title: `Remove ${stack}?`,
      body: [
        `This stops ${list(names)} and removes the stack ${stack} from the process set. It stays removed after a restart or a takeover${file}.`,
      ],
      ok: "Stop and remove",
      danger: true,
      action: async (ctl) => {
        try {
          await call("DELETE", `/processes/${seg(stack)}${force ? "?force=true" : ""}`);
          return true;
        } catch (e) {
          dependants = (e.problem && e.problem.dependants) || [];
          if (e.status !== 409 || !dependants.length || force) throw e;
          force = true;
          ctl.ok("Remove anyway", true);
          throw Object.assign(new Error(e.detail), {
            detail: e.detail,
            notes: [
              el("p", { class: "dependants" }, `Stacks that depend on ${stack}: ${list(dependants)}.`),
              `Remove anyway removes ${stack} all the same; they keep running without it.`,
            ],
          });
        }
      },
    });
    if (!removed) return;
    const despite = force ? `, although ${depend(dependants)}` : "";
    this.ui.notify(`Removed ${stack} (${list(names)})${despite}.`, "ok");
  }
}
