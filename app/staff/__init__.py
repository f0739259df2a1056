"""The staff side: who may see which tips, sign-in and sessions, the queue and actions."""
