/** Sending one request: timeouts, and the retries that are safe. */
export declare const USER_AGENT = "maskline-client-node/0.1.0";
/** How failed attempts are retried. Times in milliseconds. */
export interface RetryPolicy {
    /** Further attempts after the first. */
    retries: number;
    /** The first backoff; it doubles per attempt (with jitter) up to `maxBackoffMs`. */
    backoffMs: number;
    maxBackoffMs: number;
    /** A 429 asking to wait longer than this is not waited out: it is thrown. */
    maxRetryAfterMs: number;
}
export declare const DEFAULT_RETRY: Readonly<RetryPolicy>;
export declare const DEFAULT_TIMEOUT_MS = 30000;
/** Options every call takes. */
export interface CallOptions {
    /** Aborts the call (its waits included); the call then rejects with the signal's reason. */
    signal?: AbortSignal;
    /** Per attempt, the whole answer included; the client's default otherwise. */
    timeoutMs?: number;
}
/** One API request. `safe`: repeating it cannot do anything twice (a GET, or a POST
 * carrying an Idempotency-Key), so connection errors and 5xx may be retried. */
export interface Spec {
    method: string;
    path: string;
    query?: Record<string, string | number | boolean | null | undefined>;
    json?: unknown;
    headers?: Record<string, string>;
    safe?: boolean;
}
/** A whole answer: status, headers and body read within the attempt's timeout. */
export interface Answer {
    status: number;
    headers: Headers;
    body: Uint8Array;
}
export declare function backoffFor(policy: RetryPolicy, attempt: number): number;
/** `Retry-After` in milliseconds (delta-seconds or an HTTP date), or null. */
export declare function retryAfterMs(headers: Headers, now?: number): number | null;
/** Milliseconds to wait before trying `spec` again after `answer`, or null. */
export declare function waitAfter(policy: RetryPolicy, attempt: number, spec: Spec, answer: Answer): number | null;
/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export declare function sleep(ms: number, signal?: AbortSignal): Promise<void>;
export interface Transport {
    baseUrl: string;
    headers: Record<string, string>;
    timeoutMs: number;
    retry: RetryPolicy;
    fetch: typeof fetch;
}
export declare function urlFor(baseUrl: string, path: string, query?: Spec["query"]): URL;
/** A signal that aborts with the caller's signal or once `timeoutMs` has passed. */
export declare function attemptSignal(timeoutMs: number, signal?: AbortSignal): AbortSignal;
/** What a failed fetch becomes: the caller's abort stays as it is; a timeout and a
 * connection failure join the error family. */
export declare function transportError(error: unknown, signal: AbortSignal | undefined, url: URL): unknown;
/** `spec` sent, retried as the policy allows; the final answer (any status). */
export declare function send(transport: Transport, spec: Spec, options?: CallOptions): Promise<Answer>;
/** The parsed JSON of a success, or throws the error of the answer. */
export declare function jsonOf(answer: Answer, url: string): unknown;
