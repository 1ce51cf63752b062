import type { components } from "./api.js";
import { RoarError } from "./errors.js";
import { parseSse } from "./sse.js";

type Schemas = components["schemas"];
export type FileView = Schemas["FileView"];
export type StatusView = Schemas["StatusView"];
export type ProcessBody = Schemas["ProcessBody"];
export type ProcessResponse = Schemas["ProcessResponse"];
export type GenerateBody = Schemas["GenerateBody"];
export type GenerateAccepted = Schemas["GenerateAccepted"];
export type ModelsView = Schemas["ModelsView"];
export type CancelAccepted = Schemas["CancelAccepted"];
export type RetryAccepted = Schemas["RetryAccepted"];
export type UploadTicket = Schemas["UploadTicket"];
export type PresetsView = Schemas["PresetsView"];
export type PresetView = Schemas["PresetView"];
export type PipelineView = Schemas["PipelineView"];
export type PipelineCancelAccepted = Schemas["PipelineCancelAccepted"];
/** One event of a file's history (the SSE `data`); `body` as the history stores it. */
export type HistoryEvent = Schemas["HistoryEventView"];

/** A token, or a function asked for one before every request (so a refreshed token is used). */
export type TokenProvider = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** The orchestrator's base URL, e.g. `http://localhost:8080`. */
  baseUrl: string;
  token: TokenProvider;
  /** Defaults to the global `fetch` (browsers, Node 20+). */
  fetch?: typeof fetch;
  /** Makes the `X-Request-ID` of each call; defaults to a random UUID. */
  requestId?: () => string;
}

export interface UploadOptions {
  filename?: string;
  mime?: string;
  /** Called with the bytes handed to the network so far and the total. */
  onProgress?: (sent: number, total: number) => void;
  /** Bytes per progress step (default 256 KiB). */
  chunkSize?: number;
}

export interface Uploaded {
  file_id: string;
  /** True when the caller already had this content: nothing was sent, the existing file is returned. */
  duplicate: boolean;
}

type UploadDone = Schemas["Uploaded"];

export interface WatchOptions {
  /** Resume after this history sequence number (what the last event's `seq` was). */
  lastEventId?: number;
  signal?: AbortSignal;
  /** Wait before reconnecting after a dropped stream, in ms (default 500). */
  reconnectDelayMs?: number;
}

type Query = Record<string, string | number | undefined>;

/** The roar orchestrator's API. Every method throws {@link RoarError} for a refused request. */
export class RoarClient {
  readonly #base: string;
  readonly #token: TokenProvider;
  readonly #fetch: typeof fetch;
  readonly #requestId: () => string;
  /** Browsers upload with XMLHttpRequest: fetch cannot stream a request body over HTTP/1.1. */
  readonly #xhr: boolean;

  constructor(opts: ClientOptions) {
    this.#base = opts.baseUrl.replace(/\/+$/, "");
    this.#token = opts.token;
    this.#fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.#xhr = !opts.fetch && typeof XMLHttpRequest === "function";
    this.#requestId = opts.requestId ?? (() => globalThis.crypto.randomUUID());
  }

