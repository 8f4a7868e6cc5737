"""The installer's commissioning page: live view, zones drawn on the picture and a walk test (off by default)."""
