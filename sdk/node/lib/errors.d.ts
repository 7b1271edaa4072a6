/** One error family for every error the API answers (SPEC §1). */
/** An error answer of the API: its HTTP status, SPEC §1 `code`, message and request id.
 * Failures that never got an answer (`MasklineConnectionError`, `MasklineTimeoutError`)
 * have status 0. */
export declare class MasklineError extends Error {
    readonly status: number;
    readonly code: string;
    readonly requestId: string | null;
    constructor(status: number, code: string, message: string, requestId?: string | null, options?: {
        cause?: unknown;
    });
}
export declare class InvalidNumbers extends MasklineError {
}
export declare class InvalidRequest extends MasklineError {
}
export declare class Unauthorized extends MasklineError {
}
export declare class InsufficientBalance extends MasklineError {
}
export declare class Forbidden extends MasklineError {
}
export declare class NotFound extends MasklineError {
}
export declare class MethodNotAllowed extends MasklineError {
}
export declare class IdempotencyConflict extends MasklineError {
}
export declare class PayloadTooLarge extends MasklineError {
}
export declare class RangeNotSatisfiable extends MasklineError {
}
export declare class RateLimited extends MasklineError {
}
export declare class InternalError extends MasklineError {
}
export declare class NoMaskedNumber extends MasklineError {
}
/** The connection failed or dropped before a whole answer arrived, after the retries
 * that were safe. */
export declare class MasklineConnectionError extends MasklineError {
}
/** No whole answer within the call's timeout. */
export declare class MasklineTimeoutError extends MasklineError {
}
/** A webhook whose signature or timestamp does not check out. */
export declare class WebhookVerificationError extends Error {
    constructor(message: string);
}
type ErrorClass = new (status: number, code: string, message: string, requestId?: string | null) => MasklineError;
/** The class of each SPEC §1 code. */
export declare const BY_CODE: Readonly<Record<string, ErrorClass>>;
/** The error for an answer with status ≥ 400; an unknown code still gives a
 * `MasklineError`, and a body that is not the error envelope keeps the status. */
export declare function errorFrom(status: number, headers: Headers, body: Uint8Array): MasklineError;
/** The error of a `fetch` response with status ≥ 400 (its body is read). */
export declare function errorFromResponse(response: Response): Promise<MasklineError>;
export {};
