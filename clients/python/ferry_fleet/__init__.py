"""ferry as the transport of orchestration engines: a pyinfra connector
(`pyinfra_connector`, the `@ferry` hosts) and the session both it and the
Ansible connection plugin (`ansible_collections/ferry/fleet`) stand on.
`target` finds a host's address, token file and pin as `ferry` does."""
