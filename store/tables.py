"""The metadata store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Instants are ``BIGINT`` milliseconds since the Unix epoch (UTC): exact, portable and ordered
alike on both engines. Structured values (charges, line items, audit data) are JSON text
written by msgspec, so decimals keep their exact text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "alerts",
    "amendments",
    "api_keys",
    "audit_entries",
    "calculations",
    "coupons",
    "credit_grants",
    "credit_ledger",
    "customers",
    "discount_redemptions",
    "idempotency_records",
    "invoices",
    "jobs",
    "metadata",
    "metrics",
    "outbox_events",
    "plan_versions",
    "subscription_discounts",
    "subscriptions",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_events",
]

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("mode", String(4), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("aggregation", String(16), nullable=False),
    Column("property", String(255)),
    Column("percentile", String(32)),
    Column("description", Text),
    Column("status", String(10), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deactivated_at", BigInteger),
)

plan_versions = Table(
    "plan_versions",
    metadata,
    Column("plan_id", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("billing_period", String(10), nullable=False),
    Column("charges", Text, nullable=False),
    Column("entitlements", Text, nullable=False),
    Column("changelog", Text),
    Column("effective_from", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deprecated_at", BigInteger),
    Column("minimum", Text),  # JSON {"amount": "<decimal>"} per full period, NULL for none (revision 0005)
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320)),
    Column("currency", String(3)),
    Column("payment_provider", String(16)),
    Column("payment_provider_customer_id", String(255)),
    Column("payment_method_id", String(255)),
    Column("metadata", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_customers_created", "created_at", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(128), nullable=False, index=True),
    Column("plan_id", String(128), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("start_date", BigInteger, nullable=False),
    Column("end_date", BigInteger),
    Column("created_at", BigInteger, nullable=False),
)

amendments = Table(
    "amendments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("subscription_id", String(40), nullable=False, index=True),
    Column("type", String(20), nullable=False),
    Column("effective", String(40), nullable=False),
    Column("effective_at", BigInteger, nullable=False),
    Column("plan_id", String(128)),
    Column("plan_version", Integer),
    Column("prorate", Boolean, nullable=False, default=False),
    Column("resume_date", BigInteger),
    Column("end_date", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    # The invoice that carries this plan change's proration credits (NULL until one does).
    Column("credited_invoice_id", String(40)),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("api_key_id", String(40), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer),  # NULL while the first request is still running
    Column("response_body", LargeBinary),
    Column("created_at", BigInteger, nullable=False, index=True),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("type", String(12), nullable=False),
    Column("adjusts_invoice_id", String(40), index=True),
    Column("customer_id", String(128), nullable=False, index=True),
    Column("subscription_id", String(40), nullable=False, index=True),
    Column("plan_id", String(128), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("line_items", Text, nullable=False),
    Column("calculation_id", String(40)),
    Column("usage_as_of", BigInteger, nullable=False),
    Column("payment_intent_id", String(255)),
    Column("created_at", BigInteger, nullable=False),
    Column("paid_at", BigInteger),
    Column("archived_at", BigInteger),
    Column("archive_reason", Text),
    # "<subscription>:<period_start>" while a standard invoice is live, NULL once archived:
    # the unique constraint makes "one invoice per subscription period" hold under concurrency.
    Column("period_slot", String(80), unique=True),
    Column("charge_attempt", Integer, nullable=False, default=0),
    Column("charge_lock", BigInteger),  # ms the in-flight charge started, NULL when idle
)

calculations = Table(
    "calculations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("cutoff", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("status", String(10), nullable=False),
    Column("cutoff_date", BigInteger, nullable=False),
    Column("invoices_created", Integer, nullable=False, default=0),
    Column("invoices_skipped", Integer, nullable=False, default=0),
    Column("invoices_existing", Integer, nullable=False, default=0),
    Column("errors", Text, nullable=False, default="[]"),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("actor", String(40)),  # the API key that asked: audit entries of a resumed run name it too
    # The claim (revision 0006, billing.jobs): the replica running the job, until when its
    # lease holds (ms; renewed while it runs), and how many claims the job has had (the
    # fencing token of the current one). NULL: never claimed.
    Column("claimed_by", String(64)),
    Column("lease_until", BigInteger),
    Column("attempts", Integer),
    Index("ix_jobs_claimable", "status", "lease_until"),
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("invoice_id", String(40), nullable=False),
    Column("type", String(40), nullable=False),
    Column("actor", String(40), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_audit_invoice", "invoice_id", "id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(80), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    UniqueConstraint("id", name="uq_webhook_event"),
)

# ---- outbound webhooks and usage alerts (revision 0004) ----------------------------------
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # JSON list of event types ("*" = every type)
    Column("description", Text),
    Column("secret", String(64), nullable=False),  # kept to sign deliveries; shown once, at creation
    Column("status", String(10), nullable=False),  # enabled | disabled
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger),
    Index("ix_webhook_endpoints_created", "created_at", "id"),
)

# The transactional outbox: written in the transaction of the change it announces.
outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", String(40), primary_key=True),  # whev_…, the receiver's dedup key
    Column("type", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body every delivery sends
    Column("created_at", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("event_id", String(40), nullable=False),
    Column("endpoint_id", String(40), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("status", String(10), nullable=False),  # pending | succeeded | failed
    Column("attempt_count", Integer, nullable=False),
    Column("next_attempt_at", BigInteger),  # NULL once succeeded or failed
    Column("retry_until", BigInteger),  # NULL: created_at + the configured retry window
    Column("claimed_until", BigInteger),  # a worker's lease on an attempt in flight
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
    Index("ix_webhook_deliveries_event", "event_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery_id", String(40), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("metric_key", String(64)),
    Column("kind", String(8), nullable=False),  # usage | spend
    Column("threshold", String(40), nullable=False),  # exact decimal text
    Column("status", String(10), nullable=False),  # active | disabled
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger),
    Column("last_triggered_at", BigInteger),
    Column("triggered_period_start", BigInteger),
    Column("triggered_period_end", BigInteger),
    Column("triggered_value", String(64)),
    Index("ix_alerts_customer", "customer_id", "created_at", "id"),
    Index("ix_alerts_created", "created_at", "id"),
)


# ---- commercial terms (revision 0005) ------------------------------------------------------
# A prepaid credit grant; ``remaining`` always equals the sum of its ledger entries.
credit_grants = Table(
    "credit_grants",
    metadata,
    Column("id", String(40), primary_key=True),  # cgr_…
    Column("customer_id", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units granted
    Column("remaining", BigInteger, nullable=False),  # minor units left (locked while an invoice draws)
    Column("priority", Integer, nullable=False),  # lowest number drawn first
    Column("effective_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),  # exclusive; NULL: never
    Column("description", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("voided_at", BigInteger),
    Column("void_reason", Text),
    Index("ix_credit_grants_customer", "customer_id", "created_at", "id"),
)

# Append-only: every change to a grant's remaining amount, signed, with the invoice behind it.
credit_ledger = Table(
    "credit_ledger",
    metadata,
    Column("id", String(40), primary_key=True),  # cle_…
    Column("grant_id", String(40), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("invoice_id", String(40)),
    Column("type", String(10), nullable=False),  # grant | drawdown | restore | void
    Column("amount", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_credit_ledger_grant", "grant_id", "id"),
    Index("ix_credit_ledger_invoice", "invoice_id"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", String(128), primary_key=True),  # client-chosen, immutable once created
    Column("percent_off", String(16)),  # exact decimal text
    Column("amount_off", BigInteger),  # minor units of ``currency``
    Column("currency", String(3)),
    Column("duration", String(10), nullable=False),  # once | repeating | forever
    Column("duration_in_periods", Integer),
    Column("applies_to_charge_ids", Text),  # JSON list; NULL: the whole invoice
    Column("created_at", BigInteger, nullable=False),
    Index("ix_coupons_created", "created_at", "id"),
)

subscription_discounts = Table(
    "subscription_discounts",
    metadata,
    Column("id", String(40), primary_key=True),  # dsc_…
    Column("subscription_id", String(40), nullable=False),
    Column("coupon_id", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_subscription_discounts_subscription", "subscription_id", "created_at", "id"),
)

# Which invoices a discount was applied to; those still live count against its duration.
discount_redemptions = Table(
    "discount_redemptions",
    metadata,
    Column("discount_id", String(40), primary_key=True),
    Column("invoice_id", String(40), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)
