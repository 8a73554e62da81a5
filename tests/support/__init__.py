"""Helpers shared by the test suite: scripted upstream servers and a private TLS CA."""
