"""Build script: the package metadata lives in pyproject.toml; this file only
lists the compiled extensions (the Cython backend) so that adding a kernel
module is adding one entry to CYTHON_MODULES."""
from setuptools import setup

# Dotted module names of the .pyx sources under fastcap/_kernels/.
CYTHON_MODULES = []


def extensions():
    if not CYTHON_MODULES:
        return []
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    exts = [Extension(m, [m.replace(".", "/") + ".pyx"], include_dirs=[numpy.get_include()])
            for m in CYTHON_MODULES]
    return cythonize(exts, language_level=3)


setup(ext_modules=extensions())
