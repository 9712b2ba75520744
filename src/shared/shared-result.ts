/**
 * A result computed at most once per `ttlMs`: callers within that time get the last result, and
 * callers while it is being computed share that computation. A failed computation is not kept.
 * Used for /readyz, whose checks cost a query on each dependency: a flood of probes costs one
 * round of checks per second however many callers there are.
 */
export class SharedResult<T> {
  private inFlight: Promise<T> | null = null;
  private last: { value: T; at: number } | null = null;

  constructor(
    private readonly compute: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.last && this.now() - this.last.at < this.ttlMs) return Promise.resolve(this.last.value);
    this.inFlight ??= (async () => {
      try {
        const value = await this.compute();
        this.last = { value, at: this.now() };
        return value;
      } finally {
        this.inFlight = null;
      }
    })();
    return this.inFlight;
  }
}
