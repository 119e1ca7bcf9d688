"""A wheel carries the JavaScript client, whose only source is clients/js/tidings.js.

The server serves it as ``/static/tidings.js`` from its package, so building
the package copies it to ``tidings/web/static/tidings.js``. An editable
install builds nothing here: the server reads the checkout's file instead.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

CLIENT_SOURCE = os.path.join("clients", "js", "tidings.js")
CLIENT_IN_PACKAGE = os.path.join("tidings", "web", "static", "tidings.js")


class BuildPyWithClient(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            target = os.path.join(self.build_lib, CLIENT_IN_PACKAGE)
            self.mkpath(os.path.dirname(target))
            self.copy_file(CLIENT_SOURCE, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, os.path.join(self.build_lib, CLIENT_IN_PACKAGE)]

    def get_output_mapping(self) -> dict[str, str]:
        """Lets a strict editable install link the client into the package too."""
        mapping = super().get_output_mapping()
        mapping[os.path.join(self.build_lib, CLIENT_IN_PACKAGE)] = CLIENT_SOURCE
        return dict(sorted(mapping.items()))


setup(cmdclass={"build_py": BuildPyWithClient})
