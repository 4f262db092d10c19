// Talaria dashboard. No framework, no inline script (the page's CSP forbids
// it), and no innerHTML with data: every text reaches the page through
// textContent, so nothing a model, a skill or a session wrote can run here.
"use strict";

const state = { csrf: null, password: false, chatSession: null, logTimer: null, approvalsTimer: null };

// ---- helpers -------------------------------------------------------------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined && node !== false));
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const init = { method: options.method || "GET", headers, credentials: "same-origin" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (init.method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, init);
  if (options.raw) return response;
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    if (response.status === 401) {
      state.csrf = null;
      // Without a password (the gateway restarted), a new session is one
      // request away; with one, log in again.
      if (state.password) renderLogin();
      else start();
    }
    throw new ApiError(response.status, message);
  }
  return body;
}

function failure(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

function when(time) {
  if (!time) return "";
  const date = new Date(time);
  return isNaN(date) ? time : date.toLocaleString();
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d}d ${hours}h`;
  if (hours) return `${hours}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function badge(text) {
  return h("span", { class: `badge ${text}` }, text);
}

// ---- session and routing ---------------------------------------------------

function setUp() {
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  start();
}

async function start() {
  try {
    const session = await api("/api/session");
    state.password = session.password;
    if (!session.signed_in) {
      if (session.password) renderLogin();
      else show(h("p", { class: "notice" }, "This dashboard has no password and answers only browsers on its own machine: open it there, or set a password with talaria gateway set-password."));
      return;
    }
    state.csrf = session.csrf;
    route();
  } catch (error) {
    show(failure(error));
  }
}

function signedIn(on) {
  document.getElementById("nav").hidden = !on;
  document.getElementById("logout").hidden = !(on && state.password);
  if (on && !state.approvalsTimer) {
    pollApprovals();
    state.approvalsTimer = setInterval(pollApprovals, 2000);
  }
  if (!on && state.approvalsTimer) {
    clearInterval(state.approvalsTimer);
    state.approvalsTimer = null;
    document.getElementById("approvals").hidden = true;
  }
}

// ---- Approvals (on every page) -------------------------------------------------

async function pollApprovals() {
  if (!state.csrf) return;
  let pending;
  try {
    pending = (await api("/api/approvals")).approvals || [];
  } catch (_) {
    return;
  }
  const panel = document.getElementById("approvals");
  panel.hidden = pending.length === 0;
  panel.replaceChildren(
    ...pending.map((item) =>
      h(
        "div",
        { class: "approval", "data-id": item.id },
        h("div", { class: "label" }, `Waiting for approval (${item.rule}) — ${item.origin}, denied in ${duration(item.seconds_left)}`),
        h("pre", { class: "mono" }, item.command),
        item.part && item.part !== item.command ? h("div", { class: "label" }, "The part the rule caught:") : null,
        item.part && item.part !== item.command ? h("pre", { class: "mono caught" }, item.part) : null,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: () => answerApproval(item.id, "once") }, "Approve once"),
          h("button", { type: "button", class: "quiet", onclick: () => answerApproval(item.id, "session") }, "Approve for this session"),
          item.can_always
            ? h("button", { type: "button", class: "quiet", title: "Adds the command to approvals.allowlist in config.toml", onclick: () => answerApproval(item.id, "always") }, "Always")
            : null,
          h("button", { type: "button", class: "danger", onclick: () => answerApproval(item.id, "deny") }, "Deny"),
        ),
      ),
    ),
  );
}

