// A GraphQL over WebSocket server (the graphql-transport-ws protocol), as apps run it: graphql-ws's
// useServer on a `ws` WebSocketServer. Listens on 127.0.0.1 and an ephemeral port (or argv[2]);
// prints "listening on 127.0.0.1:PORT" once it accepts connections. Stop it with SIGTERM.
//
//   query Greeting($name: String!) { greeting(name: $name) }                 -> "Hello, NAME!"
//   subscription { countdown(from: 3, label: "a", together: 3) }             -> "a:3" "a:2" "a:1" "a:0"
//
// A countdown yields nothing until `together` countdowns are running (on any connection), so a
// client's subscriptions are all in flight at once, their ids live side by side, without timing.

import {
  GraphQLInt,
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
} from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";

const waiting = []; // resolvers of the countdowns held until enough are running

function runningTogether(together) {
  return new Promise((resolve) => {
    waiting.push(resolve);
    if (waiting.length >= together) {
      for (const release of waiting.splice(0)) release();
    }
  });
}

async function* countdown(_source, { from, label, together }) {
  await runningTogether(together);
  for (let n = from; n >= 0; n -= 1) {
    yield { countdown: `${label}:${n}` };
  }
}

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: "Query",
    fields: {
      greeting: {
        type: new GraphQLNonNull(GraphQLString),
        args: { name: { type: new GraphQLNonNull(GraphQLString) } },
        resolve: (_source, { name }) => `Hello, ${name}!`,
      },
    },
  }),
  subscription: new GraphQLObjectType({
    name: "Subscription",
    fields: {
      countdown: {
        type: new GraphQLNonNull(GraphQLString),
        args: {
          from: { type: new GraphQLNonNull(GraphQLInt) },
          label: { type: new GraphQLNonNull(GraphQLString) },
          together: { type: GraphQLInt, defaultValue: 1 },
        },
        subscribe: countdown,
      },
    },
  }),
});

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2] ?? 0), path: "/graphql" });
useServer({ schema }, wss);
wss.on("listening", () => {
  const { address, port } = wss.address();
  console.log(`listening on ${address}:${port}`);
});
process.on("SIGTERM", () => wss.close(() => process.exit(0)));
