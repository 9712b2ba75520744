# syntax=docker/dockerfile:1
#
# photopipe: one image for every role. The command picks the role:
#   api | worker --role <stage> | reconciler | migrate | topology | keys ... | dlq ...
# See docker-compose.yml and "Running in containers" in README.md.

# Pinned to a release (not the moving 22-bookworm-slim tag) so a rebuild gets the same runtime;
# bump it deliberately, e.g. for Node security releases.
ARG NODE_IMAGE=node:22.18.0-bookworm-slim

# ---------------------------------------------------------------------------
# build: full install (TypeScript, tsx, eslint...), compile src/ to dist/, then
# drop the devDependencies so node_modules can be copied as is.
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# Dependencies first so the layer is cached until package*.json change.
# sharp installs its prebuilt libvips for linux glibc (@img/sharp-linux-*) from the npm registry.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json ./
COPY src ./src
# tsx is a devDependency: once pruned, bin/photopipe.js runs dist/ (and src/ is not copied on).
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && test -f dist/cli/photopipe.js \
 && test ! -e node_modules/tsx

# ---------------------------------------------------------------------------
# runtime: production node_modules + compiled JS + launcher + SQL migrations.
# No src/, no compilers, no extra apt packages (sharp ships its own libvips).
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# glibc's per-thread malloc arenas are the usual cause of high RSS with sharp/libvips (sharp's docs):
# two arenas keep worker memory flat at no measurable cost in throughput.
ENV MALLOC_ARENA_MAX=2
WORKDIR /app

# Owned by root and read-only for the `node` user that runs the process.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
# The dashboard page and its script (the api serves them at /dashboard).
COPY public ./public

# The image's `node` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000:1000
# api: PORT (8080). worker and reconciler: METRICS_PORT (9464) for /metrics, /healthz, /readyz.
EXPOSE 8080 9464

# No HEALTHCHECK here: the port to ask depends on the role (8080 for the api, 9464 otherwise);
# docker-compose.yml and the Kubernetes manifests (infra/k8s) define the checks per role.
# SIGTERM reaches node directly (exec form); every role shuts down within SHUTDOWN_GRACE_MS
# (default 15 s), so give it a stop timeout a bit longer than that.
ENTRYPOINT ["node", "bin/photopipe.js"]
CMD ["api"]