async function answerApproval(id, verdict) {
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}`, { method: "POST", body: { verdict } });
  } catch (error) {
    // Answered elsewhere or timed out: the next poll shows what is left.
  }
  pollApprovals();
}

async function logout() {
  try {
    await api("/api/logout", { method: "POST" });
  } catch (_) {
    // Signed out either way.
  }
  state.csrf = null;
  renderLogin();
}

function renderLogin() {
  signedIn(false);
  stopLogs();
  const password = h("input", { type: "password", id: "password", name: "password", autocomplete: "current-password", required: true });
  const message = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "panel login", id: "login" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "The dashboard's password was set with talaria gateway set-password."),
    h("label", { for: "password" }, "Password"),
    password,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Log in")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      const session = await api("/api/login", { method: "POST", body: { password: password.value } });
      state.csrf = session.csrf;
      state.password = true;
      password.value = "";
      route();
    } catch (error) {
      message.textContent = error.message;
    }
  });
  show(form);
  password.focus();
}

const pages = {
  status: renderStatus,
  chat: renderChat,
  sessions: renderSessions,
  skills: renderSkills,
  memory: renderMemory,
  logs: renderLogs,
};

function route() {
  if (!state.csrf) return;
  signedIn(true);
  stopLogs();
  const [page, ...rest] = (location.hash.replace(/^#\/?/, "") || "status").split("/");
  const render = pages[page] || renderStatus;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.page === (pages[page] ? page : "status"));
  }
  render(rest.map(decodeURIComponent)).catch((error) => show(failure(error)));
}

// ---- Status ------------------------------------------------------------------

async function renderStatus() {
  const status = await api("/api/status");
  const skills = status.skills || [];
  const problems = status.recent_problems || [];
  show(
    h("h1", {}, "Status"),
    h(
      "div",
      { class: "grid" },
      stat("Version", status.version, "status-version"),
      stat("Uptime", duration(status.uptime_secs)),
      stat("Model", status.model.name),
      stat("Model endpoint", status.model.reachable ? "reachable" : "unreachable", "status-model"),
      stat("Sessions", status.sessions ?? "?"),
      stat("Runs", `${status.runs.running} / ${status.runs.max}`),
    ),
    h("h2", {}, "Skills"),
    h(
      "div",
      { class: "panel" },
      skills.length
        ? h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", {}, "Skill"), h("th", {}, "Version"), h("th", {}, "State"))),
            h(
              "tbody",
              {},
              skills.map((skill) =>
                h("tr", {}, h("td", {}, skill.name || "(invalid)"), h("td", {}, skill.version || ""), h("td", {}, badge(skill.state))),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No skills installed."),
    ),
    h("h2", {}, "Recent problems"),
    h(
      "div",
      { class: "panel", id: "problems" },
      problems.length
        ? h("div", { class: "logs" }, problems.map(logLine))
        : h("p", { class: "muted" }, "No warnings or errors since the gateway started."),
    ),
    h("p", { class: "muted mono" }, `Data home: ${status.home}`),
  );
}

// ---- Chat ----------------------------------------------------------------------

async function renderChat() {
  const log = h("div", { class: "chat", id: "chat-log" });
  const input = h("textarea", { id: "chat-input", placeholder: "Ask Talaria…", rows: 2 });
  const send = h("button", { type: "submit", id: "chat-send" }, "Send");
  const sessionLine = h("p", { class: "muted", id: "chat-session" });
  const fresh = h("button", { type: "button", class: "quiet" }, "New chat");
  const describe = () => {
    sessionLine.textContent = state.chatSession ? `Session ${state.chatSession}` : "A new session starts with your first message.";
  };
  fresh.addEventListener("click", () => {
    state.chatSession = null;
    log.replaceChildren();
    describe();
  });
  if (state.chatSession) {
    try {
      const stored = await api(`/api/sessions/${encodeURIComponent(state.chatSession)}`);
      for (const message of stored.messages) {
        if ((message.role === "user" || message.role === "assistant") && message.content) {
          log.append(h("div", { class: `bubble ${message.role}` }, message.content));
        } else if (message.role === "tool") {
          log.append(h("div", { class: "bubble tool" }, `${message.name || "tool"}: finished`));
        }
      }
    } catch (_) {
      state.chatSession = null;
    }
  }
  describe();
  const form = h("form", { class: "composer" }, input, send);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message) return;
    input.value = "";
    send.disabled = true;
    log.append(h("div", { class: "bubble user" }, message));
    const answer = h("div", { class: "bubble assistant", "data-streaming": "true" });
    log.append(answer);
    try {
      await streamChat(message, answer, log);
      describe();
    } catch (error) {
      answer.replaceWith(failure(error));
    } finally {
      answer.removeAttribute("data-streaming");
      send.disabled = false;
      input.focus();
    }
  });
  show(h("div", { class: "row spread" }, h("h1", {}, "Chat"), fresh), sessionLine, log, form);
  input.focus();
}

// POST /api/chat answers with server-sent events; EventSource cannot POST,
// so the stream is read and split here.
async function streamChat(message, answer, log) {
  const response = await api("/api/chat", {
    method: "POST",
    body: { message, session_id: state.chatSession },
    raw: true,
  });
  if (!response.ok) {
    let text = `HTTP ${response.status}`;
    try {
      text = (await response.json()).error.message;
    } catch (_) {
      // Keep the status.
    }
    throw new ApiError(response.status, text);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const payload = JSON.parse(data.join("\n"));
      if (name === "session") state.chatSession = payload.id;
      else if (name === "text") {
        answer.textContent += payload.text;
        answer.dataset.chunks = String(Number(answer.dataset.chunks || 0) + 1);
      }
      else if (name === "tool") log.insertBefore(h("div", { class: "bubble tool" }, `${payload.name}: ${payload.status}`), answer);
      else if (name === "done" && !answer.textContent) answer.textContent = payload.answer;
      else if (name === "error") throw new Error(payload.message);
    }
  }
}

// ---- Sessions ------------------------------------------------------------------

async function renderSessions(args) {
  if (args[0]) return renderSession(args[0]);
  const query = h("input", { type: "search", id: "session-search", placeholder: "Search every message…" });
  const results = h("div", { class: "panel", id: "session-results" });
  const form = h("form", { class: "row" }, query, h("button", { type: "submit" }, "Search"));
  const load = async () => {
    const q = query.value.trim();
    try {
      const body = await api(`/api/sessions${q ? `?q=${encodeURIComponent(q)}` : ""}`);
      if (body.hits) {
        results.replaceChildren(
          body.hits.length
            ? h(
                "ul",
                { class: "list" },
                body.hits.map((hit) =>
                  h(
                    "li",
                    { class: "hit" },
                    h("a", { href: `#/sessions/${encodeURIComponent(hit.session_id)}` }, hit.session_id),
                    " ",
                    h("span", { class: "muted" }, `${hit.role}, ${when(hit.created_at)}`),
                    h("div", {}, hit.snippet),
                  ),
                ),
              )
            : h("p", { class: "muted" }, `Nothing matches “${q}”.`),
        );
      } else {
        results.replaceChildren(
          body.sessions.length
            ? h(
                "ul",
                { class: "list" },
                body.sessions.map((session) =>
                  h(
                    "li",
                    {},
                    h("a", { href: `#/sessions/${encodeURIComponent(session.id)}` }, session.title || session.id),
                    h("div", { class: "muted" }, `${session.messages} messages · ${when(session.updated_at)} · `, h("span", { class: "mono" }, session.id)),
                  ),
                ),
              )
            : h("p", { class: "muted" }, "No sessions yet."),
        );
      }
    } catch (error) {
      results.replaceChildren(failure(error));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  show(h("h1", {}, "Sessions"), form, h("p", {}), results);
  await load();
}

