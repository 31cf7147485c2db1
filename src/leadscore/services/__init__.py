"""Services: the product's use cases, called by HTTP routes and the CLI alike."""
