import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { envSchema, loadConfig } from '../../src/shared/config.js';
import { PIPELINE } from '../../src/pipeline/photo-pipeline.js';
import { buildTopology } from '../../src/queues/topology.js';
import { GENERATED, K8S_DIR } from '../../infra/k8s/generate.js';
import { OTHER_ROLES, STAGE_ROLES } from '../../infra/k8s/roles.js';
import { WORKER_ROLES } from '../../src/workers/roles.js';
import { SERVICE_ROLE_NAMES } from '../../src/workers/service-roles.js';

/**
 * infra/k8s, validated without a cluster: each overlay is rendered the way `kubectl apply -k`
 * would (a small kustomize: resources, components, generators, strategic-merge patches,
 * namespace, images), every object is validated against the Kubernetes (1.3x) and KEDA (2.10)
 * schemas of kubernetes-models, and the result is checked against the code: roles, queue names,
 * ports, probes, configuration names, grace periods, images, security context.
 */

type Obj = Record<string, unknown>;
interface K8sObject extends Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

const ROOT = join(import.meta.dirname, '..', '..');
const STAGES: readonly string[] = PIPELINE.stages;
const schemaKeys = new Set(Object.keys(envSchema.shape));

// ------------------------------------------------------------------ a small kustomize

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Strategic merge as kustomize applies it to these manifests: maps merge, lists of named items merge by name, other lists are replaced. */
function merge(base: unknown, patch: unknown): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && [...base, ...patch].every((x) => isObj(x) && typeof x.name === 'string')) {
    const out = base.map((b) => {
      const p = (patch as Obj[]).find((x) => x.name === (b as Obj).name);
      return p ? merge(b, p) : b;
    });
    for (const p of patch as Obj[]) if (!base.some((b) => (b as Obj).name === p.name)) out.push(p);
    return out;
  }
  return patch;
}

