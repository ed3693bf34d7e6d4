"""validate_document lists every problem at once; secrets are references or encrypted, and masked;
team overrides are checked against the running config."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.live.document import config_document, diff
from gateway.live.secrets import ENCRYPTED, MASK, SecretBox, mask, mask_at
from gateway.live.validate import team_routing_errors, validate_document
from routing.overrides import TeamRouting

KEY = "k" * 40
SECRET = "sk-live-SECRET-123"
ENV = {"UP_KEY": "sk-from-env"}


def model(name: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai_compatible",
        "model": name,
        "api_base": "http://127.0.0.1:9/v1",
        **more,
    }


def doc(**routes: list[str]) -> dict[str, Any]:
    models = [model("cheap", tier="small", api_key="${UP_KEY}"), model("strong", tier="large")]
    return {"models": models, "routes": {n: {"candidates": c} for n, c in routes.items()}}


def test_a_good_document_gives_its_config() -> None:
    v = validate_document(doc(auto=["cheap", "strong"]), env=ENV, box=SecretBox(None))
    assert v.valid and v.config is not None
    assert [d.api_key for d in v.config.models] == ["sk-from-env", None]
    assert v.stored == doc(auto=["cheap", "strong"])  # a reference is stored as written


def test_every_error_is_listed_with_where() -> None:
    bad = {
        "models": [
            model("a", tier="huge", api_key=SECRET),
            model("b", api_key="${NOT_SET}", price={"input_per_mtok": -1, "output_per_mtok": 1}, typo=1),
            model("c", rpm=0),
        ],
        "routes": {"auto": {"candidates": ["a", "ghost"], "quality": 2}, "c": {"candidates": ["a"]}},
        "settings": {"port": 1},
        "extra": {},
    }
    v = validate_document(bad, env=ENV, box=SecretBox(None))
    assert v.config is None and v.stored is None
    where = {e["loc"] for e in v.errors}
    assert where == {
        "settings",
        "extra",
        "models.0.api_key",  # a literal secret without a key to encrypt it
        "models.0.tier",
        "models.1.api_key",  # an unset variable
        "models.1.price.input_per_mtok",
        "models.1.typo",
        "models.2.rpm",
        "routes.auto.quality",
        "routes.auto.candidates",  # unknown candidate
        "routes.c",  # a route with a model's name
    }
    assert not any(SECRET in e["message"] for e in v.errors)
    says = {e["loc"]: e["message"] for e in v.errors}
    assert "SWITCHYARD_CONFIG_SECRET_KEY" in says["models.0.api_key"]
    assert "NOT_SET is not set" in says["models.1.api_key"]
    assert "'ghost'" in says["routes.auto.candidates"]


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"model_list": []}, "LiteLLM"),
        ([], "expected a mapping"),
        ({"models": [model("a", api_key=ENCRYPTED + "x")]}, "written by the gateway"),
        ({"models": [model("a", api_key=MASK)]}, "none stored"),
        ({"models": [model("a", headers={"Authorization": {"x": 1}})]}, "must be a string"),
    ],
)
def test_refused_documents_say_why(document: Any, says: str) -> None:
    v = validate_document(document, env=ENV, box=SecretBox(KEY))
    assert not v.valid and says in v.errors[0]["message"], v.errors


def test_literal_secrets_are_stored_encrypted_and_masked_round_trips() -> None:
    box = SecretBox(KEY)
    headers = {"Authorization": f"Bearer {SECRET}", "X-Title": "app"}
    document = {
        "models": [model("a", api_key=SECRET, headers=headers, options={"aws_secret_access_key": SECRET})]
    }
    v = validate_document(document, env=ENV, box=box)
    assert v.valid and v.config is not None and v.stored is not None
    assert v.config.models[0].api_key == SECRET and v.config.models[0].headers == headers
    assert SECRET not in repr(v.stored)
    stored = v.stored["models"][0]
    assert stored["api_key"].startswith(ENCRYPTED) and stored["headers"]["X-Title"] == "app"
    shown = mask(v.stored)
    assert shown["models"][0]["api_key"] == MASK
    assert shown["models"][0]["headers"] == {"Authorization": MASK, "X-Title": "app"}
    assert shown["models"][0]["options"] == {"aws_secret_access_key": MASK}
    # GET -> PUT: the masked document keeps every secret, and stores identically (same hash).
    again = validate_document(shown, env=ENV, box=box, previous=v.stored)
    assert again.valid and again.stored == v.stored and again.config == v.config
    # The same literal again reuses its encryption; a new one is encrypted anew.
    assert validate_document(document, env=ENV, box=box, previous=v.stored).stored == v.stored
    changed = validate_document(
        {"models": [model("a", api_key="sk-other", headers=headers)]}, env=ENV, box=box, previous=v.stored
    )
    assert changed.stored is not None and changed.stored["models"][0]["api_key"] != stored["api_key"]
    # A different key cannot read them, and says so.
    wrong = validate_document(v.stored, env=ENV, box=SecretBox("another key entirely"), source="stored")
    assert "cannot be decrypted" in wrong.errors[0]["message"]


def test_diff_names_entries_and_masks_secrets() -> None:
    box = SecretBox(KEY)
    old = validate_document({"models": [model("a", api_key=SECRET)]}, env=ENV, box=box).stored
    new_doc = {"models": [model("a", api_key="sk-new-SECRET", tier="large"), model("b")], "routes": {}}
    new = validate_document(new_doc, env=ENV, box=box, previous=old).stored
    changes = diff(old, new, mask_at)
    assert {(c["op"], c["path"]) for c in changes} == {
        ("changed", "models.a.api_key"),
        ("added", "models.a.tier"),
        ("added", "models.b"),
        ("added", "routes"),
    }
    assert "SECRET" not in repr(changes) and ENCRYPTED not in repr(changes)


def test_config_document_reads_back_as_the_same_config() -> None:
    config = parse_config(doc(auto=["cheap", "strong"]), ENV)
    again = validate_document(
        config_document(config, {"sk-from-env": "${UP_KEY}"}), env=ENV, box=SecretBox(None)
    )
    assert again.config == config


def test_team_overrides_are_checked_against_the_running_config() -> None:
    config = parse_config(doc(auto=["cheap", "strong"], fast=["cheap"]), ENV)
    ok = TeamRouting.model_validate(
        {"max_tier": "medium", "routes": {"auto": {"min_tier": "large", "max_tier": "large"}}}
    )
    assert team_routing_errors(ok, config) == []
    bad = TeamRouting.model_validate(
        {
            "min_tier": "medium",
            "max_tier": "medium",
            "routes": {"nope": {}, "fast": {"min_tier": "large", "max_tier": "large"}},
        }
    )
    errors = team_routing_errors(bad, config)
    assert [e["loc"] for e in errors] == ["routing.routes.nope", "routing.routes.fast", "routing"]
    assert "no route 'nope'" in errors[0]["message"] and "its tiers: small" in errors[1]["message"]
