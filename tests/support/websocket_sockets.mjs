// What a WebSocket API client (a browser's, or Node's undici) observes: `observeSockets(plan)` opens
// `plan.count` sockets, `plan.wave` at a time, and resolves with, for each, the text frames it
// received, the close event's code, reason and wasClean. Each socket sends `plan.message` when a frame of type
// `plan.sendOn` arrives and closes with 1000 when one of type `plan.closeOn` does. Shared by the
// Node runner (transparency_node.mjs) and the Chromium page (tests/support/transparency.py).

function frameType(text) {
  try {
    return JSON.parse(text).type;
  } catch {
    return undefined;
  }
}

function observeSocket(plan) {
  return new Promise((resolve) => {
    const frames = [];
    const ws = new WebSocket(plan.url, plan.protocols);
    const timer = setTimeout(
      () => resolve({ frames, code: null, reason: `no close event within ${plan.timeoutMs} ms`, wasClean: false }),
      plan.timeoutMs,
    );
    ws.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data : `[binary ${event.data.byteLength ?? event.data.size} bytes]`;
      frames.push(text);
      const type = frameType(text);
      if (type === plan.sendOn) ws.send(plan.message);
      if (type === plan.closeOn) ws.close(1000);
    };
    ws.onclose = (event) => {
      clearTimeout(timer);
      resolve({ frames, code: event.code, reason: event.reason, wasClean: event.wasClean });
    };
  });
}

export async function observeSockets(plan) {
  const observations = [];
  for (let opened = 0; opened < plan.count; opened += plan.wave) {
    const wave = Array.from({ length: Math.min(plan.wave, plan.count - opened) }, () => observeSocket(plan));
    observations.push(...(await Promise.all(wave)));
  }
  return observations;
}

globalThis.observeSockets = observeSockets;
