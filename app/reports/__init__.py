"""Tips: intake, photos and media storage."""
