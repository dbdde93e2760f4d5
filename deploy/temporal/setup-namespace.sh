#!/bin/sh
# Once the server is healthy: the namespace (30-day retention) and the saga's search
# attributes, created if missing. Runs in temporalio/admin-tools; safe to run again.
set -eu

address="$TEMPORAL_ADDRESS"
namespace="${CLOUDMART_TEMPORAL_NAMESPACE:-default}"

until temporal operator cluster health --address "$address" | grep -q SERVING; do
  echo "waiting for Temporal at $address"
  sleep 2
done

temporal operator namespace describe -n "$namespace" --address "$address" >/dev/null 2>&1 \
  || temporal operator namespace create -n "$namespace" --retention 720h --address "$address"

for attribute in OrderStatus:Keyword CustomerId:Keyword; do
  name="${attribute%%:*}"
  type="${attribute##*:}"
  if ! temporal operator search-attribute list -n "$namespace" --address "$address" | grep -q "^ *$name "; then
    temporal operator search-attribute create -n "$namespace" --name "$name" --type "$type" \
      --address "$address"
  fi
done
echo "namespace $namespace and search attributes ready"
