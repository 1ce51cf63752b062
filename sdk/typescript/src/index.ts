export * from "./client.js";
export { RoarError, type ErrorBody } from "./errors.js";
export { parseSse, type SseMessage } from "./sse.js";
export type { components, paths, operations } from "./api.js";
