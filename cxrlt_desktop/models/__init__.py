"""Model files the app knows: the published models and their pins, the fetch that installs them,
the registry, the strict model check, and the model cards.

- :mod:`.pins`: ``resources/models/published.json`` (repository, pinned revision, sha256 and
  size of every file, licence, card).
- :mod:`.hub`: huggingface_hub online for the configured endpoint only, during a fetch.
- :mod:`.fetch`: download, verify, install atomically, register, configure the settings.
- :mod:`.registry`: ``data_dir()/models.json`` (models and accepted licences).
- :mod:`.check`: load a file or folder with the engine's strict loaders.
- :mod:`.cards`: model cards and the model facts exports and SRs carry.

Heavy libraries (torch, huggingface_hub) are imported inside the functions that need them.
"""

from cxrlt_desktop.models.cards import (
    ModelCard,
    card,
    card_for_model,
    card_html,
    contribution_facts,
    model_facts_text,
)
from cxrlt_desktop.models.check import CheckedModel, NotAModelError, check_model
from cxrlt_desktop.models.fetch import (
    ChecksumMismatch,
    FetchCancelled,
    FetchError,
    LicenceNotAccepted,
    Progress,
    configure_settings,
    fetch_model,
    install_published,
)
from cxrlt_desktop.models.hub import HubAccessError, configured_endpoint, hub_online
from cxrlt_desktop.models.pins import PinError, PublishedModel, load_pins
from cxrlt_desktop.models.registry import RegisteredModel, Registry, RegistryError, in_use

__all__ = [
    "CheckedModel",
    "ChecksumMismatch",
    "FetchCancelled",
    "FetchError",
    "HubAccessError",
    "LicenceNotAccepted",
    "ModelCard",
    "NotAModelError",
    "PinError",
    "Progress",
    "PublishedModel",
    "RegisteredModel",
    "Registry",
    "RegistryError",
    "card",
    "card_for_model",
    "card_html",
    "check_model",
    "configure_settings",
    "configured_endpoint",
    "contribution_facts",
    "fetch_model",
    "hub_online",
    "in_use",
    "install_published",
    "load_pins",
    "model_facts_text",
]
