/** What the suite needs around the client: the stack pytest started, waits with a
 * deadline, and small local HTTP servers standing in for peers the stack cannot be. */

import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Set by tests/sdk/test_node_client.py: a running `maskline serve` and keys for it. */
export interface StackInfo {
  baseUrl: string;
  /** A proxy in front of the server that drops its first connection's answer. */
  dropUrl: string;
  keys: Record<"calls" | "drop" | "paging" | "limited" | "poor" | "account" | "readme", string>;
  /** The webhook secret of the `calls` organisation. */
  webhookSecret: string;
}

export function stackInfo(): StackInfo {
  const raw = process.env.MASKLINE_TEST_STACK;
  if (!raw) throw new Error("MASKLINE_TEST_STACK is not set: run this suite through pytest (tests/sdk/test_node_client.py).");
  return JSON.parse(raw) as StackInfo;
}

/** `probe()`'s value once `done` holds for it, polling until `withinMs` has passed. */
export async function eventually<T>(
  probe: () => Promise<T> | T,
  done: (value: T) => boolean,
  what: string,
  withinMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last: T | undefined;
  for (;;) {
    last = await probe();
    if (done(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms; last ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface Received {
  headers: IncomingMessage["headers"];
  body: Buffer;
}

/** A local HTTP server; `handle` answers each request, given its raw body. */
export class LocalServer {
  readonly received: Received[] = [];
  url = "";
  private readonly server: Server;

  constructor(handle: (request: Received, response: ServerResponse) => void) {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const got = { headers: request.headers, body: Buffer.concat(chunks) };
        this.received.push(got);
        handle(got, response);
      });
    });
  }

  async start(): Promise<this> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, "close");
  }
}
