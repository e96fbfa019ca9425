#!/bin/sh
# azd postprovision hook (azure.yaml): prints what a tenant admin needs to grant the Microsoft Graph
# application permissions to the app's managed identity. The admin needs neither this azd
# environment nor access to the subscription: only these values and a clone of the repository.
# azd runs hooks with the environment's values (the Bicep outputs) as environment variables;
# tests/deploy/test_postprovision_hook.py runs this script with fake ones.
# infra/scripts/postprovision.ps1 is the same for Windows; keep the two in step.

client_id="${AZURE_MANAGED_IDENTITY_CLIENT_ID:-}"
if [ -z "$client_id" ]; then
  echo "postprovision: AZURE_MANAGED_IDENTITY_CLIENT_ID is not set, so the Graph grant cannot be printed." >&2
  echo "postprovision: run 'azd env refresh', then 'azd hooks run postprovision'." >&2
  exit 0
fi
# azd stores an array output as JSON: ["A","B"] -> A, B
permissions=$(printf '%s' "${GRAPH_APPLICATION_PERMISSIONS:-}" | tr -d '[]" ' | sed 's/,/, /g')
[ -n "$permissions" ] || permissions="(not in this azd environment: see docs/deploy.md)"

echo ""
echo "Next: a tenant admin (Privileged Role Administrator or Global Administrator) grants Microsoft Graph"
echo "application permissions to the app's managed identity. Hand these values over:"
echo "  tenant id:                      ${AZURE_TENANT_ID:-}"
echo "  managed identity client id:     $client_id"
echo "  managed identity object id:     ${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-}"
echo "  permissions:                    $permissions"
echo "The admin runs, in a clone of this repository (docs/deploy.md, \"Grant Microsoft Graph permissions\"):"
echo "  az login --tenant ${AZURE_TENANT_ID:-}"
echo "  python infra/scripts/grant_graph_permissions.py --identity-client-id $client_id --dry-run"
echo "  python infra/scripts/grant_graph_permissions.py --identity-client-id $client_id"