async function renderSession(id) {
  const body = await api(`/api/sessions/${encodeURIComponent(id)}`);
  const remove = h("button", { type: "button", class: "danger", id: "session-delete" }, "Delete");
  const resume = h("button", { type: "button", id: "session-continue" }, "Continue in chat");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete session ${id} and its messages? This cannot be undone.`)) return;
    try {
      await api(`/api/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
      location.hash = "#/sessions";
    } catch (error) {
      remove.after(failure(error));
    }
  });
  resume.addEventListener("click", () => {
    state.chatSession = id;
    location.hash = "#/chat";
  });
  show(
    h("p", {}, h("a", { href: "#/sessions" }, "← Sessions")),
    h("h1", {}, "Session ", h("span", { class: "mono" }, id)),
    h(
      "div",
      { class: "actions" },
      resume,
      h("a", { class: "button quiet", href: `/api/sessions/${encodeURIComponent(id)}/export`, download: `talaria-session-${id}.json` }, "Export JSON"),
      remove,
    ),
    h(
      "div",
      { class: "chat", id: "session-messages" },
      body.messages
        .filter((m) => m.role !== "system")
        .map((message) =>
          message.role === "tool"
            ? h("div", { class: "bubble tool" }, `${message.name || "tool"}: ${message.content.slice(0, 300)}`)
            : h("div", { class: `bubble ${message.role === "user" ? "user" : "assistant"}` }, message.content || (message.tool_calls ? "(calls tools)" : "")),
        ),
    ),
  );
}

