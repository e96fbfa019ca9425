"""The fleet registry's pure parts (core/registry.py): a row read back keeps only the registry's fields and
decodes its JSON ones (a damaged JSON value reads as None instead of failing the whole listing), the secret
names of a credentials mapping, and a missing storage setting named as a configuration error."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.registry import _decode, _table_client, referenced_secrets


def test_a_row_decodes_its_json_fields_and_drops_foreign_properties():
    row = _decode({"PartitionKey": "instance", "RowKey": "sp1", "servicePrincipalId": "sp1", "odata.etag": "x",
                   "labels": '{"env":"prod"}', "credentials": "{not json", "secretNames": "|a|"})
    assert row == {"servicePrincipalId": "sp1", "labels": {"env": "prod"}, "credentials": None, "secretNames": "|a|"}


def test_referenced_secrets_are_the_key_vault_names_only():
    credentials = {"SecretToken": {"keyVaultSecret": "tok"}, "BaseAddress": "https://x", "Other": {"keyVaultSecret": 3},
                   "Again": {"keyVaultSecret": "tok"}, "Second": {"keyVaultSecret": "b"}}
    assert referenced_secrets(credentials) == ["b", "tok"]
    assert referenced_secrets(None) == [] and referenced_secrets(["tok"]) == []


def test_no_storage_setting_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError) as caught:
        _table_client("fleetregistry", {"AzureWebJobsStorage": ""})
    assert [p.path for p in caught.value.problems] == ["AzureWebJobsStorage"]
