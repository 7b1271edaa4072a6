/** Sending one request: timeouts, and the retries that are safe. */
import { errorFrom, MasklineConnectionError, MasklineError, MasklineTimeoutError } from "./errors.js";
export const USER_AGENT = "maskline-client-node/0.1.0";
export const DEFAULT_RETRY = Object.freeze({
    retries: 3,
    backoffMs: 500,
    maxBackoffMs: 8000,
    maxRetryAfterMs: 60_000,
});
export const DEFAULT_TIMEOUT_MS = 30_000;
export function backoffFor(policy, attempt) {
    // Exponential backoff with jitter over its upper half; `attempt` counts from 0.
    const ceiling = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
}
/** `Retry-After` in milliseconds (delta-seconds or an HTTP date), or null. */
export function retryAfterMs(headers, now = Date.now()) {
    const value = headers.get("retry-after");
    if (value === null)
        return null;
    if (/^\s*\d+(\.\d+)?\s*$/.test(value))
        return Math.max(0, Number(value) * 1000);
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(0, when - now);
}
/** Milliseconds to wait before trying `spec` again after `answer`, or null. */
export function waitAfter(policy, attempt, spec, answer) {
    if (attempt >= policy.retries)
        return null;
    if (answer.status === 429) {
        const after = retryAfterMs(answer.headers);
        if (after === null)
            return backoffFor(policy, attempt);
        return after <= policy.maxRetryAfterMs ? after : null;
    }
    if (answer.status >= 500 && spec.safe === true) {
        const after = answer.status === 503 ? retryAfterMs(answer.headers) : null;
        return after ? Math.min(after, policy.maxRetryAfterMs) : backoffFor(policy, attempt);
    }
    return null;
}
/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(signal.reason);
            return;
        }
        const onAbort = () => {
            clearTimeout(timer);
            reject(signal?.reason);
        };
        const timer = setTimeout(() => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
        }, ms);
        signal?.addEventListener("abort", onAbort, { once: true });
    });
}
export function urlFor(baseUrl, path, query) {
    const url = /^https?:\/\//.test(path) ? new URL(path) : new URL(baseUrl.replace(/\/+$/, "") + path);
    for (const [name, value] of Object.entries(query ?? {})) {
        if (value !== undefined && value !== null)
            url.searchParams.set(name, String(value));
    }
    return url;
}
/** A signal that aborts with the caller's signal or once `timeoutMs` has passed. */
export function attemptSignal(timeoutMs, signal) {
    const timeout = AbortSignal.timeout(timeoutMs);
    return signal ? AbortSignal.any([signal, timeout]) : timeout;
}
/** What a failed fetch becomes: the caller's abort stays as it is; a timeout and a
 * connection failure join the error family. */
export function transportError(error, signal, url) {
    if (signal?.aborted)
        return signal.reason;
    if (error instanceof DOMException && error.name === "TimeoutError") {
        return new MasklineTimeoutError(0, "timeout", `No answer from ${url.origin} in time.`, null, {
            cause: error,
        });
    }
    if (error instanceof TypeError) {
        return new MasklineConnectionError(0, "connection_error", `The connection to ${url.origin} failed.`, null, {
            cause: error,
        });
    }
    return error;
}
/** `spec` sent, retried as the policy allows; the final answer (any status). */
export async function send(transport, spec, options = {}) {
    const url = urlFor(transport.baseUrl, spec.path, spec.query);
    const headers = { ...transport.headers, ...spec.headers };
    let body;
    if (spec.json !== undefined) {
        body = JSON.stringify(spec.json);
        headers["Content-Type"] = "application/json";
    }
    const timeoutMs = options.timeoutMs ?? transport.timeoutMs;
    for (let attempt = 0;; attempt += 1) {
        let wait;
        try {
            const init = { method: spec.method, headers, signal: attemptSignal(timeoutMs, options.signal) };
            if (body !== undefined)
                init.body = body;
            const response = await transport.fetch(url, init);
            // Read within the attempt, so the timeout covers the whole answer and a drop
            // mid-body is a connection error like any other.
            const answer = {
                status: response.status,
                headers: response.headers,
                body: new Uint8Array(await response.arrayBuffer()),
            };
            wait = waitAfter(transport.retry, attempt, spec, answer);
            if (wait === null)
                return answer;
        }
        catch (error) {
            const failure = transportError(error, options.signal, url);
            const retryable = failure instanceof MasklineConnectionError || failure instanceof MasklineTimeoutError;
            if (!retryable || spec.safe !== true || attempt >= transport.retry.retries)
                throw failure;
            wait = backoffFor(transport.retry, attempt);
        }
        await sleep(wait, options.signal);
    }
}
/** The parsed JSON of a success, or throws the error of the answer. */
export function jsonOf(answer, url) {
    if (answer.status >= 400)
        throw errorFrom(answer.status, answer.headers, answer.body);
    if (answer.status === 204 || answer.body.length === 0)
        return null;
    try {
        return JSON.parse(new TextDecoder().decode(answer.body));
    }
    catch (error) {
        throw new MasklineError(answer.status, "invalid_response", `${url} answered ${answer.status} without JSON.`, null, {
            cause: error,
        });
    }
}
