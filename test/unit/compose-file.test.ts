import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { envSchema, loadConfig } from '../../src/shared/config.js';
import { buildTopology } from '../../src/queues/topology.js';
import { WORKER_ROLES } from '../../src/workers/roles.js';

/**
 * docker-compose.yml and what it mounts (infra/compose, infra/prometheus, infra/grafana,
 * infra/rabbitmq, infra/postgres), checked against the code without Docker: the roles, the
 * configuration schema, the production refusals, the RabbitMQ topology and the metric names.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

type Obj = Record<string, unknown>;
interface Service extends Obj {
  image?: string;
  build?: unknown;
  pull_policy?: string;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  ports?: unknown[];
  container_name?: string;
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  volumes?: string[];
  healthcheck?: { test: string[] };
  user?: string;
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service>; volumes: Obj };
const services = compose.services;
const PHOTOPIPE_IMAGE = 'photopipe:local';
const appServices = Object.entries(services).filter(([, s]) => s.image === PHOTOPIPE_IMAGE);
const schemaKeys = new Set(Object.keys(envSchema.shape));

/** .env.example as the variables docker compose would read from .env. */
const dotenv: Record<string, string> = Object.fromEntries(
  read('.env.example')
    .split('\n')
    .filter((l) => /^[A-Z][A-Z0-9_]*=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
);

/** Compose's interpolation: ${X}, ${X:-default}, ${X-default}, ${X:?message}, ${X?message}, $$. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (whole, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (whole === '$$') return '$';
    const v = vars[name!];
    const unset = op?.startsWith(':') ? v === undefined || v === '' : v === undefined;
    if (op?.endsWith('?') && unset) throw new Error(`required variable ${name} is not set: ${arg}`);
    if (op?.endsWith('-') && unset) return arg ?? '';
    return v ?? '';
  });
}

function requiredVariables(text: string): Set<string> {
  return new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):?\?/g)].map((m) => m[1]!));
}

const asArray = (c: string[] | string | undefined): string[] => (Array.isArray(c) ? c : c ? c.split(/\s+/) : []);

function envOf(s: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(v === null ? '' : String(v), dotenv)]));
}

function durationSeconds(d: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  assert.ok(m, `duration ${d}`);
  return Number(m[1]) / (m[2] === 'ms' ? 1000 : m[2] === 'm' ? 1 / 60 : 1);
}

describe('docker-compose.yml', () => {
  it('no longer uses MinIO, whose images were deleted from Docker Hub', () => {
    for (const [name, s] of Object.entries(services)) {
      assert.ok(!/minio/i.test(s.image ?? ''), `${name} uses ${s.image}`);
      assert.ok(!/minio/i.test(name), `service ${name}`);
    }
    assert.ok(!/minio\/(minio|mc)/.test(read('docker-compose.yml')));
  });

  it('pins every image to a release (no latest, no bare major tags), except the locally built photopipe image', () => {
    for (const [name, s] of Object.entries(services)) {
      assert.ok(s.image, `${name} has no image`);
      if (s.image === PHOTOPIPE_IMAGE) {
        assert.equal(s.pull_policy, 'never', `${name}: photopipe:local is built here, never pulled`);
        continue;
      }
      const m = /^(?<repo>[a-z0-9./_-]+):(?<tag>[^@\s]+)$/.exec(s.image);
      assert.ok(m?.groups, `${name}: ${s.image} has no tag`);
      const tag = m.groups.tag!;
      assert.notEqual(tag, 'latest', `${name}: ${s.image}`);
      assert.match(tag, /^v?\d+\.\d+(\.\d+)?([-_.][a-z0-9.-]+)?$/, `${name}: ${s.image} is not a release tag`);
    }
    assert.ok(appServices.some(([, s]) => s.build), 'one photopipe service builds photopipe:local');
  });

  it('runs one container per role: api, migrate, reconciler and a worker for every pipeline stage and service role', () => {
    const commands = new Map(appServices.map(([name, s]) => [name, asArray(s.command)]));
    assert.deepEqual(commands.get('api'), ['api']);
    assert.deepEqual(commands.get('migrate'), ['migrate']);
    assert.deepEqual(commands.get('reconciler'), ['reconciler']);
    for (const role of WORKER_ROLES) assert.deepEqual(commands.get(`worker-${role}`), ['worker', '--role', role], `worker-${role}`);
    for (const [name, cmd] of commands) {
      assert.ok(['api', 'migrate', 'reconciler', 'worker'].includes(cmd[0]!), `${name}: unknown role ${cmd[0]}`);
      if (cmd[0] === 'worker') {
        assert.equal(cmd[1], '--role', name);
        for (const role of cmd[2]!.split(',')) assert.ok(WORKER_ROLES.includes(role), `${name}: ${role} is not a worker role`);
        assert.equal(name, `worker-${cmd[2]}`, 'worker services are named worker-<role>');
      }
    }
  });

  it('lets workers and the reconciler scale (--scale worker-frame=4): no container_name, no host ports', () => {
    for (const [name, s] of appServices) {
      assert.equal(s.container_name, undefined, `${name} has container_name`);
      if (name !== 'api') assert.equal(s.ports, undefined, `${name} publishes ports`);
    }
    for (const [name, s] of Object.entries(services)) assert.equal(s.container_name, undefined, `${name} has container_name`);
  });

  it('gives photopipe only variables its configuration schema knows', () => {
    for (const [name, s] of appServices) {
      for (const key of Object.keys(s.environment ?? {})) assert.ok(schemaKeys.has(key), `${name}: ${key} is not in envSchema (src/shared/config.ts)`);
    }
  });

  it('starts every photopipe process with NODE_ENV=production and a configuration production accepts (no postgres superuser, guest or S3RVER)', () => {
    for (const [name, s] of appServices) {
      const env = envOf(s);
      assert.equal(env.NODE_ENV, 'production', name);
      const config = loadConfig(env); // throws on development defaults
      assert.equal(config.NODE_ENV, 'production');
      assert.ok(env.S3_ENDPOINT && env.DATABASE_URL && env.AMQP_URL && env.REDIS_URL, name);
    }
  });

  it('connects with the least privileged identity for each job', () => {
    for (const [name, s] of appServices) {
      const env = envOf(s);
      const dbUser = new URL(env.DATABASE_URL!).username;
      assert.equal(dbUser, name === 'migrate' ? 'photopipe_owner' : 'photopipe_app', `${name} connects to Postgres as ${dbUser}`);
      assert.equal(new URL(env.AMQP_URL!).username, 'photopipe', name);
      assert.equal(env.S3_ACCESS_KEY_ID, dotenv.SEAWEEDFS_APP_ACCESS_KEY, `${name} uses the app's scoped S3 key`);
      assert.notEqual(env.S3_ACCESS_KEY_ID, dotenv.SEAWEEDFS_ADMIN_ACCESS_KEY, name);
      assert.equal(env.S3_OBJECT_ACLS, 'false', 'renditions are public by name, not by object ACL');
    }
    // Only the one-shots see the root credentials.
    for (const [name, s] of Object.entries(services)) {
      const text = JSON.stringify(s.environment ?? {});
      if (/POSTGRES_SUPERUSER_PASSWORD/.test(text)) assert.ok(['postgres', 'postgres-init'].includes(name), `${name} sees the Postgres superuser password`);
      if (/SEAWEEDFS_ADMIN_/.test(text)) assert.equal(name, 'seaweedfs', `${name} sees the S3 root key`);
      if (/RABBITMQ_ADMIN_PASSWORD/.test(text)) assert.ok(['rabbitmq', 'rabbitmq-init'].includes(name), `${name} sees the RabbitMQ admin password`);
    }
  });

  it('takes every secret from .env, with no default in the file, and .env.example names each of them', () => {
    const text = read('docker-compose.yml');
    const required = requiredVariables(text);
    for (const secret of ['POSTGRES_SUPERUSER_PASSWORD', 'POSTGRES_OWNER_PASSWORD', 'POSTGRES_APP_PASSWORD', 'RABBITMQ_ADMIN_PASSWORD', 'RABBITMQ_APP_PASSWORD', 'SEAWEEDFS_ADMIN_ACCESS_KEY', 'SEAWEEDFS_ADMIN_SECRET_KEY', 'SEAWEEDFS_APP_ACCESS_KEY', 'SEAWEEDFS_APP_SECRET_KEY', 'GRAFANA_ADMIN_PASSWORD']) {
      assert.ok(required.has(secret), `${secret} must be required (\${${secret}:?...}), not defaulted`);
      assert.doesNotMatch(text, new RegExp(`\\$\\{${secret}:?-`), `${secret} has a default`);
    }
    for (const name of required) assert.ok(dotenv[name], `.env.example does not set ${name}`);
    for (const [name, value] of Object.entries(dotenv)) {
      if (/PASSWORD|SECRET|_KEY$/.test(name) && required.has(name)) assert.match(value, /^dev-only-/, `${name}: example values are marked dev-only`);
    }
    // Missing .env: compose refuses to start instead of using a default password.
    assert.throws(() => interpolate(String(services.postgres!.environment!.POSTGRES_PASSWORD), {}), /required variable POSTGRES_SUPERUSER_PASSWORD/);
  });

  it('orders start-up: roles, migrations as the owner, grants, then the app; broker user and bucket before the app', () => {
    const dep = (name: string) => services[name]!.depends_on ?? {};
    assert.equal(dep('migrate')['postgres-init']?.condition, 'service_completed_successfully');
    assert.equal(dep('postgres-grants').migrate?.condition, 'service_completed_successfully');
    for (const [name] of appServices.filter(([n]) => n !== 'migrate')) {
      for (const oneShot of ['postgres-grants', 'rabbitmq-init', 's3-init']) {
        assert.equal(dep(name)[oneShot]?.condition, 'service_completed_successfully', `${name} waits for ${oneShot}`);
      }
    }
    assert.equal(dep('s3-init').seaweedfs?.condition, 'service_healthy');
    assert.equal(dep('rabbitmq-init').rabbitmq?.condition, 'service_healthy');
  });

  it('gives every process longer to stop than SHUTDOWN_GRACE_MS', () => {
    for (const [name, s] of appServices) {
      const graceMs = loadConfig(envOf(s)).SHUTDOWN_GRACE_MS;
      assert.ok(s.stop_grace_period, name);
      assert.ok(durationSeconds(s.stop_grace_period) * 1000 > graceMs + 2_000, `${name}: stop_grace_period ${s.stop_grace_period} vs SHUTDOWN_GRACE_MS ${graceMs}`);
    }
  });

  it('health-checks the API on PORT and the other long-running roles on their metrics port', () => {
    const api = services.api!;
    assert.match(api.healthcheck!.test.join(' '), new RegExp(`127\\.0\\.0\\.1:${loadConfig(envOf(api)).PORT}/healthz`));
    for (const [name, s] of appServices.filter(([n]) => n.startsWith('worker-') || n === 'reconciler')) {
      assert.match(s.healthcheck?.test.join(' ') ?? '', /127\.0\.0\.1:9464\/healthz/, name);
    }
    const shape = envSchema.shape as Record<string, unknown>;
    if ('METRICS_PORT' in shape) assert.equal((loadConfig({}) as unknown as Record<string, unknown>).METRICS_PORT, 9464, 'METRICS_PORT default');
  });
});

describe('RabbitMQ in compose', () => {
  const script = read('infra/compose/rabbitmq-init.sh');
  const pattern = /resources='([^']+)'/.exec(script)?.[1];

  it('limits the app user to photopipe resources: every exchange and queue of the topology, nothing else', () => {
    assert.ok(pattern);
    const re = new RegExp(pattern);
    const t = buildTopology(loadConfig({}));
    for (const name of [...t.exchanges.map((e) => e.name), ...t.queues.map((q) => q.name)]) assert.match(name, re);
    for (const name of ['amq.default', '', 'amq.direct', 'other', 'photopipex', 'xphotopipe.frame']) assert.doesNotMatch(name, re, name);
    assert.match(script, /\\"tags\\":\\"\\"/, 'no management or administrator tag');
  });

  it('enables the management and Prometheus plugins', () => {
    const plugins = read('infra/rabbitmq/enabled_plugins');
    assert.match(plugins, /rabbitmq_management/);
    assert.match(plugins, /rabbitmq_prometheus/);
    assert.ok(services.rabbitmq!.volumes!.some((v) => v.startsWith('./infra/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins')));
  });
});

describe('S3 (SeaweedFS) in compose', () => {
  const start = read('infra/compose/seaweedfs/start.sh');
  const vars = { SEAWEEDFS_ADMIN_ACCESS_KEY: 'a', SEAWEEDFS_ADMIN_SECRET_KEY: 'b', SEAWEEDFS_APP_ACCESS_KEY: 'c', SEAWEEDFS_APP_SECRET_KEY: 'd', S3_BUCKET: 'photopipe' };
  const json = /<<JSON\n([\s\S]*?)\nJSON\n/.exec(start)?.[1] ?? '';
  const identities = (JSON.parse(json.replace(/\$([A-Z0-9_]+)/g, (_, n: keyof typeof vars) => vars[n])) as { identities: { name: string; actions: string[] }[] }).identities;
  const byName = new Map(identities.map((i) => [i.name, i.actions]));
  /** SeaweedFS matches an action with a path like an IAM resource: `*` is any run of characters, `/` included. */
  const allows = (actions: string[], action: string, path: string) =>
    actions.some((a) => (/[*?]/.test(a) ? new RegExp(`^${a.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`).test(`${action}:${path}`) : a === `${action}:${path.split('/')[0]}` || a === action));

  it('lets anonymous clients read the public renditions and nothing else', () => {
    const anon = byName.get('anonymous')!;
    assert.ok(allows(anon, 'Read', 'photopipe/acme/0b7c/framed.jpg'));
    assert.ok(allows(anon, 'Read', 'photopipe/acme/0b7c/thumbnail.jpg'));
    for (const ext of ['jpg', 'webp', 'png', 'avif']) assert.ok(allows(anon, 'Read', `photopipe/acme/0b7c/batch.${ext}`), `batch output .${ext}`);
    for (const key of ['acme/0b7c/original.jpg', 'acme/0b7c/original.heic', '_parked/0b7c/raw', '_parked/0b7c/framed', '_parked/0b7c/thumbnail', 'acme/0b7c/framed.jpg.bak']) {
      assert.ok(!allows(anon, 'Read', `photopipe/${key}`), key);
    }
    assert.ok(!allows(anon, 'List', 'photopipe'));
    assert.ok(!allows(anon, 'Write', 'photopipe/acme/0b7c/framed.jpg'));
  });

  it("scopes the app's key to its bucket: read, write, list; no admin, no other bucket", () => {
    const app = byName.get('photopipe')!;
    assert.deepEqual([...app].sort(), ['List:photopipe', 'Read:photopipe', 'Write:photopipe']);
    assert.ok(!allows(app, 'Read', 'other-bucket/x'));
    assert.ok(byName.get('admin')!.includes('Admin'));
  });

  it('creates the bucket in a one-shot and checks the anonymous rules from outside', () => {
    const init = read('infra/compose/seaweedfs/s3-init.sh');
    assert.match(init, /s3\.bucket\.create -name \$S3_BUCKET/);
    assert.match(init, /expect 403 's3-init-check\/check\/original\.jpg'/);
    assert.match(init, /expect 404 's3-init-check\/check\/framed\.jpg'/);
    assert.ok(services['s3-init']!.volumes!.some((v) => v.includes('s3-init.sh')));
    assert.ok(services.seaweedfs!.volumes!.some((v) => v.includes('start.sh')));
    assert.deepEqual(services.seaweedfs!.ports, ['127.0.0.1:8333:8333']);
  });
});

