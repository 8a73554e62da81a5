// Node's WebSocket (undici; run with --experimental-websocket on Node 20): takes a socket plan as
// JSON in argv[2], runs it with websocket_sockets.mjs, prints the observations as one JSON line.

import { observeSockets } from "./websocket_sockets.mjs";

const observations = await observeSockets(JSON.parse(process.argv[2]));
console.log(JSON.stringify(observations));
process.exit(0); // sockets that never closed must not keep Node alive
