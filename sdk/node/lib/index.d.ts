export { Calls, Client, Deliveries, Invoices, Recordings } from "./client.js";
export type { ClientOptions, CreateCallOptions, DownloadOptions, ListOptions } from "./client.js";
export { BY_CODE, errorFrom, errorFromResponse, Forbidden, IdempotencyConflict, InsufficientBalance, InternalError, InvalidNumbers, InvalidRequest, MasklineConnectionError, MasklineError, MasklineTimeoutError, MethodNotAllowed, NoMaskedNumber, NotFound, PayloadTooLarge, RangeNotSatisfiable, RateLimited, Unauthorized, WebhookVerificationError, } from "./errors.js";
export { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS, retryAfterMs } from "./http.js";
export type { CallOptions, RetryPolicy, Spec } from "./http.js";
export type * from "./types.js";
export type { components, paths } from "./openapi.js";
export { verifyWebhook } from "./webhooks.js";
export type { VerifyOptions, WebhookHeaders } from "./webhooks.js";
