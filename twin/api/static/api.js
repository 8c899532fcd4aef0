// HTTP side of the dashboard: JSON reads, the API token, operator acknowledgements.

const TOKEN_KEY = "citytwin.token";
const OPERATOR_KEY = "citytwin.operator";

// The token comes in the page's URL fragment (#token=...), which browsers never send to a server.
// It is moved into sessionStorage (this tab only) and taken out of the address bar, so it does not
// end up in bookmarks, screenshots or the history.
export function takeTokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);
export const operatorName = () => sessionStorage.getItem(OPERATOR_KEY);
export const setOperatorName = (name) =>
  name ? sessionStorage.setItem(OPERATOR_KEY, name) : sessionStorage.removeItem(OPERATOR_KEY);

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// A PNG as an object URL (the caller revokes it once replaced).
export async function getImageUrl(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

// JSON of a route the twin may not have (an older twin, or no data yet): null on 404 and 503.
export async function getJsonOptional(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 404 || response.status === 503) return null;
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// A stored frame of a level layer (GET /api/frames/{name}.png?at=T) as {url, t}: an object URL and the frame's
// time (header X-Frame-Time); null when the twin has no frame at or before T (404).
export async function getFrame(name, at) {
  const path = `/api/frames/${encodeURIComponent(name)}.png?at=${encodeURIComponent(at)}`;
  const response = await fetch(path);
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  const t = Number.parseFloat(response.headers.get("X-Frame-Time"));
  return { url: URL.createObjectURL(await response.blob()), t: Number.isFinite(t) ? t : at };
}

// POST /api/alerts/{id}/ack. Resolves to {ok: true, body} or {ok: false, message} with a message an
// operator can act on; never throws.
export async function acknowledge(alertId, operator, note) {
  const bearer = token();
  if (!bearer) {
    return { ok: false, message: "No API token: open the dashboard from the link with #token=… that the twin " +
      "printed at start-up to acknowledge alerts. Everything else works without it." };
  }
  let response;
  try {
    response = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/ack`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ operator, note: note || "" }),
    });
  } catch (err) {
    return { ok: false, message: `Could not reach the twin (${err.message}); try again.` };
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) return { ok: true, body };
  return { ok: false, status: response.status, message: ackProblem(response.status, body) };
}

// A write with the API token (POST /api/silences, DELETE /api/silences/{id}): resolves to {ok: true, body} or
// {ok: false, status, message} with a message an operator can act on; never throws.
export async function writeJson(method, path, payload, what) {
  const bearer = token();
  if (!bearer) {
    return { ok: false, message: `No API token: open the dashboard from the link with #token=… to ${what}.` };
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
      body: JSON.stringify(payload),
    });
  } catch (err) {
    return { ok: false, message: `Could not reach the twin (${err.message}); try again.` };
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) return { ok: true, body };
  return { ok: false, status: response.status, message: writeProblem(response.status, body, what) };
}

export const createSilence = (silence) => writeJson("POST", "/api/silences", silence, "silence alerts");
export const expireSilence = (id, who, why) =>
  writeJson("DELETE", `/api/silences/${encodeURIComponent(id)}`, { who, why }, "expire silences");

function writeProblem(status, body, what) {
  if (status === 403 && body.error === "writes_disabled") {
    return `This twin is read-only (started without an API token): restart it with a token to ${what}.`;
  }
  if (status === 401 || status === 403) return ackProblem(status, body);
  const detail = typeof body.detail === "string" ? body.detail : body.detail ? JSON.stringify(body.detail) : "";
  if (status === 404) return `The twin does not know that (404)${detail ? ": " + detail : ""}.`;
  if (status === 422 || status === 400) return `The twin refused it (${status})${detail ? ": " + detail : ""}.`;
  return `Could not ${what}: HTTP ${status}${detail ? ": " + detail : ""}.`;
}

function ackProblem(status, body) {
  const detail = typeof body.detail === "string" ? body.detail : "";
  if (status === 401) {
    forgetToken();
    return "The twin asked for a token (401): reopen the dashboard from the link with #token=….";
  }
  if (status === 403 && body.error === "writes_disabled") {
    return "This twin is read-only (started without an API token): acknowledge over MQTT or restart it with a token.";
  }
  if (status === 403) {
    forgetToken();
    return "The token was refused (403): reopen the dashboard from the current #token=… link.";
  }
  if (status === 404) return "The twin does not know this alert (404).";
  if (status === 409) return "This alert has already been cancelled (409).";
  return `Acknowledgement failed: HTTP ${status}${detail ? ": " + detail : ""}.`;
}
