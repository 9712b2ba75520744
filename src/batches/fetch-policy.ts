import { isIP } from 'node:net';
import { z } from 'zod';
import type { Config } from '../shared/config.js';
import { systemResolver, type NetPolicy, type Resolver } from '../shared/net/index.js';

/** What every fetch of a customer's URL (images, URL lists, their batch API) may reach, and how names resolve. */
export interface FetchSetup {
  policy: NetPolicy;
  resolve: Resolver;
}

/**
 * Public addresses only, unless FETCH_ALLOW_LOOPBACK (tests; refused in production). In tests,
 * PHOTOPIPE_TEST_DNS (honoured only with NODE_ENV=test) answers chosen names without a DNS server:
 * `{"private.test": ["10.1.2.3"], "rebind.test": ["93.184.216.34", "10.0.0.5"]}`; a name with
 * several answers gives them in turn (the last one repeats), which is how a rebinding DNS behaves
 * between the check of a URL and the connection.
 */
export function fetchSetup(config: Pick<Config, 'FETCH_ALLOW_LOOPBACK' | 'NODE_ENV'>, env: NodeJS.ProcessEnv = process.env): FetchSetup {
  return { policy: { allowLoopback: config.FETCH_ALLOW_LOOPBACK }, resolve: testResolver(config, env) ?? systemResolver };
}

const testDnsSchema = z.record(z.string(), z.array(z.string().refine((a) => isIP(a) !== 0, 'an IP address')).min(1));

function testResolver(config: Pick<Config, 'NODE_ENV'>, env: NodeJS.ProcessEnv): Resolver | null {
  const raw = env.PHOTOPIPE_TEST_DNS;
  if (!raw) return null;
  if (config.NODE_ENV !== 'test') throw new Error('PHOTOPIPE_TEST_DNS is set but NODE_ENV is not "test": refusing to answer DNS from the environment');
  const table = testDnsSchema.parse(JSON.parse(raw));
  const asked = new Map<string, number>();
  return async (hostname) => {
    const answers = table[hostname.toLowerCase()];
    if (!answers) return systemResolver(hostname);
    const n = asked.get(hostname) ?? 0;
    asked.set(hostname, n + 1);
    const address = answers[Math.min(n, answers.length - 1)]!;
    return [{ address, family: isIP(address) }];
  };
}
