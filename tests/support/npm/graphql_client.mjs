// A GraphQL over WebSocket client as apps use it: graphql-ws's createClient (graphql-transport-ws)
// over Node's `ws`, with graphql-ws's own generateID, which mints a random UUID per operation, so
// every run sends ids no recording has seen. On one connection (WSREPLAY_WS_URL + /graphql) it runs
// a query and three subscriptions at once (the server holds them until all three are running).
//
// Prints one JSON document as its last stdout line:
//   {"query": RESULT, "subscriptions": {LABEL: [RESULT, ...]}, "ids": [ID, ...]}
// results per operation in the order they came; `ids` are the ids this run minted (they differ
// from run to run; the rest of the transcript must not). A message for an id this client never
// sent fails at once (graphql-ws itself would ignore it and wait forever), as does anything not
// finished within TIMEOUT_MS: an {"error": ...} document with what came so far, exit status 1.

import { createClient } from "graphql-ws";
import WebSocket from "ws";

const TIMEOUT_MS = 10_000;
const COUNTDOWN = `subscription Countdown($from: Int!, $label: String!) {
  countdown(from: $from, label: $label, together: 3)
}`;
const SUBSCRIPTIONS = [
  { from: 3, label: "alpha" },
  { from: 2, label: "beta" },
  { from: 4, label: "gamma" },
];

const issued = []; // ids of the operations this client subscribed, as it sent them
const transcript = { query: null, subscriptions: {} };
const foreign = []; // messages for ids this client never issued

function fail(error) {
  const detail = error instanceof Error ? error.message : JSON.stringify(error);
  console.log(JSON.stringify({ error: detail, so_far: transcript, issued, foreign }));
  process.exit(1);
}

// The client's own WebSocket with a look at what it sends: the ids of its operations.
class ObservedWebSocket extends WebSocket {
  send(data, ...rest) {
    const message = JSON.parse(String(data));
    if (message.type === "subscribe") issued.push(message.id);
    super.send(data, ...rest);
  }
}

const timer = setTimeout(() => fail(new Error(`not finished within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);

const client = createClient({
  url: `${process.env.WSREPLAY_WS_URL}/graphql`,
  webSocketImpl: ObservedWebSocket,
  lazy: false,
  retryAttempts: 0, // a lost connection is an error here, not a retry after a random delay
  onNonLazyError: fail,
  on: {
    message: (message) => {
      if ("id" in message && !issued.includes(message.id)) {
        foreign.push(message);
        fail(new Error(`a ${message.type} message for id ${message.id}, which this client never sent`));
      }
    },
  },
});

function operation(payload, onResult) {
  return new Promise((resolve, reject) => {
    client.subscribe(payload, { next: onResult, error: reject, complete: resolve });
  });
}

try {
  await Promise.all([
    operation({ query: "query Greeting($name: String!) { greeting(name: $name) }", variables: { name: "wsreplay" } }, (result) => {
      transcript.query = result;
    }),
    ...SUBSCRIPTIONS.map((variables) => {
      const results = (transcript.subscriptions[variables.label] = []);
      return operation({ query: COUNTDOWN, variables }, (result) => results.push(result));
    }),
  ]);
} catch (error) {
  fail(error);
}
clearTimeout(timer);
await client.dispose();
console.log(JSON.stringify({ ...transcript, ids: issued }));
