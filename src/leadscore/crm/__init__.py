"""The CRM loop: connections, webhooks in (inbox), scores written back (outbox)."""
