"""The OpenAPI document: FastAPI's, made to list every error (SPEC §1) and to carry an
example of every request, response and error."""
