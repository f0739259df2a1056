"""Outbound messages, written in the transaction that causes them and sent later."""
