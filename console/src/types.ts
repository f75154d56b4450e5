// The console API's shapes (CONSOLE-API.md). Optional where the server may omit a field, so one page reads both a
// live run and an older run read back from disk.

export type RunStatus = "starting" | "running" | "settling" | "finished" | "failed" | "stopped";

export interface RunSummary {
  requests: number;
  errors: number;
  p95_ms: number;
  max_replicas_seen: number;
  time_to_scale_s: number | null;
}

export interface RunMeta {
  id: string;
  label: string;
  profile: string;
  status: RunStatus;
  started_at: string;
  ended_at: string | null;
  time_scale: number;
  rate_multiplier: number;
  scaledobject: string;
  max_replicas: number | null;
  exit_code: number | null;
  error: string | null;
  summary: RunSummary | null;
}

export interface Latency {
  p50?: number | null;
  p90?: number | null;
  p95?: number | null;
  p99?: number | null;
  p99_9?: number | null;
  max?: number | null;
  mean?: number | null;
}

export interface EndpointSample {
  rps: number;
  errors: number;
  latency_ms: Latency;
}

export interface TriggerSample {
  name: string;
  value: number | null;
  target: number;
  ratio: number | null;
}

export interface Sample {
  t_s: number;
  offered_rps: number;
  achieved_rps: number;
  ok: number;
  errors: number;
  dropped: number;
  in_flight?: number;
  errors_by_class?: Record<string, number>;
  latency_ms: Latency;
  endpoints?: Record<string, EndpointSample>;
  replicas: { desired: number | null; current: number | null; ready: number | null; draining: number | null };
  triggers?: TriggerSample[];
  backlog?: number | null;
  rate_multiplier?: number;
  phase?: string | null;
}

export interface Decision {
  t_s: number;
  current?: number;
  ready?: number;
  desired: number;
  active?: boolean;
  winner?: string | null;
  raw?: number | null;
  reason: string;
  metrics?: { name: string; value: number | null; target: number; proposal?: number | null; status?: string }[];
}

export interface Note {
  t_s: number;
  text: string;
}

export interface Phase {
  event: number;
  kind: "scale-up" | "scale-down" | string;
  phase: string;
  start_s: number;
  end_s: number;
}

export interface ScaleEvent {
  t_s: number;
  from: number;
  to: number;
}

export interface RunData {
  meta: RunMeta;
  samples: Sample[];
  decisions: Decision[];
  notes: Note[];
  triggers: { name: string; metric_type: string; target: number | null }[];
  phases: Phase[];
  scale_events: ScaleEvent[];
  report: Record<string, unknown> | null;
}

export interface ProfileInfo {
  name: string;
  description: string;
  duration_s: number;
  yaml: string;
}

/** The project's JSON error shape (`error` a code, `message` the words), plus the YAML position of a parse error. */
export interface ApiError {
  error: string;
  message?: string;
  field?: string | null;
  value?: unknown;
  allowed?: unknown;
  line?: number | null;
  column?: number | null;
}

export const TERMINAL: readonly RunStatus[] = ["finished", "failed", "stopped"];
export const isActive = (s: RunStatus): boolean => !TERMINAL.includes(s);

/** The words of an API error: its message, or its code when there is none. */
export const errorText = (e: ApiError): string => e.message || e.error;
