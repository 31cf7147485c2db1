"""The command center: the browser dashboard and the offline API docs, served from the package."""
