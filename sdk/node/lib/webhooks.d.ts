/** Checking a webhook's signature (SPEC §6) before trusting its body. */
import type { WebhookEvent } from "./types.js";
/** Headers as Node's `http` gives them, as a plain object, or a fetch `Headers`. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;
export interface VerifyOptions {
    /** How far `webhook-timestamp` may be from now, in seconds (default 300, as the
     * Standard Webhooks libraries). */
    toleranceSec?: number;
    /** Now, in unix seconds (default: the clock). */
    now?: number;
}
/** The event in `rawBody` once its signature checks out: the Standard Webhooks headers
 * (signature and timestamp tolerance) when present, else `X-Edesy-Signature` (HMAC-SHA256
 * of the raw body keyed by the whole secret). Throws `WebhookVerificationError` otherwise.
 * Pass the body's bytes exactly as received, before any JSON parsing. */
export declare function verifyWebhook(rawBody: string | Uint8Array, headers: WebhookHeaders, secret: string, options?: VerifyOptions): WebhookEvent;
