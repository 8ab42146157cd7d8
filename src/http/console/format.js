// How the console shows the API's values, and the small DOM helpers every panel uses. Every
// formatter takes a value that may be missing or null and then shows "–": a field the server
// leaves out never breaks the page. Text always goes in as text (never as HTML).

export const NONE = "–";

/** An element `tag` with attributes `attrs` (class, data-*, aria-*, …) and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "hidden" || k === "disabled") e[k] = Boolean(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export const $ = (id) => document.getElementById(id);

/** Set `node`'s text only when it changed (keeps the table cheap to refresh). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return NONE;
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function millis(ms) {
  if (ms === null || ms === undefined) return NONE;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function bytes(n) {
  if (n === null || n === undefined) return NONE;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function percent(p) {
  if (p === null || p === undefined) return NONE;
  return `${p.toFixed(p < 10 ? 1 : 0)}%`;
}

// The signals a process is usually ended by, by number (Linux numbering).
const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
  8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM" };

/** How a process last ended: its exit code, or the signal by name and number. */
export function exit(status) {
  if (!status) return NONE;
  if (status.code !== undefined) return `code ${status.code}`;
  if (status.signal !== undefined) {
    const name = SIGNALS[status.signal];
    return name ? `${name} (${status.signal})` : `signal ${status.signal}`;
  }
  return NONE;
}

/** A timestamp as local time, with how long ago (or in how long) it is. */
export function when(iso) {
  if (!iso) return NONE;
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return NONE;
  const diff = (Date.now() - t.getTime()) / 1000;
  const rel = diff >= 0 ? `${duration(diff)} ago` : `in ${duration(-diff)}`;
  return `${t.toLocaleString()} (${rel})`;
}

/** The RegExp of a glob as the server reads one: `*`, `?`, `[abc]`, `[!abc]`, `[a-z]`. */
export function globRegExp(glob) {
  let re = "";
  for (let i = 0; i < glob.length; i += 1) {
    const c = glob[i];
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) throw new Error(`unclosed [ at ${i + 1}`);
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith("!");
      if (negate) body = body.slice(1);
      re += `[${negate ? "^" : ""}${body.replace(/[\\^\]]/g, "\\$&")}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\/]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}
