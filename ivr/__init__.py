"""Consent-first automated political calls over Asterisk."""
