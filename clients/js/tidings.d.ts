// Types for tidings.js (the module itself is plain JavaScript, no build step).

export type State = "idle" | "connecting" | "connected" | "reconnecting" | "offline" | "closed";

export interface Notification {
  type: "notification";
  notificationId: string;
  seq: number;
  userId: string;
  topic?: string | null;
  sender: string | null;
  message: string;
  data: Record<string, unknown>;
  tags?: string[];
  createdAt: string;
  expiresAt?: string | null;
  readAt?: string | null;
}

export interface Ack {
  type: "ack";
  requestId: string;
  notificationId?: string;
  seq?: number;
  topic?: string;
  changed?: number;
}

export interface Counts {
  total: number;
  unread: number;
  unseen: number;
}

export interface InboxPage {
  items: Notification[];
  next: string | null;
  counts: Counts;
}

export interface InboxFrame {
  type: "inbox";
  change: { action: string; ids?: string[]; upTo?: string };
  total: number;
  unread: number;
  unseen: number;
}

export interface Storage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): unknown;
}

export interface ClientOptions {
  url?: string;
  token: string | (() => string | Promise<string>);
  since?: number | "latest";
  topics?: string[];
  storage?: Storage;
  storageKey?: string;
  WebSocket?: unknown;
  fetch?: typeof fetch;
  minDelay?: number;
  maxDelay?: number;
  pingInterval?: number;
  pingTimeout?: number;
  dedupeWindow?: number;
}

export interface Events {
  notification: (notification: Notification) => void;
  state: (state: State, detail: { reason?: string; error?: TidingsError }) => void;
  caughtUp: (caughtUp: { seq: number; complete: boolean; topics: Record<string, number> }) => void;
  refetch: (why: { reason: string }) => void;
  inbox: (frame: InboxFrame) => void;
  error: (error: Error) => void;
}

export class TidingsError extends Error {
  code: string;
  status?: number;
  requestId?: string;
}

export function backoffDelay(
  attempt: number,
  options?: { minDelay?: number; maxDelay?: number },
  random?: () => number,
): number;
export function randomId(): string;
export function serverUrls(url: string): { http: string; ws: string };

export class TidingsClient {
  constructor(options: ClientOptions);
  readonly state: State;
  readonly newestId: string | null;
  readonly position: { seq: number | null; topics: Record<string, number> };
  on<E extends keyof Events>(event: E, listener: Events[E]): () => void;
  off<E extends keyof Events>(event: E, listener: Events[E]): void;
  once<E extends keyof Events>(event: E, listener: Events[E]): () => void;
  once<E extends keyof Events>(event: E): Promise<Parameters<Events[E]>[0]>;
  connect(): this;
  close(): void;
  send(
    userId: string,
    message: string,
    data?: Record<string, unknown>,
    options?: { idempotencyKey?: string },
  ): Promise<Ack>;
  subscribe(topic: string): Promise<Ack>;
  unsubscribe(topic: string): Promise<Ack>;
  request(method: string, path: string, options?: { query?: object; body?: unknown }): Promise<any>;
  list(params?: {
    limit?: number;
    after?: string;
    order?: "newest" | "oldest";
    read?: boolean;
    seen?: boolean;
    archived?: "exclude" | "include" | "only";
    tags?: string[];
    createdAfter?: string;
    createdBefore?: string;
  }): Promise<InboxPage>;
  counts(): Promise<Counts>;
  history(params?: { afterSeq?: number; beforeSeq?: number; limit?: number; topic?: string }): Promise<{
    items: Notification[];
    head: number;
  }>;
  markRead(ids: string[]): Promise<{ changed: number; counts: Counts }>;
  markAllRead(): Promise<{ changed: number; counts: Counts | null }>;
  markUnread(ids: string[]): Promise<{ changed: number; counts: Counts }>;
  archive(ids: string[]): Promise<{ changed: number; counts: Counts }>;
  delete(notificationId: string): Promise<void>;
  mark(
    action: "read" | "unread" | "seen" | "archive" | "unarchive",
    target: { ids: string[] } | { upTo: string },
  ): Promise<{ changed: number; counts: Counts }>;
}

export default TidingsClient;