function readYamlDocs(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

/** KEY=VALUE lines; the committed `.example` stands in for a secrets file nobody commits. */
function readEnvFile(file: string): Record<string, string> {
  const path = existsSync(file) ? file : `${file}.example`;
  assert.ok(existsSync(path), `${relative(ROOT, file)} (or its .example) is missing`);
  return Object.fromEntries(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

interface Kustomization {
  kind?: string;
  resources?: string[];
  components?: string[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  patches?: { path: string }[];
  secretGenerator?: { name: string; envs?: string[] }[];
  configMapGenerator?: { name: string; envs?: string[] }[];
}

function render(dir: string): K8sObject[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
  let objects: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const path = join(dir, r);
    objects.push(...(statSync(path).isDirectory() ? render(path) : readYamlDocs(path)));
  }
  for (const c of k.components ?? []) objects.push(...render(join(dir, c)));
  for (const g of k.configMapGenerator ?? []) {
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name }, data: Object.assign({}, ...(g.envs ?? []).map((e) => readEnvFile(join(dir, e)))) as Obj });
  }
  for (const g of k.secretGenerator ?? []) {
    objects.push({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: g.name }, stringData: Object.assign({}, ...(g.envs ?? []).map((e) => readEnvFile(join(dir, e)))) as Obj });
  }
  for (const p of k.patches ?? []) {
    for (const patch of readYamlDocs(join(dir, p.path))) {
      const i = objects.findIndex((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      assert.ok(i >= 0, `${relative(ROOT, join(dir, p.path))}: no ${patch.kind} ${patch.metadata.name} to patch`);
      objects[i] = merge(objects[i], patch) as K8sObject;
    }
  }
  if (k.namespace) {
    objects = objects.map((o) => (o.kind === 'Namespace' ? o : { ...o, metadata: { ...o.metadata, namespace: k.namespace } }));
  }
  for (const img of k.images ?? []) {
    for (const c of objects.flatMap(containersOf)) {
      const [name, tag] = splitImage(c.image);
      if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? tag}`;
    }
  }
  return objects;
}

// ------------------------------------------------------------------ helpers over rendered objects

interface Probe { httpGet?: { path: string; port: string | number } }
interface Container extends Obj {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
}
interface PodSpec extends Obj {
  containers: Container[];
  initContainers?: Container[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; seccompProfile?: { type: string } };
}

function podSpecOf(o: K8sObject): PodSpec | undefined {
  if (o.kind === 'Deployment' || o.kind === 'Job') return ((o.spec as Obj).template as Obj).spec as PodSpec;
  return undefined;
}
function containersOf(o: K8sObject): Container[] {
  const s = podSpecOf(o);
  return s ? [...(s.initContainers ?? []), ...s.containers] : [];
}
function splitImage(image: string): [string, string | undefined] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
}
const isPhotopipe = (c: Container) => splitImage(c.image)[0].endsWith('photopipe');

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `no ${kind} ${name}`);
  return o;
}
function dataOf(o: K8sObject): Record<string, string> {
  return { ...((o.data as Record<string, string> | undefined) ?? {}), ...((o.stringData as Record<string, string> | undefined) ?? {}) };
}

/**
 * The environment a photopipe container starts with (ConfigMaps and Secrets resolved). The base
 * has no Secrets (overlays make them): there, Secret references are skipped.
 */
function environmentOf(objects: K8sObject[], c: Container): Record<string, string> {
  const hasSecrets = objects.some((o) => o.kind === 'Secret');
  const source = (kind: 'ConfigMap' | 'Secret', name: string) => (kind === 'Secret' && !hasSecrets ? {} : dataOf(find(objects, kind, name)));
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, source('ConfigMap', from.configMapRef.name));
    if (from.secretRef) Object.assign(env, source('Secret', from.secretRef.name));
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
    if (ref) {
      if (e.valueFrom?.secretKeyRef && !hasSecrets) continue;
      const v = source(e.valueFrom?.secretKeyRef ? 'Secret' : 'ConfigMap', ref.name)[ref.key];
      assert.ok(v !== undefined, `${c.name}: ${ref.name} has no key ${ref.key}`);
      env[e.name] = v;
    }
  }
  return env;
}

/** The values a process reads from this environment (production's refusals are checked on the overlays, with their Secrets). */
const settings = (env: Record<string, string>) => loadConfig({ ...env, NODE_ENV: 'development' });

function portNumber(c: Container, port: string | number): number {
  if (typeof port === 'number') return port;
  const p = c.ports?.find((x) => x.name === port);
  assert.ok(p, `${c.name}: no port named ${port}`);
  return p.containerPort;
}

function cpuMillis(q: string): number {
  return q.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000;
}
function memBytes(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(q);
  assert.ok(m, q);
  return Number(m[1]) * (m[2] === 'Gi' ? 2 ** 30 : m[2] === 'Mi' ? 2 ** 20 : m[2] === 'Ki' ? 2 ** 10 : 1);
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Namespace': Namespace,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
};

// ------------------------------------------------------------------ the checks

const OVERLAYS = ['overlays/example'];

describe('infra/k8s: generated files', () => {
  it('are up to date with infra/k8s/roles.ts and the pipeline (run `npx tsx infra/k8s/generate.ts`)', () => {
    for (const [file, renderFile] of Object.entries(GENERATED)) {
      assert.equal(readFileSync(join(K8S_DIR, file), 'utf8'), renderFile(), `infra/k8s/${file} is stale: run npx tsx infra/k8s/generate.ts`);
    }
  });

  it('have an entry in roles.ts for every stage of the pipeline', () => {
    for (const stage of STAGES) assert.ok(STAGE_ROLES[stage], `infra/k8s/roles.ts: no entry for stage ${stage}`);
  });
});

for (const overlay of ['base', ...OVERLAYS]) {
  describe(`infra/k8s/${overlay}`, () => {
    const objects = render(join(K8S_DIR, overlay));

    it('validates every object against the Kubernetes and KEDA schemas', () => {
      assert.ok(objects.length > 10);
      for (const o of objects) {
        const Model = MODELS[`${o.apiVersion}/${o.kind}`];
        assert.ok(Model, `no model for ${o.apiVersion} ${o.kind} (${o.metadata.name}): add it to MODELS`);
        assert.doesNotThrow(() => new Model(o as never).validate(), `${o.kind} ${o.metadata.name}`);
      }
      const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
      assert.equal(new Set(names).size, names.length, 'duplicate objects');
    });

    it('runs real roles: api, reconciler, migrate, worker --role <stage> for every stage of PIPELINE and every service role', () => {
      for (const o of objects) {
        for (const c of containersOf(o).filter(isPhotopipe)) {
          const [role, flag, stages] = c.args ?? [];
          assert.ok(['api', 'worker', 'reconciler', 'migrate'].includes(role!), `${o.metadata.name}: unknown role ${role}`);
          if (role === 'worker') {
            assert.equal(flag, '--role');
            for (const s of stages!.split(',')) assert.ok(WORKER_ROLES.includes(s), `${o.metadata.name}: ${s} is not a worker role`);
          }
        }
      }
      for (const role of SERVICE_ROLE_NAMES) {
        assert.deepEqual(containersOf(find(objects, 'Deployment', `photopipe-worker-${role}`))[0]!.args, ['worker', '--role', role], `service role ${role}`);
        assert.ok(OTHER_ROLES.some((r) => r.name === `worker-${role}`), `infra/k8s/roles.ts: OTHER_ROLES has no worker-${role}`);
      }
      assert.deepEqual(containersOf(find(objects, 'Deployment', 'photopipe-api'))[0]!.args, ['api']);
      assert.deepEqual(containersOf(find(objects, 'Deployment', 'photopipe-reconciler'))[0]!.args, ['reconciler']);
      assert.deepEqual(containersOf(find(objects, 'Job', 'photopipe-migrate')).filter(isPhotopipe)[0]!.args, ['migrate']);
      for (const stage of STAGES) {
        assert.deepEqual(containersOf(find(objects, 'Deployment', `photopipe-worker-${stage}`))[0]!.args, ['worker', '--role', stage]);
      }
      for (const role of SERVICE_ROLE_NAMES) {
        assert.deepEqual(containersOf(find(objects, 'Deployment', `photopipe-worker-${role}`))[0]!.args, ['worker', '--role', role]);
      }
    });

    it('serves and probes the real ports and endpoints: API /readyz and /healthz on PORT, others on 9464', () => {
      const apiDeployment = find(objects, 'Deployment', 'photopipe-api');
      const api = containersOf(apiDeployment)[0]!;
      const port = settings(environmentOf(objects, api)).PORT;
      assert.equal(port, 8080);
      assert.deepEqual(api.ports?.map((p) => p.containerPort), [port]);
      assert.equal(api.readinessProbe?.httpGet?.path, '/readyz');
      assert.equal(api.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(portNumber(api, api.readinessProbe!.httpGet!.port), port);
      assert.equal(portNumber(api, api.livenessProbe!.httpGet!.port), port);
      assert.equal(apiDeployment.spec && ((apiDeployment.spec as Obj).template as Obj).metadata && (((apiDeployment.spec as Obj).template as Obj).metadata as Obj).annotations && ((((apiDeployment.spec as Obj).template as Obj).metadata as Obj).annotations as Obj)['prometheus.io/port'], String(port));

      const svc = find(objects, 'Service', 'photopipe-api');
      const svcPort = (svc.spec as { ports: { port: number; targetPort: string | number }[] }).ports[0]!;
      assert.equal(portNumber(api, svcPort.targetPort), port);
      const selector = (svc.spec as { selector: Record<string, string> }).selector;
      const podLabels = (((apiDeployment.spec as Obj).template as Obj).metadata as { labels: Record<string, string> }).labels;
      for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, 'the Service selects the API pods');
      const pdb = find(objects, 'PodDisruptionBudget', 'photopipe-api');
      assert.deepEqual((pdb.spec as { selector: { matchLabels: unknown } }).selector.matchLabels, selector);

      for (const name of [...STAGES.map((s) => `photopipe-worker-${s}`), ...SERVICE_ROLE_NAMES.map((r) => `photopipe-worker-${r}`), 'photopipe-reconciler']) {
        const c = containersOf(find(objects, 'Deployment', name))[0]!;
        const env = environmentOf(objects, c);
        const metricsPort = Number(env.METRICS_PORT ?? 9464);
        assert.equal(metricsPort, 9464, name);
        assert.deepEqual(c.ports?.map((p) => p.containerPort), [metricsPort], name);
        assert.equal(c.readinessProbe?.httpGet?.path, '/readyz', name);
        assert.equal(c.livenessProbe?.httpGet?.path, '/healthz', name);
        assert.equal(portNumber(c, c.readinessProbe!.httpGet!.port), metricsPort, name);
        assert.equal(portNumber(c, c.livenessProbe!.httpGet!.port), metricsPort, name);
      }
      const shape = envSchema.shape as Record<string, unknown>;
      if ('METRICS_PORT' in shape) assert.equal((loadConfig({}) as unknown as Record<string, unknown>).METRICS_PORT, 9464, 'METRICS_PORT default');
    });

    it('gives every pod longer to stop than SHUTDOWN_GRACE_MS', () => {
      for (const o of objects) {
        const spec = podSpecOf(o);
        const c = spec?.containers.find(isPhotopipe) ?? spec?.initContainers?.find(isPhotopipe);
        if (!spec || !c) continue;
        const graceMs = settings(environmentOf(objects, c)).SHUTDOWN_GRACE_MS;
        assert.ok((spec.terminationGracePeriodSeconds ?? 30) > graceMs / 1000 + 5, `${o.metadata.name}: terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} vs SHUTDOWN_GRACE_MS ${graceMs}`);
      }
    });

    it('uses only configuration names that src/shared/config.ts knows, and that .env.example documents', () => {
      const documented = readFileSync(join(ROOT, '.env.example'), 'utf8');
      const consumed = new Set<string>();
      for (const o of objects) {
        for (const c of containersOf(o).filter(isPhotopipe)) {
          for (const e of c.env ?? []) consumed.add(e.name);
          for (const from of c.envFrom ?? []) {
            const ref = from.configMapRef ? find(objects, 'ConfigMap', from.configMapRef.name) : objects.find((x) => x.kind === 'Secret' && x.metadata.name === from.secretRef!.name);
            for (const key of Object.keys(ref ? dataOf(ref) : {})) consumed.add(key);
          }
        }
      }
      for (const o of objects.filter((x) => x.metadata.name === 'photopipe-migrate' && x.kind === 'Secret')) for (const key of Object.keys(dataOf(o))) consumed.add(key);
      assert.ok(consumed.has('DATABASE_URL'));
      for (const name of consumed) {
        assert.ok(schemaKeys.has(name), `${name} is not in envSchema (src/shared/config.ts)`);
        assert.match(documented, new RegExp(`^#? ?${name}=`, 'm'), `${name} is not in .env.example`);
      }
    });

    it('pins every image to a release', () => {
      for (const o of objects) {
        for (const c of containersOf(o)) {
          const [, tag] = splitImage(c.image);
          assert.ok(tag && tag !== 'latest', `${o.metadata.name}/${c.name}: ${c.image}`);
          assert.match(tag, /^v?\d+\.\d+(\.\d+)?([-_.][a-z0-9.-]+)?$/, `${o.metadata.name}/${c.name}: ${c.image}`);
        }
      }
    });

    it('runs every container as non-root, read-only, without privileges or capabilities, with resources', () => {
      for (const o of objects) {
        const spec = podSpecOf(o);
        if (!spec) continue;
        assert.equal(spec.securityContext?.runAsNonRoot, true, o.metadata.name);
        assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', o.metadata.name);
        assert.equal(spec.automountServiceAccountToken, false, o.metadata.name);
        for (const c of containersOf(o)) {
          const where = `${o.metadata.name}/${c.name}`;
          assert.equal(c.securityContext?.allowPrivilegeEscalation, false, where);
          assert.equal(c.securityContext?.readOnlyRootFilesystem, true, where);
          assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], where);
          const r = c.resources;
          for (const k of ['cpu', 'memory']) assert.ok(r?.requests?.[k] && r.limits?.[k], `${where}: ${k} request and limit`);
          assert.ok(cpuMillis(r!.requests!.cpu!) <= cpuMillis(r!.limits!.cpu!), where);
          assert.ok(memBytes(r!.requests!.memory!) <= memBytes(r!.limits!.memory!), where);
        }
      }
    });

    it('sizes each worker from roles.ts (requests from the benchmark; the measured 251 MB peak RSS fits the memory request)', () => {
      for (const stage of STAGES) {
        const c = containersOf(find(objects, 'Deployment', `photopipe-worker-${stage}`))[0]!;
        assert.deepEqual(c.resources, STAGE_ROLES[stage]!.resources, stage);
        assert.ok(memBytes(c.resources!.requests!.memory!) >= 251e6, `${stage}: memory request below the measured worker peak RSS`);
      }
    });
  });
}

