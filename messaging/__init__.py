"""The messaging domain: settings, the messages table, delivery rules, the webhook client, the cache."""
