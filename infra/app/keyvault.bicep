// Key Vault for the target applications' provisioning credentials (the requests carry only secret
// *names*). RBAC authorization, not access policies: the app identity gets Key Vault Secrets User
// and the deployer Key Vault Secrets Officer in rbac.bicep.
param name string
param location string
param tags object = {}
@description('Purge protection cannot be turned off again; on by default because the vault holds credentials.')
param enablePurgeProtection bool = true

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: enablePurgeProtection ? true : null // null: the API rejects an explicit false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output resourceId string = vault.id
output uri string = vault.properties.vaultUri
