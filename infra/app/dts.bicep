// Durable Task Scheduler (the managed Durable backend) and its task hub. Deployed only when
// main.bicep's durableBackend is 'DurableTaskScheduler'. The app reaches it with its managed identity
// (Durable Task Data Contributor, rbac.bicep) through DURABLE_TASK_SCHEDULER_CONNECTION_STRING.
param name string
param taskHubName string
param location string
param tags object = {}
@allowed(['Consumption', 'Dedicated'])
param skuName string = 'Consumption'
@description('Capacity units; used only by the Dedicated SKU (1 CU = 2,000 work items/s).')
param skuCapacity int = 1

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // The scheduler is reached over its public endpoint with Entra tokens only; narrow this list
    // if your network allows it.
    ipAllowlist: [
      '0.0.0.0/0'
    ]
    sku: skuName == 'Dedicated' ? {
      name: skuName
      capacity: skuCapacity
    } : {
      name: skuName
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

output name string = scheduler.name
output resourceId string = scheduler.id
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
