"""The Telegram bot: inbox-driven update handling, drafts in the database, the outbox sender."""
