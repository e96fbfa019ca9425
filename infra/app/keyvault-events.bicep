// Key Vault secret events -> the function app's Event Grid trigger (credential rotation: triggers/eventgrid_rotation.py).
// An Event Grid system topic on the vault (https://learn.microsoft.com/azure/key-vault/general/event-grid-overview)
// and one subscription to the function's Event Grid webhook: SecretNewVersionCreated, SecretNearExpiry,
// SecretExpired. The destination is the `AzureFunction` endpoint type
// (https://learn.microsoft.com/azure/event-grid/handler-functions): Event Grid itself calls
// /runtime/webhooks/eventgrid?functionName=... with the host's eventgrid_extension system key, so no key
// is read into the template (no key material anywhere in infra/; a WebHook destination would need
// listKeys). Undeliverable events (after Event Grid's retries:
// https://learn.microsoft.com/azure/event-grid/delivery-and-retry) go to a dead-letter blob container,
// written with the topic's own identity (the account allows no shared keys).
// The function must exist when the subscription is created, so main.bicep deploys this module only with
// keyVaultEventsEnabled=true: on a second `azd provision`, after the first `azd deploy` (docs/deploy.md).
param location string
param tags object = {}
param keyVaultName string
param storageAccountName string
param functionAppName string
param functionName string
param deadLetterContainerName string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource functionApp 'Microsoft.Web/sites@2023-12-01' existing = {
  name: functionAppName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: '${keyVaultName}-events'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// the topic writes dead-lettered events with its identity (the account allows no shared keys)
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, topic.id, storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'credential-rotation'
  dependsOn: [
    topicDeadLetterWriter
  ]
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNewVersionCreated'
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainer.name
        }
      }
    }
  }
}

output systemTopicName string = topic.name
