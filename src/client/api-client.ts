/**
 * A small client of photopipe's HTTP API for the CLI's client commands (ingest, status, photos):
 * the key goes in the Authorization header, errors come back as ApiError with the API's code.
 * It talks only to the URL it is given (the operator's own API).
 */

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

export interface PhotoStatusView {
  id: string;
  status: 'queued' | 'processing' | 'complete' | 'duplicate' | 'failed';
  duplicateOf: string | null;
  place: { name: string | null; countryName: string | null; countryCode: string | null } | null;
  error: { stage: string; code: string | null; reason: string } | null;
  file: { originalName: string | null } | null;
  [key: string]: unknown;
}

export interface CheckResult {
  checksum: string;
  sha256: string;
  exists: boolean;
  photoId?: string;
  status?: string;
}

export class ApiClient {
  constructor(
    private readonly baseUrl: string,
    private readonly key: string,
    private readonly timeoutMs = 120_000,
  ) {}

  private async call<T>(path: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<{ status: number; body: T; headers: Headers }> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method: init.method ?? 'GET',
        headers: { authorization: `Bearer ${this.key}`, ...(init.headers ?? {}) },
        body: init.body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new ApiError(0, 'unreachable', `cannot reach the API at ${this.baseUrl}: ${(err as Error).message}`);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? (JSON.parse(text) as unknown) : null;
    } catch {
      body = text;
    }
    if (res.status >= 400) {
      const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
      const retry = Number(res.headers.get('retry-after'));
      throw new ApiError(res.status, e?.code ?? 'http_error', e?.message ?? `HTTP ${res.status}`, Number.isFinite(retry) && retry > 0 ? retry : null);
    }
    return { status: res.status, body: body as T, headers: res.headers };
  }

  /** Which of these SHA-256 checksums this tenant already has (at most 1,000 per call). */
  async check(sha256s: string[]): Promise<CheckResult[]> {
    const { body } = await this.call<{ results: CheckResult[] }>('/v1/photos/check', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ checksums: sha256s }),
    });
    return body.results;
  }

  /** Uploads raw bytes with their checksum; 202 accepted, or 200 when the tenant already has them. */
  async upload(bytes: Buffer, opts: { filename: string; sha256: string }): Promise<{ id: string; status: string; duplicate: boolean }> {
    const { status, body } = await this.call<{ id: string; status: string; duplicate?: boolean }>('/v1/photos', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'x-filename': encodeURIComponent(opts.filename), 'x-content-sha256': opts.sha256 },
      body: bytes,
    });
    return { id: body.id, status: body.status, duplicate: status === 200 || body.duplicate === true };
  }

  async photo(id: string): Promise<PhotoStatusView> {
    return (await this.call<PhotoStatusView>(`/v1/photos/${encodeURIComponent(id)}`)).body;
  }

  async photos(opts: { status?: string; limit: number; cursor?: string }): Promise<{ items: PhotoStatusView[]; nextCursor: string | null }> {
    const q = new URLSearchParams({ limit: String(opts.limit) });
    if (opts.status) q.set('status', opts.status);
    if (opts.cursor) q.set('cursor', opts.cursor);
    return (await this.call<{ items: PhotoStatusView[]; nextCursor: string | null }>(`/v1/photos?${q}`)).body;
  }
}
