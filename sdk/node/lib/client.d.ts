/** The client: `new Client(apiKey, { baseUrl })`, for maskline or any Edesy-compatible API. */
import { type CallOptions, type RetryPolicy, type Spec, type Transport } from "./http.js";
import type { Billing, Call, CallListParams, CreateCallParams, Delivery, DeliveryListParams, FeedEvent, Invoice, InvoiceListParams, Recording, Stats, StatsParams } from "./types.js";
export interface ClientOptions {
    /** Default `http://127.0.0.1:8000`. */
    baseUrl?: string;
    /** Per attempt, the whole answer included; default 30 s. */
    timeoutMs?: number;
    retry?: Partial<RetryPolicy>;
    /** The `fetch` to use (default: the global one). */
    fetch?: typeof fetch;
}
export interface CreateCallOptions extends CallOptions {
    /** Sent as `Idempotency-Key`; a UUID is generated when not given, so a retry of this
     * create never places a second call. */
    idempotencyKey?: string;
}
export interface ListOptions extends CallOptions {
    /** Items per page, 1–100 (default 100). */
    perPage?: number;
}
export interface DownloadOptions extends CallOptions {
    /** Connections tried in all before giving up (default 5). */
    attempts?: number;
}
type Query = NonNullable<Spec["query"]>;
/** The query of the page after the one `meta` describes: by `next_cursor` when the
 * server gives one, else by `page` (servers written before cursors); null at the end. */
export declare function nextPageQuery(query: Query, meta: Record<string, unknown>, got: number): Query | null;
export declare class Client {
    readonly calls: Calls;
    readonly recordings: Recordings;
    readonly invoices: Invoices;
    readonly deliveries: Deliveries;
    /** @internal */
    readonly transport: Transport;
    constructor(apiKey: string, options?: ClientOptions);
    /** Any request, with the client's key, timeouts and retries: the parsed JSON body of
     * a success (null for 204), or throws the error's class. `safe` marks a request that
     * may be repeated after a connection error or a 5xx. */
    request(spec: Spec, options?: CallOptions): Promise<unknown>;
    /** @internal The `data` of a success. */
    data<T>(spec: Spec, options?: CallOptions): Promise<T>;
    /** @internal Every item of a paged list, page after page. */
    pages<T>(path: string, query: Query, options?: CallOptions): AsyncGenerator<T>;
    stats(params?: StatsParams, options?: CallOptions): Promise<Stats>;
    billing(options?: CallOptions): Promise<Billing>;
    /** The organisation's events in order, from after the cursor `after`, until the
     * feed's end (each exactly once; resume later from the last event's `cursor`). */
    events(params?: {
        after?: string;
        limit?: number;
    }, options?: CallOptions): AsyncGenerator<FeedEvent>;
}
export declare class Calls {
    private readonly client;
    constructor(client: Client);
    /** Places a call (SPEC §3). An `Idempotency-Key` is always sent, so the retries after
     * a dropped connection or a 5xx place it once. */
    create(params: CreateCallParams, options?: CreateCallOptions): Promise<Call>;
    get(callSid: string, options?: CallOptions): Promise<Call>;
    /** Ends a live call; on an ended call it changes nothing (so it is safe to repeat). */
    hangup(callSid: string, options?: CallOptions): Promise<Call>;
    /** Every call matching the filters, newest first, following `next_cursor`. */
    list(params?: CallListParams, options?: ListOptions): AsyncGenerator<Call>;
}
export declare class Recordings {
    private readonly client;
    constructor(client: Client);
    /** The recording with a fresh signed URL; `NotFound` until it is ready. */
    get(callSid: string, options?: CallOptions): Promise<Recording>;
    delete(callSid: string, options?: CallOptions): Promise<void>;
    /** The recording written to `path`; a dropped connection resumes with `Range` where
     * it stopped. The signed URL is fetched without the API key. (Held in memory until
     * whole: a recording is a few MB at most.) */
    download(callSid: string, path: string, options?: DownloadOptions): Promise<Recording>;
}
export declare class Invoices {
    private readonly client;
    constructor(client: Client);
    list(params?: InvoiceListParams, options?: ListOptions): AsyncGenerator<Invoice>;
    /** The invoice as PDF bytes. */
    pdf(invoiceId: string, options?: CallOptions): Promise<Uint8Array>;
}
export declare class Deliveries {
    private readonly client;
    constructor(client: Client);
    list(params?: DeliveryListParams, options?: ListOptions): AsyncGenerator<Delivery>;
    /** Sets the delivery to `pending` for an immediate attempt; the delivery as it is now. */
    replay(deliveryId: string, options?: CallOptions): Promise<Delivery>;
}
export {};