for (const overlay of OVERLAYS) {
  describe(`infra/k8s/${overlay}: KEDA, secrets, least privilege`, () => {
    const objects = render(join(K8S_DIR, overlay));
    const config = dataOf(find(objects, 'ConfigMap', 'photopipe-config'));
    const topology = buildTopology(settings(config));

    it('scales every worker role on its own interactive and bulk queues (rabbitmq, http, QueueLength)', () => {
      for (const stage of STAGES) {
        const so = find(objects, 'ScaledObject', `photopipe-worker-${stage}`);
        const spec = so.spec as { scaleTargetRef: { name: string }; minReplicaCount: number; maxReplicaCount: number; triggers: { type: string; name?: string; metadata: Record<string, string>; authenticationRef: { name: string } }[] };
        assert.equal(spec.scaleTargetRef.name, `photopipe-worker-${stage}`);
        find(objects, 'Deployment', spec.scaleTargetRef.name);
        assert.ok(spec.minReplicaCount <= spec.maxReplicaCount, stage);
        assert.deepEqual(spec.triggers.map((t) => t.metadata.queueName).sort(), [topology.workQueue(stage as never, 'interactive'), topology.workQueue(stage as never, 'bulk')].sort(), stage);
        const prefetch = settings(config).stage(stage as never).prefetch;
        for (const t of spec.triggers) {
          assert.equal(t.type, 'rabbitmq');
          assert.equal(t.metadata.protocol, 'http', `${stage}: the management API, so unacked messages count`);
          assert.equal(t.metadata.mode, 'QueueLength');
          assert.match(t.metadata.value!, /^\d+$/);
          assert.match(t.metadata.activationValue!, /^\d+$/);
          assert.ok(Number(t.metadata.value) > prefetch, `${stage}: value ${t.metadata.value} must exceed the prefetch (${prefetch}), or a replica's own in-flight messages scale it out`);
          const auth = find(objects, 'TriggerAuthentication', t.authenticationRef.name);
          const ref = (auth.spec as { secretTargetRef: { parameter: string; name: string; key: string }[] }).secretTargetRef.find((r) => r.parameter === 'host');
          assert.ok(ref, 'host comes from a Secret');
          const host = dataOf(find(objects, 'Secret', ref.name))[ref.key];
          assert.ok(host, `${ref.name} has no key ${ref.key}`);
          const url = new URL(host);
          assert.equal(url.protocol, 'http:');
          assert.equal(url.port, '15672', 'the management API port');
          assert.notEqual(url.username, 'guest');
        }
        const interactive = spec.triggers.find((t) => t.metadata.queueName === topology.workQueue(stage as never, 'interactive'))!;
        const bulk = spec.triggers.find((t) => t.metadata.queueName === topology.workQueue(stage as never, 'bulk'))!;
        assert.ok(Number(bulk.metadata.value) >= Number(interactive.metadata.value), `${stage}: the bulk lane tolerates a longer backlog`);
      }
      const scaled = objects.filter((o) => o.kind === 'ScaledObject').map((o) => o.metadata.name).sort();
      assert.deepEqual(scaled, STAGES.map((s) => `photopipe-worker-${s}`).sort(), 'one ScaledObject per stage, no stray ones');
      for (const stage of STAGES) assert.equal((find(objects, 'Deployment', `photopipe-worker-${stage}`).spec as Obj).replicas, undefined, `${stage}: KEDA owns the replica count`);
    });

    it('starts with a configuration production accepts, as photopipe_app; migrates as photopipe_owner', () => {
      const api = containersOf(find(objects, 'Deployment', 'photopipe-api'))[0]!;
      const env = environmentOf(objects, api);
      assert.equal(env.NODE_ENV, 'production');
      assert.doesNotThrow(() => loadConfig(env));
      assert.equal(new URL(env.DATABASE_URL!).username, 'photopipe_app');
      assert.equal(new URL(env.AMQP_URL!).username, 'photopipe');
      for (const stage of STAGES) assert.equal(new URL(environmentOf(objects, containersOf(find(objects, 'Deployment', `photopipe-worker-${stage}`))[0]!).DATABASE_URL!).username, 'photopipe_app');
      const job = find(objects, 'Job', 'photopipe-migrate');
      const migrate = containersOf(job).find(isPhotopipe)!;
      const menv = environmentOf(objects, migrate);
      assert.equal(new URL(menv.DATABASE_URL!).username, 'photopipe_owner');
      assert.doesNotThrow(() => loadConfig(menv));
      const grants = containersOf(job).find((c) => !isPhotopipe(c))!;
      assert.equal(new URL(environmentOf(objects, grants).DATABASE_URL!).username, 'photopipe_owner');
      assert.ok(grants.args?.includes('/sql/grants.sql'));
      assert.equal(dataOf(find(objects, 'ConfigMap', 'photopipe-postgres-sql'))['grants.sql'], readFileSync(join(ROOT, 'infra/postgres/grants.sql'), 'utf8'));
    });

    it('puts everything in the overlay namespace, and keeps real secrets out of git', () => {
      for (const o of objects.filter((x) => x.kind !== 'Namespace')) assert.equal(o.metadata.namespace, 'photopipe', `${o.kind} ${o.metadata.name}`);
      const ignore = readFileSync(join(K8S_DIR, overlay, 'secrets', '.gitignore'), 'utf8');
      assert.match(ignore, /^\*\.env$/m);
      const k = parse(readFileSync(join(K8S_DIR, overlay, 'kustomization.yaml'), 'utf8')) as Kustomization;
      for (const g of k.secretGenerator ?? []) for (const e of g.envs ?? []) assert.ok(existsSync(join(K8S_DIR, overlay, `${e}.example`)), `${e}.example`);
      assert.ok(dirname(join(K8S_DIR, overlay)).endsWith('overlays'));
    });
  });
}
