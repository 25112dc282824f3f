#!/usr/bin/env bash
# Apply manifests, then wait until weave-npc on every node enforces them: no sleeping.
#
#   examples/wait-enforced.sh policy.yaml [more.yaml...]
#
# kubectl apply reports each object's new resourceVersion; weave-npc's
# /status?wait=RV&kind=K answers as soon as its kernel reflects every write of kind K up to
# RV.  When the files hold several watched kinds, the wait is for all kinds: a kind with no
# write after RV is confirmed by its watch's next bookmark, which a real API server sends
# about once a minute, hence the longer timeout.
set -euo pipefail
[ "$#" -gt 0 ] || { sed -n '4p' "$0"; exit 2; }
files=()
for file in "$@"; do files+=(-f "$file"); done
read -r rv kind < <(kubectl apply "${files[@]}" -o json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
items = doc.get("items", [doc])
rv = max(int(o["metadata"]["resourceVersion"]) for o in items)
kinds = {o["kind"] for o in items}
plural = {"NetworkPolicy": "networkpolicies", "Pod": "pods", "Namespace": "namespaces"}
print(rv, plural[kinds.pop()] if len(kinds) == 1 and kinds <= set(plural) else "")')
query="wait=$rv&timeout=${kind:+10}${kind:-75}${kind:+&kind=$kind}"
status=0
for pod in $(kubectl -n kube-system get pods -l name=weave-net -o name); do
  answer=$(kubectl -n kube-system exec "$pod" -c weave-npc -- python3 -c '
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=90).read().decode())' \
    "http://127.0.0.1:6781/status?$query")
  node=$(kubectl -n kube-system get "$pod" -o jsonpath='{.spec.nodeName}')
  if grep -q '"applied": true' <<<"$answer"; then
    echo "$node: enforced (resourceVersion $rv${kind:+ of $kind})"
  else
    echo "$node: NOT enforced yet: $answer"; status=1
  fi
done
exit "$status"