// ---- Skills --------------------------------------------------------------------

function capabilities(caps) {
  const mounts = (caps.mounts || []).map((m) => `${m.source}${m.host ? ` = ${m.host}` : ""} → ${m.guest} (${m.access})`);
  const env = (caps.env || []).map((e) => `${e.name} (${e.set ? "set" : "not set"})`);
  const exec = (caps.exec || []).map((e) => `${e.program} ${(e.args || []).join(" ")}`.trim());
  const limits = caps.limits
    ? `memory ${caps.limits.memory_mb} MiB, timeout ${caps.limits.timeout_ms} ms, output ${caps.limits.max_output_bytes} bytes, data ${caps.limits.data_mb} MiB`
    : "";
  const secrets = (caps.secrets || []).map((s) => `${s.name} → ${(s.granted_hosts || s.hosts || []).join(", ") || "not granted"} (${s.set ? "set" : "not set"})`);
  const row = (label, items) => [h("dt", {}, label), h("dd", {}, items.length ? items.join("; ") : "none")];
  return h(
    "dl",
    { class: "caps" },
    row("mounts", mounts),
    row("env", env),
    row("exec", exec),
    row("network", caps.network || []),
    secrets.length ? row("secrets", secrets) : null,
    row("limits", limits ? [limits] : []),
  );
}

async function renderSkills() {
  const body = await api("/api/skills");
  show(
    h("h1", {}, "Skills"),
    h("p", { class: "muted" }, "A skill's tools are offered to the model only while its grant matches it exactly. Granting here records what talaria skills grant records."),
    body.skills.length ? body.skills.map(skillCard) : h("p", { class: "muted" }, "No skills installed."),
  );
}

function skillCard(skill) {
  const card = h("section", { class: "panel skill", id: `skill-${skill.name}`, "data-state": skill.state });
  const header = h("header", {}, h("h2", {}, skill.name), skill.version ? h("span", { class: "muted" }, `v${skill.version}`) : null, badge(skill.state));
  card.append(header);
  if (skill.description) card.append(h("p", {}, skill.description));
  if (skill.error) card.append(h("p", { class: "error" }, skill.error));
  if (skill.drift && skill.drift.length) {
    card.append(h("div", { class: "notice" }, h("strong", {}, "Drifted: "), skill.drift.join("; ")));
  }
  if (skill.state !== "invalid") {
    card.append(capabilities(skill));
    if (skill.granted_at) {
      card.append(h("p", { class: "muted" }, `Granted by ${skill.granted_by} at ${when(skill.granted_at)} (hash ${String(skill.granted_hash).slice(0, 19)}…)`));
    }
    const review = h("button", { type: "button", class: "grant" }, skill.state === "granted" ? "Review grant" : "Review and grant…");
    const actions = h("div", { class: "actions" }, review);
    if (skill.granted_at) {
      const revoke = h("button", { type: "button", class: "quiet revoke" }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!confirm(`Revoke the grant of ${skill.name}? Its tools stop being offered.`)) return;
        try {
          await api(`/api/skills/${encodeURIComponent(skill.name)}/revoke`, { method: "POST" });
          await renderSkills();
        } catch (error) {
          actions.append(failure(error));
        }
      });
      actions.append(revoke);
    }
    review.addEventListener("click", () => reviewGrant(skill, card, review));
    card.append(actions);
  }
  return card;
}

