// The function app: a Flex Consumption plan and a Python 3.11 function app that runs as the
// user-assigned managed identity. Every app setting the code reads is set here (or documented as
// optional with its default in docs/deploy.md); tests/deploy/test_settings_coverage.py compares
// the *Settings variables below with core/settings.py.
param name string
param planName string
param location string
param tags object = {}
param serviceName string = 'api'
param identityId string
param identityClientId string
param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param keyVaultUri string
@allowed(['AzureStorage', 'DurableTaskScheduler'])
param durableBackend string = 'AzureStorage'
param schedulerEndpoint string = ''
param taskHubName string = ''
param graphApiVersion string = 'v1.0'
param healthSweepSchedule string
param correlationTag string
@description('Upper bound of Flex Consumption instances; Graph write limits, not compute, bound throughput.')
param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@description('PYTHON_THREADPOOL_THREAD_COUNT; keep it >= host.json maxConcurrentActivityFunctions.')
param pythonThreadCount string = '16'

// Functions host: identity-based storage (no connection string, no key). The queue trigger uses
// the same "AzureWebJobsStorage" connection, so these settings also cover it.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Python worker threads for the synchronous activities: at least host.json's
  // extensions.durableTask.maxConcurrentActivityFunctions, or activities queue inside one worker.
  // (UNCONFIRMED that Flex Consumption honours it; it is not on Flex's list of rejected settings.)
  PYTHON_THREADPOOL_THREAD_COUNT: pythonThreadCount
}

// The app's own settings (core/settings.py). azure-identity's DefaultAzureCredential picks the
// user-assigned identity from AZURE_CLIENT_ID; no client secret exists anywhere.
var appCodeSettings = {
  AZURE_CLIENT_ID: identityClientId
  AZURE_TENANT_ID: tenant().tenantId
  KEY_VAULT_URL: keyVaultUri
  GRAPH_BASE_URL: 'https://graph.microsoft.com'
  GRAPH_API_VERSION: graphApiVersion
  GRAPH_SCOPE: 'https://graph.microsoft.com/.default'
  PROVISIONING_CORRELATION_TAG: correlationTag
  HEALTH_SWEEP_SCHEDULE: healthSweepSchedule
}

// Durable backend switch. Azure Storage needs nothing beyond AzureWebJobsStorage. The Durable Task
// Scheduler needs its connection (identity-based, no key) and the host.json storageProvider
// override: AzureFunctionsJobHost__* app settings override host.json values, so the same package
// runs on either backend (docs/deploy.md, "Durable backend").
var durableSettings = durableBackend == 'DurableTaskScheduler' ? {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${schedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
  TASKHUB_NAME: taskHubName
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  AzureFunctionsJobHost__extensions__durableTask__hubName: taskHubName
} : {}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex Consumption takes the runtime from here; FUNCTIONS_WORKER_RUNTIME and
      // FUNCTIONS_EXTENSION_VERSION must NOT be app settings on this plan.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(hostSettings, appCodeSettings, durableSettings)
  }
}

output SERVICE_API_NAME string = functionApp.name
output SERVICE_API_URI string = 'https://${functionApp.properties.defaultHostName}'
output resourceId string = functionApp.id
