// Opens COUNT WebSockets at once (Node 20+'s WebSocket, undici's, as in browsers; run with
// --experimental-websocket) to each path given on the command line, under WSREPLAY_WS_URL.
// Each socket sends "hi" once open, as apps send their first request, and closes itself with
// 1000 "done" when it receives "bye"; otherwise it waits for the server to close it. Prints {path: [{texts, code, reason, wasClean}, ...]} as JSON.

const COUNT = Number(process.env.BURST_COUNT ?? 30);
const TIMEOUT_MS = 20_000;
const wsBase = process.env.WSREPLAY_WS_URL;

function observe(path) {
  return new Promise((resolve) => {
    const seen = { texts: [], code: null, reason: null, wasClean: null };
    const ws = new WebSocket(`${wsBase}${path}`);
    const timer = setTimeout(() => {
      seen.code = "timeout";
      resolve(seen);
    }, TIMEOUT_MS);
    ws.onopen = () => ws.send("hi");
    ws.onmessage = (event) => {
      seen.texts.push(event.data);
      if (event.data === "bye") ws.close(1000, "done");
    };
    ws.onclose = (event) => {
      clearTimeout(timer);
      Object.assign(seen, { code: event.code, reason: event.reason, wasClean: event.wasClean });
      resolve(seen);
    };
  });
}

const observed = {};
for (const path of process.argv.slice(2)) {
  observed[path] = await Promise.all(Array.from({ length: COUNT }, () => observe(path)));
}
console.log(JSON.stringify(observed));
process.exit(0); // sockets that timed out would keep Node running
