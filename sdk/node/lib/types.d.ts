/** The API's shapes, named from the types generated out of `/openapi.json`. */
import type { components, paths } from "./openapi.js";
type Schemas = components["schemas"];
type Query<P extends keyof paths> = paths[P] extends {
    get: {
        parameters: {
            query?: infer Q;
        };
    };
} ? NonNullable<Q> : never;
export type Call = Schemas["CallOut"];
export type Recording = Schemas["RecordingOut"];
export type Billing = Schemas["BillingOut"];
export type Stats = Schemas["StatsOut"];
export type Invoice = Schemas["InvoiceOut"];
export type Delivery = Schemas["DeliveryOut"];
export type FeedEvent = Schemas["FeedEvent"];
export type PageMeta = Schemas["PageMeta"];
type NewCall = Schemas["NewCall"];
type OptionalCallFields = Exclude<keyof NewCall, "party_a" | "party_b">;
/** Every field of SPEC §3's create-call body; the optional ones may be left out. */
export type CreateCallParams = Pick<NewCall, "party_a" | "party_b"> & {
    [K in OptionalCallFields]?: NonNullable<NewCall[K]>;
};
/** Filters of `calls.list` (paging is the iterator's business). */
export type CallListParams = Omit<Query<"/v1/masking/call-logs">, "page" | "cursor">;
export type DeliveryListParams = Omit<Query<"/v1/webhooks/deliveries">, "page" | "cursor">;
export type InvoiceListParams = Omit<Query<"/v1/masking/billing/invoices">, "page" | "cursor">;
export type StatsParams = Query<"/v1/masking/stats">;
/** A webhook's body (SPEC §6): `data` is the call object as it stood after the change. */
export interface WebhookEvent {
    id?: string;
    event: string;
    call_sid?: string | null;
    created_at?: string;
    sequence?: number;
    data?: Record<string, unknown>;
    [field: string]: unknown;
}
export {};
