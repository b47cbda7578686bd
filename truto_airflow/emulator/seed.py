"""Deterministic seed data: integrated accounts, users, stages, CRM accounts, contacts, deals.

Ids are meant to be typed into tests by hand, so they follow fixed schemes (``N`` is 1-based,
zero-padded to at least 4 digits for opportunities):

=====================  ==========================================================
integrated account      ``uuid5(NAMESPACE, f"{seed}:{key}")`` for key in :data:`ACCOUNT_KEYS`
opportunity             ``opp-<key>-0001`` ... (``key`` = ``hubspot``, ``sandbox``, ...)
odd-character id        ``SPECIAL_OPPORTUNITY_ID`` (HubSpot account only)
user (owner)            ``user-<key>-1`` ... ``user-<key>-5``
stage                   ``stage-<key>-1`` ... ``stage-<key>-6``
CRM account / contact   ``acct-<key>-001`` ... / ``contact-<key>-001`` ...
=====================  ==========================================================

Only fields the account's integration supports (per the docs table) are seeded, so a read after a
write shows exactly what that CRM would keep. Generation is plain Python with one
``random.Random(seed)``: 10,000 opportunities take a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from truto_airflow.capabilities import load_opportunity_capabilities

__all__ = [
    "ACCOUNT_KEYS",
    "NAMESPACE",
    "SPECIAL_OPPORTUNITY_ID",
    "SeedAccount",
    "SeedData",
    "account_id_for",
    "build_seed",
]

NAMESPACE = uuid.UUID("7a1f3c2e-5b8d-4e60-9c11-0d2f6a4b8e31")
#: key -> (integration slug, status, is_sandbox); opportunities go to every key but needs_reauth.
ACCOUNT_KEYS: dict[str, tuple[str, str, bool]] = {
    "hubspot": ("hubspot", "active", False),
    "pipedrive": ("pipedrive", "active", False),
    "teamleader": ("teamleader", "active", False),
    "attio": ("attio", "active", False),
    "salesforce": ("salesforce", "active", False),
    "sandbox": ("hubspot", "active", True),
    "needs_reauth": ("pipedrive", "needs_reauth", False),
}
SPECIAL_OPPORTUNITY_ID = "deal/42 ä?&#%"
_BASE_TIME = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.timezone.utc)
_COMPANIES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell",
    "Cyberdyne", "Soylent", "Aperture", "Vandelay", "Pied Piper", "Massive Dynamic", "Oscorp",
)  # fmt: skip
_PRODUCTS = ("Platform licence", "Renewal", "Expansion", "Pilot", "Support plan", "Onboarding")
_CURRENCIES = ("USD", "EUR", "GBP", "USD", "USD")
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie")
_STAGE_NAMES = (
    "Appointment scheduled", "Qualified to buy", "Presentation scheduled",
    "Decision maker bought in", "Contract sent", "Closed won",
)  # fmt: skip
_TAGS = ("enterprise", "smb", "inbound", "partner", "priority")
_VIEW_URLS = {
    "hubspot": "https://app.hubspot.com/contacts/24681357/deal/{id}",
    "pipedrive": "https://emulator.pipedrive.com/deal/{id}",
    "teamleader": "https://focus.teamleader.eu/web/deals/{id}",
    "attio": "https://app.attio.com/emulator/deals/record/{id}",
    "salesforce": "https://emulator.my.salesforce.com/lightning/r/Opportunity/{id}/view",
}


def account_id_for(seed: int, key: str) -> str:
    """The stable integrated-account UUID for ``key`` under ``seed``."""
    return str(uuid.uuid5(NAMESPACE, f"{seed}:{key}"))


def iso(moment: dt.datetime) -> str:
    """ISO 8601 with an explicit offset and millisecond precision, like Truto's timestamps."""
    return moment.isoformat(timespec="milliseconds")


