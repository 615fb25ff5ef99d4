# pyinfra inventory of tests/fleet/pyinfra.rs: the test writes the hosts
# and their data to inventory.json beside the deploy.
import json
import os

hosts = [tuple(host) for host in json.load(open(os.environ["FLEET_INVENTORY_JSON"]))]
