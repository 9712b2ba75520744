import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeMode = 'towns' | 'empty' | 'quota19' | 'auth10' | 'http500' | 'http400' | 'garbage' | 'slow';

/**
 * A stand-in for api.geonames.org's findNearbyPlaceNameJSON on 127.0.0.1: a real HTTP server, so
 * the geocoder's fetch, timeouts and error paths run for real. It enforces its own call limit per
 * window, like the service, and records whether anyone ever went over it.
 */
export class FakeGeoNames {
  mode: FakeMode = 'towns';
  /** Rows to answer with instead of the generated town; gets the query's lat/lng. */
  rows: ((lat: number, lng: number) => unknown[]) | null = null;
  calls = 0;
  limitExceeded = false;
  readonly queries: { lat: number; lng: number; username: string | null; radius: string | null; at: number }[] = [];
  private windowStart = 0;
  private inWindow = 0;
  private readonly ids = new Map<string, number>();
  private readonly server = createServer((req, res) => this.handle(req, res));
  url = '';

  constructor(private readonly limit: { calls: number; windowMs: number }) {}

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname !== '/findNearbyPlaceNameJSON') {
      res.writeHead(404).end();
      return;
    }
    this.calls++;
    const now = Date.now();
    if (now - this.windowStart >= this.limit.windowMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    this.inWindow++;
    const lat = Number(url.searchParams.get('lat'));
    const lng = Number(url.searchParams.get('lng'));
    this.queries.push({ lat, lng, username: url.searchParams.get('username'), radius: url.searchParams.get('radius'), at: now });
    if (this.inWindow > this.limit.calls) {
      this.limitExceeded = true;
      return json(res, { status: { message: 'the hourly limit of 1000 credits for demo has been exceeded', value: 19 } });
    }
    switch (this.mode) {
      case 'quota19':
        return json(res, { status: { message: 'the hourly limit of 1000 credits for demo has been exceeded', value: 19 } });
      case 'auth10':
        return json(res, { status: { message: 'user account not enabled to use the free webservice', value: 10 } });
      case 'http500':
        res.writeHead(503).end('busy');
        return;
      case 'http400':
        res.writeHead(400).end('bad request');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"geonames": [');
        return;
      case 'slow':
        setTimeout(() => json(res, { geonames: [] }), 2_000).unref();
        return;
      case 'empty':
        return json(res, { geonames: [] });
      case 'towns':
        return json(res, { geonames: this.rows ? this.rows(lat, lng) : [this.town(lat, lng)] });
    }
  }

  /** One town 0.01° north of each distinct query point, with the field types the real service uses (strings for numbers). */
  private town(lat: number, lng: number): Record<string, unknown> {
    const key = `${lat},${lng}`;
    const id = this.ids.get(key) ?? 1_000_000 + this.ids.size;
    this.ids.set(key, id);
    return {
      geonameId: id,
      name: `Town ${id}`,
      toponymName: `Town ${id}`,
      lat: (lat + 0.01).toFixed(5),
      lng: lng.toFixed(5),
      distance: '1.11195',
      countryCode: 'IT',
      countryName: 'Italy',
      adminCode1: '16',
      adminName1: 'Tuscany',
      fcl: 'P',
      fcode: 'PPL',
      population: 5000,
    };
  }
}

function json(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json;charset=UTF-8' }).end(JSON.stringify(body));
}
