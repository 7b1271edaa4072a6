/** The client: `new Client(apiKey, { baseUrl })`, for maskline or any Edesy-compatible API. */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { errorFrom, errorFromResponse, MasklineError } from "./errors.js";
import { attemptSignal, backoffFor, DEFAULT_RETRY, DEFAULT_TIMEOUT_MS, jsonOf, send, sleep, transportError, USER_AGENT, } from "./http.js";
function dataOf(payload) {
    const data = payload?.data;
    return data;
}
function isRecord(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/** The query of the page after the one `meta` describes: by `next_cursor` when the
 * server gives one, else by `page` (servers written before cursors); null at the end. */
export function nextPageQuery(query, meta, got) {
    if ("next_cursor" in meta) {
        const cursor = meta.next_cursor;
        if (typeof cursor !== "string" || !cursor)
            return null;
        const { page: _page, ...following } = query;
        return { ...following, cursor };
    }
    if (!got || meta.has_more !== true)
        return null;
    const page = Number(meta.page ?? query.page ?? 1);
    return { ...query, page: page + 1 };
}
export class Client {
    calls;
    recordings;
    invoices;
    deliveries;
    /** @internal */
    transport;
    constructor(apiKey, options = {}) {
        this.transport = {
            baseUrl: options.baseUrl ?? "http://127.0.0.1:8000",
            headers: { Authorization: `Bearer ${apiKey}`, "User-Agent": USER_AGENT, Accept: "application/json" },
            timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
            retry: { ...DEFAULT_RETRY, ...options.retry },
            fetch: options.fetch ?? globalThis.fetch,
        };
        this.calls = new Calls(this);
        this.recordings = new Recordings(this);
        this.invoices = new Invoices(this);
        this.deliveries = new Deliveries(this);
    }
    /** Any request, with the client's key, timeouts and retries: the parsed JSON body of
     * a success (null for 204), or throws the error's class. `safe` marks a request that
     * may be repeated after a connection error or a 5xx. */
    async request(spec, options = {}) {
        return jsonOf(await send(this.transport, spec, options), spec.path);
    }
    /** @internal The `data` of a success. */
    async data(spec, options) {
        return dataOf(await this.request(spec, options));
    }
    /** @internal Every item of a paged list, page after page. */
    async *pages(path, query, options = {}) {
        let next = Object.fromEntries(Object.entries(query).filter(([, value]) => value !== undefined && value !== null));
        while (next !== null) {
            const payload = await this.request({ method: "GET", path, query: next, safe: true }, options);
            const items = isRecord(payload) && Array.isArray(payload.data) ? payload.data : [];
            const meta = isRecord(payload) && isRecord(payload.meta) ? payload.meta : {};
            yield* items;
            next = nextPageQuery(next, meta, items.length);
        }
    }
    async stats(params = {}, options) {
        return this.data({ method: "GET", path: "/v1/masking/stats", query: params, safe: true }, options);
    }
    async billing(options) {
        return this.data({ method: "GET", path: "/v1/masking/billing", safe: true }, options);
    }
    /** The organisation's events in order, from after the cursor `after`, until the
     * feed's end (each exactly once; resume later from the last event's `cursor`). */
    async *events(params = {}, options = {}) {
        let after = params.after;
        const limit = params.limit ?? 100;
        for (;;) {
            const payload = await this.request({ method: "GET", path: "/v1/events", query: { after, limit }, safe: true }, options);
            const items = isRecord(payload) && Array.isArray(payload.data) ? payload.data : [];
            const meta = isRecord(payload) && isRecord(payload.meta) ? payload.meta : {};
            yield* items;
            if (typeof meta.next_cursor === "string" && meta.next_cursor)
                after = meta.next_cursor;
            if (meta.has_more !== true || items.length === 0)
                return;
        }
    }
}
export class Calls {
    client;
    constructor(client) {
        this.client = client;
    }
    /** Places a call (SPEC §3). An `Idempotency-Key` is always sent, so the retries after
     * a dropped connection or a 5xx place it once. */
    async create(params, options = {}) {
        const { idempotencyKey, ...callOptions } = options;
        const spec = {
            method: "POST",
            path: "/v1/masking/calls",
            json: params,
            headers: { "Idempotency-Key": idempotencyKey ?? randomUUID() },
            safe: true,
        };
        return this.client.data(spec, callOptions);
    }
    async get(callSid, options) {
        const path = `/v1/masking/calls/${encodeURIComponent(callSid)}`;
        return this.client.data({ method: "GET", path, safe: true }, options);
    }
    /** Ends a live call; on an ended call it changes nothing (so it is safe to repeat). */
    async hangup(callSid, options) {
        const path = `/v1/masking/calls/${encodeURIComponent(callSid)}/hangup`;
        return this.client.data({ method: "POST", path, safe: true }, options);
    }
    /** Every call matching the filters, newest first, following `next_cursor`. */
    list(params = {}, options = {}) {
        const { perPage, ...callOptions } = options;
        return this.client.pages("/v1/masking/call-logs", { ...params, per_page: perPage ?? 100 }, callOptions);
    }
}
export class Recordings {
    client;
    constructor(client) {
        this.client = client;
    }
    /** The recording with a fresh signed URL; `NotFound` until it is ready. */
    async get(callSid, options) {
        const path = `/v1/masking/calls/${encodeURIComponent(callSid)}/recording`;
        return this.client.data({ method: "GET", path, safe: true }, options);
    }
    async delete(callSid, options) {
        const path = `/v1/masking/calls/${encodeURIComponent(callSid)}/recording`;
        await this.client.request({ method: "DELETE", path, safe: true }, options);
    }
    /** The recording written to `path`; a dropped connection resumes with `Range` where
     * it stopped. The signed URL is fetched without the API key. (Held in memory until
     * whole: a recording is a few MB at most.) */
    async download(callSid, path, options = {}) {
        const { attempts = 5, ...callOptions } = options;
        const recording = await this.get(callSid, callOptions);
        const { fetch, retry } = this.client.transport;
        const timeoutMs = callOptions.timeoutMs ?? this.client.transport.timeoutMs;
        const url = new URL(recording.url, this.client.transport.baseUrl);
        const parts = [];
        let have = 0;
        for (let attempt = 0; have < recording.size_bytes && attempt < attempts; attempt += 1) {
            try {
                const headers = { "User-Agent": USER_AGENT };
                if (have)
                    headers.Range = `bytes=${have}-`;
                const response = await fetch(url, { headers, signal: attemptSignal(timeoutMs, callOptions.signal) });
                if (response.status >= 400)
                    throw await errorFromResponse(response);
                if (response.status === 206 && !response.headers.get("content-range")?.startsWith(`bytes ${have}-`)) {
                    // Another range than asked for: start again with the whole file.
                    await response.body?.cancel();
                    parts.length = 0;
                    have = 0;
                    continue;
                }
                if (response.status !== 206) {
                    // A whole answer (the server ignored the range): it starts at the first byte.
                    parts.length = 0;
                    have = 0;
                }
                if (response.body === null)
                    continue;
                for await (const chunk of response.body) {
                    parts.push(chunk);
                    have += chunk.length;
                }
            }
            catch (error) {
                if (error instanceof MasklineError)
                    throw error;
                const failure = transportError(error, callOptions.signal, url);
                if (failure === error || attempt === attempts - 1)
                    throw failure;
                await sleep(backoffFor(retry, attempt), callOptions.signal);
            }
        }
        if (have !== recording.size_bytes) {
            throw new MasklineError(0, "incomplete_download", `Got ${have} of ${recording.size_bytes} bytes.`);
        }
        await writeFile(path, Buffer.concat(parts));
        return recording;
    }
}
export class Invoices {
    client;
    constructor(client) {
        this.client = client;
    }
    list(params = {}, options = {}) {
        const { perPage, ...callOptions } = options;
        const query = { ...params, per_page: perPage ?? 100 };
        return this.client.pages("/v1/masking/billing/invoices", query, callOptions);
    }
    /** The invoice as PDF bytes. */
    async pdf(invoiceId, options) {
        const path = `/v1/masking/billing/invoices/${encodeURIComponent(invoiceId)}.pdf`;
        const answer = await send(this.client.transport, { method: "GET", path, safe: true }, options);
        if (answer.status >= 400)
            throw errorFrom(answer.status, answer.headers, answer.body);
        return answer.body;
    }
}
export class Deliveries {
    client;
    constructor(client) {
        this.client = client;
    }
    list(params = {}, options = {}) {
        const { perPage, ...callOptions } = options;
        const query = { ...params, per_page: perPage ?? 100 };
        return this.client.pages("/v1/webhooks/deliveries", query, callOptions);
    }
    /** Sets the delivery to `pending` for an immediate attempt; the delivery as it is now. */
    async replay(deliveryId, options) {
        const path = `/v1/webhooks/deliveries/${encodeURIComponent(deliveryId)}/replay`;
        return this.client.data({ method: "POST", path, safe: true }, options);
    }
}
