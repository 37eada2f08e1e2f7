"""scipion-em-tomorefine: RELION-5-class tilt-series refinement and pseudo-subtomograms for Scipion."""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "tomo_refine_plugin" / "__init__.py").read_text()).group(1)

ENGINE = ["numpy>=1.23", "numba>=0.58", "scipy>=1.10", "starfile>=0.5", "mrcfile>=1.4", "pandas>=1.5"]
SCIPION = ["scipion-pyworkflow>=3.11", "scipion-em>=3.11", "scipion-em-tomo>=3.12"]

setup(
    name="scipion-em-tomorefine",
    version=version,
    description="Tilt-series refinement (relion_tomo_align) and pseudo-subtomograms (relion_tomo_subtomo) "
    "for Scipion, with a bundled numba engine",
    long_description=(here / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="GPL-3.0-or-later",
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
        "Intended Audience :: Science/Research",
    ],
    keywords="scipion cryo-em cryo-et tomography relion subtomogram-averaging",
    python_requires=">=3.9",
    packages=find_packages(exclude=["benchmarks"]),
    include_package_data=True,
    package_data={"tomo_refine_plugin": ["protocols.conf", "templates/*", "tests/data/*", "tests/data/*/*",
                                         "tests/data/*/*/*"]},
    install_requires=ENGINE + SCIPION + ["matplotlib>=3.5"],
    # reliontomo (and scipion-app, which its convert module imports without declaring it) only for the
    # test that checks its refine protocols accept our pseudo-subtomograms; it is not needed at run time.
    extras_require={"test": ["pytest>=7", "pytest-timeout", "scipion-em-reliontomo>=4.0", "scipion-app"]},
    entry_points={
        "console_scripts": ["tomo-refine = tomo_refine_plugin.cli:main"],
        "pyworkflow.plugin": ["tomo_refine_plugin = tomo_refine_plugin"],
    },
)
