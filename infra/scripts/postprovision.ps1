# azd postprovision hook for Windows (azure.yaml): the same output as postprovision.sh, which is
# the reference (tests/deploy/test_postprovision_hook.py runs it); keep the two in step.

$clientId = $env:AZURE_MANAGED_IDENTITY_CLIENT_ID
if ([string]::IsNullOrEmpty($clientId)) {
    [Console]::Error.WriteLine("postprovision: AZURE_MANAGED_IDENTITY_CLIENT_ID is not set, so the Graph grant cannot be printed.")
    [Console]::Error.WriteLine("postprovision: run 'azd env refresh', then 'azd hooks run postprovision'.")
    exit 0
}
# azd stores an array output as JSON: ["A","B"] -> A, B
$permissions = ("$env:GRAPH_APPLICATION_PERMISSIONS" -replace '[\[\]" ]', '') -replace ',', ', '
if ([string]::IsNullOrEmpty($permissions)) { $permissions = "(not in this azd environment: see docs/deploy.md)" }

Write-Host ""
Write-Host "Next: a tenant admin (Privileged Role Administrator or Global Administrator) grants Microsoft Graph"
Write-Host "application permissions to the app's managed identity. Hand these values over:"
Write-Host "  tenant id:                      $env:AZURE_TENANT_ID"
Write-Host "  managed identity client id:     $clientId"
Write-Host "  managed identity object id:     $env:AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"
Write-Host "  permissions:                    $permissions"
Write-Host "The admin runs, in a clone of this repository (docs/deploy.md, `"Grant Microsoft Graph permissions`"):"
Write-Host "  az login --tenant $env:AZURE_TENANT_ID"
Write-Host "  python infra/scripts/grant_graph_permissions.py --identity-client-id $clientId --dry-run"
Write-Host "  python infra/scripts/grant_graph_permissions.py --identity-client-id $clientId"
