// Entra provisioning fleet: everything `azd provision` creates. Subscription scope: the resource
// group is created here. Shape follows Microsoft's azd Functions quickstarts (azure.yaml service
// "api", resourceToken naming, azd tags, one RBAC module); see docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan (and, if used, the Durable Task Scheduler).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deployer (user or CI principal): gets Key Vault Secrets Officer and queue access. Empty to skip.')
param principalId string = ''

@description('Type of principalId. azd 1.17.1+ fills it from the sign-in (ServicePrincipal after `azd auth login --client-id`); with an older azd or outside azd set AZURE_PRINCIPAL_TYPE=ServicePrincipal for a service principal, or ARM refuses the assignments (UnmatchedPrincipalType). docs/deploy.md, "Deploy as a service principal".')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Object id of the CI deploy identity (the service principal behind the GitHub workflow\'s federated credential). When set, it gets what `azd env refresh` and `azd deploy` need: ciSubscriptionRoleId on the subscription (reads the subscription-scope deployment) and Website Contributor on the function app. Empty to skip.')
param ciPrincipalId string = ''

@description('Role the CI deploy identity gets on the subscription; it must allow Microsoft.Resources/deployments/read there. Default: Reader. A custom role id with only that action narrows it (docs/deploy.md, "CI/CD").')
param ciSubscriptionRoleId string = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

@description('Durable storage backend. AzureStorage (default) is cheapest for small fleets; DurableTaskScheduler is the managed backend for large or fast batches (docs/deploy.md, "Scaling").')
@allowed(['AzureStorage', 'DurableTaskScheduler'])
param durableBackend string = 'AzureStorage'

@description('Durable Task Scheduler SKU, when durableBackend is DurableTaskScheduler.')
@allowed(['Consumption', 'Dedicated'])
param schedulerSkuName string = 'Consumption'

@description('Durable Task Scheduler capacity units (Dedicated SKU only).')
@minValue(1)
param schedulerCapacity int = 1

@description('NCRONTAB schedule (six fields, seconds first, UTC) of the health sweep that checks every managed instance and restarts quarantined jobs; default hourly.')
param healthSweepSchedule string = '0 0 * * * *'

@description('Microsoft Graph API version the app calls.')
@allowed(['v1.0', 'beta'])
param graphApiVersion string = 'v1.0'

@description('Tag put on every service principal the fleet creates, to find the fleet again.')
param correlationTag string = 'entra-provisioning-fleet'

@description('Flex Consumption maximum instance count. Graph write limits (20 writes/s per app and tenant), not compute, bound throughput, so a small ceiling also caps cost.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Key Vault purge protection (irreversible once on).')
param keyVaultPurgeProtection bool = true

@description('Deliver Key Vault secret events to the credential-rotation trigger (Event Grid system topic + webhook subscription). Needs the app code deployed first (the webhook key exists then): set true and run azd provision again after the first azd deploy.')
param keyVaultEventsEnabled bool = false

@description('Fleet alerts (docs/fleet-operations.md, "Alerts and the workbook"): comma-separated email addresses that get every alert whose instance has no owner with its own receivers, and the fleet-wide alerts (credentials, rotations, batches). Empty together with alertWebhookUrl: no default action group and none of those rules.')
param alertEmails string = ''

@secure()
@description('Fleet alerts: an HTTPS webhook (common alert schema) for the same alerts as alertEmails. It may carry a token: kept out of outputs.')
param alertWebhookUrl string = ''

@description('Fleet alerts routed by the instances\' owner label: owner label value -> comma-separated email addresses, e.g. {"cloud-team": "a@contoso.com"} (azd env set ALERT_OWNER_EMAILS with that JSON; azd 1.23.4 or later). Each owner gets its own action group and its own instance-health rule.')
param alertOwnerEmails object = {}

