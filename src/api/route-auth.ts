import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError } from '../shared/errors.js';
import type { AdminGuard, Authenticator, RouteAuth } from './auth.js';
import { clientKey } from './client-address.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route: checked in onRequest, before any of the body is read. */
    auth?: RouteAuth;
    /** The route takes no body: one is refused (413) before it is read. */
    bodyless?: boolean;
  }
  interface FastifyRequest {
    /** The caller's tenant on `auth: 'tenant'` routes, set before the handler runs. */
    tenantId: string | null;
  }
}

/** A request body is coming (a Content-Length above 0, or chunked). */
function declaresBody(req: FastifyRequest): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Authenticates every request by its route's declared `auth` in onRequest, the first hook, so
 * an anonymous or wrong-key request is refused before its body is read: a client without a key
 * cannot make the API buffer anything. A route without a declaration fails at start-up.
 */
export function installRouteAuth(app: FastifyInstance, auth: Authenticator, admin: AdminGuard): void {
  app.decorateRequest('tenantId', null);

  app.addHook('onRoute', (route) => {
    const declared = (route.config as { auth?: RouteAuth } | undefined)?.auth;
    if (!declared) throw new Error(`route ${String(route.method)} ${route.url} declares no auth (config.auth: 'tenant' | 'admin' | 'none')`);
  });

  app.addHook('onRequest', async (req) => {
    const config = req.routeOptions.config;
    const client = clientKey(req.ip);
    // The not-found route declares nothing: it is anonymous, and its body limit is the small default.
    if (config.auth === 'tenant') req.tenantId = await auth.tenantFor(req.headers.authorization, client);
    else if (config.auth === 'admin') await admin.check(req.headers.authorization, client);
    if (config.bodyless && declaresBody(req)) throw new HttpError(413, 'payload_too_large', `${req.method} ${req.routeOptions.url ?? ''} takes no body`);
  });
}

/** The caller's tenant, as onRequest resolved it. */
export function tenantOf(req: FastifyRequest): string {
  if (!req.tenantId) throw new Error(`route ${req.routeOptions.url ?? req.url} is not declared auth: 'tenant'`);
  return req.tenantId;
}
