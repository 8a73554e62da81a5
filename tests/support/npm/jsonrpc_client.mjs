// A JSON-RPC 2.0 client over WebSocket (Node's `ws`), as apps write one: each call gets a fresh
// id from crypto.randomUUID(), all five calls are sent at once without waiting, and responses
// are matched to calls by id, whatever order they come in.
//
//   node jsonrpc_client.mjs 3,0,4,1,2     # the order to send CALLS in (indexes into CALLS)
//
// Connects to WSREPLAY_WS_URL + /rpc. Prints one JSON document as its last stdout line:
//   {"results": {CALL: {"result": ...} | {"error": ...}}, "sent": [CALL, ...], "answered": [CALL, ...],
//    "closed": [CODE, REASON], "own_ids": true, "ids": [ID, ...]}
// CALL is "method(params as JSON)"; `sent` and `answered` are the calls in the order they were
// sent and answered; `closed` is the close the server sent back for the client's 1000 "done";
// `ids` are the ids this run minted. A response whose id this client never
// sent fails at once, as does anything not finished within TIMEOUT_MS: an {"error": ...}
// document with what came so far, exit status 1.

import { randomUUID } from "node:crypto";
import WebSocket from "ws";

const TIMEOUT_MS = 10_000;
const CALLS = [
  { method: "add", params: { a: 2, b: 3 } },
  { method: "concat", params: ["ws", "re", "play"] },
  { method: "echo", params: { value: { nested: [1, "two", null] } } },
  { method: "square", params: [12] },
  { method: "divide", params: { a: 1, b: 0 } },
];

const order = (process.argv[2] ?? "0,1,2,3,4").split(",").map(Number);
if (order.length !== CALLS.length || new Set(order).size !== CALLS.length || order.some((i) => !CALLS[i])) {
  console.error(`usage: node jsonrpc_client.mjs ORDER, a permutation of 0..${CALLS.length - 1}, e.g. 3,0,4,1,2`);
  process.exit(2);
}

const label = ({ method, params }) => `${method}(${JSON.stringify(params)})`;
const pending = new Map(); // id -> call label
const ids = [];
const results = {};
const sent = [];
const answered = [];
const foreign = [];

function fail(message) {
  console.log(JSON.stringify({ error: message, so_far: { results, sent, answered }, ids, foreign }));
  process.exit(1);
}

const timer = setTimeout(() => fail(`not all answered within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
const ws = new WebSocket(`${process.env.WSREPLAY_WS_URL}/rpc`);
ws.on("error", (error) => fail(`WebSocket error: ${error.message}`));
ws.on("close", (code, reason) => {
  if (pending.size > 0) fail(`closed (${code} ${reason}) with ${pending.size} calls unanswered`);
  clearTimeout(timer);
  const closed = [code, String(reason)];
  console.log(JSON.stringify({ results, sent, answered, closed, own_ids: foreign.length === 0, ids }));
});
ws.on("open", () => {
  for (const index of order) {
    const call = CALLS[index];
    const id = randomUUID();
    ids.push(id);
    pending.set(id, label(call));
    sent.push(label(call));
    ws.send(JSON.stringify({ jsonrpc: "2.0", method: call.method, params: call.params, id }));
  }
});
ws.on("message", (data) => {
  const response = JSON.parse(String(data));
  const call = pending.get(response.id);
  if (call === undefined) {
    foreign.push(response);
    fail(`a response for id ${JSON.stringify(response.id)}, which this client never sent (or got twice)`);
  }
  pending.delete(response.id);
  answered.push(call);
  results[call] = "error" in response ? { error: response.error } : { result: response.result };
  if (pending.size === 0) ws.close(1000, "done");
});
