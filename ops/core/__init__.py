"""The core of opforge that every backend builds on (no backend imports here)."""
