/** maskline-client against a real `maskline serve` (started by tests/sdk/test_node_client.py),
 * and against local servers for the answers a healthy maskline never gives. */

import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";

import {
  BY_CODE,
  type Call,
  Client,
  errorFromResponse,
  Forbidden,
  IdempotencyConflict,
  InsufficientBalance,
  InternalError,
  InvalidNumbers,
  InvalidRequest,
  MasklineError,
  MasklineTimeoutError,
  MethodNotAllowed,
  NoMaskedNumber,
  NotFound,
  PayloadTooLarge,
  RangeNotSatisfiable,
  RateLimited,
  Unauthorized,
  verifyWebhook,
  WebhookVerificationError,
} from "../src/index.js";

import { eventually, LocalServer, type Received, stackInfo } from "./support.js";

const stack = stackInfo();
const TERMINAL = new Set(["completed", "failed", "no-answer"]);

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

async function ended(client: Client, callSid: string): Promise<Call> {
  return eventually(
    () => client.calls.get(callSid),
    (call) => TERMINAL.has(call.status) && call.recording_status !== "pending",
    `call ${callSid} ended`,
  );
}

/** The rejection of `promise`, checked to be an instance of `kind`. */
async function rejection<E extends Error>(promise: Promise<unknown>, kind: abstract new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${kind.name}, got a success`);
}

function eventOf(hook: Received): string {
  return (JSON.parse(hook.body.toString("utf8")) as { event: string }).event;
}

describe("maskline-client against a real maskline serve", { concurrency: true }, () => {
  describe("a recorded call, its recording and its webhooks", { concurrency: 1 }, () => {
    const client = new Client(stack.keys.calls, { baseUrl: stack.baseUrl });
    const receiver = new LocalServer((_, response) => response.writeHead(200).end());
    let dir = "";
    let call: Call;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "maskline-node-"));
      await receiver.start();
    });
    after(async () => {
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    });

    it("goes through to completed with every create field echoed", async () => {
      call = await client.calls.create({
        party_a: "+91 98765 12345",
        party_b: "9123412345",
        max_duration_sec: 60,
        record: true,
        ring_timeout_sec: 30,
        webhook_url: `${receiver.url}/hooks`,
        metadata: { order: "A-17" },
      });
      assert.deepEqual(
        [call.status, call.party_a, call.max_duration_sec, call.record, call.ring_timeout_sec, call.webhook_url, call.metadata],
        ["initiated", "9876512345", 60, true, 30, `${receiver.url}/hooks`, { order: "A-17" }],
      );
      const done = await ended(client, call.call_sid);
      assert.deepEqual(
        [done.status, done.hangup_cause, done.recording_status, done.talk_duration_sec, done.bill_duration_sec, done.price],
        ["completed", "NORMAL_CLEARING", "ready", 1, 60, 1.5],
      );
    });

    it("downloads its recording, resuming after the first connection is cut 1,000 bytes in", async () => {
      // The recordings proxy cuts its first connection (tests/sdk/test_node_client.py).
      const resumed = join(dir, "resumed.mp3");
      const recording = await client.recordings.download(call.call_sid, resumed);
      const bytes = await readFile(resumed);
      assert.equal(bytes.length, recording.size_bytes);
      assert.ok(recording.size_bytes > 1000);
      assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xf3]); // MPEG-2 Layer III
      const whole = join(dir, "whole.mp3");
      await client.recordings.download(call.call_sid, whole);
      assert.ok(bytes.equals(await readFile(whole)));
    });

    it("answers forbidden for a tampered signed URL and 416 for a range outside the file", async () => {
      const recording = await client.recordings.get(call.call_sid);
      const tampered = await rejection(client.request({ method: "GET", path: `${recording.url}0` }), Forbidden);
      assert.deepEqual([tampered.status, tampered.code], [403, "forbidden"]);
      // The signed URL is fetched without the API key, as a browser or player would.
      const beyond = await fetch(recording.url, { headers: { Range: `bytes=${recording.size_bytes + 10}-` } });
      const error = await errorFromResponse(beyond);
      assert.ok(error instanceof RangeNotSatisfiable);
      assert.deepEqual([error.status, error.code], [416, "range_not_satisfiable"]);
    });

    it("delivers webhooks that verify, and a tampered one does not", async () => {
      const hooks = await eventually(
        () => receiver.received,
        (got) => got.some((hook) => eventOf(hook) === "call.completed"),
        "call.completed delivered",
      );
      const completed = hooks.find((hook) => eventOf(hook) === "call.completed");
      assert.ok(completed);
      const event = verifyWebhook(completed.body, completed.headers, stack.webhookSecret);
      assert.deepEqual([event.event, event.call_sid, event.data?.status], ["call.completed", call.call_sid, "completed"]);
      const edesyOnly = { "x-edesy-signature": completed.headers["x-edesy-signature"] };
      assert.equal(verifyWebhook(completed.body.toString("utf8"), edesyOnly, stack.webhookSecret).id, event.id);
      const tampered = Buffer.from(completed.body.toString("utf8").replace('"completed"', '"failed"'));
      assert.throws(() => verifyWebhook(tampered, completed.headers, stack.webhookSecret), WebhookVerificationError);
      assert.throws(() => verifyWebhook(tampered, edesyOnly, stack.webhookSecret), WebhookVerificationError);
    });

    it("lists its events in the feed and its deliveries, and replays one", async () => {
      const events = await eventually(
        async () => (await collect(client.events())).filter((e) => e.call_sid === call.call_sid).map((e) => e.event),
        (names) => names.length >= 6,
        "the call's events in the feed",
      );
      assert.deepEqual(events, [
        "call.initiated",
        "call.ringing",
        "call.answered",
        "call.bridged",
        "call.completed",
        "recording.ready",
      ]);
      const deliveries = await collect(client.deliveries.list({ call_sid: call.call_sid }));
      assert.deepEqual(new Set(deliveries.map((d) => d.event)), new Set(events));
      const first = deliveries.find((d) => d.event === "call.initiated");
      assert.ok(first);
      const replaying = await client.deliveries.replay(first.id);
      assert.equal(replaying.id, first.id);
      const replayed = await eventually(
        async () => (await collect(client.deliveries.list({ call_sid: call.call_sid, event: "call.initiated" })))[0],
        (d) => d?.status === "succeeded" && d.attempts === 2,
        "the replayed delivery sent again",
      );
      assert.equal(replayed?.id, first.id);
    });

    it("deletes its recording", async () => {
      await client.recordings.delete(call.call_sid);
      await rejection(client.recordings.get(call.call_sid), NotFound);
      assert.equal((await client.calls.get(call.call_sid)).recording_status, "none");
    });
  });

  it("runs the README's masked call, in under 15 lines", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    const block = /```js\n(.*?)```/s.exec(readme)?.[1];
    assert.ok(block);
    assert.ok(block.trim().split("\n").length < 15);
    // Inside the package, `from "maskline-client"` resolves to the package itself (its
    // `exports`), as it does for a user who installed it.
    const script = fileURLToPath(new URL("../readme.mjs", import.meta.url));
    await writeFile(script, block);
    const env = { ...process.env, MASKLINE_API_KEY: stack.keys.readme, MASKLINE_URL: stack.baseUrl };
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [script], { env });
    assert.deepEqual([stderr, stdout], ["", "completed 1 1.5\n"]);
  });

  it("places exactly one call when a create is retried after a dropped connection", async () => {
    // The proxy's first connection reaches the server, which places the call, but its
    // answer never reaches the client; pytest checks the proxy saw two connections.
    const client = new Client(stack.keys.drop, { baseUrl: stack.dropUrl, retry: { backoffMs: 50 } });
    const call = await client.calls.create({ party_a: "9876523456", party_b: "9123423456", record: false });
    const direct = new Client(stack.keys.drop, { baseUrl: stack.baseUrl });
    assert.deepEqual(
      (await collect(direct.calls.list())).map((c) => c.call_sid),
      [call.call_sid],
    );
  });

  it("pages across 250 calls by next_cursor, returning each exactly once", async () => {
    const requests: URL[] = [];
    const client = new Client(stack.keys.paging, {
      baseUrl: stack.baseUrl,
      fetch: (input, init) => {
        requests.push(new URL(String(input)));
        return fetch(input, init);
      },
    });
    const placed = new Set<string>();
    for (let batch = 0; batch < 250; batch += 10) {
      const calls = await Promise.all(
        Array.from({ length: 10 }, (_, i) => {
          const n = String(batch + i).padStart(5, "0");
          return client.calls.create({ party_a: `98765${n}`, party_b: `91234${n}`, record: false });
        }),
      );
      for (const c of calls) placed.add(c.call_sid);
    }
    requests.length = 0;
    const listed = (await collect(client.calls.list({}, { perPage: 100 }))).map((c) => c.call_sid);
    assert.equal(listed.length, 250);
    assert.deepEqual(new Set(listed), placed);
    assert.deepEqual(
      requests.map((url) => [url.pathname, url.searchParams.get("per_page"), url.searchParams.has("cursor"), url.searchParams.has("page")]),
      [
        ["/v1/masking/call-logs", "100", false, false],
        ["/v1/masking/call-logs", "100", true, false],
        ["/v1/masking/call-logs", "100", true, false],
      ],
    );
  });

  it("waits a 429 out as Retry-After says", async () => {
    // The organisation may have one live call; the sim's numbers ending 0000 never answer,
    // so the first call stays live until it is hung up.
    const impatient = new Client(stack.keys.limited, { baseUrl: stack.baseUrl, retry: { maxRetryAfterMs: 0 } });
    const first = await impatient.calls.create({ party_a: "9876530000", party_b: "9123434567", ring_timeout_sec: 120 });
    const refused = await rejection(
      impatient.calls.create({ party_a: "9876545678", party_b: "9123445678", record: false }),
      RateLimited,
    );
    assert.deepEqual(
      [refused.status, refused.code, refused.message],
      [429, "rate_limited", "Too many live calls for this organisation."],
    );
    const answers: { at: number; status: number; retryAfter: string | null }[] = [];
    const client = new Client(stack.keys.limited, {
      baseUrl: stack.baseUrl,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        answers.push({ at: Date.now(), status: response.status, retryAfter: response.headers.get("retry-after") });
        return response;
      },
    });
    const second = client.calls.create({ party_a: "9876545678", party_b: "9123445678", record: false });
    await eventually(() => answers.length, (n) => n > 0, "the first answer to the waiting create");
    const hungUp = await impatient.calls.hangup(first.call_sid);
    const placed = await second;
    assert.deepEqual(
      answers.map((answer) => [answer.status, answer.retryAfter]),
      [
        [429, "5"],
        [201, null],
      ],
    );
    const [limited, next] = answers;
    assert.ok(limited && next);
    assert.ok(next.at - limited.at >= 5000);
    assert.ok(placed.created_at && hungUp.ended_at && placed.created_at >= hungUp.ended_at);
  });

  it("maps every error code the server answers to its class", async () => {
    const noRetry = { retries: 0 };
    const client = new Client(stack.keys.calls, { baseUrl: stack.baseUrl, retry: noRetry });
    const numbers = await rejection(client.calls.create({ party_a: "12345", party_b: "9123456789" }), InvalidNumbers);
    assert.deepEqual(
      [numbers.status, numbers.code, numbers.message],
      [400, "invalid_numbers", "party_a must be a 10-digit Indian mobile number."],
    );
    assert.match(numbers.requestId ?? "", /\S/);
    const range = await rejection(
      client.calls.create({ party_a: "9876543210", party_b: "9123456789", max_duration_sec: 5 }),
      InvalidRequest,
    );
    assert.deepEqual([range.status, range.code], [400, "invalid_request"]);
    const missing = await rejection(client.calls.get(randomUUID()), NotFound);
    assert.deepEqual([missing.status, missing.code], [404, "not_found"]);
    const method = await rejection(client.request({ method: "DELETE", path: "/v1/masking/billing" }), MethodNotAllowed);
    assert.deepEqual([method.status, method.code], [405, "method_not_allowed"]);
    const key = randomUUID();
    await client.calls.create({ party_a: "9876556789", party_b: "9123456789", record: false }, { idempotencyKey: key });
    const conflict = await rejection(
      client.calls.create({ party_a: "9876556789", party_b: "9123400000" }, { idempotencyKey: key }),
      IdempotencyConflict,
    );
    assert.deepEqual([conflict.status, conflict.code], [409, "idempotency_conflict"]);
    const large = await rejection(
      client.calls.create({ party_a: "9876543210", party_b: "9123456789", metadata: { x: "y".repeat(70_000) } }),
      PayloadTooLarge,
    );
    assert.deepEqual([large.status, large.code], [413, "payload_too_large"]);
    const stranger = new Client("vp_live_nope", { baseUrl: stack.baseUrl, retry: noRetry });
    const unauthorized = await rejection(stranger.billing(), Unauthorized);
    assert.deepEqual([unauthorized.status, unauthorized.code], [401, "unauthorized"]);
    const poor = new Client(stack.keys.poor, { baseUrl: stack.baseUrl, retry: noRetry });
    const balance = await rejection(poor.calls.create({ party_a: "9876543210", party_b: "9123456789" }), InsufficientBalance);
    assert.deepEqual(
      [balance.status, balance.message],
      [402, "Insufficient balance. Please add funds to continue making calls."],
    );
  });

  it("hangs up, and reads stats, billing and invoices", async () => {
    const client = new Client(stack.keys.account, { baseUrl: stack.baseUrl });
    // A number ending 0000 rings and never answers on the sim: the call is live until hung up.
    const ringing = await client.calls.create({ party_a: "9876540000", party_b: "9123490123", ring_timeout_sec: 120 });
    const hungUp = await client.calls.hangup(ringing.call_sid);
    assert.deepEqual([hungUp.status, hungUp.hangup_cause, hungUp.hangup_by], ["failed", "NORMAL_CLEARING", "system"]);
    assert.equal((await client.calls.hangup(ringing.call_sid)).ended_at, hungUp.ended_at);
    const stats = await client.stats();
    assert.deepEqual([stats.total_calls, stats.failed, stats.completed], [1, 1, 0]);
    const billing = await client.billing();
    assert.deepEqual([billing.balance, billing.currency, billing.reserved], [100000, "INR", 0]);
    assert.deepEqual(await collect(client.invoices.list()), []);
  });
});

describe("the error family", () => {
  it("names every SPEC §1 code", () => {
    // no_masked_number and internal_error are not provoked from the shared server: the
    // map is checked whole here, and their answers below by a local server.
    assert.deepEqual(Object.fromEntries(Object.entries(BY_CODE).map(([code, Class]) => [code, Class.name])), {
      invalid_numbers: "InvalidNumbers",
      invalid_request: "InvalidRequest",
      unauthorized: "Unauthorized",
      insufficient_balance: "InsufficientBalance",
      forbidden: "Forbidden",
      not_found: "NotFound",
      method_not_allowed: "MethodNotAllowed",
      idempotency_conflict: "IdempotencyConflict",
      payload_too_large: "PayloadTooLarge",
      range_not_satisfiable: "RangeNotSatisfiable",
      rate_limited: "RateLimited",
      internal_error: "InternalError",
      no_masked_number: "NoMaskedNumber",
    });
    for (const Class of Object.values(BY_CODE)) assert.ok(Class.prototype instanceof MasklineError);
  });
});

describe("retries and timeouts, against local servers", () => {
  /** A server answering each request with the next of `answers` (the last repeats). */
  function scripted(answers: { status: number; body: unknown }[]): LocalServer {
    const local: LocalServer = new LocalServer((_, response) => {
      // The request being answered is already in `received`.
      const answer = answers[Math.min(local.received.length, answers.length) - 1];
      assert.ok(answer);
      response.writeHead(answer.status, { "Content-Type": "application/json" }).end(JSON.stringify(answer.body));
    });
    return local;
  }
  let server: LocalServer;
  const silent = new LocalServer(() => {
    // Never answers: the client's timeout must end the wait.
  });
  const internal = { status: 500, body: { error: { code: "internal_error", message: "Boom." }, request_id: "req_7" } };
  const busy = { status: 503, body: { error: { code: "no_masked_number", message: "No masked number is free." } } };

  before(async () => {
    await silent.start();
  });
  after(async () => {
    await silent.close();
  });

  it("retries a safe request after a timeout, and an unsafe one never", async () => {
    const client = new Client("vp_test_x", { baseUrl: silent.url, timeoutMs: 200, retry: { retries: 2, backoffMs: 10 } });
    const timedOut = await rejection(client.billing(), MasklineTimeoutError);
    assert.deepEqual([timedOut.status, timedOut.code], [0, "timeout"]);
    assert.equal(silent.received.length, 3);
    await rejection(client.request({ method: "POST", path: "/v1/anything", json: {} }), MasklineTimeoutError);
    assert.equal(silent.received.length, 4);
  });

  it("stops at once when the caller aborts", async () => {
    const client = new Client("vp_test_x", { baseUrl: silent.url });
    const reason = new Error("stop");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 20);
    assert.equal(await rejection(client.billing({ signal: controller.signal }), Error), reason);
  });

  it("retries a 5xx only where the request is safe, with the same Idempotency-Key", async () => {
    server = await scripted([internal, { status: 201, body: { data: { call_sid: "c1", status: "initiated" } } }]).start();
    try {
      const client = new Client("vp_test_x", { baseUrl: server.url, retry: { backoffMs: 10 } });
      const call = await client.calls.create({ party_a: "9876543210", party_b: "9123456789" });
      assert.equal(call.call_sid, "c1");
      const [firstTry, retried] = server.received;
      assert.ok(firstTry && retried);
      assert.match(String(firstTry.headers["idempotency-key"]), /^[0-9a-f-]{36}$/);
      assert.equal(retried.headers["idempotency-key"], firstTry.headers["idempotency-key"]);
    } finally {
      await server.close();
    }
    server = await scripted([internal]).start();
    try {
      const client = new Client("vp_test_x", { baseUrl: server.url, retry: { backoffMs: 10 } });
      const error = await rejection(client.request({ method: "POST", path: "/v1/anything", json: {} }), InternalError);
      assert.deepEqual([error.status, error.code, error.message, error.requestId], [500, "internal_error", "Boom.", "req_7"]);
      assert.equal(server.received.length, 1);
    } finally {
      await server.close();
    }
    server = await scripted([busy]).start();
    try {
      const client = new Client("vp_test_x", { baseUrl: server.url, retry: { retries: 1, backoffMs: 10 } });
      const error = await rejection(client.calls.create({ party_a: "9876543210", party_b: "9123456789" }), NoMaskedNumber);
      assert.deepEqual([error.status, error.code], [503, "no_masked_number"]);
      assert.equal(server.received.length, 2);
    } finally {
      await server.close();
    }
  });
});

describe("verifyWebhook", () => {
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const body = '{"event":"call.completed","call_sid":"d28be7cd-9840-4b23-9627-199f1ef81fc6"}';
  const edesy = { "X-Edesy-Signature": "4036bb72fb06c77ade0af3ecf71cbfc56b8fe65539a2b60eaa6bc75316e21eed" };
  const standard = {
    "webhook-id": "evt_2bJ4Qh0eTtkzLr9V",
    "webhook-timestamp": "1767225600",
    "webhook-signature": "v1,Ndf5KOOKk6HA9iAVYlhtrp+vhqBx3/RTtLSOQuwXe/o=",
  };

  it("accepts the SPEC §6 test vector both ways", () => {
    const expected = { event: "call.completed", call_sid: "d28be7cd-9840-4b23-9627-199f1ef81fc6" };
    assert.deepEqual(verifyWebhook(body, edesy, secret), expected);
    assert.deepEqual(verifyWebhook(Buffer.from(body), new Headers(standard), secret, { now: 1767225600 + 299 }), expected);
  });

  it("accepts any of the signatures a rotating secret sends, and no other secret", () => {
    const previous = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
    const sign = (key: string): string =>
      createHmac("sha256", Buffer.from(key.slice("whsec_".length), "base64"))
        .update(`evt_1.1767225600.${body}`)
        .digest("base64");
    const rotating = {
      "webhook-id": "evt_1",
      "webhook-timestamp": "1767225600",
      "webhook-signature": `v1,${sign(secret)} v1,${sign(previous)}`,
    };
    for (const key of [secret, previous]) {
      assert.equal(verifyWebhook(body, rotating, key, { now: 1767225600 }).event, "call.completed");
    }
    const other = `whsec_${Buffer.alloc(32, 9).toString("base64")}`;
    assert.throws(() => verifyWebhook(body, rotating, other, { now: 1767225600 }), /No matching signature/);
  });

  it("refuses a stale timestamp, a changed body, another secret and no signature", () => {
    // Now (2026-12) is far outside the tolerance of 2026-01-01: a replay.
    assert.throws(() => verifyWebhook(body, standard, secret), /too old/);
    assert.throws(() => verifyWebhook(body, standard, secret, { now: 1767225600 - 301 }), /too new/);
    assert.throws(() => verifyWebhook(`${body} `, standard, secret, { now: 1767225600 }), WebhookVerificationError);
    assert.throws(() => verifyWebhook(`${body} `, edesy, secret), WebhookVerificationError);
    assert.throws(() => verifyWebhook(body, edesy, "whsec_b3RoZXI="), WebhookVerificationError);
    assert.throws(() => verifyWebhook(body, {}, secret), /no webhook signature/);
  });
});
