// One chat turn against the staging protocol with Node's WebSocket (undici, as in browsers):
// mint a fresh thread_id, send a user_message, collect the agent events up to agent_completed.
// Prints {"thread_id", "events": [[type, thread_id], ...], "close": code} as its last line.
const [token] = process.argv.slice(2);
const url = `${process.env.WSREPLAY_WS_URL}/ws`;
const threadId = `thread_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
const events = [];
const eventOf = (frame) => (frame.type === 'system_message' ? frame.event : frame.type);
const body = (frame) => ('thread_id' in frame ? frame : frame.data ?? frame.payload);
const ws = new WebSocket(url, ['jwt-auth', `jwt.${Buffer.from(token).toString('base64url')}`]);
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', events })); process.exit(2); }, 15000);
ws.onmessage = (message) => {
  const frame = JSON.parse(message.data);
  if (frame.type === 'system_message' && frame.event === undefined) {
    ws.send(JSON.stringify({ type: 'user_message', payload: { content: 'Weather in Paris?', thread_id: threadId } }));
    return;
  }
  const kind = eventOf(frame);
  if (!kind.startsWith('agent_') && !kind.startsWith('tool_')) return;
  events.push([kind, body(frame).thread_id]);
  if (kind === 'agent_completed') ws.close(1000, 'done');
};
ws.onclose = (event) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ thread_id: threadId, events, close: event.code }));
};
