// Fleet alerts and the fleet workbook (issue #13, point 7), on the structured events the app logs
// (core/events.py). docs/fleet-operations.md, "Alerts and the workbook", shows every query and what to
// do when a rule fires.
//
// Where the events are: the Python worker's `logging` records are forwarded by the Functions host to
// Application Insights as `traces` rows, category Function.<name>.User
// (https://learn.microsoft.com/azure/azure-functions/functions-reference-python#logging,
// https://learn.microsoft.com/azure/azure-functions/configure-monitoring#configure-categories); the
// log line, a JSON object {"event": <name>, ...}, is the row's `message`, read with parse_json. Table
// schema: https://learn.microsoft.com/azure/azure-monitor/reference/tables/apptraces (`traces` in the
// Application Insights resource's own query scope, AppTraces in the workspace).
//
// Resources (API versions: the newest stable ones):
// * action groups, Microsoft.Insights/actionGroups@2023-01-01
//   (https://learn.microsoft.com/azure/templates/microsoft.insights/actiongroups): a default group
//   (alertEmails / alertWebhookUrl) and one per owner label value (alertOwnerEmails / alertOwnerWebhooks);
// * log search alert rules, Microsoft.Insights/scheduledQueryRules@2023-12-01
//   (https://learn.microsoft.com/azure/templates/microsoft.insights/scheduledqueryrules), scoped to the
//   Application Insights resource, split by dimensions so each alert names the instance / secret /
//   batch ("The alert payload includes the combination that triggered the alert":
//   https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule). Stateful
//   (autoMitigate): one notification per dimension combination while its events are in the window;
//   the window is longer than the frequency, so an event ingested a few minutes late is still seen;
// * the workbook, Microsoft.Insights/workbooks@2023-06-01
//   (https://learn.microsoft.com/azure/templates/microsoft.insights/workbooks,
//   https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate).
//
// No receiver, no rule: without a default receiver the fleet-wide rules are not created (they would
// notify nobody and still cost their evaluations); an owner's rule exists only for an owner named in
// alertOwnerEmails / alertOwnerWebhooks. The workbook is always deployed (it costs nothing at rest).
param location string
param tags object = {}
param applicationInsightsName string
@description('Prefix of the rule and action group names (the azd environment name).')
param namePrefix string
@description('Comma-separated email addresses that get every alert without a known owner.')
param alertEmails string = ''
@secure()
@description('HTTPS webhook (common alert schema) that gets every alert without a known owner.')
param alertWebhookUrl string = ''
@description('Owner label value -> comma-separated email addresses, e.g. {"cloud-team": "a@contoso.com"}.')
param alertOwnerEmails object = {}
@secure()
@description('Owner label value -> HTTPS webhook, e.g. {"cloud-team": "https://..."}.')
param alertOwnerWebhooks object = {}
@description('How often the event rules run (ISO 8601).')
param evaluationFrequency string = 'PT5M'
@description('What each event rule reads, back from now (ISO 8601); longer than evaluationFrequency.')
param windowSize string = 'PT15M'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var defaultEmails = filter(map(split(alertEmails, ','), address => trim(address)), address => !empty(address))
// every owner label value named by either object, each once
var owners = union(map(items(alertOwnerEmails), entry => entry.key), map(items(alertOwnerWebhooks), entry => entry.key))
var hasDefaultReceivers = !empty(defaultEmails) || !empty(alertWebhookUrl)

// The queries, one file each: docs/fleet-operations.md shows the same text (tests/deploy checks it).
var instanceUnhealthyQuery = trim(loadTextContent('alerts/instance-unhealthy.kql'))
// Owner routing: the default rule takes the changes whose owner is not one with its own group (none,
// or an owner not named); each owner's rule takes only its own. string() of an array is JSON, which a
// KQL dynamic() literal reads as is (https://learn.microsoft.com/kusto/query/scalar-data-types/dynamic).
var defaultOwnerFilter = empty(owners) ? '' : '\n| where owner !in (dynamic(${string(owners)}))'

var instanceUnhealthy = {
  key: 'instance-unhealthy'
  displayName: 'Provisioning instance quarantined, failing or disabled'
  description: 'The health sweep classified an instance as quarantined, failing or disabled (provisioningClassificationChanged). docs/fleet-operations.md#instance-quarantined-failing-or-disabled'
  severity: 1
  dimensions: ['instanceKey', 'displayName', 'servicePrincipalId', 'toCategory', 'reason', 'owner']
}

