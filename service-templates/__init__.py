"""Service-manager file templates (string.Template), shipped as the package
`node.service.templates` through a package-dir mapping; see node/service/__init__.py."""
