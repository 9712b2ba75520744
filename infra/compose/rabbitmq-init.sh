#!/bin/sh
# One-shot (docker-compose.yml service `rabbitmq-init`, image curlimages/curl): gives photopipe
# its own RabbitMQ user through the management HTTP API, as the broker's admin.
#
#   user     $RABBITMQ_APP_USER, no tags: it cannot log in to the management UI or API and
#            administers nothing.
#   vhost /  configure, write and read only on resources named `photopipe` or `photopipe.*`
#            (the work, retry and dead-letter exchanges and every queue of the topology); the
#            default exchange and amq.* are out of reach.
#
# Idempotent (PUT): running it again resets the password and the permissions to these values.
set -eu

: "${RABBITMQ_ADMIN_USER:?}" "${RABBITMQ_ADMIN_PASSWORD:?}" "${RABBITMQ_APP_USER:?}" "${RABBITMQ_APP_PASSWORD:?}"
api="${RABBITMQ_API:-http://rabbitmq:15672/api}"
vhost="${RABBITMQ_VHOST_ENCODED:-%2F}"
# No backslashes, so that neither JSON nor the shell needs escaping: [.] is a literal dot.
resources='^photopipe([.].*)?$'

put() {
  curl -fsS --retry 5 --retry-connrefused --retry-delay 2 -u "$RABBITMQ_ADMIN_USER:$RABBITMQ_ADMIN_PASSWORD" \
    -H 'content-type: application/json' -X PUT --data "$2" "$api$1"
}

put "/users/$RABBITMQ_APP_USER" "{\"password\":\"$RABBITMQ_APP_PASSWORD\",\"tags\":\"\"}"
put "/permissions/$vhost/$RABBITMQ_APP_USER" \
  "{\"configure\":\"$resources\",\"write\":\"$resources\",\"read\":\"$resources\"}"

echo "rabbitmq-init: user $RABBITMQ_APP_USER may configure/write/read $resources on vhost $vhost, no tags"
