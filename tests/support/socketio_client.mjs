// A Socket.IO session with the JS client (socket.io-client 4, as in browsers), run as
// `wsreplay ... -- node THIS_FILE`: long-polling first, then the upgrade to a WebSocket.
// Every polling GET and POST carries engine.io's cache-buster, a fresh random `t=7ki2v9rz`.
// It connects to $WSREPLAY_URL (argv[2] overrides it), makes two `chat` calls and says `bye`,
// collects the acks and every event until the server disconnects it, and prints the
// transcript as JSON on its last line.
//
// socket.io-client is resolved from tests/support/npm (installed by tests/support/npm_env.sh).
import { createRequire } from "node:module";

const require = createRequire(new URL("./npm/package.json", import.meta.url));
const { io } = require("socket.io-client");

const TIMEOUT = 20000;
const CHATS = [{ text: "hello over polling", room: "lobby" }, { text: "and again", room: "kitchen" }];
const url = process.argv[2] ?? process.env.WSREPLAY_URL;

const transcript = [];
const socket = io(url, { transports: ["polling", "websocket"], reconnection: false, timeout: TIMEOUT });
socket.onAny((name, ...data) => transcript.push([name, ...data]));
const disconnected = new Promise((resolve) =>
  socket.on("disconnect", (reason) => {
    transcript.push(["disconnected", reason]);
    resolve();
  }),
);
const failed = (what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} in ${TIMEOUT} ms`)), TIMEOUT).unref());

await Promise.race([
  new Promise((resolve, reject) => {
    socket.on("connect", resolve);
    socket.on("connect_error", reject);
  }),
  failed("connection"),
]);
transcript.push(["connected"]);
for (const chat of CHATS) transcript.push(["ack", await socket.timeout(TIMEOUT).emitWithAck("chat", chat)]);
transcript.push(["transport", socket.io.engine.transport.name]);
socket.emit("bye", "see you");
await Promise.race([disconnected, failed("disconnect")]);
console.log(JSON.stringify(transcript));
