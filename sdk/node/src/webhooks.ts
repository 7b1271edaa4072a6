/** Checking a webhook's signature (SPEC §6) before trusting its body. */

import { createHmac, timingSafeEqual } from "node:crypto";

import { WebhookVerificationError } from "./errors.js";
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

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(", ") : value;
  }
  return undefined;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function verifyStandard(body: Buffer, headers: WebhookHeaders, signatures: string, secret: string, options: VerifyOptions): void {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  if (!id || !timestamp) throw new WebhookVerificationError("Missing webhook-id or webhook-timestamp.");
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("Invalid webhook-timestamp.");
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSec ?? 300;
  const sent = Number(timestamp);
  if (sent < now - tolerance) throw new WebhookVerificationError("Message timestamp too old.");
  if (sent > now + tolerance) throw new WebhookVerificationError("Message timestamp too new.");
  const key = Buffer.from(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret, "base64");
  const expected = createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  // Several signatures (a secret being rotated): any v1 one may match.
  const matches = signatures.split(" ").some((entry) => {
    const [version, signature] = entry.split(",", 2);
    return version === "v1" && signature !== undefined && sameBytes(expected, Buffer.from(signature, "base64"));
  });
  if (!matches) throw new WebhookVerificationError("No matching signature found.");
}

function verifyEdesy(body: Buffer, signature: string, secret: string): void {
  const expected = createHmac("sha256", Buffer.from(secret, "utf8")).update(body).digest();
  const given = signature.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(given) || !sameBytes(expected, Buffer.from(given, "hex"))) {
    throw new WebhookVerificationError("X-Edesy-Signature does not match the body.");
  }
}

/** The event in `rawBody` once its signature checks out: the Standard Webhooks headers
 * (signature and timestamp tolerance) when present, else `X-Edesy-Signature` (HMAC-SHA256
 * of the raw body keyed by the whole secret). Throws `WebhookVerificationError` otherwise.
 * Pass the body's bytes exactly as received, before any JSON parsing. */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string,
  options: VerifyOptions = {},
): WebhookEvent {
  const body = typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : Buffer.from(rawBody);
  const standard = header(headers, "webhook-signature");
  const edesy = header(headers, "x-edesy-signature");
  if (standard !== undefined) verifyStandard(body, headers, standard, secret, options);
  else if (edesy !== undefined) verifyEdesy(body, edesy, secret);
  else throw new WebhookVerificationError("The request carries no webhook signature.");
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WebhookVerificationError("The webhook body is not JSON.");
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new WebhookVerificationError("The webhook body is not a JSON object.");
  }
  if (typeof (payload as { event?: unknown }).event !== "string") {
    throw new WebhookVerificationError("The webhook body has no event.");
  }
  return payload as WebhookEvent;
}
