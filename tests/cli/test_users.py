"""SPEC §9/§12: ``maskline user create|list|remove``."""

from __future__ import annotations

import re

from tests.conftest import Cli


class TestUserCommands:
    def test_create_list_and_remove_a_member(self, cli: Cli) -> None:
        cli.ok("org", "create", "cli-users")
        made = cli.ok("user", "create", "--org", "cli-users", "--email", "Dev@Example.com")
        assert made["email"] == "Dev@Example.com"
        assert made["role"] == "developer"
        assert re.fullmatch(
            r"http://127\.0\.0\.1:8000/sign-in/link\?token=[A-Za-z0-9_-]{43}",
            str(made["sign_in_link"]),
        )
        # The same email in any case is the same user: the role changes, no second user.
        again = cli.ok(
            "user", "create", "--org", "cli-users", "--email", "dev@example.com", "--role", "owner"
        )
        assert again["id"] == made["id"]
        assert cli.ok("user", "list", "--org", "cli-users") == {
            "users": [
                {
                    "id": made["id"],
                    "email": "Dev@Example.com",
                    "name": "Dev",
                    "role": "owner",
                    "verified": False,
                }
            ]
        }
        removed = cli.ok("user", "remove", "--org", "cli-users", "--email", "DEV@example.com")
        assert removed == {"removed": True}
        assert cli.ok("user", "list", "--org", "cli-users") == {"users": []}
