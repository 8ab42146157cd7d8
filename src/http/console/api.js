// Every call the console makes to the API, with the token the operator pasted.
//
// The token lives in sessionStorage only (this tab, until sign-out or the tab closes): it is
// sent in the Authorization header, never in a URL or a cookie, and never written to the
// console. Server-sent events are read with fetch (EventSource cannot send a header) and
// parsed here. Every failure becomes an ApiError carrying the problem+json `detail`.

const KEY = "state-manager.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A failed call: `status` (0 when the server could not be reached) and the API's detail. */
export class ApiError extends Error {
  constructor(status, detail, problem) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.problem = problem;
  }
}

/** Called with every 401, so the page can ask for a new token. */
let onUnauthorized = () => {};
export function whenUnauthorized(f) {
  onUnauthorized = f;
}

function headers(extra) {
  return { Authorization: `Bearer ${token.get() || ""}`, ...extra };
}

async function failure(resp) {
  const text = await resp.text().catch(() => "");
  let problem = null;
  try {
    problem = text ? JSON.parse(text) : null;
  } catch {
    problem = null;
  }
  const detail = (problem && problem.detail) || `${resp.status} ${resp.statusText}`.trim();
  const err = new ApiError(resp.status, detail, problem);
  if (resp.status === 401) onUnauthorized(err);
  return err;
}

function unreachable(e) {
  return new ApiError(0, `the server cannot be reached (${e.message}); is it running?`, null);
}

/** `method path` with an optional JSON body; the parsed answer (null for 204). */
export async function call(method, path, body) {
  const init = { method, headers: headers({ Accept: "application/json" }), cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw unreachable(e);
  }
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** `path` as a path segment, so that a glob like `web-[12]` travels intact. */
export const seg = (s) => encodeURIComponent(s);

/** Feed the events of a text/event-stream body to `onEvent(name, data)`. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.pending = "";
    this.event = null;
    this.data = [];
  }

  push(text) {
    this.pending += text;
    let end;
    while ((end = this.pending.indexOf("\n")) >= 0) {
      let line = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.event || "message", this.data.join("\n"));
      this.event = null;
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

/**
 * Follow the event stream at `path`, calling `onEvent(name, json)`, `onState("live" |
 * "reconnecting" | "stopped", detail)`, and `onOpen()` at each (re)connection. Reconnects with
 * a growing pause until `stop()` is called or the token is refused.
 */
export function follow(path, { onEvent, onState = () => {}, onOpen = () => {} }) {
  const ctl = new AbortController();
  let pause = 500;
  const run = async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await fetch(path, {
          headers: headers({ Accept: "text/event-stream" }),
          cache: "no-store",
          credentials: "omit",
          signal: ctl.signal,
        });
        if (!resp.ok) {
          const err = await failure(resp);
          if (err.status === 401 || err.status === 403 || err.status === 404) {
            onState("stopped", err.detail);
            return;
          }
          throw err;
        }
        pause = 500;
        onOpen();
        onState("live");
        const parser = new SseParser((name, data) => {
          let value = null;
          try {
            value = JSON.parse(data);
          } catch {
            return;
          }
          onEvent(name, value);
        });
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.push(decoder.decode(value, { stream: true }));
        }
        if (!ctl.signal.aborted) onState("reconnecting", "the server ended the stream");
      } catch (e) {
        if (ctl.signal.aborted) return;
        onState("reconnecting", e instanceof ApiError ? e.detail : unreachable(e).detail);
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
  };
  run();
  return { stop: () => ctl.abort() };
}
