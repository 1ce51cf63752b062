// Small DOM helpers and the one place errors become messages a person can act on.
import { RoarError } from "../src/index.js";

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** Creates an element with attributes and children (strings become text, never HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) el.setAttribute(k, "");
    else if (typeof v === "string") el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}

let hideTimer: ReturnType<typeof setTimeout> | undefined;

/** Shows a message in the page's alert banner (info ones fade after a while). */
export function show(text: string, kind: "error" | "info" = "error"): void {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(hideTimer);
  if (kind === "info") hideTimer = setTimeout(() => (box.hidden = true), 8000);
}

export function clearMessage(): void {
  $("message").hidden = true;
}

/** What to tell the user about a failed call; `onUnauthorized` runs for a 401. */
export function explain(err: unknown): string {
  if (!(err instanceof RoarError)) return `Something went wrong: ${err instanceof Error ? err.message : String(err)}`;
  const body = (err.body ?? {}) as { error?: string };
  const said = body.error ?? err.message;
  const ref = err.requestId ? ` (request ${err.requestId})` : "";
  switch (err.status) {
    case 0:
      return `The server could not be reached: ${said}`;
    case 401:
      return `Your token was refused (${said}). Paste a new one to sign in again.`;
    case 403:
      return `Not allowed: ${said}${ref}`;
    case 404:
      return `Not found: ${said}${ref}`;
    case 409:
      if (err.code === "file_not_ready") return `The file is still being checked; try again in a moment. (${said})`;
      return `Conflict: ${said}${ref}`;
    case 413:
      return `The file is too large for this server: ${said}`;
    case 415:
      return `This kind of file is not accepted: ${said}`;
    case 422:
      return `The server refused these settings: ${said}${ref}`;
    case 429:
      return `Too many requests; try again in ${err.retryAfter ?? 1} s.`;
    case 503:
      return `The service is unavailable for now; try again shortly. (${said})`;
    default:
      return `Error ${err.status} ${err.code}: ${said}${ref}`;
  }
}

export function formatTime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
