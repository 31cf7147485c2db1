"""CRM loop tests."""
