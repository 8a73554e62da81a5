// The staging scenario as a browser runs it, in Node (20+, run with --experimental-websocket):
// fetch() for HTTP, and the WebSocket API (undici's), which cannot set headers, so the JWT
// travels in the subprotocol `jwt.<token>`. Every run mints a fresh token and fresh ids.
// Reads WSREPLAY_URL and WSREPLAY_WS_URL (set by `wsreplay record|replay -- CMD`); prints
// the transcript of what it observed as one JSON document on stdout.

import { randomBytes, randomUUID } from "node:crypto";

const TIMEOUT_MS = 10_000;
const base = process.env.WSREPLAY_URL;
const wsBase = process.env.WSREPLAY_WS_URL;
const transcript = [];

function freshToken() {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: `e2e-${randomUUID().slice(0, 8)}@example.test`, jti: randomUUID(), iat: now, exp: now + 900 };
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}.${randomBytes(32).toString("base64url")}`;
}

function shapeOf(subprotocol) {
  return subprotocol.startsWith("jwt.") ? "jwt.<token>" : subprotocol;
}

// One WebSocket: `onText(ws, text)` reacts to text messages; resolves once it is closed (or refused).
function session(path, protocols, onText) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}${path}`, protocols);
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(
      () => reject(new Error(`${path}: no close within ${TIMEOUT_MS} ms; so far: ${JSON.stringify(transcript)}`)),
      TIMEOUT_MS,
    );
    ws.onopen = () => transcript.push(["open", path, shapeOf(ws.protocol)]);
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        transcript.push(["text", event.data]);
        onText(ws, event.data);
      } else {
        transcript.push(["binary", Buffer.from(event.data).toString("hex")]);
        ws.close(1000, "done");
      }
    };
    let opened = false;
    ws.addEventListener("open", () => { opened = true; });
    ws.onerror = () => {
      transcript.push(["error", path]);
      if (!opened) {
        // A refused upgrade: Node 20's WebSocket fires "error" but never "close".
        clearTimeout(timer);
        resolve();
      }
    };
    ws.onclose = (event) => {
      clearTimeout(timer);
      transcript.push(["closed", path, event.code, event.reason, event.wasClean]);
      resolve();
    };
  });
}

const refused = await fetch(`${base}/auth/e2e/test-auth`, {
  method: "POST",
  headers: { "Content-Type": "application/json", "X-E2E-Bypass-Key": "not-the-key" },
  body: JSON.stringify({ email: "e2e@example.test", request_id: randomUUID() }),
});
transcript.push(["http", refused.status, await refused.json()]);

await session("/ws", ["jwt-auth", `jwt.${freshToken()}`], (ws, text) => {
  const frame = JSON.parse(text);
  if (frame.type === "system_message") {
    ws.send(JSON.stringify({ type: "message", content: "What is the weather in Paris?", run_id: randomUUID(), timestamp: Date.now() / 1000 }));
  } else if (frame.type === "agent_completed") {
    ws.send(new Uint8Array([0, 1, 2, 253, 254, 255]));
  }
});
await session("/ws", ["jwt-auth"], () => {});
await session("/drop", ["jwt-auth", `jwt.${freshToken()}`], (ws) => ws.send("still there?"));

console.log(JSON.stringify(transcript));
