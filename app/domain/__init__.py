"""Domain areas (users, chats, messages): their records and repositories."""
