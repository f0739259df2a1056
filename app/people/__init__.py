"""Reporters, their channel identities, invites, organisations and staff users."""
