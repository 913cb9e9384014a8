"""Maps the `services/` tree onto the import package `relaystream`.

The repository shows the architecture (one folder per service under `services/`);
the installed distribution is one import package, `relaystream`.
"""

from setuptools import find_packages, setup

setup(
    packages=["relaystream", "relaystream.schemas"]
    + [f"relaystream.{name}" for name in find_packages("services")],
    package_dir={"relaystream": "services", "relaystream.schemas": "schemas"},
)
