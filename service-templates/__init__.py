"""Service-manager file templates (string.Template), shipped as the package
`node.service_templates` through a package-dir mapping; see node/service.py."""
