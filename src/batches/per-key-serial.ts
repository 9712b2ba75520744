/**
 * Runs work per key one at a time, coalescing: a run asked for while one is in progress makes the
 * current run go once more when it ends (however many were asked), and the asker's promise
 * settles with that last run. For passes that look at the whole state of a key, where N requests
 * during a pass need one more pass, not N.
 */
export class PerKeySerial {
  private readonly running = new Map<string, { again: boolean; done: Promise<void> }>();

  run(key: string, work: () => Promise<void>): Promise<void> {
    const current = this.running.get(key);
    if (current) {
      current.again = true;
      return current.done;
    }
    const entry = { again: false, done: Promise.resolve() };
    entry.done = (async () => {
      try {
        do {
          entry.again = false;
          await work();
        } while (entry.again);
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, entry);
    return entry.done;
  }
}