@dataclass
class SeedAccount:
    """One integrated account and the CRM objects behind it."""

    key: str
    id: str
    integration: str
    status: str
    is_sandbox: bool
    users: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    opportunities: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The ``GET /integrated-account/{id}`` body (credentials are never part of it)."""
        caps = load_opportunity_capabilities()
        created = iso(_BASE_TIME - dt.timedelta(days=400))
        return {
            "id": self.id,
            "tenant_id": f"emulator-tenant-{self.key}",
            "environment_integration_id": str(uuid.uuid5(NAMESPACE, f"env:{self.integration}")),
            "integration": {
                "id": str(uuid.uuid5(NAMESPACE, f"integration:{self.integration}")),
                "name": self.integration,
                "label": caps.display_name(self.integration),
                "category": "crm",
            },
            "status": self.status,
            "is_sandbox": self.is_sandbox,
            "region": "wnam",
            "authentication_method": "oauth2",
            "context": {},
            "last_error": "Token refresh failed" if self.status == "needs_reauth" else None,
            "created_at": created,
            "updated_at": created,
        }


@dataclass
class SeedData:
    accounts: dict[str, SeedAccount]  # by integrated account id

    def by_key(self) -> dict[str, str]:
        return {account.key: account.id for account in self.accounts.values()}


def build_seed(seed: int, opportunities: int) -> SeedData:
    """Build every account's data; ``opportunities`` is split evenly across the accounts."""
    rng = random.Random(seed)
    accounts = {}
    keys = list(ACCOUNT_KEYS)
    holders = [k for k in keys if ACCOUNT_KEYS[k][1] == "active"]
    share, extra = divmod(opportunities, len(holders))
    for key in keys:
        integration, status, sandbox = ACCOUNT_KEYS[key]
        account = SeedAccount(key, account_id_for(seed, key), integration, status, sandbox)
        _seed_users_and_stages(account)
        if key in holders:
            count = share + (1 if holders.index(key) < extra else 0)
            width = max(4, len(str(count)))
            for n in range(1, count + 1):
                opp_id = f"opp-{key}-{n:0{width}d}"
                account.opportunities[opp_id] = _opportunity(rng, account, opp_id, n)
            if key == "hubspot":
                special = _opportunity(rng, account, SPECIAL_OPPORTUNITY_ID, count + 1)
                account.opportunities[SPECIAL_OPPORTUNITY_ID] = special
        accounts[account.id] = account
    return SeedData(accounts)


def _seed_users_and_stages(account: SeedAccount) -> None:
    key, created = account.key, iso(_BASE_TIME - dt.timedelta(days=365))
    for n in range(1, 6):
        name = f"{_FIRST[(n * 3) % len(_FIRST)]} {_LAST[(n * 5) % len(_LAST)]}"
        account.users.append(
            {
                "id": f"user-{key}-{n}",
                "name": name,
                "email": f"{name.split()[0].lower()}.{n}@{key}.example.com",
                "is_active": n != 5,
                "created_at": created,
                "updated_at": created,
                "urls": [],
                "remote_data": {"id": f"user-{key}-{n}", "email": f"{n}@{key}.example.com"},
            }
        )
    pipeline = {"id": f"pipeline-{key}-default", "name": "Sales pipeline"}
    for n, stage_name in enumerate(_STAGE_NAMES, start=1):
        account.stages.append(
            {
                "id": f"stage-{key}-{n}",
                "name": stage_name,
                "position": n,
                "status": "active",
                "pipeline": pipeline,
                "created_at": created,
                "updated_at": created,
                "remote_data": {"id": f"stage-{key}-{n}", "label": stage_name},
            }
        )


def _opportunity(rng: random.Random, account: SeedAccount, opp_id: str, n: int) -> dict[str, Any]:
    caps = load_opportunity_capabilities()
    supported = caps.supported_fields(account.integration)
    key = account.key
    company = _COMPANIES[rng.randrange(len(_COMPANIES))]
    created = _BASE_TIME - dt.timedelta(days=rng.randrange(30, 720), minutes=rng.randrange(1440))
    updated = created + dt.timedelta(days=rng.randrange(0, 29), minutes=rng.randrange(1440))
    stage = account.stages[rng.randrange(len(account.stages))]
    statuses = sorted(caps.status_values(account.integration) or ("open", "won", "lost"))
    values: dict[str, Any] = {
        "name": f"{company} - {_PRODUCTS[rng.randrange(len(_PRODUCTS))]} #{n}",
        "description": f"Opportunity with {company}, seeded by the Truto emulator.",
        "amount": float(rng.randrange(10, 5000) * 100),
        "currency": _CURRENCIES[rng.randrange(len(_CURRENCIES))],
        "close_date": iso(updated + dt.timedelta(days=rng.randrange(10, 180))),
        "account": {"id": f"acct-{key}-{rng.randrange(1, 60):03d}"},
        "contact": [{"id": f"contact-{key}-{rng.randrange(1, 200):03d}"}],
        "owner": {"id": account.users[rng.randrange(4)]["id"]},
        "stage": {"id": stage["id"], "name": stage["name"]},
        "status": statuses[rng.randrange(len(statuses))],
        "tags": [{"id": f"tag-{key}-{t}", "name": _TAGS[t]} for t in (rng.randrange(5),)],
        "custom_fields": {"lead_source": ("web", "referral", "event")[rng.randrange(3)]},
        "created_at": iso(created),
    }
    record: dict[str, Any] = {"id": opp_id}
    record.update({name: value for name, value in values.items() if name in supported})
    record["updated_at"] = iso(updated)
    record["last_activity_at"] = iso(updated)
    view = _VIEW_URLS.get(account.integration, "https://crm.example.com/deals/{id}")
    record["urls"] = [{"url": view.format(id=opp_id), "type": "view"}]
    record["remote_data"] = {}  # passthrough data written by clients; merged into responses
    return record
