"""Compiles the gateway's Cython kernels when a compiler is present.

Every ``gateway/**/*.pyx`` becomes an extension module beside its pure-Python
twin.  Without Cython or a C compiler the install still succeeds: the gateway
then runs its pure-Python reference implementations and says so at start.
"""

import pathlib
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).parent

# Modules that call a C library, and how they link to it.  The link hash
# calls OpenSSL's SHA-256 (libcrypto; headers from libssl-dev); at API level
# 1.1.1 the low-level SHA256_* it needs compile without deprecation warnings.
LINKS = {
    "smemet.gateway.ledger._linkhash": {"libraries": ["crypto"], "define_macros": [("OPENSSL_API_COMPAT", "10101")]},
}


def kernel_extensions():
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("warning: Cython not available; gateway kernels stay pure Python", file=sys.stderr)
        return []
    extensions = []
    for pyx in sorted(ROOT.glob("gateway/**/*.pyx")):
        relative = pyx.relative_to(ROOT / "gateway").with_suffix("")
        module = "smemet.gateway." + ".".join(relative.parts)
        extensions.append(
            Extension(module, [str(pyx.relative_to(ROOT))], extra_compile_args=["-O3"], **LINKS.get(module, {}))
        )
    return cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        quiet=True,
    )


class OptionalBuildExt(build_ext):
    """A missing compiler must not make the package uninstallable."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            print(f"warning: kernels not compiled ({exc}); pure-Python path will be used", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: {ext.name} not compiled ({exc}); pure-Python path will be used", file=sys.stderr)


setup(ext_modules=kernel_extensions(), cmdclass={"build_ext": OptionalBuildExt})