  async #headers(extra: Record<string, string> = {}): Promise<{ headers: Record<string, string>; requestId: string }> {
    const token = typeof this.#token === "function" ? await this.#token() : this.#token;
    const requestId = this.#requestId();
    return { headers: { authorization: `Bearer ${token}`, "x-request-id": requestId, ...extra }, requestId };
  }

  #url(path: string, query: Query = {}): string {
    const u = new URL(this.#base + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  async #json<T>(method: string, path: string, opts: { query?: Query; body?: unknown; ok?: number[] } = {}): Promise<{ status: number; body: T }> {
    const { headers, requestId } = await this.#headers(opts.body === undefined ? {} : { "content-type": "application/json" });
    const res = await this.#fetch(this.#url(path, opts.query), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    if (!res.ok && !(opts.ok ?? []).includes(res.status)) throw await RoarError.from(res, requestId);
    return { status: res.status, body: (await res.json()) as T };
  }

  /** `GET /models`: the catalogue (variations, params with bounds and defaults) and live workers. */
  async models(): Promise<ModelsView> {
    return (await this.#json<ModelsView>("GET", "/models")).body;
  }

  /** `GET /presets`: the named pipelines `process({ file_id, preset })` runs, with their steps. */
  async presets(): Promise<PresetsView> {
    return (await this.#json<PresetsView>("GET", "/presets")).body;
  }

  /**
   * `POST /process`: one model, several, a list of requests, or a `preset` (the answer is then
   * the pipeline of its steps, a `PipelineView` with `pipeline_id`).
   */
  async process(body: ProcessBody): Promise<ProcessResponse> {
    return (await this.#json<ProcessResponse>("POST", "/process", { body })).body;
  }

  /**
   * `POST /generate`: a song from a text prompt, no upload. The answer names the song
   * (`file_id`, listed by `songs()` at once, `generating` until its job writes it) and the job.
   */
  async generate(body: GenerateBody): Promise<GenerateAccepted> {
    return (await this.#json<GenerateAccepted>("POST", "/generate", { body })).body;
  }

  /**
   * `GET /status/{fileId}`. Pass a command's `consistency_token` as `after` to read your own
   * write (the answer's `consistent` says whether the wait sufficed).
   */
  async status(fileId: string, opts: { after?: string; asOf?: string } = {}): Promise<StatusView> {
    const query = { after: opts.after, as_of: opts.asOf };
    return (await this.#json<StatusView>("GET", `/status/${encodeURIComponent(fileId)}`, { query })).body;
  }

  /** `GET /songs`, every page: the caller's files, newest first. */
  async *songs(opts: { pageSize?: number } = {}): AsyncGenerator<FileView> {
    let cursor: string | undefined;
    do {
      const page = (await this.#json<Schemas["SongsPage"]>("GET", "/songs", { query: { limit: opts.pageSize, cursor } })).body;
      yield* page.songs;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** `POST /jobs/{jobId}/cancel` (the job's owner). */
  async cancel(jobId: string): Promise<CancelAccepted> {
    return (await this.#json<CancelAccepted>("POST", `/jobs/${encodeURIComponent(jobId)}/cancel`)).body;
  }

  /** `GET /pipelines/{pipelineId}`: a pipeline's steps, their inputs and states, overall progress. */
  async pipeline(pipelineId: string): Promise<PipelineView> {
    return (await this.#json<PipelineView>("GET", `/pipelines/${encodeURIComponent(pipelineId)}`)).body;
  }

  /**
   * `POST /pipelines/{pipelineId}/cancel`: steps not started end `canceled`, running ones are asked
   * to stop. A 409 (`pipeline_finished`, `pipeline_canceled`) says there was nothing left to cancel.
   */
  async cancelPipeline(pipelineId: string): Promise<PipelineCancelAccepted> {
    return (await this.#json<PipelineCancelAccepted>("POST", `/pipelines/${encodeURIComponent(pipelineId)}/cancel`)).body;
  }

  /** `POST /admin/jobs/{jobId}/retry` (admin role): a new attempt of a failed or canceled job. */
  async retry(jobId: string): Promise<RetryAccepted> {
    return (await this.#json<RetryAccepted>("POST", `/admin/jobs/${encodeURIComponent(jobId)}/retry`)).body;
  }

  /**
   * Uploads `data` by the direct route: registers it (size and SHA-256), PUTs the bytes to the
   * signed URL with progress, and completes the upload where the store asks for it; resolves
   * once `/status` shows the upload. Content the caller already uploaded is not sent again: its
   * file is returned with `duplicate: true`.
   */
  async upload(data: Blob | Uint8Array, opts: UploadOptions = {}): Promise<Uploaded> {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(await data.arrayBuffer());
    const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
    const sha256 = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    const name = opts.filename ?? (typeof File !== "undefined" && data instanceof File ? data.name : "upload");
    const mime = opts.mime ?? (data instanceof Blob && data.type ? data.type : undefined);
    const reg = await this.#json<UploadTicket | Schemas["ErrorBody"]>("POST", "/upload", {
      body: { filename: name, size: bytes.byteLength, sha256, mime },
      ok: [409],
    });
    if (reg.status === 409) {
      const dup = reg.body as Schemas["ErrorBody"];
      if (dup.code !== "duplicate" || !dup.file_id) {
        throw new RoarError(409, dup.code, dup.error, dup.request_id, dup);
      }
      opts.onProgress?.(bytes.byteLength, bytes.byteLength);
      return { file_id: dup.file_id, duplicate: true };
    }
    const ticket = reg.body as UploadTicket;
    let done = await this.#put(ticket.upload_url, bytes, opts);
    if (ticket.complete_url) {
      const { headers, requestId } = await this.#headers();
      const res = await this.#fetch(ticket.complete_url, { method: "POST", headers });
      if (!res.ok) throw await RoarError.from(res, requestId);
      done = (await res.json()) as UploadDone;
    }
    // Resolve once the read model has the upload, so that what the caller does next (status,
    // watch, process, or the same content again) already sees it.
    await this.status(ticket.file_id, { after: done.consistency_token });
    return { file_id: ticket.file_id, duplicate: false };
  }

  /** The PUT of an upload; progress is reported as the body stream hands chunks to the network. */
  async #put(url: string, bytes: Uint8Array, opts: UploadOptions): Promise<UploadDone> {
    const total = bytes.byteLength;
    const step = opts.chunkSize ?? 256 * 1024;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) {
          controller.close();
          return;
        }
        const chunk = bytes.subarray(sent, Math.min(sent + step, total));
        sent += chunk.byteLength;
        controller.enqueue(chunk);
        opts.onProgress?.(sent, total);
      },
    });
    // The signed URL is the credential: no bearer token goes to it (it may be another host).
    const requestId = this.#requestId();
    if (this.#xhr) return putXhr(url, bytes, requestId, opts);
    const res = await this.#fetch(url, {
      method: "PUT",
      headers: { "x-request-id": requestId, "content-length": String(total) },
      body,
      duplex: "half",
    } as RequestInit);
    if (!res.ok) throw await RoarError.from(res, requestId);
    return (await res.json()) as UploadDone;
  }

  /**
   * `GET /status/{fileId}/events`: the file's history, then its live events, as an async
   * iterator. A dropped stream is reopened with `Last-Event-ID`, so no event is lost, and an
   * event at or before the last one seen is skipped, so none is repeated. Stop with `break`
   * or the signal.
   */
  async *watch(fileId: string, opts: WatchOptions = {}): AsyncGenerator<HistoryEvent> {
    let last = opts.lastEventId ?? -1;
    const path = `/status/${encodeURIComponent(fileId)}/events`;
    const delay = opts.reconnectDelayMs ?? 500;
    // Each connection has its own controller, aborted when the caller stops (break, return,
    // a throw, or their signal): cancelling a body alone may leave the socket open.
    let conn = new AbortController();
    const stop = () => conn.abort();
    opts.signal?.addEventListener("abort", stop, { once: true });
    try {
      while (!opts.signal?.aborted) {
        conn = new AbortController();
        const { headers, requestId } = await this.#headers(last >= 0 ? { "last-event-id": String(last) } : {});
        let res: Response;
        try {
          res = await this.#fetch(this.#url(path), { headers, signal: conn.signal });
        } catch {
          if (opts.signal?.aborted) return;
          await sleep(delay);
          continue;
        }
        if (!res.ok || !res.body) {
          const err = await RoarError.from(res, requestId);
          // Too many streams or a dependency down: come back later; anything else is final.
          if (res.status !== 503 && res.status !== 429) throw err;
          await sleep((err.retryAfter ?? 1) * 1000);
          continue;
        }
        try {
          for await (const m of parseSse(res.body)) {
            const ev = JSON.parse(m.data) as HistoryEvent;
            if (ev.seq <= last) continue;
            last = ev.seq;
            yield ev;
          }
        } catch {
          // A dropped connection: reconnect from `last`.
        }
        conn.abort();
        if (opts.signal?.aborted) return;
        await sleep(delay);
      }
    } finally {
      conn.abort();
      opts.signal?.removeEventListener("abort", stop);
    }
  }
}

/** The browser's PUT: XMLHttpRequest reports the bytes the network has taken. */
function putXhr(url: string, bytes: Uint8Array, requestId: string, opts: UploadOptions): Promise<UploadDone> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("x-request-id", requestId);
    xhr.upload.onprogress = (e) => opts.onProgress?.(e.loaded, bytes.byteLength);
    xhr.onerror = () => reject(new RoarError(0, "network", "the upload failed (network error)", requestId, null));
    xhr.onabort = () => reject(new RoarError(0, "aborted", "the upload was aborted", requestId, null));
    xhr.onload = () => {
      const headers = new Headers();
      for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      const empty = [204, 205, 304].includes(xhr.status);
      const res = new Response(empty ? null : xhr.responseText, { status: xhr.status, headers });
      if (res.ok) {
        opts.onProgress?.(bytes.byteLength, bytes.byteLength);
        res.json().then((b) => resolve(b as UploadDone), reject);
      } else {
        RoarError.from(res, requestId).then(reject, reject);
      }
    };
    xhr.send(new Blob([bytes as Uint8Array<ArrayBuffer>]));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