@secure()
@description('Fleet alerts routed by owner label: owner label value -> HTTPS webhook (ALERT_OWNER_WEBHOOKS, JSON).')
param alertOwnerWebhooks object = {}

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var useScheduler = durableBackend == 'DurableTaskScheduler'
// Queue names are core/names.py's; "-poison" is where the Functions host moves a message after
// maxDequeueCount failed deliveries.
var queueNames = [
  'provisioning-requests'
  'provisioning-requests-rejected'
  'provisioning-requests-poison'
]
// The Microsoft Graph application permissions the managed identity needs: exactly
// core/permissions.py REQUIRED_GRAPH_PERMISSIONS, same order (tests/deploy checks it). Bicep cannot
// grant them (Graph app roles are not Azure RBAC); the outputs below hand them to a tenant admin.
var graphApplicationPermissions = [
  'Application.ReadWrite.All'
  'Synchronization.ReadWrite.All'
  'AppRoleAssignment.ReadWrite.All'
  'AuditLog.Read.All'
  'Directory.Read.All'
]
var useCi = !empty(ciPrincipalId)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
  }
}

module scheduler 'app/dts.bicep' = if (useScheduler) {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    name: '${abbrs.durableTaskSchedulers}${resourceToken}'
    taskHubName: '${abbrs.durableTaskHubs}${resourceToken}'
    location: location
    tags: tags
    skuName: schedulerSkuName
    skuCapacity: schedulerCapacity
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  // The app reads its package from the deployment container, the host its storage, with the
  // identity's roles: create the app only once every role assignment exists, so the first
  // package pull does not answer 403 (docs/deploy.md, "What gets deployed").
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: keyVault.outputs.uri
    durableBackend: durableBackend
    schedulerEndpoint: useScheduler ? scheduler!.outputs.endpoint : ''
    taskHubName: useScheduler ? scheduler!.outputs.taskHubName : ''
    graphApiVersion: graphApiVersion
    healthSweepSchedule: healthSweepSchedule
    correlationTag: correlationTag
    maximumInstanceCount: maximumInstanceCount
  }
}

module keyVaultEvents 'app/keyvault-events.bicep' = if (keyVaultEventsEnabled) {
  name: 'keyvault-events'
  scope: rg
  dependsOn: [
    api
  ]
  params: {
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
    storageAccountName: storage.outputs.name
    functionAppName: api.outputs.SERVICE_API_NAME
    functionName: 'eventgrid_key_vault_secret' // core/names.py EVENTGRID_KEY_VAULT_SECRET
    deadLetterContainerName: 'eventgrid-deadletter'
  }
}

// Alert rules on the app's structured events, their action groups and the fleet workbook.
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    namePrefix: environmentName
    alertEmails: alertEmails
    alertWebhookUrl: alertWebhookUrl
    alertOwnerEmails: alertOwnerEmails
    alertOwnerWebhooks: alertOwnerWebhooks
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    durableTaskSchedulerName: useScheduler ? scheduler!.outputs.name : ''
    managedIdentityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

// The CI deploy identity (optional): `azd env refresh` lists the subscription-scope deployments
// (Microsoft.Resources/deployments/read on the subscription), `azd deploy` publishes to the app.
resource ciSubscriptionRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useCi) {
  name: guid(subscription().id, ciPrincipalId, ciSubscriptionRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ciSubscriptionRoleId)
    principalId: ciPrincipalId
    principalType: 'ServicePrincipal'
  }
}

module ciRbac 'app/ci-rbac.bicep' = if (useCi) {
  name: 'ci-rbac'
  scope: rg
  params: {
    functionAppName: api.outputs.SERVICE_API_NAME
    ciPrincipalId: ciPrincipalId
  }
}

// Outputs become azd environment values (azd env get-values).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.SERVICE_API_NAME
output SERVICE_API_URI string = api.outputs.SERVICE_API_URI
output AZURE_FUNCTION_NAME string = api.outputs.SERVICE_API_NAME
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output DURABLE_BACKEND string = durableBackend
output DURABLE_TASK_SCHEDULER_ENDPOINT string = useScheduler ? scheduler!.outputs.endpoint : ''
// Handed to a tenant admin, who needs neither this azd environment nor the subscription: the
// permissions to grant and the command that grants them (infra/scripts/postprovision.sh prints both).
output GRAPH_APPLICATION_PERMISSIONS array = graphApplicationPermissions
output GRAPH_GRANT_COMMAND string = 'python infra/scripts/grant_graph_permissions.py --identity-client-id ${identity.outputs.clientId}'
