import type { Redis } from 'ioredis';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { createDb, type Db } from './db.js';
import { createRedis } from './redis.js';
import { BlobStore } from './blob-store.js';
import { Storage } from './storage.js';
import { Releasers } from './lifecycle.js';
import { Broker } from '../queues/broker.js';
import { buildTopology } from '../queues/topology.js';

/** The clients a process's code is handed (API routes, stages, tools), as fields. */
export interface ProcessClients {
  config: Config;
  log: Logger;
  db: Db;
  redis: Redis;
  blobs: BlobStore;
  storage: Storage;
  broker: Broker;
}

/**
 * The clients every photopipe process is built from, made once by its composition root: Postgres
 * and Redis at once, S3 and RabbitMQ on first use (a CLI command that only reads keys never
 * connects to the broker). Released in reverse order of acquisition by release(), which every
 * process calls on shutdown; each step runs even if an earlier one throws.
 */
export class ProcessResources {
  readonly releasers: Releasers;
  readonly db: Db;
  readonly redis: Redis;
  readonly blobs: BlobStore;
  private storageClient: Storage | null = null;
  private brokerClient: Broker | null = null;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    /** Names the process's connections (pg application_name, Redis and AMQP connection names). */
    readonly name: string,
  ) {
    this.releasers = new Releasers(log);
    this.db = createDb(config, log, name);
    this.releasers.add('postgres', () => this.db.end());
    this.redis = createRedis(config, log, name);
    this.releasers.add('redis', async () => void (await this.redis.quit().catch(() => this.redis.disconnect())));
    this.blobs = new BlobStore(this.redis, config.REDIS_KEY_PREFIX);
  }

  get storage(): Storage {
    if (!this.storageClient) {
      const s = new Storage(this.config);
      this.storageClient = s;
      this.releasers.add('s3', async () => s.close());
    }
    return this.storageClient;
  }

  get broker(): Broker {
    if (!this.brokerClient) {
      const b = new Broker(this.config, buildTopology(this.config), this.log, this.name);
      this.brokerClient = b;
      this.releasers.add('rabbitmq', () => b.close());
    }
    return this.brokerClient;
  }

  release(): Promise<void> {
    return this.releasers.release();
  }
}
