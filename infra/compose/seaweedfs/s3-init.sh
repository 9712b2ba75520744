#!/bin/sh
# One-shot (docker-compose.yml service `s3-init`, same image as `seaweedfs`), run once the S3
# server is healthy:
#   1. creates bucket $S3_BUCKET if it does not exist (weed shell, through the master/filer);
#   2. checks the access rules that start.sh configured, from the outside, as an anonymous
#      client: a rendition name is readable (404 for a missing one, not 403), an original, a
#      parked blob and the bucket listing are refused (403). Any other answer fails the
#      one-shot, and with it `docker compose up` (photopipe's services wait for it).
# The app's scoped key (Read/Write/List on the bucket only) is defined by start.sh.
set -eu

: "${S3_BUCKET:?}"
master="${SEAWEEDFS_MASTER:-seaweedfs:9333}"
filer="${SEAWEEDFS_FILER:-seaweedfs:8888}"
s3="${SEAWEEDFS_S3:-http://seaweedfs:8333}"

shell() { printf '%s\n' "$1" | weed shell -master="$master" -filer="$filer" 2>&1; }

if shell 's3.bucket.list' | grep -Eq "^[[:space:]]*$S3_BUCKET([[:space:]]|$)"; then
  echo "s3-init: bucket $S3_BUCKET exists"
else
  shell "s3.bucket.create -name $S3_BUCKET"
  shell 's3.bucket.list' | grep -Eq "^[[:space:]]*$S3_BUCKET([[:space:]]|$)" || { echo "s3-init: could not create bucket $S3_BUCKET" >&2; exit 1; }
  echo "s3-init: bucket $S3_BUCKET created"
fi

expect() { # expect CODE PATH: an anonymous GET of PATH answers CODE
  code=$(curl -s -o /dev/null -w '%{http_code}' "$s3/$S3_BUCKET/$2")
  if [ "$code" != "$1" ]; then
    echo "s3-init: anonymous GET /$S3_BUCKET/$2 answered $code, expected $1: the access rules are not what photopipe needs" >&2
    exit 1
  fi
}
expect 404 's3-init-check/check/framed.jpg'      # public rendition name: readable (missing here)
expect 404 's3-init-check/check/thumbnail.jpg'
expect 404 's3-init-check/check/batch.jpg'       # a batch output, handed to the customer's batch API
expect 404 's3-init-check/check/batch.webp'
expect 403 's3-init-check/check/original.jpg'    # originals keep EXIF and GPS: private
expect 403 '_parked/s3-init-check/raw'           # a failed photo's parked bytes: private
expect 403 ''                                    # no anonymous listing
echo "s3-init: anonymous reads limited to */*/framed.jpg, */*/thumbnail.jpg and */*/batch.{jpg,webp,png,avif}"
