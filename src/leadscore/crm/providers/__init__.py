"""Each CRM behind one interface: what its webhooks mean and how a score is written back."""
