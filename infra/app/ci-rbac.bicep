// The CI deploy identity's role on the function app: `azd deploy` reads the app and its plan and
// publishes the package to the app's /api/publish endpoint (Flex Consumption "one deploy"); the
// platform writes the package to the deployment container with the app's own identity, so the CI
// identity needs no storage data role. Its subscription-scope role is in main.bicep.
param functionAppName string
param ciPrincipalId string

var websiteContributor = 'de139f84-1756-47ae-9be6-808fbbe84772'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource ciWebsiteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(functionApp.id, ciPrincipalId, websiteContributor)
  scope: functionApp
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', websiteContributor)
    principalId: ciPrincipalId
    principalType: 'ServicePrincipal'
  }
}
