import type { components } from "./api.js";

/** The body of every error the API answers (`ErrorBody` in the OpenAPI document). */
export type ErrorBody = components["schemas"]["ErrorBody"];

/**
 * A request the API refused or could not serve. `status` is the HTTP status, `code` the
 * machine-readable reason from the body (e.g. `unprocessable`, `file_not_ready`), and
 * `requestId` the `X-Request-ID` to quote when asking about it. `retryAfter` (seconds) is set
 * when the server said when to come back (429, 503).
 */
export class RoarError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  readonly retryAfter: number | null;
  readonly body: unknown;

  constructor(status: number, code: string, message: string, requestId: string | null, body: unknown, retryAfter: number | null = null) {
    super(`${status} ${code}: ${message}`);
    this.name = "RoarError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
    this.body = body;
  }

  /**
   * Whether the same request may succeed later unchanged: the network failed (`status` 0), the
   * server asked to slow down (429) or a dependency is unavailable (502, 503, 504). Anything
   * else is the request's own fault (or a permission) and will fail again as it is.
   */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 502 || this.status === 503 || this.status === 504;
  }

  /** Builds the error from a response whose body has not been read yet. */
  static async from(res: Response, sentRequestId: string | null): Promise<RoarError> {
    const text = await res.text().catch(() => "");
    let body: unknown = text;
    let code = `http_${res.status}`;
    let message = text || res.statusText;
    let requestId = res.headers.get("x-request-id") ?? sentRequestId;
    try {
      const parsed = JSON.parse(text) as Partial<ErrorBody>;
      body = parsed;
      if (typeof parsed.code === "string") code = parsed.code;
      if (typeof parsed.error === "string") message = parsed.error;
      if (typeof parsed.request_id === "string") requestId = parsed.request_id;
    } catch {
      // Not JSON (a proxy's page, say): keep the text.
    }
    const after = Number(res.headers.get("retry-after"));
    return new RoarError(res.status, code, message, requestId, body, Number.isFinite(after) && after >= 0 && res.headers.has("retry-after") ? after : null);
  }
}