async function reviewGrant(skill, card, button) {
  button.disabled = true;
  try {
    const asksNetwork = (skill.network_requested || []).length > 0;
    let preview = await api(`/api/skills/${encodeURIComponent(skill.name)}/grant`);
    if (preview.unchanged && !asksNetwork) {
      card.append(h("p", { class: "muted" }, `${skill.name} is already granted exactly this; nothing to do.`));
      return;
    }
    if (preview.unchanged) {
      // Granted as the defaults would grant it: the destinations and
      // secrets can still be chosen, starting from the current grant.
      preview = {
        name: skill.name,
        version: skill.version,
        hash: skill.hash,
        capabilities: {
          ...skill,
          secrets: (skill.secrets || []).map((s) => ({ ...s, hosts: s.granted_hosts || [] })),
        },
        notes: [],
      };
    }
    const confirmButton = h("button", { type: "button", class: "confirm-grant" }, `Grant ${skill.name}`);
    const cancel = h("button", { type: "button", class: "quiet" }, "Cancel");
    // What `skills grant --network / --network-any / --secret` choose: shown
    // when the manifest asks for network access.
    const lines = (text) => text.split("\n").map((l) => l.trim()).filter((l) => l);
    const networkInput = h("textarea", { class: "grant-network", rows: "3", "aria-label": "Network destinations, one per line" });
    const defaultNetwork = (preview.capabilities.network || []).join("\n");
    networkInput.value = defaultNetwork;
    const anyInput = h("input", { type: "checkbox", class: "grant-network-any" });
    const secretsInput = h("textarea", { class: "grant-secrets", rows: "2", "aria-label": "Secrets, NAME or NAME@HOST, one per line" });
    secretsInput.value = (preview.capabilities.secrets || []).flatMap((s) => s.hosts.map((host) => `${s.name}@${host}`)).join("\n");
    const choices = asksNetwork
      ? h(
          "div",
          { class: "grant-choices" },
          h("p", {}, `The manifest asks for: ${skill.network_requested.map((r) => r.url + (r.methods ? ` (${r.methods.join(", ")})` : "")).join("; ")}`),
          h("label", {}, "Network destinations to grant, one per line (e.g. https://*.wikipedia.org)", networkInput),
          h("label", {}, anyInput, " Allow a wide destination such as https://* (the skill may reach any such host)"),
          (skill.secrets || []).length ? h("label", {}, "Secrets the host may send, NAME@HOST, one per line", secretsInput) : null,
        )
      : null;
    const box = h(
      "div",
      { class: "panel review", role: "dialog", "aria-label": `Grant ${skill.name}` },
      h("strong", {}, `Grant skill ${preview.name}${preview.version ? ` v${preview.version}` : ""}`),
      h("div", { class: "muted mono" }, preview.hash),
      capabilities(preview.capabilities),
      (preview.notes || []).map((note) => h("p", { class: "notice" }, note)),
      choices,
      preview.previous
        ? [h("p", {}, `Changes since the grant of ${when(preview.previous.granted_at)} by ${preview.previous.granted_by}:`), h("div", { class: "diff" }, preview.changes.length ? preview.changes.join("\n") : "(none)")]
        : null,
      h("div", { class: "actions" }, confirmButton, cancel),
    );
    cancel.addEventListener("click", () => box.remove());
    confirmButton.addEventListener("click", async () => {
      confirmButton.disabled = true;
      try {
        const body = { hash: preview.hash };
        if (asksNetwork) {
          // Left as proposed with "wide" ticked: what --network-any alone
          // grants; otherwise exactly the destinations listed.
          if (!(anyInput.checked && networkInput.value === defaultNetwork)) body.network = lines(networkInput.value);
          body.network_any = anyInput.checked;
          if ((skill.secrets || []).length) body.secrets = lines(secretsInput.value);
        }
        await api(`/api/skills/${encodeURIComponent(skill.name)}/grant`, { method: "POST", body });
        await renderSkills();
      } catch (error) {
        box.append(failure(error));
        confirmButton.disabled = false;
      }
    });
    card.append(box);
  } catch (error) {
    card.append(failure(error));
  } finally {
    button.disabled = false;
  }
}

// ---- Memory --------------------------------------------------------------------

async function renderMemory() {
  const body = await api("/api/memory");
  show(
    h("h1", {}, "Memory"),
    h("p", { class: "muted" }, "What the agent keeps between sessions. Changes obey the same bounds and rules as the memory tool; entries that do not fit move to the archive."),
    memorySection("memory", "MEMORY.md — the agent's notes", body.memory),
    memorySection("user", "USER.md — about the user", body.user),
  );
}

