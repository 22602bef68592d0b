"""Tests of ottla.protocol (a package so helper modules import relatively)."""
