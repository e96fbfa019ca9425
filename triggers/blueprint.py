"""The one Durable blueprint every trigger module registers on."""

import azure.durable_functions as df

bp = df.Blueprint()
