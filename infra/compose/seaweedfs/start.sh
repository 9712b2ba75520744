#!/bin/sh
# Entry point of the `seaweedfs` compose service (image chrislusf/seaweedfs, run as its
# unprivileged `seaweed` user). Writes the S3 identities from the environment into a file only
# this process can read, then starts SeaweedFS in its single-process mode (`weed mini`: master,
# volume, filer and S3 gateway) with that file, so the S3 API never runs without authentication.
#
# Identities (SeaweedFS static S3 config; an action without a path applies to the whole bucket,
# one with a path is matched with * wildcards like an IAM resource):
#   admin      $SEAWEEDFS_ADMIN_ACCESS_KEY: storage root, every action. Used by s3-init only.
#   photopipe  $SEAWEEDFS_APP_ACCESS_KEY: Read, Write and List on bucket $S3_BUCKET, nothing
#              else: no other bucket, no bucket creation or deletion, no IAM.
#   anonymous  no key: GET/HEAD of <tenant>/<photo>/framed.jpg, <tenant>/<photo>/thumbnail.jpg and the
#              batch outputs <tenant>/<photo>/batch.{jpg,webp,png,avif}
#              only. Originals (original.<ext>) and parked bytes (_parked/<photo>/<kind>, no .jpg
#              suffix) stay private, and listing the bucket is refused.
set -eu

: "${SEAWEEDFS_ADMIN_ACCESS_KEY:?}" "${SEAWEEDFS_ADMIN_SECRET_KEY:?}" "${SEAWEEDFS_APP_ACCESS_KEY:?}" "${SEAWEEDFS_APP_SECRET_KEY:?}" "${S3_BUCKET:?}"
config=/tmp/photopipe-s3-identities.json

umask 077
cat > "$config" <<JSON
{
  "identities": [
    {
      "name": "admin",
      "credentials": [{ "accessKey": "$SEAWEEDFS_ADMIN_ACCESS_KEY", "secretKey": "$SEAWEEDFS_ADMIN_SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    },
    {
      "name": "photopipe",
      "credentials": [{ "accessKey": "$SEAWEEDFS_APP_ACCESS_KEY", "secretKey": "$SEAWEEDFS_APP_SECRET_KEY" }],
      "actions": ["Read:$S3_BUCKET", "Write:$S3_BUCKET", "List:$S3_BUCKET"]
    },
    {
      "name": "anonymous",
      "actions": ["Read:$S3_BUCKET/*/*/framed.jpg", "Read:$S3_BUCKET/*/*/thumbnail.jpg", "Read:$S3_BUCKET/*/*/batch.jpg", "Read:$S3_BUCKET/*/*/batch.webp", "Read:$S3_BUCKET/*/*/batch.png", "Read:$S3_BUCKET/*/*/batch.avif"]
    }
  ]
}
JSON

# Only the S3 gateway is needed: no WebDAV, no admin UI, no Iceberg/Lance catalogs, and no
# telemetry to the SeaweedFS project. Host-visible is port 8333 only (docker-compose.yml).
exec /entrypoint.sh mini -dir=/data -s3.config="$config" \
  -webdav=false -admin.ui=false -s3.iam=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.telemetry=false
