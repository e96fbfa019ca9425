"""Which storage account the batch and sweep reports go to (core/report_store.blob_service), from the host's
own settings: a connection string (UseDevelopmentStorage=true is Azurite's blob endpoint), else an identity-based
connection (AzureWebJobsStorage__blobServiceUri or __accountName, as the Functions host reads them:
https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity),
else a configuration error naming the setting. Building a client does no I/O."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.report_store import blob_service, check_container


def _url(env: dict[str, str]) -> str:
    service = blob_service(env)
    try:
        return str(service.url).rstrip("/")
    finally:
        service.close()


def test_development_storage_is_azurites_blob_endpoint():
    assert _url({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}) == "http://127.0.0.1:10000/devstoreaccount1"


def test_identity_based_connections():
    assert _url({"AzureWebJobsStorage__blobServiceUri": "https://acct1.blob.core.windows.net"}) == \
        "https://acct1.blob.core.windows.net"
    assert _url({"AzureWebJobsStorage__accountName": " acct2 ", "AzureWebJobsStorage__clientId": "id"}) == \
        "https://acct2.blob.core.windows.net"


def test_no_storage_setting_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError) as caught:
        blob_service({"AzureWebJobsStorage": " "})
    assert [p.path for p in caught.value.problems] == ["AzureWebJobsStorage"]


@pytest.mark.parametrize("name", ["", "ab", "Reports", "re--ports", "-reports", "x" * 64])
def test_a_bad_container_name_names_its_setting(name):
    with pytest.raises(ConfigurationError) as caught:
        check_container(name, "HEALTH_SWEEP_REPORT_CONTAINER")
    assert [p.path for p in caught.value.problems] == ["HEALTH_SWEEP_REPORT_CONTAINER"]
    assert check_container("batch-reports") == "batch-reports"
