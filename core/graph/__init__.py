"""Microsoft Graph access: ``transport`` (session, tokens, retries, paging, errors) plus one module per resource."""
