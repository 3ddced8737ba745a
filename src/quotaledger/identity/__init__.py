"""Who is calling: accounts and their passwords, sessions, API keys, the first admin."""
