"""A chat page that authenticates over HTTP and chats over a WebSocket, both at the staging host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

STAGING = "https://api.staging.wsreplay.test"
AGENT_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
PAGE = """<!doctype html><meta charset="utf-8"><title>chat</title><pre id="out"></pre>
<script>
const out = document.getElementById("out");
const lines = [];
function done(line) { lines.push(line); out.textContent = lines.join("\\n"); out.dataset.done = "yes"; }
(async () => {
  const login = await fetch("/auth/e2e/test-auth", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-E2E-Bypass-Key": "sample-e2e-bypass-key"},
    body: JSON.stringify({email: "page@example.test", name: "Page", permissions: ["read"], simulate_oauth: true}),
  });
  const issued = await login.json();
  lines.push(`login ${login.status} ${issued.token_type}`);
  const encoded = btoa(issued.access_token).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
  const ws = new WebSocket("wss://api.staging.wsreplay.test/ws", ["jwt-auth", "jwt." + encoded]);
  ws.onopen = () => ws.send(JSON.stringify({type: "message", content: "Summarise my costs", thread_id: "t-" + Date.now()}));
  ws.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    const event = frame.event || frame.type;
    if (event.startsWith("agent_") || event.startsWith("tool_")) lines.push(event);
    if (event === "agent_completed") ws.close(1000, "done");
  };
  ws.onclose = (close) => done(`closed ${close.code} ${close.reason} clean=${close.wasClean}`);
})().catch((error) => done(`error ${error}`));
</script>"""


@pytest.mark.wsreplay
def test_the_chat_page_logs_in_and_sees_the_agent_run(page: Page) -> None:
    page.route(f"{STAGING}/chat", lambda route: route.fulfill(content_type="text/html", body=PAGE))
    page.goto(f"{STAGING}/chat")
    out = page.locator("#out")
    expect(out).to_have_attribute("data-done", "yes", timeout=15_000)
    lines = out.inner_text().splitlines()
    assert lines[0] == "login 200 Bearer"
    assert [line for line in lines if line in AGENT_EVENTS][:1] == ["agent_started"], lines
    assert {line for line in lines[1:-1]} >= set(AGENT_EVENTS)
    assert lines[-1] == "closed 1000 done clean=true"
    Path(os.environ["WSREPLAY_PAGE_OUTCOME"]).write_text("\n".join(lines), encoding="utf-8")
