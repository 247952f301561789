"""The messaging service's domain. Each folder says what its modules may touch: docs/development.md has the map."""
