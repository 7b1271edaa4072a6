/** One error family for every error the API answers (SPEC §1). */

/** An error answer of the API: its HTTP status, SPEC §1 `code`, message and request id.
 * Failures that never got an answer (`MasklineConnectionError`, `MasklineTimeoutError`)
 * have status 0. */
export class MasklineError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;

  constructor(
    status: number,
    code: string,
    message: string,
    requestId: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export class InvalidNumbers extends MasklineError {}
export class InvalidRequest extends MasklineError {}
export class Unauthorized extends MasklineError {}
export class InsufficientBalance extends MasklineError {}
export class Forbidden extends MasklineError {}
export class NotFound extends MasklineError {}
export class MethodNotAllowed extends MasklineError {}
export class IdempotencyConflict extends MasklineError {}
export class PayloadTooLarge extends MasklineError {}
export class RangeNotSatisfiable extends MasklineError {}
export class RateLimited extends MasklineError {}
export class InternalError extends MasklineError {}
export class NoMaskedNumber extends MasklineError {}

/** The connection failed or dropped before a whole answer arrived, after the retries
 * that were safe. */
export class MasklineConnectionError extends MasklineError {}

/** No whole answer within the call's timeout. */
export class MasklineTimeoutError extends MasklineError {}

/** A webhook whose signature or timestamp does not check out. */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

type ErrorClass = new (
  status: number,
  code: string,
  message: string,
  requestId?: string | null,
) => MasklineError;

/** The class of each SPEC §1 code. */
export const BY_CODE: Readonly<Record<string, ErrorClass>> = Object.freeze({
  invalid_numbers: InvalidNumbers,
  invalid_request: InvalidRequest,
  unauthorized: Unauthorized,
  insufficient_balance: InsufficientBalance,
  forbidden: Forbidden,
  not_found: NotFound,
  method_not_allowed: MethodNotAllowed,
  idempotency_conflict: IdempotencyConflict,
  payload_too_large: PayloadTooLarge,
  range_not_satisfiable: RangeNotSatisfiable,
  rate_limited: RateLimited,
  internal_error: InternalError,
  no_masked_number: NoMaskedNumber,
});

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The error for an answer with status ≥ 400; an unknown code still gives a
 * `MasklineError`, and a body that is not the error envelope keeps the status. */
export function errorFrom(status: number, headers: Headers, body: Uint8Array): MasklineError {
  let code = "unknown_error";
  let message = `HTTP ${status}`;
  let requestId: string | null = null;
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch {
    // Not JSON (a proxy's HTML page): the status says what is known.
  }
  if (isRecord(parsed) && isRecord(parsed.error)) {
    const error = parsed.error;
    if (typeof error.code === "string") code = error.code;
    if (typeof error.message === "string") message = error.message;
    const found = parsed.request_id ?? error.request_id;
    if (typeof found === "string" && found) requestId = found;
  }
  requestId ??= headers.get("x-request-id");
  const Class = Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : undefined;
  return new (Class ?? MasklineError)(status, code, message, requestId);
}

/** The error of a `fetch` response with status ≥ 400 (its body is read). */
export async function errorFromResponse(response: Response): Promise<MasklineError> {
  const body = new Uint8Array(await response.arrayBuffer());
  return errorFrom(response.status, response.headers, body);
}