// The rules that go to the default group only (their events carry no owner).
var fleetRules = [
  {
    key: 'credential-expired'
    displayName: 'Provisioning credential expired'
    description: 'A Key Vault secret the fleet references has expired (credentialExpiry: expired=true, or state=expired from a Key Vault event). docs/fleet-operations.md#credential-expired-or-expiring'
    severity: 1
    query: trim(loadTextContent('alerts/credential-expired.kql'))
    dimensions: ['secretName']
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
  }
  {
    key: 'credential-expiring'
    displayName: 'Provisioning credential expiring'
    description: 'A Key Vault secret the fleet references expires within CREDENTIAL_EXPIRY_WARNING_DAYS (credentialExpiry). docs/fleet-operations.md#credential-expired-or-expiring'
    severity: 2
    query: trim(loadTextContent('alerts/credential-expiring.kql'))
    dimensions: ['secretName']
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
  }
  {
    key: 'rotation-failed'
    displayName: 'Credential rotation failed for an instance'
    description: 'A rotation could not bring an instance to the new secret version (credentialRotationFailed). docs/fleet-operations.md#credential-rotation-failed'
    severity: 1
    query: trim(loadTextContent('alerts/rotation-failed.kql'))
    dimensions: ['rotationId', 'displayName', 'servicePrincipalId', 'outcome']
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
  }
  {
    key: 'batch-failures'
    displayName: 'Provisioning batch finished with failures'
    description: 'A provisioning batch finished with failed, timed-out or quarantined instances (provisioningBatchCompleted). docs/fleet-operations.md#batch-finished-with-failures'
    severity: 2
    query: trim(loadTextContent('alerts/batch-failures.kql'))
    dimensions: ['batchId']
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
  }
]

resource defaultGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasDefaultReceivers) {
  name: '${namePrefix}-fleet-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'fleet'
    enabled: true
    emailReceivers: [for (address, i) in defaultEmails: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// Names from a hash of the label value: label values may hold characters a resource name may not.
resource ownerGroups 'Microsoft.Insights/actionGroups@2023-01-01' = [for owner in owners: {
  name: '${namePrefix}-fleet-alerts-${uniqueString(owner)}'
  location: 'global'
  tags: union(tags, { 'fleet-owner': owner })
  properties: {
    groupShortName: take('fleet-${uniqueString(owner)}', 12)
    enabled: true
    emailReceivers: [for (address, i) in filter(map(split(string(alertOwnerEmails[?owner] ?? ''), ','), a => trim(a)), a => !empty(a)): {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(alertOwnerWebhooks[?owner] ?? '') ? [] : [
      {
        name: 'webhook'
        serviceUri: alertOwnerWebhooks[owner]
        useCommonAlertSchema: true
      }
    ]
  }
}]

resource instanceUnhealthyDefault 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (hasDefaultReceivers) {
  name: '${namePrefix}-${instanceUnhealthy.key}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: instanceUnhealthy.displayName
    description: instanceUnhealthy.description
    severity: instanceUnhealthy.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '${instanceUnhealthyQuery}${defaultOwnerFilter}'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [for name in instanceUnhealthy.dimensions: {
            name: name
            operator: 'Include'
            values: ['*']
          }]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        defaultGroup.id
      ]
    }
  }
}

resource instanceUnhealthyByOwner 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for (owner, i) in owners: {
  name: '${namePrefix}-${instanceUnhealthy.key}-${uniqueString(owner)}'
  location: location
  tags: union(tags, { 'fleet-owner': owner })
  kind: 'LogAlert'
  properties: {
    displayName: '${instanceUnhealthy.displayName} (owner ${owner})'
    description: instanceUnhealthy.description
    severity: instanceUnhealthy.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '${instanceUnhealthyQuery}\n| where owner in (dynamic(${string([owner])}))'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [for name in instanceUnhealthy.dimensions: {
            name: name
            operator: 'Include'
            values: ['*']
          }]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        ownerGroups[i].id
      ]
    }
  }
}]

resource fleetAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in fleetRules: if (hasDefaultReceivers) {
  name: '${namePrefix}-${rule.key}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: rule.evaluationFrequency
    windowSize: rule.windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [for name in rule.dimensions: {
            name: name
            operator: 'Include'
            values: ['*']
          }]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        defaultGroup.id
      ]
    }
  }
}]

// The workbook's items (queries included) are in workbooks/fleet.workbook.json, the file the portal's
// Advanced Editor shows; fallbackResourceIds points its queries at this Application Insights resource.
// A deterministic name (a GUID, as the resource type requires) makes a second deployment update it.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsights.id, 'fleet-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Entra provisioning fleet (${namePrefix})'
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: applicationInsights.id
    serializedData: string(union(loadJsonContent('workbooks/fleet.workbook.json'), {
      fallbackResourceIds: [
        applicationInsights.id
      ]
    }))
  }
}

output defaultActionGroupId string = hasDefaultReceivers ? defaultGroup.id : ''
output workbookId string = workbook.id
