import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP server on 127.0.0.1 serving what batch downloads meet in the wild: images, 404s,
 * 410s, slow answers, bodies that are not images, truncated JPEGs, 503s that clear up, redirect
 * chains and redirects to forbidden addresses; and URL lists. Counts requests per path.
 *
 *   /img/<name>                 a registered body (image/jpeg)
 *   /missing/<x>, /gone/<x>     404, 410
 *   /slow/<ms>/<name>           the body after <ms>
 *   /flaky/<n>/<name>           503 for the first <n> requests of that path, then the body
 *   /redirect/<n>/<name>        <n> 302 hops, then /img/<name>
 *   /redirect-to/<encoded URL>  302 to that URL
 *   /list/<name>                a registered list (text or JSON)
 */
export class FakeOrigin {
  private server: Server | null = null;
  private readonly bodies = new Map<string, Buffer>();
  private readonly lists = new Map<string, { body: Buffer | (() => AsyncIterable<string>); type: string }>();
  readonly hits = new Map<string, number>();
  origin = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  add(name: string, body: Buffer): string {
    this.bodies.set(name, body);
    return `${this.origin}/img/${name}`;
  }

  url(path: string): string {
    return `${this.origin}${path}`;
  }

  addList(name: string, body: Buffer | (() => AsyncIterable<string>), type = 'text/plain'): string {
    this.lists.set(name, { body, type });
    return `${this.origin}/list/${name}`;
  }

  hitsOf(path: string): number {
    return this.hits.get(path) ?? 0;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
    const parts = path.split('/').filter(Boolean);
    const send = (name: string) => {
      const body = this.bodies.get(name);
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
    };
    try {
      switch (parts[0]) {
        case 'img':
          return send(parts.slice(1).join('/'));
        case 'missing':
          return void res.writeHead(404).end('not found');
        case 'gone':
          return void res.writeHead(410).end('gone');
        case 'slow':
          await new Promise((r) => setTimeout(r, Number(parts[1])));
          return send(parts.slice(2).join('/'));
        case 'flaky':
          if (this.hitsOf(path) <= Number(parts[1])) return void res.writeHead(503).end('try later');
          return send(parts.slice(2).join('/'));
        case 'redirect': {
          const n = Number(parts[1]);
          const rest = parts.slice(2).join('/');
          return void res.writeHead(302, { location: n > 1 ? `/redirect/${n - 1}/${rest}` : `/img/${rest}` }).end();
        }
        case 'redirect-to':
          return void res.writeHead(302, { location: decodeURIComponent(parts[1] ?? '') }).end();
        case 'list': {
          const list = this.lists.get(parts.slice(1).join('/'));
          if (!list) return void res.writeHead(404).end();
          res.writeHead(200, { 'content-type': list.type });
          if (Buffer.isBuffer(list.body)) return void res.end(list.body);
          for await (const chunk of list.body()) {
            if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
          }
          return void res.end();
        }
        default:
          res.writeHead(404).end();
      }
    } catch {
      res.destroy();
    }
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
