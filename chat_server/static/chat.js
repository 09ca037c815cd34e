// The chat page's only script (served from this app: the CSP allows nothing else).
// It sends a turn with fetch, reads the server-sent events and inserts the server-rendered,
// already-escaped fragments; without it the forms still work with full page loads.
(function () {
  "use strict";
  const log = document.getElementById("log");
  if (!log) return;

  function lastCall() {
    const cards = log.querySelectorAll("article.call");
    return cards.length ? cards[cards.length - 1].querySelector(".parts") : null;
  }

  function insert(kind, html) {
    const box = document.createElement("div");
    box.innerHTML = html; // produced by the server's autoescaping templates, never from user text here
    const target = (kind === "decision" || kind === "tool_output") ? (lastCall() || log) : log;
    while (box.firstChild) target.appendChild(box.firstChild);
    log.scrollTop = log.scrollHeight;
  }

  function problem(text) {
    const p = document.createElement("div");
    p.className = "msg error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    log.appendChild(p);
  }

  async function runTurn(form, submitter) {
    const body = new FormData(form);
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    const busy = document.querySelector("#say .busy");
    document.querySelectorAll("form[data-turn] button").forEach(function (b) { b.disabled = true; });
    if (busy) busy.hidden = false;
    try {
      const response = await fetch(form.action, {
        method: "POST", body: body, headers: { "Accept": "text/event-stream" }, credentials: "same-origin",
      });
      if (!response.ok || !response.body) {
        problem((await response.text()) || ("the server answered " + response.status));
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = (frame.match(/^event: (.*)$/m) || [])[1];
          const data = (frame.match(/^data: (.*)$/m) || [])[1];
          if (!data) continue;
          const payload = JSON.parse(data);
          if (type === "event") insert(payload.kind, payload.html);
          else if (type === "problem") problem(payload.text);
        }
      }
      if (form.id === "say") form.reset();
      if (form.classList.contains("approve")) form.remove();
    } catch (err) {
      problem("the connection failed: " + err);
    } finally {
      document.querySelectorAll("form[data-turn] button").forEach(function (b) { b.disabled = false; });
      if (busy) busy.hidden = true;
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-turn")) return;
    event.preventDefault();
    runTurn(form, event.submitter);
  });

  document.addEventListener("click", function (event) {
    const button = event.target;
    if (!(button instanceof HTMLElement) || !button.hasAttribute("data-copy")) return;
    const pre = button.parentElement.querySelector("pre");
    if (pre && navigator.clipboard) navigator.clipboard.writeText(pre.textContent);
  });
})();