describe('PostgreSQL roles', () => {
  it('creates an owner role and an app role (no superuser) and keeps the app off the migrations table', () => {
    const roles = read('infra/postgres/roles.sql');
    assert.match(roles, /CREATE ROLE photopipe_owner LOGIN NOSUPERUSER/);
    assert.match(roles, /CREATE ROLE photopipe_app LOGIN NOSUPERUSER/);
    assert.match(roles, /GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO photopipe_app/);
    const grants = read('infra/postgres/grants.sql');
    assert.match(grants, /REVOKE ALL ON TABLE pgmigrations FROM photopipe_app/);
    const statements = (roles + grants).replace(/--.*$/gm, '');
    assert.doesNotMatch(statements, /GRANT ALL|TRUNCATE|(?<!NO)CREATEROLE|(?<!NO)SUPERUSER|(?<!NO)CREATEDB/);
  });
});

describe('Prometheus and Grafana in compose', () => {
  const prom = parse(read('infra/prometheus/prometheus.yml')) as { scrape_configs: { job_name: string; metrics_path?: string; dns_sd_configs?: { names: string[]; type: string; port: number }[]; static_configs?: { targets: string[] }[] }[] };
  const job = (name: string) => prom.scrape_configs.find((j) => j.job_name === name)!;

  it('scrapes every replica of every photopipe service through DNS (type A) on the right port', () => {
    const workers = Object.keys(services).filter((n) => n.startsWith('worker-'));
    const w = job('photopipe-workers').dns_sd_configs![0]!;
    assert.deepEqual([...w.names].sort(), [...workers].sort(), 'prometheus.yml lists every worker-<stage> service');
    assert.equal(w.type, 'A');
    assert.equal(w.port, 9464);
    const api = job('photopipe-api').dns_sd_configs![0]!;
    assert.deepEqual(api.names, ['api']);
    assert.equal(api.port, loadConfig(envOf(services.api!)).PORT);
    assert.deepEqual(job('photopipe-reconciler').dns_sd_configs![0]!.names, ['reconciler']);
    assert.equal(job('photopipe-reconciler').dns_sd_configs![0]!.port, 9464);
    assert.deepEqual(job('rabbitmq').static_configs![0]!.targets, ['rabbitmq:15692']);
    assert.ok(prom.scrape_configs.every((j) => (j.metrics_path ?? '/metrics').startsWith('/metrics')));
  });

  const CONTRACT = new Set([
    'photopipe_stage_messages_total', 'photopipe_stage_duration_seconds', 'photopipe_stage_in_flight', 'photopipe_stage_failures_total',
    'photopipe_http_uploads_total', 'photopipe_upload_bytes', 'photopipe_redis_blob_bytes', 'photopipe_queue_messages',
    'photopipe_queue_consumers', 'photopipe_dead_letters', 'photopipe_reconciler_passes_total', 'photopipe_reconciler_republished_total',
  ]);
  const dir = 'infra/grafana/dashboards';
  const dashboards = readdirSync(join(ROOT, dir)).filter((f) => f.endsWith('.json')).map((f) => ({ file: f, json: JSON.parse(read(`${dir}/${f}`)) as { uid: string; panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[] } }));
  const exprs = dashboards.flatMap((d) => d.json.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)));

  it('provisions a Prometheus data source that every dashboard panel uses', () => {
    const ds = parse(read('infra/grafana/provisioning/datasources/prometheus.yaml')) as { datasources: { uid: string; url: string }[] };
    assert.equal(ds.datasources[0]!.url, 'http://prometheus:9090');
    for (const d of dashboards) {
      for (const p of d.json.panels.filter((x) => x.type !== 'row')) assert.equal(p.datasource?.uid, ds.datasources[0]!.uid, `${d.file}: ${p.title}`);
    }
  });

  it('dashboards use only the metric names photopipe exports, and show throughput, latency, queues, DLQ, errors, CPU and RSS', () => {
    for (const e of exprs) {
      for (const m of e.match(/\bphotopipe_[a-z_]+/g) ?? []) {
        const family = m.replace(/_(bucket|sum|count)$/, '');
        assert.ok(CONTRACT.has(family), `unknown metric ${m} in ${e}`);
      }
      assert.equal(e.split('(').length, e.split(')').length, `unbalanced parentheses: ${e}`);
    }
    const all = exprs.join('\n');
    assert.match(all, /rate\(photopipe_stage_messages_total\{outcome="succeeded"/);
    assert.match(all, /histogram_quantile\(0\.95, sum by \(stage, le\) \(rate\(photopipe_stage_duration_seconds_bucket/);
    assert.match(all, /photopipe_queue_messages\{state="ready"/);
    assert.match(all, /photopipe_queue_messages\{state="unacked"/);
    assert.match(all, /photopipe_dead_letters/);
    assert.match(all, /photopipe_stage_failures_total/);
    assert.match(all, /process_cpu_seconds_total/);
    assert.match(all, /process_resident_memory_bytes/);
  });

  it('mounts the dashboards, and downloads RabbitMQ\'s overview at deploy time without keeping a copy here', () => {
    const grafana = services.grafana!;
    assert.ok(grafana.volumes!.includes('./infra/grafana/dashboards:/var/lib/grafana/dashboards/photopipe:ro'));
    assert.ok(grafana.volumes!.some((v) => v.startsWith('grafana-dashboards-rabbitmq:')));
    assert.equal(grafana.depends_on!['grafana-dashboards']!.condition, 'service_completed_successfully');
    const script = read('infra/compose/grafana-dashboards.sh');
    assert.match(script, /revision="\$\{RABBITMQ_DASHBOARD_REVISION:-\d+\}"/, 'revision-pinned');
    assert.match(script, /sha256sum/);
    for (const d of dashboards) assert.notEqual(d.json.uid, undefined);
    assert.ok(!dashboards.some((d) => /rabbitmq/i.test(d.file)), 'the RabbitMQ dashboard is not copied into the repository');
  });
});