function memorySection(target, title, file) {
  const percent = Math.min(100, Math.round((100 * file.chars) / Math.max(1, file.limit)));
  const message = h("p", { class: "error", role: "alert" });
  const change = async (payload) => {
    message.textContent = "";
    try {
      await api(`/api/memory/${target}`, { method: "POST", body: payload });
      await renderMemory();
    } catch (error) {
      message.textContent = error.message;
    }
  };
  const entries = h(
    "ul",
    { class: "list" },
    file.entries.map((entry) => {
      const text = h("textarea", { rows: 2 }, entry);
      const save = h("button", { type: "button", class: "quiet" }, "Save");
      const remove = h("button", { type: "button", class: "quiet" }, "Remove");
      save.addEventListener("click", () => change({ action: "replace", old_text: entry, content: text.value }));
      remove.addEventListener("click", () => {
        if (confirm("Remove this entry?")) change({ action: "remove", old_text: entry });
      });
      return h("li", {}, text, h("div", { class: "actions" }, save, remove));
    }),
  );
  const added = h("textarea", { id: `${target}-new`, rows: 2, placeholder: "A new entry: one fact, one paragraph." });
  const add = h("button", { type: "button", id: `${target}-add` }, "Add");
  add.addEventListener("click", () => change({ action: "add", content: added.value }));
  return h(
    "section",
    { class: "panel", id: `memory-${target}` },
    h("h2", {}, title),
    h("div", { class: "muted", id: `${target}-usage` }, `${file.chars} / ${file.limit} characters`),
    h("div", { class: "meter" }, h("span", { class: percent > 90 ? "full" : null, "data-width": percent })),
    file.entries.length ? entries : h("p", { class: "muted" }, "No entries."),
    added,
    h("div", { class: "actions" }, add),
    message,
  );
}

// The CSP forbids inline styles set from attributes; widths go through the
// CSSOM, which it allows.
new MutationObserver(() => {
  for (const bar of document.querySelectorAll(".meter span[data-width]")) {
    bar.style.width = `${bar.dataset.width}%`;
    bar.removeAttribute("data-width");
  }
}).observe(document.documentElement, { childList: true, subtree: true });

// ---- Logs ----------------------------------------------------------------------

function logLine(line) {
  return h("div", { class: line.level }, `${line.time} ${line.level.padEnd(5)} ${line.target}: ${line.text}`);
}

function stopLogs() {
  if (state.logTimer) clearTimeout(state.logTimer);
  state.logTimer = null;
}

async function renderLogs() {
  const level = h(
    "select",
    { id: "log-level", "aria-label": "Level" },
    ["error", "warn", "info", "debug", "trace"].map((name) => h("option", { value: name, selected: name === "info" }, name)),
  );
  const live = h("input", { type: "checkbox", id: "log-live", checked: true });
  const view = h("div", { class: "logs", id: "log-lines" });
  let after = 0;
  const poll = async () => {
    try {
      const body = await api(`/api/logs?after=${after}&level=${level.value}`);
      const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 30;
      for (const line of body.lines) {
        view.append(logLine(line));
        after = line.seq;
      }
      while (view.childElementCount > 1000) view.firstChild.remove();
      if (atBottom) view.scrollTop = view.scrollHeight;
    } catch (error) {
      view.append(failure(error));
    }
    if (live.checked && document.getElementById("log-lines") === view) {
      state.logTimer = setTimeout(poll, 1500);
    }
  };
  level.addEventListener("change", () => {
    after = 0;
    view.replaceChildren();
    stopLogs();
    poll();
  });
  live.addEventListener("change", () => {
    stopLogs();
    if (live.checked) poll();
  });
  show(
    h("h1", {}, "Logs"),
    h("div", { class: "row" }, h("label", { for: "log-level" }, "Level"), h("span", {}, level), h("label", { class: "row" }, live, "Live")),
    h("p", { class: "muted" }, "The last 500 lines of this gateway; request lines never carry bodies or keys."),
    view,
  );
  await poll();
}

setUp();
