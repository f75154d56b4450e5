// The page's only way to the server: same-origin fetches with the token header, and the SSE stream with `?token=`
// (EventSource cannot set headers). The token comes once in the URL's `#token=` and then lives in sessionStorage,
// so a reload keeps it while it never reaches a server log or a Referer.

import { type ApiError, errorText, type ProfileInfo, type RunData, type RunMeta } from "./types";

const TOKEN_KEY = "lab-console-token";

/** The token in a location hash such as `#token=abc&x=1`, or null. */
export function tokenFromHash(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const token = params.get("token");
  return token && token.length > 0 ? token : null;
}

/** Reads `#token=` into sessionStorage and drops it from the address bar. */
export function captureToken(): void {
  const token = tokenFromHash(window.location.hash);
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

export function token(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** A failed API call: the HTTP status and the server's JSON error (or a made-up one for a non-JSON answer). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(`${status}: ${errorText(body)}`);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const t = token();
  if (t) headers["x-lab-token"] = t;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await resp.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!resp.ok) {
    const err =
      parsed && typeof parsed === "object" && "error" in parsed
        ? (parsed as ApiError)
        : { error: text.trim() || resp.statusText || `HTTP ${resp.status}` };
    throw new HttpError(resp.status, err);
  }
  return parsed as T;
}

export interface StartRequest {
  profile?: string;
  profile_yaml?: string;
  time_scale?: number;
  rate_multiplier?: number;
  duration_s?: number;
  scaledobject_yaml?: string;
  max_replicas?: number;
  slo?: string;
  label?: string;
}

export type ValidateAnswer = { ok: true; summary: string };

export const api = {
  profiles: () => call<ProfileInfo[]>("GET", "/api/profiles"),
  scaledobject: () => call<{ source: string; yaml: string }>("GET", "/api/scaledobject"),
  validate: (kind: "profile" | "scaledobject", yaml: string) =>
    call<ValidateAnswer>("POST", "/api/validate", { kind, yaml }),
  runs: () => call<RunMeta[]>("GET", "/api/runs"),
  run: (id: string) => call<RunData>("GET", `/api/runs/${encodeURIComponent(id)}`),
  start: (req: StartRequest) => call<RunMeta>("POST", "/api/runs", req),
  stop: (id: string) => call<RunMeta>("POST", `/api/runs/${encodeURIComponent(id)}/stop`),
  rate: (id: string, multiplier: number) =>
    call<RunMeta>("POST", `/api/runs/${encodeURIComponent(id)}/rate`, { multiplier }),
  remove: (id: string) => call<unknown>("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  chaos: (id: string, action: string, target: string | null, duration_s: number | null) =>
    call<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/chaos`, { action, target, duration_s }),
};

/** A GET URL with `?token=` for what the browser fetches itself: the SSE stream and the download links. */
export function withToken(path: string): string {
  const t = token();
  return t ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(t)}` : path;
}

export const eventsUrl = (id: string) => withToken(`/api/runs/${encodeURIComponent(id)}/events`);
export const downloadUrl = (id: string, file: "report.json" | "intervals.csv" | "report.html") =>
  withToken(`/api/runs/${encodeURIComponent(id)}/${file}`);
