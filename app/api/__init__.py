"""HTTP API: controllers, request structs, dependencies and error responses."""
