// The user-assigned managed identity the function app runs as. One identity for storage, Key Vault,
// Application Insights, the Durable Task Scheduler and Microsoft Graph, so an admin grants Graph
// permissions once (infra/scripts/grant_graph_permissions.py) and they survive app re-creation.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output resourceId string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
